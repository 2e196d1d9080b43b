"""Writing a model package: the folder `mars.sw.package.reader.load_package` reads.

docs/model-package.md specifies every file.  The package is produced in a hidden staging
folder beside the destination and renamed into place only when complete, so an
interrupted or failed export never leaves a half-written package that looks valid.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mars.errors import MarsError
from mars.sw.files import staging_folder, swap_into_place
from mars.sw.golden.network import AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode

from .format import (PACKAGE_FORMAT, PACKAGE_VERSION, PackageError, acc_dtype, act_dtype,
                     weight_dtype)

__all__ = ["npy_bytes", "tensor_ref", "write_folder_atomically", "build_package_files",
           "check_maps"]


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy file of `array` (format 1.0, no pickles): deterministic bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class _Files:
    """The package's files, collected in memory as bytes, with manifest references."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def tensor(self, rel: str, array: np.ndarray, dtype: str) -> dict[str, Any]:
        array = np.asarray(array)
        info = np.iinfo(np.dtype(dtype))
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise PackageError(f"{rel}: values [{array.min()}, {array.max()}] do not fit "
                               f"{np.dtype(dtype)}")
        data = npy_bytes(array.astype(dtype))
        self.files[rel] = data
        return tensor_ref(rel, data, np.dtype(dtype).str, array.shape)


def tensor_ref(rel: str, data: bytes, dtype: str, shape) -> dict[str, Any]:
    """Manifest entry of a tensor file."""
    return {"file": rel, "dtype": dtype, "shape": [int(v) for v in shape],
            "sha256": hashlib.sha256(data).hexdigest()}


def build_package_files(
        network: IntegerNetwork, *, node_info: dict[str, dict[str, Any]],
        header: dict[str, Any], test_inputs: np.ndarray, test_labels: np.ndarray,
        test_logits: np.ndarray, extra_files: dict[str, bytes] | None = None,
        node_extra: dict[str, dict[str, Any]] | None = None) -> dict[str, bytes]:
    """Every file of a package, by relative path.

    `node_info` adds fields to each node's manifest entry (source, shapes, scales,
    sparsity); `header` holds the top-level manifest fields the trainer knows (data set,
    training, input quantisation, accuracy, ...); `extra_files`/`node_extra` add the
    sparse-format files and their references.
    """
    config = network.config
    files = _Files()
    nodes = []
    for node in network.nodes:
        entry: dict[str, Any] = {"name": node.name, "op": node.op, "inputs": list(node.inputs)}
        entry.update(node_info.get(node.name, {}))
        if isinstance(node, LayerNode):
            entry["geometry"] = node.geometry.to_dict()
            entry["output"] = node.output
            base = f"tensors/{node.name}"
            entry["weight"] = files.tensor(f"{base}.weight.npy", node.weight,
                                           weight_dtype(config.weight_bits))
            entry["bias"] = files.tensor(f"{base}.bias.npy", node.bias,
                                         acc_dtype(config.acc_bits))
            if node.output == "act":
                entry["multiplier"] = files.tensor(f"{base}.multiplier.npy", node.multiplier,
                                                   "<u4")
                entry["shift"] = files.tensor(f"{base}.shift.npy", node.shift, "|u1")
            if config.scaled_readout:
                entry["scales"] = files.tensor(f"{base}.scales.npy", node.scales, "<i4")
        elif isinstance(node, PoolNode):
            entry.update(kernel=node.kernel, stride=node.stride, pad=node.pad)
        elif isinstance(node, FlattenNode):
            pass
        elif isinstance(node, AddNode):
            base = f"tensors/{node.name}"
            entry["multiplier"] = files.tensor(f"{base}.multiplier.npy", node.multiplier, "<u4")
            entry["shift"] = files.tensor(f"{base}.shift.npy", node.shift, "|u1")
        else:
            raise TypeError(f"unknown node {node!r}")
        entry.update((node_extra or {}).get(node.name, {}))
        nodes.append(entry)
    tests = {
        "count": len(test_inputs),
        "inputs": files.tensor("tests/inputs.npy", test_inputs, act_dtype(config.act_bits)),
        "labels": files.tensor("tests/labels.npy", test_labels, "<i4"),
        "logits": files.tensor("tests/logits.npy", test_logits, acc_dtype(config.acc_bits)),
    }
    manifest = {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_VERSION,
        **header,
        "config": {"file": "config.json", "name": config.name,
                   "content_hash": config.content_hash},
        "output": {"node": network.output, "kind": "logits",
                   "classes": int(network.layers[-1].geometry.cout)},
        "nodes": nodes,
        "test_vectors": tests,
    }
    files.files["config.json"] = config.to_json().encode()
    for rel, data in (extra_files or {}).items():
        if rel in files.files:
            raise ValueError(f"package file {rel!r} is written twice")
        files.files[rel] = data
    files.files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return dict(sorted(files.files.items()))


def check_maps(network: IntegerNetwork) -> str | None:
    """Why `network` does not map onto its configuration (`mars.sw.mapper.map_network`'s
    one-line error, naming the layer or memory and the configuration field), or None if it
    maps.  What depends on the groups training kept (K-splitting, the memories' depths,
    the phase counters) is known only after training: ``mars train`` checks its package
    with this and warns (docs/robustness.md)."""
    from mars.sw.mapper import map_network

    try:
        map_network(network)
    except MarsError as error:
        return str(error)
    return None


def _is_replaceable(folder: Path) -> bool:
    """An existing destination may be replaced if it is empty or a model package."""
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == PACKAGE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_folder_atomically(out_dir: Path | str, files: dict[str, bytes | Callable[[], bytes]]
                            ) -> Path:
    """Write `files` (relative path -> bytes) as the folder `out_dir`, all or nothing.

    The folder is assembled in a hidden staging folder beside `out_dir` and renamed into
    place when complete.  An existing `out_dir` is replaced only if it is empty or a model
    package (anything else raises `PackageError` and is left alone).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not _is_replaceable(out_dir):
        raise PackageError(f"{str(out_dir)!r} exists and is not a model package; not "
                           f"overwriting it")
    # One atomic exchange replaces an existing package: after any signal it is the old
    # package or the new one, never neither; litter of killed runs is cleaned next time.
    staging = staging_folder(out_dir)
    try:
        for rel, data in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data() if callable(data) else data)
        swap_into_place(staging, out_dir)
        return out_dir
    finally:
        shutil.rmtree(staging, ignore_errors=True)
