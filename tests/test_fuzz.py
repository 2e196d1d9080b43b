"""Property-based fuzzing of everything a user hands ``mars`` (a small campaign on every
run; bench/fuzz.py runs >= 1000 cases, docs/robustness.md).

Each example is a case drawn by a generator of `mars.tb.fuzz` from a seed that hypothesis
draws (derandomised: the same seeds on every run; a failure prints its seed, and
``mars.tb.fuzz.GENERATORS[kind](random.Random(seed), workspace)`` rebuilds the case):
configuration JSON, manifest and tensor corruptions (with and without a fixed-up
SHA-256), ``--inputs`` arrays, and random options for every subcommand.  ``mars`` runs
in-process; the outcome must be exit 0 with the result of the specification's own
inference (docs/model-package.md) or the configuration given, or exit 2 with exactly one
line ``mars: error: ...``, never a traceback.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.tb import fuzz

#: Examples per generator: about 20 s for the whole file on 2 cores.
EXAMPLES = {"config": 60, "manifest": 50, "tensor": 50, "inputs": 50, "options": 70}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return fuzz.Workspace(tmp_path_factory.mktemp("fuzz"))


def check(kind: str, seed: int, workspace: fuzz.Workspace) -> None:
    case = fuzz.GENERATORS[kind](random.Random(seed), workspace)
    try:
        outcome = fuzz.run_case(case, workspace.workdir)
        verdict, detail = fuzz.judge(case, outcome)
    finally:
        workspace.restore()
    assert verdict == "ok", f"{kind} seed {seed} ({case.label}): {verdict}: {detail}"


def fuzz_test(kind: str):
    @settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2 ** 32 - 1))
    def test(workspace, seed):
        check(kind, seed, workspace)

    test.__name__ = f"test_fuzz_{kind}"
    test.__doc__ = fuzz.GENERATORS[kind].__doc__.splitlines()[0]
    return test


test_fuzz_config = fuzz_test("config")
test_fuzz_manifest = fuzz_test("manifest")
test_fuzz_tensor = fuzz_test("tensor")
test_fuzz_inputs = fuzz_test("inputs")
test_fuzz_options = fuzz_test("options")


def test_the_judge_can_fail(workspace):
    """The judge catches what it must: a wrong result, a traceback, a usage line, another
    exit status; and a valid case is ok."""
    seed = next(s for s in range(100)
                if fuzz.inputs_case(random.Random(s), workspace).label == "valid inputs")
    case = fuzz.inputs_case(random.Random(seed), workspace)
    try:
        outcome = fuzz.run_case(case, workspace.workdir)
        assert fuzz.judge(case, outcome) == ("ok", "exit 0")
        out = workspace.workdir / "out" / "y.npz"
        data = dict(np.load(out))
        data["logits"][-1, 0] += 1                          # one logit off
        np.savez(out, **data)
        assert fuzz.judge(case, outcome)[0] == "wrong"
    finally:
        workspace.restore()
    assert fuzz.judge(case, fuzz.Outcome(None, "", "", "Traceback\nKeyError: 'x'"))[0] \
        == "traceback"
    assert fuzz.judge(case, fuzz.Outcome(2, "", "usage: mars\nmars: error: x\n"))[0] \
        == "messy"
    assert fuzz.judge(case, fuzz.Outcome(1, "", ""))[0] == "exit"


# -- the failure kinds the campaign found (bench/fuzz.py, docs/robustness.md) -----------------

def one_line(case: fuzz.Case, workspace: fuzz.Workspace) -> str:
    try:
        outcome = fuzz.run_case(case, workspace.workdir)
    finally:
        workspace.restore()
    assert outcome.traceback is None, outcome.traceback
    lines = outcome.stderr.splitlines()
    assert outcome.status == 2 and len(lines) == 1, outcome
    return lines[0]


def damaged_npy_header(data: bytes) -> bytes:
    """A .npy whose header dict lacks the closing parenthesis of its shape: NumPy's header
    parser fails with tokenize.TokenError, not ValueError."""
    start = data.index(b"'shape': (")
    end = data.index(b")", start)
    return data[:end] + b" " + data[end + 1:]


def test_a_damaged_npy_header_with_its_sha256_fixed_up(workspace):
    import hashlib
    import json

    doc = json.loads(json.dumps(workspace.manifest))
    layer = next(n for n in doc["nodes"] if n["op"] == "conv")
    ref = layer["sparse"]["kept"]
    data = damaged_npy_header(workspace.files[ref["file"]])
    ref["sha256"] = hashlib.sha256(data).hexdigest()
    case = fuzz.Case("tensor", "damaged header", ["run", "--package", "pkg"],
                     {f"pkg/{ref['file']}": data, "pkg/manifest.json": json.dumps(doc).encode()},
                     True)
    line = one_line(case, workspace)
    assert ref["file"] in line and "not a .npy array" in line


@pytest.mark.parametrize("damage", ["header", "truncated", "npz"])
def test_inputs_that_are_not_one_npy_array(workspace, damage):
    import io

    good = io.BytesIO()
    np.save(good, workspace.inputs)
    data = good.getvalue()
    if damage == "header":
        data = damaged_npy_header(data)
    elif damage == "truncated":
        data = data[:20]
    else:
        archive = io.BytesIO()
        np.savez(archive, x=workspace.inputs)
        data = archive.getvalue()
    case = fuzz.Case("inputs", damage, ["run", "--package", "pkg", "--inputs", "x.npy"],
                     {"x.npy": data}, True)
    assert "cannot read inputs 'x.npy'" in one_line(case, workspace)


def test_a_node_input_that_is_not_a_name(workspace):
    import json

    doc = json.loads(json.dumps(workspace.manifest))
    doc["nodes"][1]["inputs"] = [{"file": "x"}]
    case = fuzz.Case("manifest", "inputs holds an object", ["run", "--package", "pkg"],
                     {"pkg/manifest.json": json.dumps(doc).encode()}, True)
    assert "inputs" in one_line(case, workspace)


def test_a_configuration_that_is_not_utf8(workspace):
    case = fuzz.Case("config", "not UTF-8", ["config", "--config", "c.json"],
                     {"c.json": b"\xff\xfe{}"}, True)
    assert "not UTF-8" in one_line(case, workspace)


@pytest.mark.parametrize("argv", [
    ["estimate", "--package", "pkg", "--tech", "blob.json"],         # not UTF-8
    ["estimate", "--package", "pkg", "--tech", "deep.json"],         # nested too deeply
    ["config", "--config", "deep.json"],
])
def test_user_json_files_that_are_not_text_or_too_deep(workspace, argv):
    case = fuzz.Case("options", " ".join(argv), argv,
                     {"blob.json": b"\x93NUMPY\xff\xfe",
                      "deep.json": b"[" * 10 ** 5 + b"]" * 10 ** 5},
                     True)
    line = one_line(case, workspace)
    assert argv[-1] in line


def test_a_manifest_nested_too_deeply(workspace):
    case = fuzz.Case("manifest", "deep", ["run", "--package", "pkg"],
                     {"pkg/manifest.json": b"[" * 10 ** 5 + b"]" * 10 ** 5}, True)
    assert "manifest.json" in one_line(case, workspace)
