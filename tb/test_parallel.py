"""Three `mars run --backend verilator` at once on a configuration whose model is not built
yet: one builds (under the cache's file lock), the others wait for it, and all three give
the golden model's logits.  A private MARS_BUILD_DIR keeps other tests out of the race."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.golden.network import run_network
from mars.sw.train import sparse_files
from mars.sw.train.package import build_package_files, write_folder_atomically
from mars.tb.networks import NETWORKS, random_inputs
from mars.tb.sim import available_simulators


def write_package(out: Path, config, seed: int = 0, count: int = 3) -> np.ndarray:
    """A model package of a random `tb.networks` CNN (no training); returns its logits."""
    build, sparsity = NETWORKS["cnn"]
    network = build(config, np.random.default_rng(seed), sparsity)
    inputs = random_inputs(network, np.random.default_rng(seed + 1), count)
    logits = np.asarray(run_network(network, inputs)).reshape(count, -1)
    extra, node_extra = sparse_files.build(network)
    files = build_package_files(
        network, node_info={}, header={"input": {"shape": list(network.input_shape)}},
        test_inputs=inputs, test_labels=np.zeros(count, dtype=np.int32), test_logits=logits,
        extra_files=extra, node_extra=node_extra)
    write_folder_atomically(out, files)
    return logits


@pytest.mark.sim
def test_three_parallel_runs_on_an_unbuilt_model(tmp_path):
    reason = available_simulators()["verilator"]
    if reason:
        pytest.skip(reason)
    package = tmp_path / "package"
    logits = write_package(package, PRESETS["tiny"])
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
    entries = list((tmp_path / "build" / "native").iterdir())
    assert sorted(p.name.startswith(".") and p.name.endswith(".lock") for p in entries) \
        == [False, True], entries                          # one entry, its lock, no litter
