"""A macro unit's accumulator: sums a pixel's compute steps, starting from the bias.

Every macro result (one signed partial sum per channel) comes with its step's markers
(`side_layout`).  The first step of a pixel starts from the channel's bias, the others
add to the running sums; the last step's total moves into the hold register, which the
writer drains channel by channel (`pixel`).  A pixel's last result waits while the hold
register is full, unless the writer empties it in the same cycle, so a new pixel's steps
overlap the previous pixel's writes.

Per channel n of a pixel with steps s = 0..S-1: ``acc[n] = bias[n] + sum_s psum_s[n]``,
in ``acc_bits`` two's complement (wrapping).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig

from .gather import side_layout
from .macro import result_layout

__all__ = ["Accumulator", "pixel_layout"]


def pixel_layout(config: MarsConfig) -> data.StructLayout:
    """One finished pixel: the accumulator of every channel, and whether it ends the walk."""
    return data.StructLayout({
        "accs": data.ArrayLayout(signed(config.acc_bits), config.channels_per_macro),
        "walk_last": 1,
    })


class Accumulator(wiring.Component):
    """The accumulator of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the channel count (``channels_per_macro``) and ``acc_bits``.

    Members
    -------
    result : In(stream.Signature(result_layout(config)))
        The macro's partial sums, one payload per compute step.
    side : In(stream.Signature(side_layout()))
        The markers of the step whose result is offered on ``result``; popped (``ready``)
        with it.  Its ``valid`` is not looked at: every result has its markers.
    bias : In(data.ArrayLayout(signed(acc_bits), channels_per_macro))
        Each channel's bias, held for the walk.
    pixel : Out(stream.Signature(pixel_layout(config)))
        The hold register: a finished pixel's accumulators.  ``ready`` empties it (the
        writer raises it as it issues the pixel's last channel).
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        super().__init__({
            "result": In(stream.Signature(result_layout(config))),
            "side": In(stream.Signature(side_layout())),
            "bias": In(data.ArrayLayout(signed(config.acc_bits), config.channels_per_macro)),
            "pixel": Out(stream.Signature(pixel_layout(config))),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        N = self._config.channels_per_macro
        m = Module()
        result, side, pixel = self.result, self.side.payload, self.pixel
        accs = Signal(data.ArrayLayout(signed(self._config.acc_bits), N))
        hold_free = ~pixel.valid | pixel.ready
        accept = Signal()
        m.d.comb += [
            result.ready.eq(~side.last | hold_free),
            accept.eq(result.valid & result.ready),
            self.side.ready.eq(accept),
        ]
        sums = [Mux(side.first, self.bias[n], accs[n]) + result.payload[n] for n in range(N)]
        with m.If(accept & side.last):
            m.d.sync += [pixel.payload.accs[n].eq(sums[n]) for n in range(N)]
            m.d.sync += [pixel.valid.eq(1), pixel.payload.walk_last.eq(side.walk_last)]
        with m.Elif(pixel.ready):
            m.d.sync += pixel.valid.eq(0)
        with m.If(accept & ~side.last):
            m.d.sync += [accs[n].eq(sums[n]) for n in range(N)]
        return m
