"""A macro unit's activation gather: D decoder payloads in, one macro compute step out.

The D decoders (one per word-line domain) run in step: their payloads are taken together,
in the cycle all D are valid and the step register is free.  In that cycle the gather
reads the G activations of every domain from the activation memory (``act_addr``, the
buffer bank as the top bit; the data comes back one cycle later, in ``act_data``), and
registers the row slots, the padding masks and the pixel markers.  The next cycle it
offers the compute step to the macro with padded lanes forced to 0.

The markers (first/last step of a pixel, last step of the walk) travel beside the macro in
a small FIFO, written as the macro accepts a step and read (``side.ready``) as the
accumulator takes the step's result: the macro keeps results in order, so the FIFO's head
always belongs to the result in flight.  The FIFO holds 5 entries; the macro holds at most
four steps (docs/macro.md: front, stages R and P, result) and a step is written in the
cycle the oldest may be read, so it never overflows.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import payload_layout
from mars.contract.program import UnitFormat

from .macro import request_layout

__all__ = ["ActivationGather", "side_layout"]


def side_layout() -> data.StructLayout:
    """The markers of one compute step: first and last step of its pixel, last of the walk."""
    return data.StructLayout({"first": 1, "last": 1, "walk_last": 1})


class ActivationGather(wiring.Component):
    """The activation gather of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets D (word-line domains), G (rows per step) and the address widths.

    Members
    -------
    payloads : In(stream.Signature(payload_layout(config))).array(D)
        The decoders' payloads, one stream per word-line domain; all are taken together.
    in_bank : In(1)
        The activation buffer bank the walk reads (top bit of every read address).
    act_en : Out(1)
        Read strobe of the activation reads (the cycle the payloads are taken).
    act_addr : Out(data.ArrayLayout(unsigned(act_addr_bits), D * G))
        One read address per lane of every domain (lane ``d * G + g``).
    act_data : In(data.ArrayLayout(unsigned(act_bits), D * G))
        The activations read, one cycle after ``act_en``.
    request : Out(stream.Signature(request_layout(config)))
        Compute steps for the macro: a row slot and G activations per domain, padded lanes
        zero.
    side : Out(stream.Signature(side_layout()))
        The markers of the oldest step the macro accepted and whose result was not yet
        taken; ``ready`` pops it (with the macro's result).
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        fmt = UnitFormat(config)
        lanes = config.wordline_domains * config.rows_per_step
        super().__init__({
            "payloads": In(stream.Signature(payload_layout(config))).array(
                config.wordline_domains),
            "in_bank": In(1),
            "act_en": Out(1),
            "act_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), lanes)),
            "act_data": In(data.ArrayLayout(unsigned(config.act_bits), lanes)),
            "request": Out(stream.Signature(request_layout(config))),
            "side": Out(stream.Signature(side_layout())),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        D, G = cfg.wordline_domains, cfg.rows_per_step
        m = Module()
        outs = list(self.payloads)
        b_valid = Signal()
        b_slots = Signal(data.ArrayLayout(range(cfg.row_slots), D))
        b_pad = Signal(data.ArrayLayout(unsigned(G), D))
        b_side = Signal(side_layout())
        request = self.request
        take = Signal()
        m.d.comb += take.eq(Cat(*(o.valid for o in outs)).all() & (~b_valid | request.ready))
        for o in outs:
            m.d.comb += o.ready.eq(take)
        m.d.comb += self.act_en.eq(take)
        for d, o in enumerate(outs):
            for g in range(G):
                m.d.comb += self.act_addr[d * G + g].eq(Cat(o.payload.addrs[g], self.in_bank))
        with m.If(take):
            m.d.sync += [b_valid.eq(1), b_side.first.eq(outs[0].payload.first),
                         b_side.last.eq(outs[0].payload.last),
                         b_side.walk_last.eq(outs[0].payload.walk_last)]
            for d, o in enumerate(outs):
                m.d.sync += [b_slots[d].eq(o.payload.slot), b_pad[d].eq(o.payload.pad)]
        with m.Elif(request.ready):
            m.d.sync += b_valid.eq(0)

        m.submodules.side = side = SyncFIFO(width=side_layout().size, depth=5)
        m.d.comb += [request.valid.eq(b_valid), request.payload.slots.eq(b_slots)]
        for d in range(D):
            for g in range(G):
                m.d.comb += request.payload.acts[d][g].eq(
                    Mux(b_pad[d][g], 0, self.act_data[d * G + g]))
        m.d.comb += [side.w_en.eq(request.valid & request.ready), side.w_data.eq(b_side),
                     self.side.valid.eq(side.r_rdy), self.side.payload.eq(side.r_data),
                     side.r_en.eq(self.side.ready)]
        return m
