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
from .program import CONTROL_WORD_BITS, UnitFormat, load_layout

__all__ = ["Region", "ControlWrite", "ControlRead", "Status", "Scope", "HostMemory",
           "HostFormat", "READ_LATENCY"]

#: Cycles from an accepted host read request to its answer on ``host_read``: the
#: memories' host read ports are addressed in the request's cycle (1), their data is
#: registered beside them (2: no block RAM's clock-to-out runs through the answer's
#: multiplexer, issue 9), and the chosen answer is registered (3) (`mars.hw.host`).
READ_LATENCY = 3


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
    CYCLES = 9        # cycles of phase `offset` of the last run (r)


class ControlWrite(enum.IntEnum):
    """Offsets of the control registers the host writes (region `Region.CONTROL`)."""

    PHASES = 0        # phases the next run has (0: ``start`` does nothing)
    SKIP_LOADS = 1    # bit 0: the loaders copy nothing (the weights are already resident)


class ControlRead(enum.IntEnum):
    """Offsets of the control registers the host reads (region `Region.CONTROL`)."""

    STATUS = 0        # `Status` bits
    TOTAL_CYCLES = 1  # cycles of the last run, LOAD and WALK states of every phase


class Status(enum.IntFlag):
    """Bits of the status register (and of the top's ``busy``, ``done``, ``error`` ports)."""

    BUSY = 1          # a run is in progress
    DONE = 2          # the last run finished (until the next ``start``)
    ERROR = 4         # a decoder's sticky error flag (bad descriptor or index code)


class Scope(enum.Enum):
    """How many copies of a memory the top has, told apart by the host word's fields."""

    TOP = "top"            # one; ``unit`` and ``domain`` are 0
    CORE = "core"          # one per core: ``unit`` is the core
    UNIT = "unit"          # one per macro unit: ``unit``
    DOMAIN = "domain"      # one per word-line domain of each unit: ``unit`` and ``domain``

    def count(self, config: MarsConfig) -> int:
        """Copies of a memory with this scope in the top of `config`."""
        return {Scope.TOP: 1, Scope.CORE: config.cores, Scope.UNIT: config.macros,
                Scope.DOMAIN: config.macros * config.wordline_domains}[self]


class HostMemory(enum.Enum):
    """Every memory the host port reaches, by name: the one spelling of the memories.

    The mapper's `Mapping.memories`, the top's initial contents and simulator backdoors,
    the host driver and ``contract.json`` all key memories by these members.  Each knows
    its `region`, its `scope` (how ``unit``/``domain`` select a copy), whether the host
    writes or reads it, and its depth and word width for a configuration.
    """

    WEIGHTS = "weights"
    LOADER = "loader"
    PROGRAM = "program"
    PARAMS = "params"
    INDEX = "index"
    KTABLE = "ktable"
    ACT = "act"
    RESULT = "result"
    CYCLES = "cycles"

    @property
    def region(self) -> Region:
        """The host region that addresses this memory (same name)."""
        return Region[self.name]

    @property
    def scope(self) -> Scope:
        return _SCOPES[self]

    @property
    def host_writes(self) -> bool:
        """The host writes it (everything but the result and cycle memories)."""
        return self not in (HostMemory.RESULT, HostMemory.CYCLES)

    @property
    def host_reads(self) -> bool:
        """The host reads it back (activations, results, cycle counters)."""
        return self in (HostMemory.ACT, HostMemory.RESULT, HostMemory.CYCLES)

    @property
    def signed(self) -> bool:
        """Words are two's complement (the result memory's raw accumulators)."""
        return self is HostMemory.RESULT

    def depth(self, config: MarsConfig) -> int:
        """Words of one copy (the activation memory: every region, ``act_regions`` of
        them, words of G activations, `mars.contract.banking.Banking`)."""
        fmt = UnitFormat(config)
        return {
            HostMemory.WEIGHTS: config.weight_sram_rows,
            HostMemory.LOADER: config.program_words,
            HostMemory.PROGRAM: fmt.program_depth,        # insn_chunks words each
            HostMemory.PARAMS: fmt.param_depth,            # param_chunks words each
            HostMemory.INDEX: fmt.decoder.index_depth,
            HostMemory.KTABLE: fmt.decoder.max_kgroups,
            HostMemory.ACT: config.act_regions * (config.act_buffer_words
                                                  // config.rows_per_step),
            HostMemory.RESULT: config.result_words,
            HostMemory.CYCLES: config.max_phases,
        }[self]

    def width(self, config: MarsConfig) -> int:
        """Bits of one word."""
        fmt = UnitFormat(config)
        return {
            HostMemory.WEIGHTS: config.cols,
            HostMemory.LOADER: load_layout(config).size,
            HostMemory.PROGRAM: CONTROL_WORD_BITS,
            HostMemory.PARAMS: CONTROL_WORD_BITS,
            HostMemory.INDEX: fmt.decoder.kgroup_bits,
            HostMemory.KTABLE: ktable_layout(config).size,
            HostMemory.ACT: config.rows_per_step * config.act_bits,
            HostMemory.RESULT: config.acc_bits,
            HostMemory.CYCLES: 32,
        }[self]

    def layout(self, config: MarsConfig) -> data.Layout | None:
        """The layout of one word, for the memories whose words have fields (the program
        and parameter memories hold instructions and parameter words split into
        `CONTROL_WORD_BITS`-bit words, `mars.contract.program.split_word`: no fields)."""
        return {
            HostMemory.LOADER: load_layout, HostMemory.KTABLE: ktable_layout,
        }.get(self, lambda _: None)(config)


_SCOPES = {
    HostMemory.WEIGHTS: Scope.CORE, HostMemory.LOADER: Scope.CORE,
    HostMemory.PROGRAM: Scope.UNIT, HostMemory.PARAMS: Scope.UNIT,
    HostMemory.INDEX: Scope.DOMAIN, HostMemory.KTABLE: Scope.DOMAIN,
    HostMemory.ACT: Scope.TOP, HostMemory.RESULT: Scope.TOP, HostMemory.CYCLES: Scope.TOP,
}


class HostFormat:
    """Field widths of the host port, from the configuration.

    A host word (`layout`) is ``{write, region, unit, domain, offset, data}``: ``offset``
    reaches the deepest memory, ``data`` the widest word (at least 32 bits, the cycle
    counters).  Reads answer ``data_bits`` wide on ``host_read``, `READ_LATENCY` cycles later.
    """

    def __init__(self, config: MarsConfig):
        units = max(config.macros, config.cores)
        self.unit_bits = max(1, (units - 1).bit_length())
        self.domain_bits = max(1, (config.wordline_domains - 1).bit_length())
        depth = max(memory.depth(config) for memory in HostMemory)
        self.offset_bits = max(1, (depth - 1).bit_length())
        self.data_bits = max(32, *(memory.width(config) for memory in HostMemory))

    def layout(self) -> data.StructLayout:
        return data.StructLayout({
            "write": 1,
            "region": unsigned(4),
            "unit": unsigned(self.unit_bits),
            "domain": unsigned(self.domain_bits),
            "offset": unsigned(self.offset_bits),
            "data": unsigned(self.data_bits),
        })
