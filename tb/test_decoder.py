"""cocotb runs of the sparse-weight decoder on Verilator and Icarus, from pytest."""

import pytest

from mars.config import PRESETS
from mars.tb.sim import SIMULATORS, run_testbench

# tiny (G=4, two domains), default (G=8), adc3 (G=16, whole-macro groups)
CONFIGS = [PRESETS["tiny"], PRESETS["default"], PRESETS["adc3"]]


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_decoder_bit_exact(simulator, config):
    stats = run_testbench("sparse_decoder", config, simulator, "mars.tb.decoder_tb",
                          env={"MARS_SEED": "2024", "MARS_LAYERS": "48"})
    assert stats["random"]["mismatches"] == 0
    assert stats["random"]["walks"] == 48
    assert stats["random"]["payloads_compared"] > 1000
    for walk in stats["throughput"]["walks"]:
        assert walk["groups_per_cycle"] == 1.0
    assert stats["errors"]["cases"] == 3
