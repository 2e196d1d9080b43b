"""The host port: the address map of the accelerator top as software sees it.

Part of the hardware/software contract (`mars.contract`): the top (`mars.hw.top`) decodes
host words with `HostFormat`, and everything that drives it (the testbenches, the host
driver) encodes them with it.  docs/architecture.md ("Host port") has the table.
"""

from __future__ import annotations

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data

from mars.config import MarsConfig

from .decoder import ktable_layout
from .program import UnitFormat, instruction_layout, load_layout, param_layout

__all__ = ["Region", "HostFormat"]


class Region(enum.IntEnum):
    """Top bits of a host address: which memory (docs/architecture.md, "Host port")."""

    CONTROL = 0       # 0: phases (w), status (r); 1: skip_loads (w), total cycles (r)
    ACT = 1           # activation memory, both banks
    RESULT = 2        # result memory
    WEIGHTS = 3       # weight SRAM of core `unit`
    LOADER = 4        # loader program of core `unit`
    PROGRAM = 5       # program of macro unit `unit`
    PARAMS = 6        # parameters of macro unit `unit`
    INDEX = 7         # index memory of unit `unit`, domain `domain`
    KTABLE = 8        # k-table of unit `unit`, domain `domain`
    CYCLES = 9        # cycles of layer `offset` (r)


class HostFormat:
    """Field widths of the host port, from the configuration."""

    def __init__(self, config: MarsConfig):
        units = max(config.macros, config.cores)
        self.unit_bits = max(1, (units - 1).bit_length())
        self.domain_bits = max(1, (config.wordline_domains - 1).bit_length())
        depths = [2 * config.act_buffer_words, config.result_words, config.weight_sram_rows,
                  config.program_words, config.param_words, config.max_layers,
                  UnitFormat(config).decoder.index_depth,
                  UnitFormat(config).decoder.max_kgroups]
        self.offset_bits = max(1, (max(depths) - 1).bit_length())
        self.data_bits = max(config.cols, config.acc_bits, 32,
                             instruction_layout(config).size, param_layout(config).size,
                             load_layout(config).size, ktable_layout(config).size)

    def layout(self) -> data.StructLayout:
        return data.StructLayout({
            "write": 1,
            "region": unsigned(4),
            "unit": unsigned(self.unit_bits),
            "domain": unsigned(self.domain_bits),
            "offset": unsigned(self.offset_bits),
            "data": unsigned(self.data_bits),
        })
