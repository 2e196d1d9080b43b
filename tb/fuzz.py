"""Generated bad (and good) inputs for the command line, and the judge of each outcome.

Shared by the property-based tests (tests/test_fuzz*.py, a small campaign on every run)
and the benchmark bench/fuzz.py (>= 1000 bad inputs; docs/robustness.md).  Every generator
takes a `random.Random` and returns a `Case`: the ``mars`` argv, the files it needs written
under a work folder, and, for an exit status of 0, the check of its result against an
independent expectation.  `run_case` runs ``mars`` in-process (`mars.sw.cli.main`) and
`judge` sorts the outcome into one of `VERDICTS`:

- ``ok``: exit 0 and a correct result, or exit 2 with exactly one stderr line
  ``mars: error: ...``, or the command got past its checks to long work (training,
  synthesis, simulation, a serial port), which the campaign stops there (`Reached`);
- ``traceback``: an exception other than a `MarsError` escaped;
- ``wrong``: exit 0 with a wrong result (logits unlike the reference inference of
  docs/model-package.md, a configuration unlike the one given);
- ``messy``: exit 2 with anything but one error line (usage lines, warnings, nothing);
- ``exit``: any other exit status.

The generators:

- `config_case`: configuration JSON with mutated values, types, missing and unknown keys,
  broken JSON (``mars config --config FILE``);
- `manifest_case`: a model package's manifest with a field changed, removed or added
  (``mars run --package``);
- `tensor_case`: a package file with flipped bits, truncated, extended, or replaced by an
  array of another shape, dtype or values, with or without a fixed-up SHA-256 in the
  manifest (``mars run --package``);
- `inputs_case`: arrays for ``mars run --inputs`` of random shape, dtype, range, NaN,
  or a file that is not an array;
- `option_case`: random option values for every subcommand (from the parser itself).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import random
import shutil
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

__all__ = ["Case", "Outcome", "Reached", "VERDICTS", "Workspace", "run_case", "judge",
           "config_case", "manifest_case", "tensor_case", "inputs_case", "option_case",
           "GENERATORS", "reference_logits"]

VERDICTS = ("ok", "traceback", "wrong", "messy", "exit")


class Reached(BaseException):
    """Raised in place of long work (training, synthesis, simulation, opening a serial
    port): the command accepted its inputs.  A BaseException, so no ``except Exception``
    on the way swallows it."""


@dataclasses.dataclass
class Case:
    """One generated input: ``mars`` `argv` (run in the work folder), the `files` to write
    first (relative path -> bytes), whether it is meant to be `bad`, a `label` saying what
    was done, and `check(stdout) -> problem or None` for an exit status of 0."""

    kind: str
    label: str
    argv: list[str]
    files: dict[str, bytes]
    bad: bool
    check: Callable[[str], str | None] | None = None


@dataclasses.dataclass
class Outcome:
    status: int | None
    stdout: str
    stderr: str
    traceback: str | None = None
    reached: bool = False


# -- running and judging ---------------------------------------------------------------------

@contextlib.contextmanager
def _long_work_stopped() -> Iterator[None]:
    """Every long step a command can start raises `Reached` instead."""

    def stop(*args: Any, **kwargs: Any) -> None:
        raise Reached()

    targets = ["mars.sw.train.trainer.train", "mars.sw.synth.run_synth",
               "mars.sw.emit.emit_verilog", "mars.sw.run.simulate",
               "mars.sw.energy.sweep.run_sweep", "mars.sw.board.open_port",
               "mars.sw.bitstream.build_bitstream"]
    with contextlib.ExitStack() as stack:
        for target in targets:
            stack.enter_context(mock.patch(target, stop))
        yield


def run_case(case: Case, workdir: Path) -> Outcome:
    """Write the case's files under `workdir` and run ``mars`` in-process there."""
    import os

    from mars.sw.cli import main

    for rel, data in case.files.items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with _long_work_stopped(), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            status = main(list(case.argv))
    except Reached:
        return Outcome(None, out.getvalue(), err.getvalue(), reached=True)
    except SystemExit as exit_:
        code = exit_.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except Exception:                                        # noqa: BLE001 - what we count
        return Outcome(None, out.getvalue(), err.getvalue(), traceback.format_exc())
    finally:
        os.chdir(cwd)
    return Outcome(status, out.getvalue(), err.getvalue())


