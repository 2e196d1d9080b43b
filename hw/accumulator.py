"""A macro unit's accumulator: sums a pixel's compute steps, starting from the bias.

Every macro result (one signed partial sum per channel) comes with its step's markers
(`marker_layout`).  Both are registered first (stage S, beside the running sums): the
macro's result registers lie by its adder trees, a unit's width away, and the read
pointer's choice between them, routed across the unit straight into the adders of the
running sums, was the whole top's critical path (issue 9, docs/synthesis.md, session 23).
S loads whenever it does not hold a pixel's last step that waits for a pixel register,
so it costs one cycle of latency, not throughput.  Every step adds to the running sums,
which hold the channel's bias before a pixel's first step (the run's first, or the one
after a pixel's last step): a last step reloads them with the bias, and between pixels
they follow it.  The last step's total moves into one of two pixel registers (a 2-entry
FIFO), which the writer drains channel by channel (`pixel`: the older one).  A pixel's
last step waits in S only while both are full, so a new pixel's steps overlap the
previous pixel's writes and the macro's `ready` is a LUT of registers.  The wide
pixel registers' loads look only at their own entry's full flag (an empty entry follows
the new sums every cycle and keeps them once written), so the writer's `ready` reaches
only a few flags and the read pointer, not the 2 x N x ``acc_bits`` clock enables
(docs/synthesis.md, "Registered enables").

Per channel n of a pixel with steps s = 0..S-1: ``acc[n] = bias[n] + sum_s psum_s[n]``,
in ``acc_bits`` two's complement (wrapping).

Binary/ternary readouts (``config.scaled_readout``): the partial sums are in units of
``2**-f`` (f = ``scale_frac_bits``) and the layer's product is their sum shifted right by f
(floor, `mars.sw.golden.accel.macro_product`).  Since ``floor((s + b*2^f) / 2^f) =
floor(s / 2^f) + b`` exactly, the running sums are ``acc_bits + f`` bits wide and start
from ``bias << f`` (wiring: the bias above f zero bits), and the hold register takes their
top ``acc_bits`` bits (wiring again: the floor shift)::

    acc[n] = (((bias[n] << f) + sum_s psum_s[n]) mod 2^(acc_bits+f)) >> f
           = (bias[n] + floor(sum_s psum_s[n] / 2^f)) mod 2^acc_bits

No adder or shifter is added, only f bits to each channel's running sum and adder.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig

from .gather import marker_layout
from .macro import result_layout
from .regs import SELECT_FANOUT, replicas, ring2, shares

__all__ = ["Accumulator", "BIAS_LEAD", "pixel_layout", "sum_shares"]

#: Cycles the bias must hold before a walk's first result is offered (`Accumulator.bias`):
#: one for its register beside the running sums; the running sums load it in the cycle
#: the result moves into stage S.
BIAS_LEAD = 1


def sum_shares(config: MarsConfig) -> list[slice]:
    """The shares of the running sums (``channels_per_macro`` x (``acc_bits`` + the
    scaled readouts' ``scale_frac_bits``) bits, flattened) that one copy of a handshake
    flag selects and enables (`mars.hw.regs.shares` at a quarter of SELECT_FANOUT);
    channel n lies in share ``n * len(shares) // channels_per_macro``.  16 on default:
    with 4, a share's select LUT lay 21 tiles from its far running sums (issue 9: the
    whole top's critical path at d31e33c, seed 2, and 47 late sinks at seed 1)."""
    f = config.scale_frac_bits if config.scaled_readout else 0
    return shares(config.channels_per_macro * (config.acc_bits + f), SELECT_FANOUT // 4)


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
        Sets the channel count (``channels_per_macro``), ``acc_bits`` and, for
        binary/ternary readouts, the final shift ``scale_frac_bits``.

    Members
    -------
    result : In(stream.Signature(result_layout(config)))
        The macro's partial sums, one payload per compute step.  ``ready`` is a LUT of
        stage S's registers and the pixel registers' ``full`` (not of ``pixel.ready``).
    side : In(stream.Signature(marker_layout()))
        The markers of the step whose result is offered on ``result``; popped (``ready``)
        with it.  Its ``valid`` is not looked at: every result has its markers.
    bias : In(data.ArrayLayout(signed(acc_bits), channels_per_macro))
        Each channel's bias, held from at least `BIAS_LEAD` cycles before a walk's
        first result is offered until its last result is taken, and a run's first
        result offered at least `BIAS_LEAD` cycles after the run reset (the bias is
        registered, and the running sums follow that register in between; the
        sequencer's ``params`` change only between walks, and a walk's first result
        reaches the accumulator cycles after its take).
    pixel : Out(stream.Signature(pixel_layout(config)))
        The older full pixel register: a finished pixel's accumulators.  ``ready``
        empties it (the writer raises it as it issues the pixel's last channel); the
        other one, if full, is offered the next cycle.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        super().__init__({
            "result": In(stream.Signature(result_layout(config))),
            "side": In(stream.Signature(marker_layout())),
            "bias": In(data.ArrayLayout(signed(config.acc_bits), config.channels_per_macro)),
            "pixel": Out(stream.Signature(pixel_layout(config))),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        N = cfg.channels_per_macro
        f = cfg.scale_frac_bits if cfg.scaled_readout else 0
        m = Module()
        result, side, pixel = self.result, self.side.payload, self.pixel
        # Reset-less (hw/regs.py): the running sums are loaded with the bias before a
        # pixel's first step; the pixel registers are read only under their full flags.
        accs = Signal(data.ArrayLayout(signed(cfg.acc_bits + f), N), reset_less=True)
        # Two pixel registers in a ring (`ring2`): a
        # pixel's last step is taken while one is empty (`full` a register), so
        # `result.ready` does not look at the writer's `pixel.ready`; and an empty entry
        # loads the new sums every cycle (its enable is its own flag, a register), so the
        # writer's `ready` reaches only the flags and `rp`, not the wide registers' enables
        # (a 497-bit clock enable on default, spread over the die).  Two entries keep the
        # bypass's pace: a writer-bound walk still drains a pixel every w cycles.
        push = Signal()
        pop = Signal()
        new = Signal(pixel_layout(cfg))
        # A read pointer copy per channel's 32 bits: one per 128 lay with the writer's
        # `pop`, 35 tiles from the registers it chose (issue 9, docs/synthesis.md).
        ring = ring2(m, pixel_layout(cfg), new, push, pop, name="pixels",
                     fanout=SELECT_FANOUT // 4)
        full = ring.full

        # Stage S: the step's partial sums and markers, registered beside the running
        # sums.  It holds (`hold`) only a pixel's last step while both pixel registers
        # are full; else it loads the offered step (or nothing) every cycle.  Its flags
        # and the pixel registers' `full` have a copy per share of the running sums
        # (`replicas` of their next values), so that each share's enables and choices
        # are LUTs of registers beside it: one `valid` register did that for all
        # N x acc_bits of them, across the accumulator (session 22).
        copies = min(len(sum_shares(cfg)), N)     # a share holds whole channels
        s_psums = Signal(result_layout(cfg), name="s_psums", reset_less=True)
        s_valid, s_last = Signal(name="s_valid"), Signal(name="s_last")
        s_walk_last = Signal(name="s_walk_last")
        hold = s_valid & s_last & full
        load = Signal()
        accept = Signal()                       # S's step adds to the running sums
        s_valid_next = Mux(load, result.valid, s_valid)
        s_last_next = Mux(load, side.last, s_last)
        m.d.comb += [
            load.eq(~hold),
            accept.eq(s_valid & ~hold),
            result.ready.eq(load),
            self.side.ready.eq(result.valid & load),
            push.eq(accept & s_last),
            pixel.payload.eq(ring.payload),
            pixel.valid.eq(ring.valid),
            pop.eq(pixel.valid & pixel.ready),
        ]
        m.d.sync += [s_valid.eq(s_valid_next), s_last.eq(s_last_next)]
        with m.If(load):
            m.d.sync += s_walk_last.eq(side.walk_last)
        valids = replicas(m, s_valid, s_valid_next, copies, name="s_valid")
        lasts = replicas(m, s_last, s_last_next, copies, name="s_last")
        fulls = replicas(m, full, ring.full_next, copies, name="pixels_full")
        share = [n * copies // N for n in range(N)]
        for n in range(N):
            k = share[n]
            with m.If(~(valids[k] & lasts[k] & fulls[k])):                # = load
                m.d.sync += s_psums[n].eq(result.payload[n])

        # The bias, registered beside the running sums: the sequencer's parameter
        # registers lie across the unit, and their route into the running sums' load LUTs
        # was 188 and 156 of the whole top's late sinks at seeds 1 and 2 (issue 9,
        # docs/synthesis.md); so the bias must hold BIAS_LEAD cycles before a walk's
        # first result.  Reset-less (hw/regs.py): it follows `bias` every cycle.
        bias = Signal.like(self.bias, name="bias_held", reset_less=True)
        m.d.sync += bias.eq(self.bias)
        # f > 0: the bias enters in units of 2^-f, the entries take the top bits.
        start = [Cat(C(0, f), bias[n]).as_signed() if f else bias[n] for n in range(N)]
        # The running sums hold the bias between pixels, so the adder is always
        # running sum + partial sum: a pixel's last step loads them with the bias, and
        # so does every cycle of `first` (the run's start, or after a last step) with no
        # middle step in S, so they follow it.  The bias thus reaches the running sums
        # through a LUT, not through the carry chains (issue 9: bias -> first's choice
        # -> carry chain was 595 of the whole top's 1,502 late sinks at seed 1,
        # docs/synthesis.md).
        # `first` is a register of the accumulator's own, a copy per share (`replicas`);
        # it keeps the run reset (1 at a run's start, `mars.hw.regs`).  (A
        # registered copy of the bias in front of the carry chains' choice, session 18,
        # doubled the accumulators' late sinks; the copy above feeds only the load LUTs.)
        firsts = replicas(m, Signal(init=1), s_last, copies, name="first", enable=accept)
        sums = [accs[n] + s_psums[n] for n in range(N)]
        m.d.comb += [new.accs[n].eq(sums[n][f:]) for n in range(N)]
        m.d.comb += new.walk_last.eq(s_walk_last)
        for n in range(N):
            k = share[n]
            with m.If(valids[k] & ~lasts[k]):                             # a middle step
                m.d.sync += accs[n].eq(sums[n])
            # a pixel's end taken, or between pixels
            with m.Elif(firsts[k] | (valids[k] & ~fulls[k])):
                m.d.sync += accs[n].eq(start[n])
        return m
