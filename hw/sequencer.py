"""A macro unit's sequencer: fetches its program, starts the decoders, waits at SYNC.

The program memory holds WALK words (`instruction_layout`) and one SYNC at the end of each
phase.  For a WALK the sequencer reads the instruction and its parameter word (bias,
multiplier and shift of every channel, `param_layout`), starts the D decoders with the
walk's descriptor (one ``index_start``/``count`` per word-line domain) and waits for the
writer's ``walk_done``; for a SYNC it raises ``waiting`` until the controller's ``go``.
The instruction and the parameter word are held, unchanged, for the whole walk.

Timing, in cycles: FETCH (program read) -> DECODE (instruction registered, parameter read)
-> START (until every decoder took its descriptor) -> RUN (until ``walk_done``) -> FETCH.
See docs/architecture.md ("Programs").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import descriptor_layout
from mars.contract.program import Op, instruction_layout, param_layout

__all__ = ["UnitSequencer", "memory_write_layout"]


def memory_write_layout(depth: int, data_shape) -> data.StructLayout:
    """One host write into a memory of `depth` words of `data_shape`."""
    return data.StructLayout({"addr": unsigned(max(1, (depth - 1).bit_length())),
                              "data": data_shape})


class UnitSequencer(wiring.Component):
    """The program sequencer of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the program and parameter memory depths and the word layouts.
    program, params : list of int, optional
        Initial contents of the program and parameter memories (zeros by default).

    Members
    -------
    go : In(1)
        Leave the SYNC the sequencer waits at.
    waiting : Out(1)
        Waiting at a SYNC.
    prog_write : In(stream.Signature(memory_write_layout(program_words, instruction)))
        Host writes into the program memory (``ready`` always 1).
    param_write : In(stream.Signature(memory_write_layout(param_words, param word)))
        Host writes into the parameter memory (``ready`` always 1).
    starts : Out(stream.Signature(descriptor_layout(config))).array(D)
        The walk's descriptor for the decoder of each word-line domain; each is offered
        (``valid``) in START until that decoder takes it.
    starting : Out(1)
        A walk is being started (high from the cycle after DECODE until every decoder has
        taken its descriptor): the writer moves its output position to the walk's origin.
    walk_done : In(1)
        The writer wrote the walk's last pixel: fetch the next instruction.
    insn : Out(instruction_layout(config))
        The current instruction, registered in DECODE.
    params : Out(param_layout(config))
        The current walk's parameter word (read in DECODE, held until the next WALK).
    """

    def __init__(self, config: MarsConfig, *, program: list | None = None,
                 params: list | None = None):
        self._config = config
        self._program = list(program or [])
        self._params = list(params or [])
        super().__init__({
            "go": In(1),
            "waiting": Out(1),
            "prog_write": In(stream.Signature(memory_write_layout(
                config.program_words, instruction_layout(config)))),
            "param_write": In(stream.Signature(memory_write_layout(
                config.param_words, param_layout(config)))),
            "starts": Out(stream.Signature(descriptor_layout(config))).array(
                config.wordline_domains),
            "starting": Out(1),
            "walk_done": In(1),
            "insn": Out(instruction_layout(config)),
            "params": Out(param_layout(config)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        program = Memory(shape=unsigned(instruction_layout(cfg).size),
                         depth=cfg.program_words, init=self._program)
        params = Memory(shape=unsigned(param_layout(cfg).size), depth=cfg.param_words,
                        init=self._params)
        m.submodules.prog_mem = program
        m.submodules.params = params
        for mem, port in ((program, self.prog_write), (params, self.param_write)):
            write = mem.write_port()
            m.d.comb += [write.addr.eq(port.payload.addr), write.data.eq(port.payload.data),
                         write.en.eq(port.valid), port.ready.eq(1)]
        prog_read = program.read_port()
        param_read = params.read_port()

        pc = Signal(range(cfg.program_words))
        start_pending = Signal(cfg.wordline_domains)
        prog_data = data.View(instruction_layout(cfg), prog_read.data)
        # The parameter read data is held (en low) for the whole walk.
        m.d.comb += [prog_read.addr.eq(pc), param_read.addr.eq(prog_data.param_addr),
                     self.params.eq(param_read.data), self.starting.eq(start_pending.any())]
        for d, start in enumerate(self.starts):
            m.d.comb += [start.payload.eq(self.insn.desc),
                         start.payload.index_start.eq(self.insn.index_start[d]),
                         start.payload.count.eq(self.insn.count[d])]

        with m.FSM(name="seq"):
            with m.State("FETCH"):
                m.d.comb += prog_read.en.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += self.insn.eq(prog_data)
                with m.If(prog_data.op == Op.SYNC):
                    m.next = "SYNC"
                with m.Else():
                    m.d.comb += param_read.en.eq(1)
                    m.d.sync += start_pending.eq(-1)
                    m.next = "START"
            with m.State("START"):
                for d, start in enumerate(self.starts):
                    m.d.comb += start.valid.eq(start_pending[d])
                    with m.If(start.ready):
                        m.d.sync += start_pending[d].eq(0)
                with m.If(~Cat(*(start_pending[d] & ~start.ready
                                 for d, start in enumerate(self.starts))).any()):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.walk_done):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
            with m.State("SYNC"):
                m.d.comb += self.waiting.eq(1)
                with m.If(self.go):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
        return m
