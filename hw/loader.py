"""A core's weight loader: copies macro rows from the core's weight SRAM into its macros.

It runs a program of LOAD instructions (``count`` rows from SRAM row ``src`` to macro row
``dst`` of macro unit ``unit``, one row a cycle) with a SYNC at the end of each phase, where
it waits for the controller's ``go``.  The weight SRAM itself belongs to the top; the
loader drives its read port (data one cycle after ``sram_en``) and registers the data
before it writes the row into the macro, so no path starts at the block RAM's output: a
row read in cycle t is written at the end of cycle t + 2.  The loader reaches its SYNC
at least three cycles after its last read, so every row is in before ``waiting`` rises
and no phase takes a cycle more.  The program memory's output goes only into the
instruction register (and the opcode test of the state machine).

With ``hide_loads`` the program has two SYNCs a phase (the phase's own LOADs, then the
next phase's hidden LOADs, which the controller starts with the phase's walks); the
loader itself is the same (hw/controller.py, docs/architecture.md "Hidden reloads").
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.program import Op, load_layout

from .bram import block_ram
from .macro import write_layout

__all__ = ["CoreLoader"]


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


class CoreLoader(wiring.Component):
    """A core's weight loader; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the program depth, the weight SRAM depth, R, G and ``macros_per_core``.
    init : list of int, optional
        Initial program (`load_layout` words); zeros by default.

    Members
    -------
    go : In(1)
        Leave the SYNC the loader waits at.
    waiting : Out(1)
        Waiting at a SYNC (every row of the phase written).
    skip : In(1)
        Every LOAD copies nothing (the rows are already in the macros).
    prog_write : In(stream.Signature(...))
        Host writes into the program memory (``addr``, ``data``; ``ready`` always 1).
    sram_en : Out(1)
    sram_addr : Out(unsigned(log2(weight_sram_rows)))
    sram_data : In(unsigned(cols))
        The weight SRAM read (data one cycle after ``sram_en``).
    loads : Out(stream.Signature(write_layout(config))).array(macros_per_core)
        Row writes into each macro unit of the core, one row a cycle (``ready`` ignored:
        the macro always takes a write).
    """

    def __init__(self, config: MarsConfig, *, init: list[int] | None = None):
        self._config = config
        self._init = list(init or [])
        super().__init__({
            "go": In(1),
            "waiting": Out(1),
            "skip": In(1),
            "prog_write": In(stream.Signature(data.StructLayout({
                "addr": unsigned(_bits(config.program_words)),
                "data": load_layout(config)}))),
            "sram_en": Out(1),
            "sram_addr": Out(unsigned(_bits(config.weight_sram_rows))),
            "sram_data": In(unsigned(config.cols)),
            "loads": Out(stream.Signature(write_layout(config))).array(
                config.macros_per_core),
        })

    def elaborate(self, platform):
        cfg = self._config
        G = cfg.rows_per_step
        m = Module()
        read = self._program(m)

        # Reset-less (hw/regs.py): the instruction and its counters are loaded in DECODE
        # before COPY reads them (a run starts in FETCH), the row's slot, lane, unit and
        # data travel with r_valid / w_valid; pc, the state and the valid bits keep it.
        pc = Signal(range(cfg.program_words))
        insn = Signal(load_layout(cfg), reset_less=True)
        left = Signal(range(cfg.rows + 1), reset_less=True)
        src = Signal.like(self.sram_addr, reset_less=True)
        slot = Signal(range(cfg.row_slots), reset_less=True)
        lane = Signal(range(G), reset_less=True)
        # The row read in cycle t is on sram_data in t + 1, registered (with the slot/lane
        # it was read for) and written into the macro in t + 2.
        r_valid = Signal()
        w_valid = Signal()
        r_slot, w_slot = Signal.like(slot), Signal.like(slot)
        r_lane, w_lane = Signal.like(lane), Signal.like(lane)
        r_unit = Signal.like(insn.unit, reset_less=True)
        w_unit = Signal.like(insn.unit, reset_less=True)
        w_data = Signal.like(self.sram_data, reset_less=True)
        m.d.comb += [read.addr.eq(pc), self.sram_addr.eq(src)]
        for u, port in enumerate(self.loads):
            m.d.comb += [port.valid.eq(w_valid & (w_unit == u)),
                         port.payload.slot.eq(w_slot), port.payload.lane.eq(w_lane),
                         port.payload.data.eq(w_data)]
        m.d.sync += [r_valid.eq(0), w_valid.eq(r_valid), w_slot.eq(r_slot),
                     w_lane.eq(r_lane), w_unit.eq(r_unit), w_data.eq(self.sram_data)]

        with m.FSM(name="loader"):
            with m.State("FETCH"):
                m.d.comb += read.en.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                insn_next = data.View(load_layout(cfg), read.data)
                # With `skip` (weights already resident) every LOAD copies nothing.
                m.d.sync += [insn.eq(insn_next), left.eq(Mux(self.skip, 0, insn_next.count)),
                             src.eq(insn_next.src),
                             slot.eq(insn_next.dst // G), lane.eq(insn_next.dst % G)]
                with m.If(insn_next.op == Op.SYNC):
                    m.next = "SYNC"
                with m.Else():
                    m.next = "COPY"
            with m.State("COPY"):
                with m.If(left == 0):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
                with m.Else():
                    m.d.comb += self.sram_en.eq(1)
                    m.d.sync += [r_valid.eq(1), r_slot.eq(slot), r_lane.eq(lane),
                                 r_unit.eq(insn.unit), src.eq(src + 1), left.eq(left - 1)]
                    with m.If(lane == G - 1):
                        m.d.sync += [lane.eq(0), slot.eq(slot + 1)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
            with m.State("SYNC"):
                m.d.comb += self.waiting.eq(1)
                with m.If(self.go):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
        return m

    def _program(self, m):
        """The program memory with the host's write port; returns its read port.

        Block RAM without collision logic (`block_ram`): the host writes it while the
        accelerator is idle, when the loader is held in reset (FETCH, so no read is
        decoded); a run only reads it."""
        program = block_ram(unsigned(load_layout(self._config).size),
                            self._config.program_words, init=self._init,
                            collision_free=True)
        m.submodules.prog_mem = program
        write = program.write_port()
        m.d.comb += [write.addr.eq(self.prog_write.payload.addr),
                     write.data.eq(self.prog_write.payload.data),
                     write.en.eq(self.prog_write.valid), self.prog_write.ready.eq(1)]
        return program.read_port()
