"""Every manifest field is checked on load: a corrupted field is one line naming it.

The fields are not listed here: they are every path of a valid package's manifest (a random
network written by the package writer; the trainer's informational fields from a small
trained package).  Each is corrupted in the ways its JSON type allows (another type, NaN,
a fraction where an integer belongs, the key removed), and ``mars run`` (in-process) must
answer with exit 2 and one line ``mars: error: ...`` that names the field, or, for a
removed optional field, exit 0 with the logits of the intact package.  Never a traceback.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.cli import main
from mars.sw.package import PackageError, load_package
from mars.tb.networks import stable_seed, write_random_package

TINY = PRESETS["tiny"]
SEED = stable_seed("package-fields", "cnn")

Path_ = tuple  # a field's path in the manifest: keys (str) and list indices (int)


def field_paths(value, path: Path_ = ()) -> Iterator[Path_]:
    """Every path below the root of a JSON document, containers and leaves."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from field_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from field_paths(item, (*path, index))


def get(document, path: Path_):
    for key in path:
        document = document[key]
    return document


def put(document, path: Path_, value) -> None:
    get(document, path[:-1])[path[-1]] = value


def field_name(path: Path_) -> str:
    """The name an error about `path` must mention: its last key (not a list index)."""
    return next(key for key in reversed(path) if isinstance(key, str))


