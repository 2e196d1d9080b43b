"""cocotb runs of the sparse-weight decoder on Verilator and Icarus, from pytest.

tiny (G=4, two domains) and default (G=8) run on both simulators; adc3 (G=16, whole-macro
groups) on Icarus only, whose build takes a second where Verilator's takes 15 to 35 s.
"""

import pytest

from mars.config import PRESETS
from mars.tb.sim import SIMULATORS, run_testbench

RUNS = [(config, simulator) for config in ("tiny", "default") for simulator in SIMULATORS]
RUNS.append(("adc3", "icarus"))


@pytest.mark.sim
@pytest.mark.parametrize("config, simulator", RUNS, ids=[f"{c}-{s}" for c, s in RUNS])
def test_decoder_bit_exact(config, simulator):
    stats = run_testbench("sparse_decoder", PRESETS[config], simulator, "mars.tb.decoder_tb",
                          env={"MARS_SEED": "2024", "MARS_LAYERS": "48"})
    assert stats["random"]["mismatches"] == 0
    assert stats["random"]["walks"] == 48
    assert stats["random"]["payloads_compared"] > 1000
    for walk in stats["throughput"]["walks"]:
        assert walk["groups_per_cycle"] == 1.0 and walk["payloads"] == walk["cycles"]
    assert stats["errors"]["cases"] == 3
