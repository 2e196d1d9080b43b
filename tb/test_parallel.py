"""Three `mars run --backend verilator` at once on a configuration whose model is not built
yet: one builds (under the cache's file lock), the others wait for it, and all three give
the golden model's logits.  A private MARS_BUILD_DIR keeps other tests out of the race."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mars.config import PRESETS
from mars.tb.networks import write_random_package
from mars.tb.sim import available_simulators


@pytest.mark.sim
def test_three_parallel_runs_on_an_unbuilt_model(tmp_path):
    reason = available_simulators()["verilator"]
    if reason:
        pytest.skip(reason)
    package = tmp_path / "package"
    logits = write_random_package(package, PRESETS["tiny"])
    env = {**os.environ, "MARS_BUILD_DIR": str(tmp_path / "build")}
    runs = [subprocess.Popen(
        [sys.executable, "-m", "mars.sw.cli", "run", "--package", str(package),
         "--backend", "verilator", "--out", str(tmp_path / f"y{i}.npz")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(3)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output
    # Exactly one of them built the model; the others waited for it or found it built.
    assert sum(any(line.startswith("building the Verilator model") for line in out.splitlines())
               for out in outputs) == 1, outputs
    for i in range(3):
        with np.load(tmp_path / f"y{i}.npz") as result:
            np.testing.assert_array_equal(result["logits"], logits)
    entries = [p.name for p in (tmp_path / "build" / "native").iterdir()
               if not p.name.endswith(".lock")]
    assert len(entries) == 1 and not entries[0].startswith("."), entries   # no litter
