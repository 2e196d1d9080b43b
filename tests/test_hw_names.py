"""Every register of the emitted Verilog has its source name.

Timing reports (nextpnr's critical path, docs/synthesis.md) and waveforms name
registers by the Verilog's names; Amaranth names a `Signal` from the assignment that
creates it, and a tuple assignment such as ``a, b = Signal(range(4)), Signal()`` can
leave it anonymous (``$signal$52``): a critical path through it then cannot be traced
to the source.  This checks the Verilog of every block and of the board top for such
registers, on presets that between them build every optional datapath (residual adds
on ``mars``, the ternary readout on ``hcim``).
"""

import re

import pytest
from amaranth.back import verilog

from mars.config import preset
from mars.hw.blocks import BLOCKS, to_verilog
from mars.hw.bridge import SerialTop

ANONYMOUS = re.compile(r"^\s*reg (?:\[[^\]]*\] )?(\\\$signal\S*)", re.MULTILINE)

# (preset, block): every block on tiny; the blocks that differ on mars and hcim (their
# whole tops take half a minute each to elaborate and add nothing new).
CASES = ([("tiny", name) for name in BLOCKS]
         + [("mars", "unit_writer"), ("mars", "unit_sequencer"), ("hcim", "cim_macro"),
            ("hcim", "macro_unit")])


@pytest.mark.parametrize("config_name, name", CASES)
def test_no_anonymous_register(config_name, name):
    text = to_verilog(name, preset(config_name))
    assert ANONYMOUS.findall(text) == []


def test_no_anonymous_register_on_the_board_top():
    text = verilog.convert(SerialTop(preset("tiny"), divisor=4), name="serial_top")
    assert ANONYMOUS.findall(text) == []
