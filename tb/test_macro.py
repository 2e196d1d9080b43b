"""cocotb runs of the CIM macro on Verilator and Icarus, from pytest."""

import pytest

from mars.config import PRESETS
from mars.tb.sim import SIMULATORS, run_testbench

# tiny (the iCE40 preset), default (8 word-line domains), adc3 (saturating readout, G=16,
# one domain), wide8 (8-bit, 2 bits per cycle)
CONFIGS = [PRESETS["tiny"], PRESETS["default"], PRESETS["adc3"], PRESETS["wide8"]]


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_macro_bit_exact(simulator, config):
    stats = run_testbench("cim_macro", config, simulator, "mars.tb.macro_tb",
                          env={"MARS_SEED": "12345"})
    assert stats["mismatches"] == 0
    assert stats["ops_compared"] == 2 * 400