def judge(case: Case, outcome: Outcome) -> tuple[str, str]:
    """(verdict, detail): the verdict is one of `VERDICTS`."""
    if outcome.traceback is not None:
        return "traceback", outcome.traceback.strip().splitlines()[-1]
    if outcome.reached:
        return "ok", "reached the long work"
    if outcome.status == 0:
        problem = case.check(outcome.stdout) if case.check else None
        return ("wrong", problem) if problem else ("ok", "exit 0")
    if outcome.status == 2:
        lines = outcome.stderr.splitlines()
        if len(lines) == 1 and lines[0].startswith("mars: error: "):
            return "ok", lines[0]
        return "messy", outcome.stderr[:300]
    return "exit", f"exit status {outcome.status}: {outcome.stderr[:200]}"


# -- the reference inference (docs/model-package.md, "A reimplementation in a few lines") ----

def reference_logits(pkg: Path, x: np.ndarray) -> np.ndarray:
    """The logits of the package's network by the specification's own sketch (exact
    readout), reading the files directly: independent of `load_package` and the golden
    model."""
    man = json.loads(Path(pkg, "manifest.json").read_text())
    ab = man["input"]["bits"] if "bits" in man["input"] else 4

    def load(ref):
        return np.load(f"{pkg}/{ref['file']}").astype(np.int64)

    def rescale(v, m, s):
        return (v * m + (1 << (s - 1))) >> s

    vals = {"input": np.asarray(x).astype(np.int64)}
    for n in man["nodes"]:
        a = vals[n["inputs"][0]]
        if n["op"] in ("conv", "linear"):
            g = n["geometry"]
            a = a.reshape(len(a), g["in_h"], g["in_w"], g["cin"])
            p = g["pad"]
            a = np.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
            oh = (g["in_h"] + 2 * p - g["kh"]) // g["stride"] + 1
            ow = (g["in_w"] + 2 * p - g["kw"]) // g["stride"] + 1
            cols = np.stack([a[:, r:r + g["stride"] * oh:g["stride"],
                               c:c + g["stride"] * ow:g["stride"]]
                             for r in range(g["kh"]) for c in range(g["kw"])], axis=3)
            acc = cols.reshape(len(a), oh, ow, -1) @ load(n["weight"]).T + load(n["bias"])
            out = acc if n["output"] == "acc" else np.clip(
                rescale(acc, load(n["multiplier"]), load(n["shift"])), 0, 2 ** ab - 1)
        elif n["op"] == "maxpool":
            k, s, p = n["kernel"], n["stride"], n["pad"]
            a = np.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
            oh, ow = (a.shape[1] - k) // s + 1, (a.shape[2] - k) // s + 1
            out = np.max([a[:, r:r + s * oh:s, c:c + s * ow:s]
                          for r in range(k) for c in range(k)], axis=0)
        elif n["op"] == "flatten":
            out = a.reshape(len(a), 1, 1, -1)
        else:
            m, sh, b = load(n["multiplier"]), load(n["shift"]), vals[n["inputs"][1]]
            out = np.clip(rescale(a, m[0], sh[0]) + rescale(b, m[1], sh[1]), 0, 2 ** ab - 1)
        vals[n["name"]] = out
    return vals[man["output"]["node"]].reshape(len(x), -1)


def _logits_check(workdir: Path, pkg: str, out: str, inputs: Callable[[], np.ndarray]
                  ) -> Callable[[str], str | None]:
    """For exit 0 of ``mars run``: the logits written to `out` equal `reference_logits`."""

    def check(stdout: str) -> str | None:
        try:
            x = inputs()
            x = x[None] if x.ndim == 3 else x
            want = reference_logits(workdir / pkg, x)
        except Exception as error:                             # noqa: BLE001
            return f"accepted, but the specification's inference fails: {error!r:.120}"
        try:
            got = np.load(workdir / out)["logits"]
        except (OSError, KeyError, ValueError) as error:
            return f"no logits written: {error}"
        if got.shape != want.shape or not np.array_equal(got, want):
            return "logits differ from the specification's inference"
        return None

    return check


