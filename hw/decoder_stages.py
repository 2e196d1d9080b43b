"""The stages of the sparse-weight decoder (`SparseDecoder`, docs/decoder.md).

* `WalkIssue`: the walk's descriptor and counters; issues one step a cycle (the item that
  travels down the pipeline, and the index-memory address it needs);
* `LaneExpander`: from a k-table word, the G lanes' kernel positions, their padding test
  and their activation-buffer addresses (no multiplier, no divider).

The index check (S1) and the stage registers stay in `SparseDecoder`, which joins them.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import DecoderFormat, descriptor_layout, ktable_layout

__all__ = ["item_layout", "WalkIssue", "LaneExpander"]


def item_layout(config: MarsConfig) -> data.StructLayout:
    """One step travelling down the decoder pipeline: its markers, its row slot and its
    window origin (``bx``: column of the window's left edge; ``pix``: its buffer offset)."""
    fmt = DecoderFormat(config)
    ob = fmt.offset_bits
    return data.StructLayout({
        "valid": 1, "first": 1, "last": 1, "walk_first": 1, "walk_last": 1, "filler": 1,
        "slot": unsigned(fmt.slot_bits), "bx": signed(ob), "pix": signed(ob)})


class WalkIssue(wiring.Component):
    """The issue stage: descriptor, walk counters, one step per advancing cycle.

    For every output pixel (oy, then ox, row-major) and every step s < ``steps`` of it,
    one item is issued: ``s < count`` reads index word ``index_start + s`` (the s-th kept
    K-group); the others are fillers (they read the words after the code, whose values
    are not used).

    Parameters
    ----------
    config : MarsConfig
        Sets the descriptor layout and the counter widths (`DecoderFormat`).

    Members
    -------
    start : In(stream.Signature(descriptor_layout(config)))
        Starts a walk; ``ready`` while no walk is active and ``in_flight`` is low.
        A walk whose descriptor is invalid (``bad``) or has no steps issues nothing.
    in_flight : In(1)
        Items are still in the stages behind this one: no new walk may start.
    advance : In(1)
        The pipeline advances this cycle (its output register is free).
    stop : In(1)
        The step in S1 has a bad index word: with ``advance``, the walk ends.
    desc : Out(descriptor_layout(config))
        The current walk's descriptor (registered at start).
    active : Out(1)
        Steps are left to issue.
    item : Out(item_layout(config))
        The step issued this cycle (``valid`` = active and advancing).
    index_addr : Out(unsigned(slot_bits))
        The index-memory word the issued step reads (``index_start + s``, modulo the
        depth; a filler's word is not used).
    started : Out(1)
        A walk starts this cycle (the start handshake).
    bad : Out(1)
        The descriptor offered on ``start`` is invalid (out of the memories' range, an
        empty map, more kept groups than groups, ...).
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = fmt = DecoderFormat(config)
        super().__init__({
            "start": In(stream.Signature(descriptor_layout(config))),
            "in_flight": In(1),
            "advance": In(1),
            "stop": In(1),
            "desc": Out(descriptor_layout(config)),
            "active": Out(1),
            "item": Out(item_layout(config)),
            "index_addr": Out(unsigned(fmt.slot_bits)),
            "started": Out(1),
            "bad": Out(1),
        })

    def elaborate(self, platform):
        fmt, desc, item = self._format, self.desc, self.item
        m = Module()
        s = Signal(range(fmt.index_depth + 1))
        ox = Signal(fmt.value_bits)
        oy = Signal(fmt.value_bits)
        bx = Signal(signed(fmt.offset_bits))
        by = Signal(signed(fmt.offset_bits))
        issue = self.active & self.advance
        index_addr = Signal(fmt.slot_bits)
        # steps - 1, out_w - 1, out_h - 1, registered at the start: the counters' tests
        # are then equalities, with no subtraction in front of the counters' enables.
        last_s = Signal.like(desc.steps)
        last_ox = Signal.like(desc.out_w)
        last_oy = Signal.like(desc.out_h)
        last_step = s == last_s
        last_pixel = (ox == last_ox) & (oy == last_oy)
        m.d.comb += [
            item.valid.eq(issue),
            item.first.eq(s == 0),
            item.last.eq(last_step),
            item.walk_first.eq((s == 0) & (ox == 0) & (oy == 0)),
            item.walk_last.eq(last_step & last_pixel),
            item.filler.eq(s >= desc.count),
            item.slot.eq(desc.slot_base + s),
            item.bx.eq(bx),
            item.pix.eq(by + bx),
            # A counter beside s (index_start + s), so the read address comes straight from
            # a register.  Fillers read whatever word it names: their index word is unused.
            self.index_addr.eq(index_addr),
        ]
        with m.If(self.advance & self.stop):
            m.d.sync += self.active.eq(0)
        with m.If(issue & ~self.stop):
            with m.If(last_step):
                m.d.sync += [s.eq(0), index_addr.eq(desc.index_start)]
                with m.If(ox == last_ox):
                    m.d.sync += [ox.eq(0), bx.eq(desc.bx0)]
                    with m.If(oy == last_oy):
                        m.d.sync += self.active.eq(0)
                    with m.Else():
                        m.d.sync += [oy.eq(oy + 1), by.eq(by + desc.step_y)]
                with m.Else():
                    m.d.sync += [ox.eq(ox + 1), bx.eq(bx + desc.step_x)]
            with m.Else():
                m.d.sync += [s.eq(s + 1), index_addr.eq(index_addr + 1)]

        new = self.start.payload
        m.d.comb += [
            self.bad.eq(self._invalid(new)),
            self.start.ready.eq(~self.active & ~self.in_flight),
            self.started.eq(self.start.valid & self.start.ready),
        ]
        with m.If(self.started):
            m.d.sync += [last_s.eq(new.steps - 1), last_ox.eq(new.out_w - 1),
                         last_oy.eq(new.out_h - 1)]
            m.d.sync += [desc.eq(new), self.active.eq(~self.bad & (new.steps != 0)),
                         s.eq(0), ox.eq(0), oy.eq(0), bx.eq(new.bx0), by.eq(new.by0),
                         index_addr.eq(new.index_start)]
        return m

    def _invalid(self, new):
        """A descriptor the memories cannot serve, or that describes nothing."""
        fmt, G = self._format, self._config.rows_per_step
        return ((new.k_groups == 0) | (new.count > new.k_groups)
                | (new.ktable_base + new.k_groups > fmt.max_kgroups)
                | (new.last_lanes == 0) | (new.last_lanes > G)
                | (new.steps < new.count)
                | (new.index_start + new.count > fmt.index_depth)
                | (new.slot_base + new.steps > fmt.index_depth)
                | (new.out_h == 0) | (new.out_w == 0))


class LaneExpander(wiring.Component):
    """Lane expansion, three pipeline stages: a K-group's G lanes, their pad test, addresses.

    Lane 0 is the k-table word's (``p0``, ``rel0``): its position in the kernel row and
    its offset from the window origin.  Lane g is K-row ``kg*G + g``: with ``L =
    row_len`` and ``t = p0 + g``, it lies ``w = floor(t / L)`` kernel rows further
    (``p0 < L``, so ``w <= g``), at position ``p = t - w*L`` and offset ``a = rel0 + g +
    w*row_jump``.  Every lane is computed from the group's word directly (no lane waits
    for another): ``w`` is the number of multiples ``k*L`` (k = 1..g) that ``t`` reaches.
    The multiples ``k*L`` and ``k*row_jump`` (k < G) are registers, recomputed from the
    descriptor every cycle (a walk's first item reaches this stage 4 cycles after its
    start) with at most ``log2 G`` shifted adds each, no multiplier.

    * L1a (inputs valid): per lane ``t``, ``rel0 + g`` and the g comparisons
      ``t >= k*L`` -> registers, with the item's window origin, filler and last-K-group
      flags;
    * L1b: per lane ``p`` and ``a`` (one subtraction, one addition of the selected
      multiples) and ``act_base + pix`` -> registers;
    * L2 (two cycles after the inputs): a lane is padding when the step is a filler, its
      column or its buffer offset falls outside the input map, or it lies past K in the
      last K-group; the addresses ``act_base + pix + a``.  ``addrs`` and ``pad`` are
      combinational from the L1b registers (the caller registers them).

    Parameters
    ----------
    config : MarsConfig
        Sets G and the field widths (`DecoderFormat`).

    Members
    -------
    desc : In(descriptor_layout(config))
        The walk's descriptor.
    advance : In(1)
        The pipeline advances: the L1a and L1b registers take their inputs.
    entry : In(ktable_layout(config))
        The K-group's k-table word.
    kgroup : In(unsigned(kgroup_bits))
        The K-group (to find the last one).
    bx, pix : In(signed(offset_bits))
        The window origin: column of its left edge, buffer offset.
    filler : In(1)
        The step is a filler: every lane is padding.
    addrs : Out(data.ArrayLayout(unsigned(addr_bits), G))
        Each lane's activation-buffer address (0 for padding), of the item in L2 (the
        inputs of two advancing cycles before).
    pad : Out(unsigned(G))
        Each lane is padding (its activation is zero), of the item in L2.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = fmt = DecoderFormat(config)
        G = config.rows_per_step
        super().__init__({
            "desc": In(descriptor_layout(config)),
            "advance": In(1),
            "entry": In(ktable_layout(config)),
            "kgroup": In(unsigned(fmt.kgroup_bits)),
            "bx": In(signed(fmt.offset_bits)),
            "pix": In(signed(fmt.offset_bits)),
            "filler": In(1),
            "addrs": Out(data.ArrayLayout(unsigned(fmt.addr_bits), G)),
            "pad": Out(unsigned(G)),
        })

    def elaborate(self, platform):
        G, fmt, desc = self._config.rows_per_step, self._format, self.desc
        vb, ob = fmt.value_bits, fmt.offset_bits
        m = Module()
        # Multiples k*L (wide enough not to wrap; all ones when L = 0: no lane wraps, as
        # the increment chain of docs/decoder.md) and k*row_jump (mod 2**ob), k < G.
        mb = vb + max(1, (G - 1).bit_length())
        row_len = Signal(mb)
        m.d.comb += row_len.eq(desc.row_len)
        mult_len = [Signal(mb, name=f"len_x{k}") for k in range(G)]
        mult_jump = [Signal(signed(ob), name=f"jump_x{k}") for k in range(G)]
        for k in range(1, G):
            m.d.sync += [
                mult_len[k].eq(Mux(desc.row_len == 0, (1 << mb) - 1,
                                   _times(row_len, k, mb))),
                mult_jump[k].eq(_times(desc.row_jump, k, ob)),
            ]

        # -- L1a: for every lane at once, t = p0 + g, rel0 + g and the multiples reached ----
        t_lanes = [Signal(mb, name=f"t{g}") for g in range(G)]
        r_lanes = [Signal(signed(ob), name=f"r{g}") for g in range(G)]
        # reached[g][k-1]: t_g >= k*L (k = 1..g), a thermometer code in k
        reached = [Signal(g, name=f"reached{g}") for g in range(G)]
        item_a = _Item(self)
        with m.If(self.advance):
            m.d.sync += item_a.load(self)
            for g in range(G):
                t = self.entry.p0 + g
                m.d.sync += [t_lanes[g].eq(t), r_lanes[g].eq(self.entry.rel0 + g)]
                for k in range(1, g + 1):
                    m.d.sync += reached[g][k - 1].eq(t >= mult_len[k])

        # -- L1b: each lane's position p and offset a ---------------------------------------
        # The highest k reached is the one whose bit is set and the next clear; at most one
        # is, so OR the selected multiples (zero when none): one subtraction, one addition.
        p_lanes = [Signal(vb, name=f"p{g}") for g in range(G)]
        a_lanes = [Signal(signed(ob), name=f"a{g}") for g in range(G)]
        item_b = _Item(self)
        base = Signal(signed(ob + 1))               # act_base + the window's offset
        with m.If(self.advance):
            m.d.sync += [item_b.copy(item_a), base.eq(desc.act_base + item_a.pix)]
            for g in range(G):
                back, jump = 0, 0
                for k in range(1, g + 1):
                    top = reached[g][k - 1] if k == g else reached[g][k - 1] & ~reached[g][k]
                    back = back | Mux(top, mult_len[k], 0)
                    jump = jump | Mux(top, mult_jump[k], 0)
                m.d.sync += [p_lanes[g].eq(t_lanes[g] - back),
                             a_lanes[g].eq(r_lanes[g] + jump)]
        bx, pix, filler, last_kgroup = item_b.bx, item_b.pix, item_b.filler, item_b.last_kgroup

        # -- L2: pad test and addresses ---------------------------------------------------
        for g in range(G):
            xo = Signal(signed(ob), name=f"xo{g}")
            off = Signal(signed(ob), name=f"off{g}")
            ok = Signal(name=f"ok{g}")
            m.d.comb += [
                xo.eq(bx + p_lanes[g]),
                off.eq(pix + a_lanes[g]),
                # x inside the row, then (x being inside) the offset inside the map is
                # exactly y inside the map; lanes past K are padding too.
                ok.eq(~filler & (xo >= 0) & (xo < desc.row_size) & (off >= 0)
                      & (off < desc.map_size) & (~last_kgroup | (g < desc.last_lanes))),
                self.addrs[g].eq(Mux(ok, (base + a_lanes[g])[:fmt.addr_bits], 0)),
                self.pad[g].eq(~ok),
            ]
        return m


class _Item:
    """The fields of an item that the lane stages carry along (registers)."""

    def __init__(self, lanes: "LaneExpander"):
        ob = lanes._format.offset_bits
        self.bx = Signal(signed(ob))
        self.pix = Signal(signed(ob))
        self.filler = Signal()
        self.last_kgroup = Signal()

    def load(self, lanes: "LaneExpander") -> list:
        return [self.bx.eq(lanes.bx), self.pix.eq(lanes.pix), self.filler.eq(lanes.filler),
                self.last_kgroup.eq(lanes.kgroup == lanes.desc.k_groups - 1)]

    def copy(self, other: "_Item") -> list:
        return [self.bx.eq(other.bx), self.pix.eq(other.pix), self.filler.eq(other.filler),
                self.last_kgroup.eq(other.last_kgroup)]


def _times(value, k: int, width: int):
    """``k * value`` for a constant k as a sum of shifted copies (no multiplier cell),
    truncated to `width` bits."""
    terms = [value << i for i in range(k.bit_length()) if k >> i & 1]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total[:width]
