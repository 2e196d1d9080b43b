"""Type and range checks of the manifest's fields (docs/model-package.md, "manifest.json").

`load_package` reads every field through these helpers, so a field of the wrong JSON type,
out of its range, NaN or infinite is one `PackageError` naming the field by its path in the
manifest (``manifest.json input.shape[0]: ...``,
``node 'c1' sparse.weights_image.words: ...``), never a ``KeyError`` or ``TypeError``
further on.  The informational sections the trainer writes
(``generator``, ``dataset``, ``model``, ``training``, ``sparsity``, ``accuracy``) are
optional, but checked when present; `check_header` checks them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from mars.errors import json_text

from .format import PackageError

__all__ = ["Where", "obj", "integer", "number", "string", "boolean", "shape3", "check_header"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Where:
    """A field's path in the manifest, for error messages: ``input.shape[0]``, or
    ``node 'c1' sparse.weights_image.words`` in a node."""

    def __init__(self, path: str = "", *, node: bool = False) -> None:
        self.path = path
        self.node = node            # a node's path, ``node 'c1'``: its fields follow a space

    @classmethod
    def of_node(cls, name: str) -> Where:
        return cls(f"node {name!r}", node=True)

    def __truediv__(self, key: str | int) -> Where:
        if isinstance(key, int):
            return Where(f"{self.path}[{key}]")
        if self.node:
            return Where(f"{self.path} {key}")
        return Where(f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> PackageError:
        prefix = "" if self.path.startswith("node ") else "manifest.json "
        return PackageError(f"{prefix}{self.path}: {problem}")

    def __str__(self) -> str:
        return self.path


def _show(value: Any) -> str:
    """A manifest value in JSON's spelling (``true``, ``null``), at most 60 characters."""
    return json_text(value, 60)


def obj(value: Any, where: Where) -> dict[str, Any]:
    """`value` if it is a JSON object, else `PackageError`."""
    if not isinstance(value, dict):
        raise where.error(f"expected an object, got {_show(value)}")
    return value


def field(parent: dict[str, Any], key: str, where: Where, *, required: bool = True) -> Any:
    """``parent[key]``; a missing required key is a `PackageError` (None if optional)."""
    if key not in parent:
        if required:
            raise (where / key).error("missing")
        return None
    return parent[key]


def integer(value: Any, where: Where, lo: int | None = None, hi: int | None = None) -> int:
    """A JSON integer (not a bool, not 3.0) in [lo, hi], else `PackageError`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise where.error(f"expected an integer, got {_show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise where.error(f"{value} is outside {bounds}")
    return value


def number(value: Any, where: Where, lo: float | None = None, hi: float | None = None,
           *, nullable: bool = False) -> float | None:
    """A finite JSON number in [lo, hi] (None allowed with `nullable`), else `PackageError`."""
    if value is None and nullable:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise where.error(f"expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise where.error(f"expected a finite number, got {_show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise where.error(f"{_show(value)} is outside {bounds}")
    return float(value)


def string(value: Any, where: Where, choices: tuple[str, ...] | None = None) -> str:
    """A JSON string (one of `choices` if given), else `PackageError`."""
    if not isinstance(value, str):
        raise where.error(f"expected a string, got {_show(value)}")
    if choices is not None and value not in choices:
        raise where.error(f"{value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def boolean(value: Any, where: Where) -> bool:
    """A JSON true/false, else `PackageError`."""
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, got {_show(value)}")
    return value


def sha256(value: Any, where: Where) -> str:
    """64 lower-case hexadecimal digits, else `PackageError`."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise where.error(f"expected a SHA-256 (64 hex digits), got {_show(value)}")
    return value


def int_list(value: Any, where: Where, lo: int | None = None, hi: int | None = None,
             length: int | None = None) -> list[int]:
    """A JSON list of integers in [lo, hi] (of `length` if given), else `PackageError`."""
    if not isinstance(value, list):
        raise where.error(f"expected a list of integers, got {_show(value)}")
    if length is not None and len(value) != length:
        raise where.error(f"expected {length} integers, got {len(value)}")
    return [integer(v, where / i, lo, hi) for i, v in enumerate(value)]