# -- the package every package case starts from ---------------------------------------------

class Workspace:
    """A valid model package (a random network on the ``tiny`` preset) held in memory:
    each case writes its changed files over a copy in the work folder, and `restore`
    puts the originals back afterwards."""

    def __init__(self, workdir: Path, seed: int = 1, network: str = "cnn") -> None:
        from mars.config import PRESETS
        from mars.tb.networks import write_random_package

        self.workdir = Path(workdir)
        self.root = self.workdir / "pkg"
        shutil.rmtree(self.root, ignore_errors=True)
        write_random_package(self.root, PRESETS["tiny"], network, seed=seed)
        self.files = {str(p.relative_to(self.root)): p.read_bytes()
                      for p in sorted(self.root.rglob("*")) if p.is_file()}
        self.manifest = json.loads(self.files["manifest.json"])
        self.inputs = np.load(self.root / "tests" / "inputs.npy")

    def restore(self) -> None:
        """Back to the valid package: originals rewritten, anything added removed, and
        every other file of the work folder (outputs, inputs) removed."""
        for path in self.workdir.iterdir():
            if path != self.root:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() \
                    else path.unlink()
        if not self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True) if self.root.exists() else None
            with contextlib.suppress(FileNotFoundError):
                self.root.unlink()
        for path in sorted(self.root.rglob("*"), reverse=True):
            rel = str(path.relative_to(self.root))
            if path.is_file() and rel not in self.files:
                path.unlink()
        for rel, data in self.files.items():
            path = self.root / rel
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)


def _run_argv(rng: random.Random, inputs: str | None = None) -> list[str]:
    argv = ["run", "--package", "pkg", "--out", "out/y.npz"]
    if inputs:
        argv += ["--inputs", inputs]
    return argv


def _paths(document: Any, path: tuple = ()) -> Iterator[tuple]:
    if path:
        yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, (*path, index))


def _get(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


_STRINGS = ["", "x", "conv", "input", "../../etc/passwd", "/abs", "ä", "a" * 300, "0",
            "NaN", "HWC", "acc", "act", "tensors/c1.weight.npy", "|i1", "<f8"]


def _random_value(rng: random.Random, like: Any = None) -> Any:
    """A JSON value: often near `like` (off by one, negated, huge), else of any type."""
    choice = rng.random()
    if isinstance(like, (int, float)) and not isinstance(like, bool) and choice < 0.5:
        return rng.choice([like + 1, like - 1, -like, like * 2, 0, -1, 2 ** 31, 2 ** 63,
                           10 ** 30, like + 0.5, float(like), math.nan, math.inf, -math.inf])
    return rng.choice([None, True, False, 0, 1, -1, 2 ** 64, 0.5, -2.5, math.nan, math.inf,
                       rng.choice(_STRINGS), [], [1, 2, 3], {}, {"file": "x"},
                       rng.randint(-10 ** 6, 10 ** 6)])


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


# -- generators ------------------------------------------------------------------------------

def config_case(rng: random.Random, workdir: Path | None = None) -> Case:
    """Configuration JSON, one to three fields changed, removed or added, or broken text;
    ``mars config --config FILE``.  Exit 0 must print the configuration the file holds."""
    from mars.config import PRESETS, MarsConfig

    preset = PRESETS[rng.choice(sorted(PRESETS))]
    doc = json.loads(preset.to_json())
    labels = []
    bad = rng.random() > 0.1
    if bad:
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["set", "set", "set", "delete", "add", "hash"])
            key = rng.choice(sorted(doc)) if doc else "name"
            if op == "set":
                doc[key] = _random_value(rng, doc.get(key))
            elif op == "delete":
                doc.pop(key, None)
            elif op == "add":
                key = rng.choice(["extra", "row", "Rows", "acc_bit", "weightbits"])
                doc[key] = _random_value(rng)
            else:
                doc["content_hash"] = hashlib.sha256(rng.randbytes(8)).hexdigest()
            labels.append(f"{op} {key}")
    text = _dumps(doc)
    if bad and rng.random() < 0.15:
        text = rng.choice([text[:rng.randint(0, len(text))], b"\xff\xfe" + text, b"[]",
                           b"null", b"", b"{" * 5000, b"[" * 100000 + b"]" * 100000])
        labels.append("broken text")

    def check(stdout: str) -> str | None:
        try:
            given = MarsConfig.from_json(text.decode())
            printed = MarsConfig.from_json(stdout)
        except Exception as error:                             # noqa: BLE001
            return f"accepted, but does not parse again: {error!r:.120}"
        return None if printed == given else "printed another configuration"

    return Case("config", ", ".join(labels) or "valid preset",
                ["config", "--config", "cfg/c.json"], {"cfg/c.json": text}, bad, check)


