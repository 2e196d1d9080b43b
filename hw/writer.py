"""A macro unit's writer: requantisation, ReLU, fused max pooling, output writes.

The writer drains a finished pixel (`pixel_layout`) ``write_lanes`` channels a cycle, in
two pipeline stages:

* W1 multiplies each lane's accumulator by its channel's multiplier M and reads the
  output word it will write (``pool_addr``: the pooling read, for max pooling);
* W2 rounds, shifts and clamps (docs/architecture.md, "Arithmetic of the writer";
  docs/model-package.md)::

      q = clamp((acc * M + ((1 << S) >> 1)) >> S, 0, 2**Ab - 1)

  (the clamp at 0 is the ReLU), takes the maximum with the word read when the pixel is
  not the first of its pooling window, and writes (``out_*``).

A walk's pixels come row-major over ``out_w`` columns of the pre-pooling map; pixel
(x, y) belongs to the pooled output (x // k, y // k) for a pool window k
(``pool_k``, 1 = no pooling); pooled positions outside ``pool_w`` x ``pool_h`` are not
written (floor pooling).  Channel ch of pooled position (px, py) goes to activation word
``out_base + py * out_row_pitch + px * out_pitch + ch`` of bank ``out_bank``.

With ``acc_out`` set the raw accumulators go to the result memory instead (``res_*``, the
same address without the bank bit), unpooled and not requantised: the network's last layer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.program import UnitFormat, instruction_layout, param_layout

from .accumulator import pixel_layout

__all__ = ["UnitWriter"]


class UnitWriter(wiring.Component):
    """The writer of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the channel count, ``act_bits``, ``acc_bits``, ``requant_mult_bits`` and the
        lane count ``write_lanes`` (`UnitFormat`).

    Members
    -------
    pixel : In(stream.Signature(pixel_layout(config)))
        Finished pixels; ``ready`` is raised the cycle the pixel's last channel issues.
    insn : In(instruction_layout(config))
        The walk's instruction: ``n_valid`` (channels written), ``pool_k``, ``pool_w``,
        ``pool_h``, ``out_base``, ``out_pitch``, ``out_row_pitch``, ``out_bank``,
        ``acc_out`` and ``desc.out_w``; held for the walk.
    params : In(param_layout(config))
        The walk's multiplier and shift of every channel.
    restart : In(1)
        Move the output position to the walk's origin (a walk is being started).
    walk_done : Out(1)
        The walk's last pixel is written this cycle.
    out_en : Out(unsigned(write_lanes))
        Activation write strobe per lane.
    out_addr : Out(data.ArrayLayout(unsigned(act_addr_bits), write_lanes))
    out_data : Out(data.ArrayLayout(unsigned(act_bits), write_lanes))
        Activation write address (bank bit on top) and value per lane.
    pool_addr : Out(data.ArrayLayout(unsigned(act_addr_bits), write_lanes))
    pool_data : In(data.ArrayLayout(unsigned(act_bits), write_lanes))
        The pooling read per lane: data one cycle after the address, transparent for this
        writer's own writes.
    res_en : Out(unsigned(write_lanes))
    res_addr : Out(data.ArrayLayout(unsigned(result_addr_bits), write_lanes))
    res_data : Out(data.ArrayLayout(signed(acc_bits), write_lanes))
        Result-memory writes (``acc_out``).
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = fmt = UnitFormat(config)
        L, Ab = fmt.write_lanes, config.act_bits
        super().__init__({
            "pixel": In(stream.Signature(pixel_layout(config))),
            "insn": In(instruction_layout(config)),
            "params": In(param_layout(config)),
            "restart": In(1),
            "walk_done": Out(1),
            "out_en": Out(unsigned(L)),
            "out_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), L)),
            "out_data": Out(data.ArrayLayout(unsigned(Ab), L)),
            "pool_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), L)),
            "pool_data": In(data.ArrayLayout(unsigned(Ab), L)),
            "res_en": Out(unsigned(L)),
            "res_addr": Out(data.ArrayLayout(unsigned(fmt.result_addr_bits), L)),
            "res_data": Out(data.ArrayLayout(signed(config.acc_bits), L)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def _product_shape(self):
        cfg = self._config
        return signed(cfg.acc_bits + cfg.requant_mult_bits + 2)

    def _w2_layout(self) -> data.StructLayout:
        """The W2 stage register: per lane the write, its address, M*acc, acc and S."""
        cfg, fmt = self._config, self._format
        lane = data.StructLayout({
            "write": 1, "addr": unsigned(fmt.value_bits + 1),
            "product": self._product_shape(), "acc": signed(cfg.acc_bits),
            "shift": unsigned(fmt.shift_bits)})
        return data.StructLayout({"valid": 1, "max": 1, "walk_last": 1,
                                  "lanes": data.ArrayLayout(lane, fmt.write_lanes)})

    def elaborate(self, platform):
        fmt, insn = self._format, self.insn
        N, L = self._config.channels_per_macro, fmt.write_lanes
        m = Module()
        full = self.pixel.valid
        n_ch = Signal(range(N + L))          # first channel of this cycle's lanes
        last_channel = Signal()              # the pixel's last channel issues now
        m.d.comb += [last_channel.eq(full & (n_ch + L >= insn.n_valid)),
                     self.pixel.ready.eq(last_channel)]
        pos = self._position(m, last_channel)
        w2 = Signal(self._w2_layout())
        m.d.sync += [
            w2.valid.eq(full),
            w2.max.eq(~pos["first_in_window"] & (insn.pool_k != 1)),
            w2.walk_last.eq(last_channel & self.pixel.payload.walk_last),
        ]
        for lane in range(L):
            self._lane(m, lane, n_ch, pos, w2)
        with m.If(full):
            m.d.sync += n_ch.eq(Mux(last_channel, 0, n_ch + L))
        m.d.comb += self.walk_done.eq(w2.valid & w2.walk_last)
        with m.If(self.restart):
            m.d.sync += n_ch.eq(0)
        return m

    def _lane(self, m, lane: int, n_ch, pos: dict, w2) -> None:
        """W1 and W2 of one write lane: channel ``n_ch + lane`` of the pixel."""
        cfg, fmt, insn = self._config, self._format, self.insn
        N, L, ab = cfg.channels_per_macro, fmt.write_lanes, fmt.decoder.addr_bits
        hold, par = self.pixel.payload.accs, self.params
        ch = Signal(range(N + L), name=f"ch{lane}")
        w1_addr = Signal(fmt.value_bits + 1, name=f"w1_addr{lane}")
        m.d.comb += [
            ch.eq(n_ch + lane),
            w1_addr.eq(insn.out_base + pos["pix_addr"] + ch),
            self.pool_addr[lane].eq(Cat(w1_addr[:ab], insn.out_bank)),
        ]
        w2l = w2.lanes[lane]
        m.d.sync += [
            w2l.write.eq(self.pixel.valid & pos["in_bounds"] & (ch < insn.n_valid)),
            w2l.addr.eq(w1_addr),
            w2l.product.eq(hold[ch] * par[ch].mult),
            w2l.acc.eq(hold[ch]),
            w2l.shift.eq(par[ch].shift),
        ]
        requantised = self._requantise(m, lane, w2l)
        pooled = self.pool_data[lane]
        write = w2.valid & w2l.write
        m.d.comb += [
            self.out_en[lane].eq(write & ~insn.acc_out),
            self.out_addr[lane].eq(Cat(w2l.addr[:ab], insn.out_bank)),
            self.out_data[lane].eq(Mux(w2.max & (pooled > requantised), pooled, requantised)),
            self.res_en[lane].eq(write & insn.acc_out),
            self.res_addr[lane].eq(w2l.addr),
            self.res_data[lane].eq(w2l.acc),
        ]

    def _requantise(self, m, lane: int, w2l) -> Signal:
        """clamp((acc*M + ((1 << S) >> 1)) >> S, 0, 2**Ab - 1) from W2's product and S."""
        shape = self._product_shape()
        act_max = self._config.act_max
        half = Signal(shape, name=f"half{lane}")
        rounded = Signal(shape, name=f"rounded{lane}")
        requantised = Signal(unsigned(self._config.act_bits), name=f"requantised{lane}")
        # The rounding constant 2^(S-1) is (1 << S) >> 1, which is 0 for S = 0.
        m.d.comb += [half.eq((Const(1, shape.width) << w2l.shift) >> 1),
                     rounded.eq((w2l.product + half) >> w2l.shift)]
        with m.If(rounded < 0):
            m.d.comb += requantised.eq(0)
        with m.Elif(rounded > act_max):
            m.d.comb += requantised.eq(act_max)
        with m.Else():
            m.d.comb += requantised.eq(rounded)
        return requantised

    def _position(self, m, last_channel) -> dict:
        """The pixel's output position, advanced as its last channel issues.

        Returns the signals the lanes use: ``pix_addr`` (the pooled position's offset from
        ``out_base``), ``in_bounds`` and ``first_in_window``.
        """
        fmt, insn = self._format, self.insn
        ox = Signal(fmt.value_bits)               # column in the pre-pooling map
        kx = Signal(fmt.pool_bits)                # position inside the pool window
        ky = Signal(fmt.pool_bits)
        px = Signal(fmt.value_bits)               # pooled position
        py = Signal(fmt.value_bits)
        row_addr = Signal(fmt.value_bits + 1)     # offset of pooled row py
        pix_addr = Signal(fmt.value_bits + 1)     # offset of pooled pixel (px, py)
        with m.If(last_channel):
            with m.If(ox == insn.desc.out_w - 1):
                m.d.sync += [ox.eq(0), kx.eq(0), px.eq(0)]
                with m.If(ky == insn.pool_k - 1):
                    m.d.sync += [ky.eq(0), py.eq(py + 1),
                                 row_addr.eq(row_addr + insn.out_row_pitch),
                                 pix_addr.eq(row_addr + insn.out_row_pitch)]
                with m.Else():
                    m.d.sync += [ky.eq(ky + 1), pix_addr.eq(row_addr)]
            with m.Else():
                m.d.sync += ox.eq(ox + 1)
                with m.If(kx == insn.pool_k - 1):
                    m.d.sync += [kx.eq(0), px.eq(px + 1),
                                 pix_addr.eq(pix_addr + insn.out_pitch)]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
        with m.If(self.restart):
            m.d.sync += [ox.eq(0), kx.eq(0), ky.eq(0), px.eq(0), py.eq(0),
                         row_addr.eq(0), pix_addr.eq(0)]
        return {"pix_addr": pix_addr,
                "in_bounds": (px < insn.pool_w) & (py < insn.pool_h),
                "first_in_window": (kx == 0) & (ky == 0)}
