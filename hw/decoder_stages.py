"""The stages of the sparse-weight decoder (`SparseDecoder`, docs/decoder.md).

* `WalkIssue`: the walk's descriptor and counters; issues one step a cycle (the item that
  travels down the pipeline, and the index-memory address it needs);
* `LaneExpander`: from a k-table word, the G lanes' padding test and activation-buffer
  addresses (one multiplication by the input row pitch, no divider).

The index check (S1) and the stage registers stay in `SparseDecoder`, which joins them.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import DecoderFormat, descriptor_layout, ktable_layout

from .dsp import registered_product

__all__ = ["item_layout", "WalkIssue", "LaneExpander", "LANE_STAGES"]

#: Register stages of `LaneExpander` (P, A, B, C), each enabled by its own copy of the
#: decoder's advance.
LANE_STAGES = 4


def item_layout(config: MarsConfig) -> data.StructLayout:
    """One step travelling down the decoder pipeline: its markers, its row slot and its
    window origin (``bx``: column of the window's left edge, in elements; ``by``: its top
    row, in input rows)."""
    fmt = DecoderFormat(config)
    ob = fmt.offset_bits
    return data.StructLayout({
        "valid": 1, "first": 1, "last": 1, "walk_first": 1, "walk_last": 1, "filler": 1,
        "slot": unsigned(fmt.slot_bits), "bx": signed(ob), "by": signed(ob)})


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
    reject : Out(1)
        The active walk's descriptor is invalid (out of the memories' range, an empty
        map, more kept groups than groups, ...), a register from the cycle after the
        start: with ``advance`` the caller drops the step issued in that cycle (the
        walk's first: nothing was issued before) and the walk ends (``stop`` must then
        be high too).
    rejected : Out(1)
        The descriptor taken on ``start`` the cycle before was invalid (a one-cycle
        pulse, also for a walk with no steps): the caller's error flag.

    The start handshake drives only ``active``'s next value: the descriptor and the
    counters follow ``start.payload`` while no walk is active (the descriptor while
    nothing is in flight either), so they hold the offered words at the start, and the
    descriptor check is a register loaded with them (``_invalid``).  No comparator, and
    no enable of the ~200 descriptor and counter flip-flops, lies behind the handshake
    (issue 9: the start's ``valid``, from the sequencer's shadow and the controller's
    ``more``, through the check into ``active`` and the counters' enables was the
    critical path of the unit at one seed and of the whole top, docs/synthesis.md).
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
            "reject": Out(1),
            "rejected": Out(1),
        })

    def elaborate(self, platform):
        fmt, item = self._format, self.item
        m = Module()
        # Reset-less (hw/regs.py): the descriptor, its check and the walk counters hold
        # what was offered at the start, and are read only while `active` (which keeps
        # the reset) or by the items issued since.
        desc = Signal(descriptor_layout(self._config), reset_less=True)  # drives `desc`
        m.d.comb += self.desc.eq(desc)
        s = Signal(range(fmt.index_depth + 1), reset_less=True)
        # Output columns and rows still to walk, down to 1 (the last): loaded with out_w
        # and out_h, so that no subtraction is needed at the start.
        cols_left = Signal(fmt.value_bits, reset_less=True)
        rows_left = Signal(fmt.value_bits, reset_less=True)
        first_pixel = Signal(reset_less=True)
        bx = Signal(signed(fmt.offset_bits), reset_less=True)
        by = Signal(signed(fmt.offset_bits), reset_less=True)
        issue = self.active & self.advance
        index_addr = Signal(fmt.slot_bits, reset_less=True)
        # steps - 1, registered at the start, for the step counter's last-step test.
        last_s = Signal.like(desc.steps, reset_less=True)
        # ``s == last_s``, ``cols_left == 1`` and ``rows_left == 1`` kept as registers,
        # loaded with the counters from compares of registers: as compares they lay in
        # front of the counters' and the window origin's enables (issue 9: 35 of the
        # whole top's late sinks at f0f1f31, docs/synthesis.md).
        last_step = Signal(name="last_step", reset_less=True)
        # Steps after the current one (last_s - s), counted down beside s, so that
        # last_step's next value is a compare of a register with a constant and not of
        # ``s + 1`` with last_s (issue 9: an adder and a compare, 10.04 ns on the whole
        # top at 233fcf6, seed 1).
        steps_left = Signal.like(desc.steps, reset_less=True)
        last_col = Signal(name="last_col", reset_less=True)
        last_row = Signal(name="last_row", reset_less=True)
        m.d.comb += [
            item.valid.eq(issue),
            item.first.eq(s == 0),
            item.last.eq(last_step),
            item.walk_first.eq((s == 0) & first_pixel),
            item.walk_last.eq(last_step & last_col & last_row),
            item.filler.eq(s >= desc.count),
            item.slot.eq(desc.slot_base + s),
            item.bx.eq(bx),
            item.by.eq(by),
            # A counter beside s (index_start + s), so the read address comes straight from
            # a register.  Fillers read whatever word it names: their index word is unused.
            self.index_addr.eq(index_addr),
        ]
        with m.If(self.advance & self.stop):
            m.d.sync += self.active.eq(0)
        # The counters step on every issue, `stop` or not: a stopped walk is over (its
        # `active` cleared above) and the counters follow the next offered descriptor
        # from the next cycle, so their values after a stop are never read.  `stop` (the
        # index checks, the descriptor check) is then not in front of their ~80 clock
        # enables (issue 9: 38 of the whole top's late sinks at d31e33c, seed 1).
        with m.If(issue):
            with m.If(last_step):
                m.d.sync += [s.eq(0), index_addr.eq(desc.index_start), first_pixel.eq(0),
                             steps_left.eq(last_s), last_step.eq(last_s == 0)]
                with m.If(last_col):
                    m.d.sync += [cols_left.eq(desc.out_w), bx.eq(desc.bx0),
                                 last_col.eq(desc.out_w == 1)]
                    with m.If(last_row):
                        m.d.sync += self.active.eq(0)
                    with m.Else():
                        m.d.sync += [rows_left.eq(rows_left - 1), by.eq(by + desc.step_y),
                                     last_row.eq(rows_left == 2)]
                with m.Else():
                    m.d.sync += [cols_left.eq(cols_left - 1), bx.eq(bx + desc.step_x),
                                 last_col.eq(cols_left == 2)]
            with m.Else():
                m.d.sync += [s.eq(s + 1), index_addr.eq(index_addr + 1),
                             steps_left.eq(steps_left - 1), last_step.eq(steps_left == 1)]

        new = self.start.payload
        # _invalid(desc), loaded with desc: one register per check, ORed where read (the
        # OR behind the checks' carry chains put 3 LUT levels more on the path from the
        # sequencer's shadow: issue 9, 11.5 ns at d31e33c, seed 1).
        checks = self._invalid(new)
        bad_checks = Signal(len(checks), reset_less=True)
        bad = Signal()
        m.d.comb += bad.eq(bad_checks.any())
        fresh = Signal()                    # a walk started last cycle
        m.d.comb += [
            self.start.ready.eq(~self.active & ~self.in_flight),
            self.started.eq(self.start.valid & self.start.ready),
            self.reject.eq(self.active & bad),
            self.rejected.eq(fresh & bad),
        ]
        m.d.sync += fresh.eq(self.started)
        with m.If(self.started):
            m.d.sync += self.active.eq(new.steps != 0)
        # While no walk is active the counters follow the offered descriptor; the
        # descriptor and its check also wait for the last walk's items to leave.
        with m.If(~self.active):
            m.d.sync += [last_s.eq(new.steps - 1), steps_left.eq(new.steps - 1), s.eq(0),
                         first_pixel.eq(1),
                         cols_left.eq(new.out_w), rows_left.eq(new.out_h),
                         bx.eq(new.bx0), by.eq(new.by0), index_addr.eq(new.index_start),
                         last_step.eq(new.steps == 1), last_col.eq(new.out_w == 1),
                         last_row.eq(new.out_h == 1)]
        with m.If(self.start.ready):
            m.d.sync += [desc.eq(new), bad_checks.eq(Cat(*checks))]
        return m

    def _invalid(self, new) -> list:
        """The checks of a descriptor the memories cannot serve, or that describes
        nothing: it is invalid if any holds."""
        fmt, G = self._format, self._config.rows_per_step
        return [(new.k_groups == 0) | (new.count > new.k_groups),
                new.ktable_base + new.k_groups > fmt.max_kgroups,
                (new.last_lanes == 0) | (new.last_lanes > G) | (new.steps < new.count),
                new.index_start + new.count > fmt.index_depth,
                new.slot_base + new.steps > fmt.index_depth,
                (new.out_h == 0) | (new.out_w == 0)]


class LaneExpander(wiring.Component):
    """Lane expansion over five pipeline stages: a K-group's G lanes, their pad tests and
    addresses.

    A lane g of the K-group lies ``w(g) = popcount(wraps[:g])`` kernel rows below the
    group's first K-row (k-table word ``p0``, ``kh0``, ``wraps``; `ktable_words`).  With
    the window origin (``bx`` in elements, ``by`` in input rows), ``P = row_size``,
    ``H = in_h`` and ``J = row_jump``:

    * y inside the map: ``0 <= by + kh0 + w(g) < H``;
    * x inside the row: ``0 <= bx + p0 + g < P`` for the lanes of the first kernel row
      (``w(g) = 0``), ``0 <= bx + q(g) < P`` for the others, ``q(g)`` = lanes since the
      last wrap (their position in their kernel row, below G);
    * address: ``a0 + g + w(g)*J`` with ``a0 = act_base + (by + kh0)*P + bx + p0``.

    Every range test compares a shared value plus a lane constant below G with a shared
    bound, so it is a *window*: two signed values (the value and the bound minus it)
    give the test for all G constants with no carry chain (`_window`).  The only wide
    arithmetic per lane is the address: ``w(g)*J`` (a multiple of ``J`` selected by
    ``w(g)`` from registers recomputed from the descriptor every cycle: no multiplier
    between the lane registers), ``+ g`` and ``+ a0``.  ``(by + kh0)*P`` is one
    multiplication (its operands both registers of this stage).  All products are taken
    modulo the buffer size.

    * P (inputs ``bx``, ``by``, ``kgroup``, ``filler`` valid): per-pixel values ``P - bx``,
      ``H - by``, the x window of ``bx`` (lanes past the first wrap), whether the group is
      the layer's last -> registers;
    * A (one advance later; ``entry`` valid): ``by + kh0``, ``H - by - kh0``, ``bx + p0``,
      ``P - bx - p0``; per lane ``w(g)``, whether it lies in the first kernel row, the x
      test of a lane past the first wrap; lane 1's ``g + w*J`` -> registers;
    * B: ``(by + kh0)*P``, ``act_base + bx + p0``, the other lanes' ``w(g)*J`` (a
      (g+1)-way choice of the multiples); the x and y windows -> registers;
    * C: ``a0``, lanes 2 .. G-1's ``+ g`` beside it, and each lane's pad test (its
      window bits, selected by ``w(g)``) -> registers;
    * D: the addresses ``a0 + step``, combinational from the C registers (the caller
      registers them): ``addrs`` and ``pad`` are those of the inputs of four advances
      before ``entry``'s.

    Parameters
    ----------
    config : MarsConfig
        Sets G and the field widths (`DecoderFormat`).

    Members
    -------
    desc : In(descriptor_layout(config))
        The walk's descriptor.
    advance : In(LANE_STAGES)
        The pipeline advances: every stage register takes its inputs.  All bits are
        equal; bit i enables stage i's registers (P, A, B, C), so that no one net
        enables all of them (the caller's copies of one flag).
    bx, by : In(signed(offset_bits))
        The window origin of the item one stage before its k-table word: column of its
        left edge (elements), row of its top edge (input rows).
    kgroup : In(unsigned(kgroup_bits))
        That item's K-group (to find the last one).
    filler : In(1)
        That item is a filler: every lane is padding.
    entry : In(ktable_layout(config))
        The K-group's k-table word, one advance after ``bx`` .. ``filler``.
    addrs : Out(data.ArrayLayout(unsigned(addr_bits), G))
        Each lane's activation-buffer address, where it is not padding (the caller
        zeroes a padded lane's: `SparseDecoder` resets its output register).
    pad : Out(unsigned(G))
        Each lane is padding (its activation is zero).
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = fmt = DecoderFormat(config)
        G = config.rows_per_step
        super().__init__({
            "desc": In(descriptor_layout(config)),
            "advance": In(LANE_STAGES),
            "bx": In(signed(fmt.offset_bits)),
            "by": In(signed(fmt.offset_bits)),
            "kgroup": In(unsigned(fmt.kgroup_bits)),
            "filler": In(1),
            "entry": In(ktable_layout(config)),
            "addrs": Out(data.ArrayLayout(unsigned(fmt.addr_bits), G)),
            "pad": Out(unsigned(G)),
        })

    def elaborate(self, platform):
        G, fmt, desc = self._config.rows_per_step, self._format, self.desc
        ab, ob = fmt.addr_bits, fmt.offset_bits
        m = Module()
        sync = m.d.sync
        # Every register here is reset-less (hw/regs.py): stage data that travels with an
        # item (the caller's stage registers carry its valid bit), or recomputed from the
        # descriptor every cycle.

        # Per walk (registers recomputed from the descriptor every cycle; a walk's first
        # item reaches stage A four cycles after its start): the multiples k*J modulo the
        # buffer size (k < G), which lanes exist in the last K-group, its index.
        mult_jump = [Signal(ab, name=f"jump_x{k}", reset_less=True) for k in range(G)]
        lanes_k = Signal(G, reset_less=True)
        last_kg = Signal.like(desc.k_groups, reset_less=True)
        for k in range(1, G):
            sync += mult_jump[k].eq(_times(desc.row_jump.as_unsigned()[:ab], k, ab))
        sync += [lanes_k.eq(Cat(*(desc.last_lanes > g for g in range(G)))),
                 last_kg.eq(desc.k_groups - 1)]

        # -- P: the window's per-pixel values ----------------------------------------------
        bx_p = Signal(signed(ob), reset_less=True)
        by_p = Signal(signed(ob), reset_less=True)
        cols_p = Signal(signed(ob), reset_less=True)  # P - bx
        rows_p = Signal(signed(ob), reset_less=True)  # H - by
        xwin_p = Signal(G, reset_less=True)           # 0 <= bx + q < P, q < G
        last_p = Signal(reset_less=True)
        filler_p = Signal(reset_less=True)
        adv_p, adv_a, adv_b, adv_c = self.advance
        cols = Signal(signed(ob))
        m.d.comb += cols.eq(desc.row_size - self.bx)
        with m.If(adv_p):
            sync += [bx_p.eq(self.bx), by_p.eq(self.by), cols_p.eq(cols),
                     rows_p.eq(desc.in_h - self.by),
                     xwin_p.eq(_window(self.bx, cols, G)),
                     last_p.eq(self.kgroup == last_kg), filler_p.eq(self.filler)]

        # -- A: the group's first K-row; per lane its kernel row and address step ----------
        e = self.entry
        row_a = Signal(signed(ob), reset_less=True)   # by + kh0
        rows_a = Signal(signed(ob), reset_less=True)  # H - by - kh0
        x_a = Signal(signed(ob), reset_less=True)     # bx + p0
        cols_a = Signal(signed(ob), reset_less=True)  # P - bx - p0
        wb = max(1, (G - 1).bit_length())
        w_a = [Signal(wb, name=f"w{g}", reset_less=True) for g in range(G)]
        step_a = [Signal(ab, name=f"step{g}", reset_less=True)  # g + w(g)*J
                  for g in range(G)]
        first_a = Signal(G, reset_less=True)          # lane g lies in the first kernel row
        xlate_a = Signal(G, reset_less=True)          # x test of a lane past the first wrap
        valid_a = Signal(G, reset_less=True)          # not a filler, not past K
        row_next = Signal.like(row_a, name="row_next")
        m.d.comb += row_next.eq(by_p + e.kh0)
        with m.If(adv_a):
            sync += [row_a.eq(row_next), rows_a.eq(rows_p - e.kh0),
                     x_a.eq(bx_p + e.p0), cols_a.eq(cols_p - e.p0),
                     valid_a.eq(Mux(filler_p, 0, Mux(last_p, lanes_k, (1 << G) - 1)))]
            for g in range(G):
                wraps = e.wraps[:g]
                w = _popcount(wraps, wb)
                # The x window bit of this lane's position q = g - (its last wrap):
                # the last wrap wins, lane 0 of a kernel row being q = 0.
                xlate = Const(0)
                for i in range(1, g + 1):
                    xlate = Mux(e.wraps[i - 1], xwin_p[g - i], xlate)
                sync += [w_a[g].eq(w), first_a[g].eq(~wraps.any() if g else 1),
                         xlate_a[g].eq(xlate)]
                if g == 1:
                    jump = Array(mult_jump[:g + 1])[w]
                    sync += step_a[g].eq(jump + g)

        # -- B: the row's buffer offset, the x and y windows, the pad test -----------------
        offset_b = Signal(ab)                         # (by + kh0)*P mod the buffer size
        base_b = Signal(ab, reset_less=True)
        step_b = [Signal(ab, name=f"step_b{g}", reset_less=True) for g in range(G)]
        # The windows are registered here and the pad test made in C: window, lane select
        # and AND in one stage were the top's critical path (14.1 ns, 9 ns of it routing).
        ywin_b = Signal(G, reset_less=True)         # bit w: input row by + kh0 + w inside
        xwin_b = Signal(G, reset_less=True)         # bit g: bx + p0 + g inside the row
        w_b = [Signal(wb, name=f"w_b{g}", reset_less=True) for g in range(G)]
        first_b = Signal(G, reset_less=True)
        xlate_b = Signal(G, reset_less=True)
        valid_b = Signal(G, reset_less=True)
        # The row offset on a DSP with its own registers (`registered_product` under
        # `advance`): its input registers are copies of A's ``row_a`` and of the row size,
        # its output register is B's offset.  Fabric registers around the multiplier put
        # a route to the DSP row and one back on the path (22 of the whole top's late
        # sinks at 05caebc, docs/synthesis.md).
        product = registered_product(m, row_next.as_unsigned()[:ab], desc.row_size[:ab],
                                     platform=platform, name="offset_b",
                                     enable=adv_b)
        m.d.comb += offset_b.eq(product[:ab])
        with m.If(adv_b):
            sync += base_b.eq(desc.act_base + x_a.as_unsigned()[:ab])
            # w*J of lanes 2 .. G-1: a (g+1)-way choice of the registered multiples k*J
            # by w(g), a register (no multiplier between registers: its 3.9 ns and the
            # routing to and from the DSP row were the unit's critical path; the + g is
            # added in C, beside a0).
            for g in range(1, G):
                if g == 1:
                    sync += step_b[g].eq(step_a[g])
                else:
                    sync += step_b[g].eq(Array(mult_jump[:g + 1])[w_a[g]])
            sync += [ywin_b.eq(_window(row_a, rows_a, G)), xwin_b.eq(_window(x_a, cols_a, G)),
                     first_b.eq(first_a), xlate_b.eq(xlate_a), valid_b.eq(valid_a)]
            sync += [w_b[g].eq(w_a[g]) for g in range(G)]

        # -- C: a0, each lane's step (+ g), the pad test -> registers ----------------------
        # a0 and the steps are registered, and D adds them: a0 = offset + base and
        # a0 + step were two carry chains in series behind the DSP's output register
        # (issue 9: 20 of the whole top's late sinks at d31e33c, seed 2).
        a0_c = Signal(ab, name="a0_c", reset_less=True)
        step_c = [Signal(ab, name=f"step_c{g}", reset_less=True) for g in range(G)]
        pad_c = Signal(G, reset_less=True)
        with m.If(adv_c):
            sync += a0_c.eq(offset_b + base_b)
            for g in range(G):
                xok = Mux(first_b[g], xwin_b[g], xlate_b[g])
                ok = valid_b[g] & xok & ywin_b.bit_select(w_b[g], 1)
                sync += [step_c[g].eq(step_b[g] + g if g >= 2 else step_b[g]),
                         pad_c[g].eq(~ok)]

        # -- D: addresses ------------------------------------------------------------------
        for g in range(G):
            m.d.comb += [self.addrs[g].eq(a0_c + step_c[g]), self.pad[g].eq(pad_c[g])]
        return m


def _window(value, room, G: int):
    """``G`` bits, bit g: ``0 <= value + g`` and ``g < room`` (so ``value + g < value +
    room``), for signed `value` and `room`, without a carry chain.

    With ``lg`` bits covering g < G, ``value + g >= 0`` holds when value >= 0, or when
    value lies in [-2**lg, -1] (its upper bits all ones) and its low bits reach
    ``2**lg - g``; ``g < room`` when room >= 2**lg, or room lies in [0, 2**lg) (upper bits
    all zero) and its low bits exceed g.
    """
    lg = max(1, (G - 1).bit_length())
    low_v, up_v = value.as_unsigned()[:lg], value.as_unsigned()[lg:]
    low_r, up_r = room.as_unsigned()[:lg], room.as_unsigned()[lg:]
    near_v = up_v.all()                     # value in [-2**lg, -1]
    big_r = ~room[-1] & up_r.any()          # room >= 2**lg
    small_r = ~up_r.any()                   # room in [0, 2**lg)
    bits = []
    for g in range(G):
        ge = ~value[-1] | (near_v & _at_least(low_v, (1 << lg) - g)) if g else ~value[-1]
        lt = big_r | (small_r & _at_least(low_r, g + 1))
        bits.append(ge & lt)
    return Cat(*bits)


def _at_least(bits, c: int):
    """``bits >= c`` for a constant c, as AND/OR logic from the top bit (no carry chain)."""
    if c <= 0:
        return Const(1)
    if c >= 1 << len(bits):
        return Const(0)
    top, rest = bits[-1], bits[:-1]
    half = 1 << (len(bits) - 1)
    if c >= half:
        return top & _at_least(rest, c - half)
    return top | _at_least(rest, c)


def _popcount(bits, width: int):
    """The number of set bits of `bits`, modulo ``2**width``: a table (that the LUT mapper
    reduces) up to 8 bits, sums of such tables beyond."""
    n = len(bits)
    if n == 0:
        return Const(0, width)
    if n > 8:
        half = n // 2
        return (_popcount(bits[:half], width) + _popcount(bits[half:], width))[:width]
    table = sum(min(bin(x).count("1"), (1 << width) - 1) << (width * x) for x in range(1 << n))
    return Const(table, width << n).word_select(bits, width)


def _times(value, k: int, width: int):
    """``k * value`` modulo ``2**width`` for a constant k, as a sum or difference of shifted
    copies (canonical signed digits: k = 3, 5, 7 take one adder each, no multiplier)."""
    terms, i = [], 0
    while k:
        if k & 1:
            digit = 2 - (k & 3)                     # 1 or -1
            terms.append((digit, value << i))
            k -= digit
        k >>= 1
        i += 1
    total = None
    for digit, term in terms:
        if total is None:
            total = term if digit > 0 else -term
        else:
            total = total + term if digit > 0 else total - term
    return total[:width]