def manifest_case(rng: random.Random, ws: Workspace) -> Case:
    """The package's manifest with one to three fields changed, removed, added or moved;
    ``mars run --package``."""
    doc = copy.deepcopy(ws.manifest)
    labels = []
    bad = rng.random() > 0.1
    for _ in range(rng.randint(1, 3) if bad else 0):
        paths = list(_paths(doc))
        path = rng.choice(paths)
        parent, key = _get(doc, path[:-1]), path[-1]
        op = rng.choice(["set", "set", "set", "delete", "add", "swap"])
        if op == "set":
            parent[key] = _random_value(rng, parent[key])
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[rng.choice(["extra", "nodes", "inputs", "op", "sparse"])] = \
                _random_value(rng)
        elif op == "add":
            parent.append(copy.deepcopy(rng.choice(parent)))
        elif isinstance(parent, list) and len(parent) > 1:
            i, j = rng.sample(range(len(parent)), 2)
            parent[i], parent[j] = parent[j], parent[i]
        else:
            parent[key] = copy.deepcopy(_get(doc, rng.choice(paths)))
        labels.append(f"{op} {'.'.join(map(str, path))}")
    text = json.dumps(doc)                            # NaN and Infinity as Python writes them
    if bad and rng.random() < 0.1:
        text, label = rng.choice([(text[:rng.randint(0, len(text))], "truncated"),
                                  ("[" * 100000 + "]" * 100000, "nested too deeply"),
                                  ("\udcff" + text, "not UTF-8")])
        labels.append(label)
    return Case("manifest", "; ".join(labels) or "valid package", _run_argv(rng),
                {"pkg/manifest.json": text.encode("utf-8", "surrogateescape")}, bad,
                _logits_check(ws.workdir, "pkg", "out/y.npz", lambda: ws.inputs))


def _refs_to(document: Any, rel: str) -> list[dict]:
    """Every reference object in the manifest naming the file `rel`."""
    found = []
    for path in _paths(document):
        value = _get(document, path)
        if isinstance(value, dict) and value.get("file") == rel:
            found.append(value)
    return found


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def tensor_case(rng: random.Random, ws: Workspace) -> Case:
    """One package file damaged (bits flipped, truncated, extended, emptied) or replaced by
    an array of another shape, dtype or values, half the time with the manifest's SHA-256
    (and dtype and shape) fixed up to match; ``mars run --package``."""
    rel = rng.choice(sorted(r for r in ws.files if r != "manifest.json"))
    data = ws.files[rel]
    bad = rng.random() > 0.1
    label = "valid package"
    if bad:
        op = rng.choice(["flip", "flip", "truncate", "extend", "empty", "array", "array",
                         "array"])
        if op == "flip" or (op == "array" and not rel.endswith(".npy")):
            raw = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            data, label = bytes(raw), "bits flipped"
        elif op == "truncate":
            data, label = data[:rng.randrange(len(data))], "truncated"
        elif op == "extend":
            data, label = data + rng.randbytes(rng.randint(1, 64)), "extended"
        elif op == "empty":
            data, label = b"", "emptied"
        else:
            array = np.load(io.BytesIO(data))
            data, label = _npy(_changed_array(rng, array)), "array changed"
        label = f"{rel} {label}"
    files = {f"pkg/{rel}": data}
    if bad and rng.random() < 0.5:
        doc = copy.deepcopy(ws.manifest)
        for ref in _refs_to(doc, rel):
            ref["sha256"] = hashlib.sha256(data).hexdigest()
            if "dtype" in ref and rel.endswith(".npy"):
                with contextlib.suppress(Exception):
                    array = np.load(io.BytesIO(data), allow_pickle=False)
                    ref["dtype"], ref["shape"] = array.dtype.str, list(array.shape)
        files["pkg/manifest.json"] = _dumps(doc)
        label += ", SHA-256 fixed up"
    inputs = (lambda: np.load(ws.root / "tests" / "inputs.npy"))
    return Case("tensor", label, _run_argv(rng), files, bad,
                _logits_check(ws.workdir, "pkg", "out/y.npz", inputs))


