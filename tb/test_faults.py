"""Stuck-at cell faults on the RTL of the top (Verilator): a faulty weight image gives the
logits the golden model computes from the same image, bit for bit (docs/faults.md).

Two cases: ``tiny`` (one macro, the network does not fit at once, so every layer reloads
the macro's rows: stuck cells hit the rows of several layers) and ``default`` (the first
layer's block set is copied into two units of a core for bands of output rows: each copy
has its own macro's stuck cells)."""

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.faults import FaultModel
from mars.sw.run import run_network_on
from mars.tb.networks import NETWORKS, random_inputs, stable_seed


@pytest.mark.sim
@pytest.mark.parametrize("config", [PRESETS["tiny"], PRESETS["default"]], ids=lambda c: c.name)
def test_faulty_image_bit_exact_on_verilator(config):
    seed = stable_seed("faults", config.name)
    build, sparsity = NETWORKS["cnn"]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    inputs = random_inputs(network, rng, 3)
    faults = FaultModel(0.03, seed)
    golden = run_network_on(network, inputs, "golden", faults=faults)
    rtl = run_network_on(network, inputs, "verilator", faults=faults)
    clean = run_network_on(network, inputs, "golden")
    # The faults must matter, or the comparison proves nothing.
    assert (golden.logits != clean.logits).any(), f"seed {seed}: no logit changed"
    np.testing.assert_array_equal(rtl.logits, golden.logits, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(rtl.phase_cycles, golden.phase_cycles,
                                  err_msg=f"seed {seed}")
