"""cocotb runs of the CIM macro with the ADC-less readouts (HCiM binary/ternary comparator
bits and column scale factors), bit-exact against `mars.sw.golden.macro_compute`."""

import pytest

from mars.config import PRESETS
from mars.tb.sim import SIMULATORS, run_testbench

CONFIGS = [
    # G=4, two domains; a comparator at 2 of 4 rows, ternary (sign column subtracts)
    PRESETS["tiny"].replace(name="tiny-ternary", readout_mode="ternary", readout_threshold=2,
                            scale_bits=6, scale_frac_bits=2),
    # G=8, 8 domains; binary at 3 of 8 rows, 2 activation bits per cycle
    PRESETS["default"].replace(name="default-binary", readout_mode="binary",
                               readout_threshold=3, act_bits_per_cycle=2),
]


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_macro_hcim_bit_exact(simulator, config):
    stats = run_testbench("cim_macro", config, simulator, "mars.tb.macro_tb",
                          env={"MARS_SEED": "4321", "MARS_OPS": "200"})
    assert stats["mismatches"] == 0
    assert stats["ops_compared"] == 2 * 200