_DTYPES = ["|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", ">i4", "<f4", "<f8",
           "|b1", "<c8", "<f2"]


def _changed_array(rng: random.Random, array: np.ndarray) -> np.ndarray:
    op = rng.choice(["shape", "dtype", "value", "value"])
    if op == "shape" and array.size:
        shapes = [(array.size,), (1, *array.shape), array.shape[::-1], (0, *array.shape[1:]),
                  (*array.shape[:-1], array.shape[-1] + 1) if array.ndim else (2,), ()]
        shape = rng.choice(shapes)
        size = int(np.prod(shape)) if shape else 1
        flat = np.resize(array.reshape(-1), size) if size else array.reshape(-1)[:0]
        return flat.reshape(shape)
    if op == "dtype":
        with np.errstate(all="ignore"):
            return array.astype(rng.choice(_DTYPES))
    changed = array.copy()
    if changed.size:
        index = tuple(rng.randrange(n) for n in changed.shape)
        if changed.dtype.kind == "b":
            changed[index] = not changed[index]
        else:
            info = np.iinfo(changed.dtype)
            changed[index] = rng.choice([info.min, info.max, 0, 1, -1 if info.min else 2,
                                         int(changed[index]) + 1 if changed[index] < info.max
                                         else 0])
    return changed


def _random_inputs(rng: random.Random, shape: tuple[int, ...], act_max: int) -> np.ndarray:
    n = rng.randint(1, 3)
    x = np.random.default_rng(rng.randrange(2 ** 32)).integers(0, act_max + 1, (n, *shape))
    return x.astype(np.uint8)


def inputs_case(rng: random.Random, ws: Workspace) -> Case:
    """An array for ``mars run --inputs``: random shape, dtype, range, NaN, or a file
    that is not an array at all.  Exit 0 must give the specification's logits."""
    shape = tuple(ws.manifest["input"]["shape"])
    x: Any = _random_inputs(rng, shape, 15)
    bad = rng.random() > 0.15
    label = "valid inputs"
    if bad:
        op = rng.choice(["shape", "dtype", "range", "nan", "file", "single", "order"])
        if op == "shape":
            x = rng.choice([x[0, 0], x[:, :-1], x[..., None], x.reshape(len(x), -1), x[:0],
                            x.reshape(-1), np.zeros(()), np.zeros((2, *shape[::-1]))])
        elif op == "dtype":
            x = x.astype(rng.choice(_DTYPES))
            bad = x.dtype.kind not in "iu"               # other integer dtypes are fine
        elif op == "range":
            x = x.astype(np.int64)
            x.flat[rng.randrange(x.size)] = rng.choice([-1, 16, 255, 2 ** 40, -2 ** 63])
        elif op == "nan":
            x = x.astype(np.float64)
            x.flat[rng.randrange(x.size)] = rng.choice([math.nan, math.inf, -math.inf, 0.5])
        elif op == "single":
            x = x[0]
            bad = False                                  # one HWC image: a batch of one
        elif op == "order":
            x = np.asfortranarray(x).astype(">u2")
            bad = False
        label = op
    if isinstance(x, np.ndarray) and not (bad and label == "file"):
        data = _npy(x)
    else:
        data = rng.choice([b"", b"not an array", _npy(x)[:rng.randint(1, 60)],
                           b"\x93NUMPY\x01\x00" + rng.randbytes(40)])
    return Case("inputs", label, _run_argv(rng, "x/inputs.npy"), {"x/inputs.npy": data},
                bad, _logits_check(ws.workdir, "pkg", "out/y.npz",
                                   lambda: np.load(ws.workdir / "x" / "inputs.npy")))