def shape3(value: Any, where: Where) -> tuple[int, int, int]:
    """[H, W, C] of positive integers, else `PackageError`."""
    return tuple(int_list(value, where, 1, None, 3))


def file_name(value: Any, where: Where) -> str:
    """A relative path inside the package (no ``..``, not absolute), else `PackageError`."""
    name = string(value, where)
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or ".." in parts or "\0" in name or "" in parts:
        raise where.error(f"bad file name {name!r} (must be a path inside the package)")
    return name


# -- the informational sections --------------------------------------------------------------

_FRACTION = (0.0, 1.0)
#: Per optional section: key -> (kind, lower, upper); kinds "str", "int", "num", "bool",
#: "frac" (a number in [0, 1]), "shape3", "sha".  Unknown keys are left alone.
_HEADER: dict[str, dict[str, tuple]] = {
    "generator": {"tool": ("str",), "mars": ("str",), "torch": ("str",), "numpy": ("str",)},
    "dataset": {"name": ("str",), "split": ("str",), "train_images": ("int", 0),
                "test_images": ("int", 0), "classes": ("int", 1),
                "image_shape_chw": ("shape3",), "pixel_max": ("int", 1),
                "fingerprint": ("sha",)},
    "model": {"name": ("str",)},
    "training": {"seed": ("int",), "threads": ("int", 1), "epochs": ("int", 0),
                 "qat_epochs": ("int", 0), "batch_size": ("int", 1), "lr": ("num", 0.0),
                 "qat_lr": ("num", 0.0), "weight_decay": ("num", 0.0), "distill": ("frac",),
                 "readout_aware": ("bool",), "method": ("str",),
                 "readout_finetune": ("int", 0), "readout_lr": ("num", 0.0),
                 "ste": ("choice", ("plain", "clipped")), "scale_start": ("str",),
                 "scale_calibration": ("int", 1), "scale_lr": ("num", 0.0)},
    "sparsity": {"structure": ("choice", ("group", "unstructured")), "scope": ("str",),
                 "target": ("frac",), "first_layer_dense": ("bool",),
                 "last_layer_dense": ("bool",), "schedule": ("str",), "group_rows": ("int", 1),
                 "group_channels": ("int", 1), "groups": ("int", 0),
                 "stored_groups": ("int", 0), "group_sparsity": ("frac",),
                 "prunable_group_sparsity": ("frac",)},
    "accuracy": {"float": ("frac",), "qat": ("frac",), "integer": ("frac",),
                 "test_images": ("int", 0), "fake_quant_agreement": ("frac",),
                 "test_vectors": ("frac",)},
}


def check_value(value: Any, spec: tuple, where: Where) -> Any:
    """One value against a `_HEADER`-style spec."""
    kind = spec[0]
    if kind == "str":
        return string(value, where)
    if kind == "choice":
        return string(value, where, spec[1])
    if kind == "int":
        return integer(value, where, *spec[1:])
    if kind == "num":
        return number(value, where, *spec[1:])
    if kind == "frac":
        return number(value, where, *_FRACTION, nullable=True)
    if kind == "bool":
        return boolean(value, where)
    if kind == "shape3":
        return shape3(value, where)
    if kind == "sha":
        return sha256(value, where)
    raise AssertionError(kind)


def check_header(manifest: dict[str, Any]) -> None:
    """The optional informational sections: each an object whose known fields have their
    type and range (`PackageError` naming the field otherwise)."""
    for section, specs in _HEADER.items():
        if section not in manifest:
            continue
        where = Where(section)
        content = obj(manifest[section], where)
        for key, spec in specs.items():
            if key in content:
                check_value(content[key], spec, where / key)
    sparsity = manifest.get("sparsity")
    if sparsity and {"groups", "stored_groups"} <= set(sparsity) \
            and sparsity["stored_groups"] > sparsity["groups"]:
        raise (Where("sparsity") / "stored_groups").error(
            f"{sparsity['stored_groups']} is more than groups ({sparsity['groups']})")
