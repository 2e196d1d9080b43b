"""A macro unit: one CIM macro with the machinery that keeps it busy.

A macro unit (MU) runs its own program of *walks*.  One walk computes one block set (the
D output blocks held by the macro's D word-line domains) over a band of output rows:

    sequencer (`UnitSequencer`: program fetch, decoder start, SYNC)
      -> decoders (one per domain, `SparseDecoder`)
      -> activation gather (`ActivationGather`: D word reads)
      -> macro step (`CimMacro`)
      -> accumulator (`Accumulator`: sum over the pixel's steps, + bias)
      -> writer (`UnitWriter`: requantise + ReLU, fused max pooling, write to the output
         buffer's write stage, or the raw accumulators to the result memory)

Every stage is a stream with back-pressure; the D decoders are started together and their
payloads are taken together, so they stay in step (fillers pad the shorter index codes).
The sequencer starts the decoders on the next walk while the current one drains (or
while the unit waits at a SYNC); that walk's first payload (``walk_first``) waits at the
decoders' output until the sequencer has made it the current walk (``release``), since
the gather, accumulator and writer read the current walk's instruction and parameters.
The program (``instruction_layout``) holds WALKs and one SYNC at the end of each phase;
at a SYNC the unit waits, drained, for the controller's ``go``.

The activation memory belongs to the top (words of G activations, docs/banking.md): the
unit drives one word address per word-line domain (``act_addr``, the half as the top bit)
and receives the word one cycle later.  Its output words (``act_entry``) and result words
(``res_entry``) go to the top's write stages, which take one unit's word a cycle (the
unit's slot; ``slot_next`` announces it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.decoder import index_write_layout, ktable_write_layout
from mars.contract.netlist import REPLICA

from .accumulator import Accumulator
from .decoder import SparseDecoder
from .gather import ActivationGather
from .macro import CimMacro, write_layout
from .regs import idle_copy, run_reset
from .sequencer import UnitSequencer, param_write_layout, program_write_layout
from .writer import UnitWriter, act_entry_layout, res_entry_layout, sc_read_layout

__all__ = ["MacroUnit"]


class MacroUnit(wiring.Component):
    """One macro unit; see the module docstring.

    Members
    -------
    go : In(1)
        Leave the SYNC the unit waits at.
    more_next : In(1)
        The controller's ``more_next``: the next value of its ``more`` (the phase after
        the next SYNC exists: the decoders may start the WALK fetched behind it,
        `UnitSequencer`).  The unit registers its own copy of ``more`` beside the
        sequencer (it drives the decoders' start; the controller's register lay a
        quadrant away, issue 9).
    idle_next : In(1)
        The controller's ``~running_next``: the next cycle is idle.  The unit is held in
        reset while idle (its memories keep their contents): each of its blocks takes
        that reset from a copy of ``~running`` of its own (`mars.hw.regs.run_reset`),
        high from the domain's reset until the cycle after ``idle_next`` falls.  Low
        (never idle) when the unit stands alone.
    waiting : Out(1)
        Waiting at a SYNC, every write done.
    error : Out(1)
        A decoder's error flag (bad descriptor or index code), sticky until the unit's
        run reset: a decoder clears its own flags when it starts the next walk, which may
        be before the walk with the error has drained.
    load : In(stream.Signature(write_layout(config)))
        Macro row writes from the core loader.
    prog_write, param_write, index_write, ktable_write : In(stream.Signature(...))
        Memory writes from the host (``ready`` always 1).  ``index_write`` and
        ``ktable_write`` carry a ``domain`` field.
    act_en, act_addr, act_data
        Activation word reads (one port per domain, data one cycle after ``act_en``).
    slot_next : In(1)
        The top's write stages take this unit's word next cycle.
    act_entry, res_entry : Out(...)
        The activation / result word offered this cycle (`mars.hw.writer`).
    """

    def __init__(self, config: MarsConfig, *, init: dict[str, list] | None = None):
        self._config = config
        self._init = init or {}
        bank = Banking(config)
        D = config.wordline_domains
        domain = {"domain": range(D)}
        super().__init__({
            "go": In(1),
            "more_next": In(1),
            "idle_next": In(1),
            "waiting": Out(1),
            "error": Out(1),
            "load": In(stream.Signature(write_layout(config))),
            "prog_write": In(stream.Signature(program_write_layout(config))),
            "param_write": In(stream.Signature(param_write_layout(config))),
            "index_write": In(stream.Signature(data.StructLayout(
                {**domain, "write": index_write_layout(config)}))),
            "ktable_write": In(stream.Signature(data.StructLayout(
                {**domain, "write": ktable_write_layout(config)}))),
            "act_en": Out(unsigned(D)),
            "act_addr": Out(data.ArrayLayout(unsigned(bank.word_addr_bits), D)),
            "act_data": In(data.ArrayLayout(unsigned(bank.word_bits), D)),
            "slot_next": In(1),
            "act_entry": Out(act_entry_layout(config)),
            "res_entry": Out(res_entry_layout(config)),
            # residual adds: the writer's shortcut read (mars.hw.writer)
            **({"sc_read": Out(sc_read_layout(config)),
                "sc_act_data": In(unsigned(bank.word_bits)),
                "sc_res_data": In(unsigned(bank.lanes * config.acc_bits))}
               if config.residual_adds else {}),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg, init = self._config, self._init
        m = Module()
        seq = UnitSequencer(cfg, program=init.get("program", []),
                            params=init.get("params", []))
        macro, gather = CimMacro(cfg), ActivationGather(cfg)
        acc, writer = Accumulator(cfg), UnitWriter(cfg)
        # Each block held in reset while idle by a copy of ~running of its own, placed
        # beside it (`run_reset`): the blocks of a unit spread over a quarter of the die.
        # The gather, whose every register keeps it, takes a copy per part itself.
        for name, block in (("sequencer", seq), ("macro", macro),
                            ("accumulator", acc), ("writer", writer)):
            run_reset(m, block, self.idle_next, name=name)
        m.submodules.gather = gather
        decoders = self._decoders(m)

        # The controller's `more`, a copy beside the sequencer.  Named as a copy (REPLICA:
        # kept) since the units' copies load one `more_next`, and Yosys merged them into
        # unit 0's: at 9c391f5, seed 3, the whole top's critical path ran from it across
        # the die into unit 2's sequencer and a decoder's start (3.5 ns to the first LUT).
        more = Signal(name=f"more{REPLICA}")
        m.d.sync += more.eq(self.more_next)
        wiring.connect(m, wiring.flipped(self.prog_write), seq.prog_write)
        wiring.connect(m, wiring.flipped(self.param_write), seq.param_write)
        wiring.connect(m, wiring.flipped(self.load), macro.write)
        for d, decoder in enumerate(decoders):
            wiring.connect(m, seq.starts[d], decoder.start)
            # A walk's first payload waits here until the executor has taken the walk
            # (its decoders may start while the walk before it drains, hw/sequencer.py).
            held = decoder.out.payload.walk_first & ~seq.release[d]
            m.d.comb += [gather.payloads[d].payload.eq(decoder.out.payload),
                         gather.payloads[d].valid.eq(decoder.out.valid & ~held),
                         decoder.out.ready.eq(gather.payloads[d].ready & ~held)]
        out0 = decoders[0].out
        m.d.comb += seq.first_passed.eq(out0.valid & out0.ready & out0.payload.walk_first)
        wiring.connect(m, gather.request, macro.request)
        wiring.connect(m, macro.result, acc.result)
        wiring.connect(m, gather.side, acc.side)
        wiring.connect(m, acc.pixel, writer.pixel)
        m.d.comb += [
            seq.go.eq(self.go), self.waiting.eq(seq.waiting), seq.more.eq(more),
            seq.walk_done.eq(writer.walk_done), seq.walk_done_next.eq(writer.walk_done_next),
            writer.restart.eq(seq.starting),
            gather.in_bank.eq(seq.insn.in_bank), gather.idle_next.eq(self.idle_next),
            writer.insn.eq(seq.insn),
            writer.params.eq(seq.params),
            self.act_en.eq(gather.act_en), self.act_addr.eq(gather.act_addr),
            gather.act_data.eq(self.act_data),
            writer.slot_next.eq(self.slot_next),
            self.act_entry.eq(writer.act_entry), self.res_entry.eq(writer.res_entry),
        ]
        if cfg.residual_adds:
            m.d.comb += [self.sc_read.eq(writer.sc_read),
                         writer.sc_act_data.eq(self.sc_act_data),
                         writer.sc_res_data.eq(self.sc_res_data)]
        for n in range(cfg.channels_per_macro):
            m.d.comb += acc.bias[n].eq(seq.params[n].bias)
            if cfg.scaled_readout:
                # the walk's column scale factors, held with the parameter word
                m.d.comb += macro.scales[n].eq(seq.params[n].scale)
        return m

    def _decoders(self, m) -> list[SparseDecoder]:
        """The D decoders, with the host's index and k-table writes routed by domain."""
        init = self._init
        decoders = [SparseDecoder(self._config, index_init=init.get(("index", d)),
                                  ktable_init=init.get(("ktable", d)))
                    for d in range(self._config.wordline_domains)]
        for d, decoder in enumerate(decoders):
            run_reset(m, decoder, self.idle_next, name=f"decoder{d}")
            for port, target in ((self.index_write, decoder.index_write),
                                 (self.ktable_write, decoder.ktable_write)):
                m.d.comb += [target.payload.eq(port.payload.write),
                             target.valid.eq(port.valid & (port.payload.domain == d))]
        error = Signal()
        seen = Signal()
        m.d.comb += [self.index_write.ready.eq(1), self.ktable_write.ready.eq(1),
                     error.eq(Cat(*(dec.error.as_value() for dec in decoders)).any()),
                     self.error.eq(error | seen)]
        idle = idle_copy(m, self.idle_next, name="error")    # `seen`'s run reset
        m.d.sync += seen.eq(~idle & (seen | error))
        return decoders