def _subparsers(parser) -> dict[str, Any]:
    """Every (sub)command's parser by its argv prefix: "run", "board run", ..."""
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _subparsers(sub)
                if inner:
                    found.update({f"{name} {k}": v for k, v in inner.items()})
                else:
                    found[name] = sub
    return found


# Relative to the work folder, never outside it (an output option may get any of these).
_PATHS = ["pkg", "x/inputs.npy", "missing", "missing/deeper.npy", "cfg", "tiny", "default",
          "pkg/manifest.json", "cfg/c.json", "cfg/deep.json", "cfg/blob.json", "out/y.npz", ""]


def _option_value(rng: random.Random, action) -> tuple[str, bool]:
    """A value for an option, and whether it is certainly invalid (outside the choices,
    not a number)."""
    if action.choices:
        if rng.random() < 0.8:
            return str(rng.choice(list(action.choices))), False
        return rng.choice(["bogus", "", "GOLDEN"]), True
    kind = action.type
    if kind is int:
        if rng.random() < 0.85:
            return str(rng.choice([-1, 0, 1, 2, 3, 100, 2 ** 40])), False
        return rng.choice(["x", "1.5", "", "nan"]), True
    if kind is float or callable(kind):
        if rng.random() < 0.85:
            return str(rng.choice([-1.0, 0.0, 0.25, 0.5, 0.99, 1.0, 1.5, 1e9, math.nan,
                                   math.inf])), False
        return rng.choice(["x", "", "50%", "-0%"]), False
    return rng.choice(_PATHS), False


def option_case(rng: random.Random, ws: Workspace) -> Case:
    """Random options for a random (sub)command, drawn from the parser's own actions:
    choices in and out of range, numbers in and out of range, paths that exist or not.
    Long work the options lead to (training, synthesis, simulation) is stopped at its
    start (`Reached`).  ``mars config`` and ``mars run`` on the golden model run to the end;
    exit 0 of ``mars run`` must give the specification's logits."""
    from mars.sw.cli import build_parser

    commands = _subparsers(build_parser())
    name = rng.choice(sorted(commands))
    parser = commands[name]
    argv = name.split()
    bad = False
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if rng.random() > (0.9 if action.required else 0.3):
            bad |= action.required
            continue
        argv.append(rng.choice(action.option_strings))
        if action.nargs != 0:
            value, invalid = _option_value(rng, action)
            argv.append(value)
            bad |= invalid
    if rng.random() < 0.1:
        argv.insert(rng.randrange(len(name.split()), len(argv) + 1),
                    rng.choice(["--bogus", "-x", "extra"]))
        bad = True
    files = {"x/inputs.npy": _npy(ws.inputs[:2]), "cfg/c.json": b"{}",
             "cfg/deep.json": b"[" * 100000 + b"]" * 100000,
             "cfg/blob.json": b"\x93NUMPY\xff\xfe"}
    check = None
    if name == "run":
        out = argv[argv.index("--out") + 1] if "--out" in argv[:-1] else "build/run/outputs.npz"
        given = argv[argv.index("--inputs") + 1] if "--inputs" in argv[:-1] else None
        package = argv[argv.index("--package") + 1] if "--package" in argv[:-1] else "pkg"
        if Path(package).name == "manifest.json":     # mars run reads its folder
            package = str(Path(package).parent)

        def inputs() -> np.ndarray:
            if given:
                return np.load(ws.workdir / given)
            return np.load(ws.workdir / package / "tests" / "inputs.npy")

        check = _logits_check(ws.workdir, package, out, inputs)
    return Case("options", " ".join(argv), argv, files, bad, check)


GENERATORS: dict[str, Callable[..., Case]] = {
    "config": config_case, "manifest": manifest_case, "tensor": tensor_case,
    "inputs": inputs_case, "options": option_case,
}