def other_type(value):
    """A value of another JSON type than `value`'s."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 7
    if value is None:
        return "none"
    if isinstance(value, list):
        return {"x": 1}
    return [1]


def corruptions(value) -> list[str]:
    """The corruptions that make a field of this value's type invalid."""
    kinds = ["type"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        kinds.append("nan")
    if isinstance(value, int) and not isinstance(value, bool):
        kinds.append("fraction")
    return kinds


def corrupt(value, kind: str):
    return {"type": other_type, "nan": lambda v: math.nan,
            "fraction": lambda v: v + 0.5}[kind](value)


def _random_manifest() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        write_random_package(Path(folder) / "pkg", TINY, "cnn", seed=SEED)
        return json.loads((Path(folder) / "pkg" / "manifest.json").read_text())


def field_kind(manifest: dict, path: Path_) -> tuple:
    """What makes a field different from another: its path with each node replaced by its
    op and output and each other list index by '#' (the fields of two conv layers, or of
    two index images, are checked by the same code; one of each is enough)."""
    kind = []
    for depth, key in enumerate(path):
        if isinstance(key, int):
            node = get(manifest, path[:depth + 1])
            if path[:depth] == ("nodes",) and isinstance(node, dict):
                kind.append((node.get("op"), node.get("output")))
            else:
                kind.append("#")
        else:
            kind.append(key)
    return tuple(kind)


def distinct_fields(manifest: dict, skip: set[tuple] = frozenset()) -> list[Path_]:
    """One path of each `field_kind` of `manifest` (not those in `skip`)."""
    seen, paths = set(skip), []
    for path in field_paths(manifest):
        kind = field_kind(manifest, path)
        if kind not in seen:
            seen.add(kind)
            paths.append(path)
    return paths


MANIFEST = _random_manifest()
FIELDS = distinct_fields(MANIFEST)
FIELD_IDS = [".".join(map(str, path)) for path in FIELDS]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(folder, its logits): the random package the fields come from; each test rewrites
    only its manifest."""
    folder = tmp_path_factory.mktemp("fields") / "pkg"
    logits = write_random_package(folder, TINY, "cnn", seed=SEED)
    assert json.loads((folder / "manifest.json").read_text()) == MANIFEST
    return folder, logits


def run_with_manifest(folder: Path, manifest: dict, capsys) -> tuple[int, str, Path]:
    """``mars run`` on `folder` with `manifest` written into it: (exit status, stderr,
    the outputs file)."""
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = folder.parent / "y.npz"
    out.unlink(missing_ok=True)
    status = main(["run", "--package", str(folder), "--out", str(out)])
    return status, capsys.readouterr().err, out


def assert_one_line(status: int, err: str, name: str) -> None:
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1, (status, err)
    assert lines[0].startswith("mars: error: ") and "Traceback" not in err, err
    assert name in lines[0], f"the error does not name {name!r}: {lines[0]}"


@pytest.mark.parametrize("path", FIELDS, ids=FIELD_IDS)
def test_a_corrupted_field_is_one_line_naming_it(package, path, capsys):
    """Every corruption its type allows is refused naming the field; removed, the field
    is refused (one line) or optional (the same logits)."""
    folder, logits = package
    for kind in corruptions(get(MANIFEST, path)):
        manifest = copy.deepcopy(MANIFEST)
        put(manifest, path, corrupt(get(manifest, path), kind))
        status, err, _ = run_with_manifest(folder, manifest, capsys)
        assert_one_line(status, err, field_name(path))
    if isinstance(path[-1], str):
        manifest = copy.deepcopy(MANIFEST)
        del get(manifest, path[:-1])[path[-1]]
        status, err, out = run_with_manifest(folder, manifest, capsys)
        if status == 0:                   # an optional field: the same network, same logits
            assert err == ""
            np.testing.assert_array_equal(np.load(out)["logits"], logits)
        else:
            assert_one_line(status, err, "")


# -- the trainer's informational fields ------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained package (its manifest has every field the trainer writes)."""
    from mars.sw.train.trainer import TrainOptions, train

    folder = tmp_path_factory.mktemp("trained") / "pkg"
    train(TINY, TrainOptions(epochs=1, qat_epochs=1, train_subset=100, test_subset=20,
                             test_vectors=4, sparsity=0.5), folder, progress=False,
          log=lambda line: None)
    return folder


def test_every_trainer_field_is_checked(trained, tmp_path):
    """The fields the random package lacks (data set, training, accuracy, node scales and
    sparsity counts, ...), each corrupted in every way its type allows."""
    manifest = json.loads((trained / "manifest.json").read_text())
    known = {field_kind(MANIFEST, path) for path in field_paths(MANIFEST)}
    folder = tmp_path / "pkg"
    shutil.copytree(trained, folder)
    load_package(folder)
    checked, failures = 0, []
    for path in distinct_fields(manifest, known):
        for kind in corruptions(get(manifest, path)):
            bad = copy.deepcopy(manifest)
            put(bad, path, corrupt(get(bad, path), kind))
            (folder / "manifest.json").write_text(json.dumps(bad))
            checked += 1
            try:
                load_package(folder)
            except PackageError as error:
                text = str(error)
                if "\n" in text or field_name(path) not in text:
                    failures.append(f"{path} {kind}: {text}")
            else:
                failures.append(f"{path} {kind}: accepted")
    assert checked > 40, checked
    assert not failures, "\n".join(failures)


# -- values spelled as the JSON the user wrote ------------------------------------------------

PYTHON_SPELLING = re.compile(r"\b(None|True|False|nan)\b")


def test_errors_spell_values_as_json(package):
    """A field set to null, true, false or NaN is refused in JSON's words: ``null``,
    ``true``, ``false``, ``NaN``, never Python's None/True/False/nan (the user wrote
    JSON)."""
    folder, _ = package
    failures = []
    for path in FIELDS:
        for value, spelled in ((None, "null"), (True, "true"), (False, "false"),
                               (math.nan, "NaN")):
            if get(MANIFEST, path) is value:
                continue
            manifest = copy.deepcopy(MANIFEST)
            put(manifest, path, value)
            (folder / "manifest.json").write_text(json.dumps(manifest))
            try:
                load_package(folder)
            except PackageError as error:
                text = str(error)
                if PYTHON_SPELLING.search(text):
                    failures.append(f"{path}: {text}")
            else:
                if not isinstance(get(MANIFEST, path), bool):
                    failures.append(f"{path} = {spelled}: accepted")
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    assert not failures, "\n".join(failures)


# -- what the scale-factor start used -------------------------------------------------------

@pytest.mark.parametrize("asked, used", [(256, 48), (20, 20)])
def test_manifest_records_the_calibration_images_used(tmp_path, asked, used):
    """A binary/ternary readout's scale factors start from a fit on the first N training
    images: the manifest says how many there were (48 training images, fewer than the 256
    asked for by default), in ``scale_start`` and as ``scale_calibration``."""
    from mars.sw.train.trainer import TrainOptions, train

    config = TINY.replace(name="tiny-ternary", readout_mode="ternary", readout_threshold=2,
                          scale_bits=6, scale_frac_bits=2)
    folder = tmp_path / "pkg"
    train(config, TrainOptions(epochs=0, qat_epochs=1, train_subset=48, test_subset=8,
                               test_vectors=2, sparsity=0.75, scope="block",
                               readout_finetune=0, scale_calibration=asked),
          folder, progress=False, log=lambda line: None)
    training = load_package(folder).manifest["training"]
    assert training["scale_calibration"] == used
    assert training["scale_start"] == f"sequential least squares on the first {used} " \
                                      f"training images"
    manifest = json.loads((folder / "manifest.json").read_text())
    for bad in (0, 2.5, "48", None, True):
        manifest["training"]["scale_calibration"] = bad
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(PackageError, match=r"training\.scale_calibration"):
            load_package(folder)
