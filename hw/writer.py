"""A macro unit's writer: requantisation, ReLU, fused max pooling, output words.

The writer drains a finished pixel (`pixel_layout`) one *lane group* a cycle: ``L =
write_lanes`` consecutive element addresses aligned to L (`mars.contract.banking`).  The
pixel's channels start at element ``s = out_base + pix_addr`` (its pooled position); with
``phase = s % L`` the pixel takes ``ceil((phase + n_valid) / L)`` groups, lane l of group
i holding channel ``i*L + l - phase`` (lanes outside ``[0, n_valid)`` write nothing).  An
aligned layout (``out_base`` and the pitches multiples of L) has phase 0 and
``ceil(n_valid / L)`` groups, as before banking.

Two pipeline stages:

* W1 multiplies each lane's accumulator by its channel's multiplier M;
* W2 rounds, shifts and clamps (docs/architecture.md, "Arithmetic of the writer";
  docs/model-package.md)::

      q = clamp((acc * M + ((1 << S) >> 1)) >> S, 0, 2**Ab - 1)

  (the clamp at 0 is the ReLU) and places the lanes in the word being assembled (G
  activations, ``G / L`` groups).  A group that ends a word, or the pixel's last group,
  offers the word (`act_entry`: word address, fields, field mask, max flag) to the top's
  write stage, which merges it into the stored word (taking the maximum with it when the
  pixel is not the first of its pooling window) and writes it.

The top's write stage takes one unit's word a cycle, unit ``t mod U`` in cycle t
(`mars.hw.top`): a group that offers a word issues only in the cycle before this unit's
slot (``slot_next``), so offered words never collide; other groups issue at once.  With
``acc_out`` set every group goes to the result memory instead (`res_entry`: result word
``e // L`` with a lane mask; raw accumulators, unpooled, not requantised: the network's
last layer) and waits for the slot the same way.

**Residual adds** (``residual_adds`` configurations, a walk with ``add`` set;
docs/architecture.md, "Residual adds").  Every lane group then waits for the unit's slot
like a result group, and in its issue cycle the writer reads the shortcut's lane group
through the top's shortcut read port (`sc_read`, one port per memory, taken by the slot's
unit): element ``sc_base + pixel * sc_pitch + channel`` of activation region ``sc_bank``,
or of the result memory (raw accumulators of a conv shortcut) with ``sc_res``.  The data
arrives in W2, where each lane computes::

    q = clamp(rescale(acc, M, S) + rescale(sc, M_sc, S_sc), 0, 2**Ab - 1)
    rescale(v, M, S) = (v * M + ((1 << S) >> 1)) >> S        (no clamp)

The mapper keeps the shortcut's lane groups aligned with the output's (same element
offset modulo L), so one read serves a group.

**Partial sums** (K-splitting, a walk with ``psum`` set): a block set whose kept groups
exceed the macro's row slots is computed in several walks over parts of its groups; each
but the last writes raw accumulators to the result memory (``acc_out``), and every walk
but the first reads the stored partial sum of its element (the same element as the
shortcut's, from the result memory) and adds it to the accumulator: raw out, or before
the requantisation (``((acc + psum) * M + 2^(S-1)) >> S``, the product taken in W2).

A walk's pixels come row-major over ``out_w`` columns of the pre-pooling map; pixel
(x, y) belongs to the pooled output (x // k, y // k) for a pool window k
(``pool_k``, 1 = no pooling); pooled positions outside ``pool_w`` x ``pool_h`` are not
written (floor pooling).  Channel ch of pooled position (px, py) is element
``out_base + py * out_row_pitch + px * out_pitch + ch`` of half ``out_bank``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring, stream
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.program import UnitFormat, instruction_layout, param_layout

from .accumulator import pixel_layout

__all__ = ["UnitWriter", "act_entry_layout", "res_entry_layout", "sc_read_layout",
           "act_write_stage", "result_write"]


def act_entry_layout(config: MarsConfig) -> data.StructLayout:
    """A word the writer offers the activation write stage: ``addr`` (word address, half
    on top), ``data`` (G fields of act_bits), ``mask`` (fields to write), ``max`` (take
    the maximum with the stored fields: a later pixel of a pooling window)."""
    bank = Banking(config)
    return data.StructLayout({"valid": 1, "addr": unsigned(bank.word_addr_bits),
                              "data": unsigned(bank.word_bits),
                              "mask": unsigned(bank.group), "max": 1})


def res_entry_layout(config: MarsConfig) -> data.StructLayout:
    """A result word the writer offers: ``addr`` (result word), L raw accumulators, mask."""
    bank = Banking(config)
    return data.StructLayout({"valid": 1, "addr": unsigned(bank.result_addr_bits),
                              "data": data.ArrayLayout(signed(config.acc_bits), bank.lanes),
                              "mask": unsigned(bank.lanes)})


def sc_read_layout(config: MarsConfig) -> data.StructLayout:
    """The reads the writer issues for a lane group (residual adds, partial sums):
    ``act_en`` with ``act_addr`` (activation word address, region on top) and ``res_en``
    with ``res_addr`` (result word).  The data comes back the next cycle."""
    bank = Banking(config)
    return data.StructLayout({"act_en": 1, "res_en": 1,
                              "act_addr": unsigned(bank.word_addr_bits),
                              "res_addr": unsigned(bank.result_addr_bits)})


def act_write_stage(m, act, entry, *, host_addr=0, host_data=0, host_write=0, copies=()):
    """The activation memory's write stage: one write port and one read port of `act`.

    Four cycles, each ending in registers, so that no path runs from the read port's
    output (a block RAM's clock-to-out) through logic, nor from the merge to the write
    ports of every copy spread over the die:

    * S0: the offered word (``entry``, `act_entry_layout`) addresses the read port;
    * S1: the stored word is registered as it leaves the read port;
    * S2: the merge: offered fields replace stored ones, or keep the larger for a later
      pixel of a pooling window (``max``); fields outside ``mask`` keep their stored
      value.  The merge is registered;
    * S3: the registered merge is written into `act` and every memory in `copies` (the
      read copies of `act`).

    The read port is transparent for the write port, so a word written in S0's cycle is
    read new; an offer of a word whose merge is one or two cycles from being written
    (back-to-back pooled pixels of one word) merges with that merge instead of its stale
    read (registered address matches).  While nothing is offered the host's address
    reads (answer one cycle later: the returned data) and, with ``host_write``, writes
    in the same cycle through the same ports (the host writes only while the accelerator
    is idle, when no merge is in flight).
    """
    cfg_bits = len(entry.data) // len(entry.mask)
    write = act.write_port()
    stored = act.read_port(transparent_for=(write,))
    m.d.comb += stored.addr.eq(Mux(entry.valid, entry.addr, host_addr))
    s1 = Signal.like(entry, name="act_s1")
    s2 = Signal.like(entry, name="act_s2")
    old_r = Signal.like(entry.data, name="act_old_r")     # the stored word, registered
    wb_valid = Signal(name="act_wb_valid")                 # S3: the merge being written
    wb_addr = Signal.like(entry.addr, name="act_wb_addr")
    wb_data = Signal.like(entry.data, name="act_wb_data")
    wb2_data = Signal.like(entry.data, name="act_wb2_data")   # the merge written before
    near, far = Signal(name="act_bypass1"), Signal(name="act_bypass2")
    m.d.sync += [s1.eq(entry), s2.eq(s1), old_r.eq(stored.data), wb2_data.eq(wb_data),
                 # the word S1 holds is the one S2 merges (written next) or S3 writes now
                 near.eq(s1.valid & s2.valid & (s1.addr == s2.addr)),
                 far.eq(s1.valid & wb_valid & (s1.addr == wb_addr))]
    old_word = Signal.like(entry.data, name="act_old")
    m.d.comb += old_word.eq(Mux(near, wb_data, Mux(far, wb2_data, old_r)))
    merged = Signal(len(entry.data), name="act_merged")
    for g in range(len(entry.mask)):
        old = old_word.word_select(g, cfg_bits)
        new = s2.data.word_select(g, cfg_bits)
        keep = ~s2.mask[g] | (s2.max & (old > new))
        m.d.comb += merged.word_select(g, cfg_bits).eq(Mux(keep, old, new))
    m.d.sync += [wb_valid.eq(s2.valid), wb_addr.eq(s2.addr), wb_data.eq(merged)]
    for port in (write, *(copy.write_port() for copy in copies)):
        m.d.comb += [port.en.eq(wb_valid | host_write),
                     port.addr.eq(Mux(wb_valid, wb_addr, host_addr)),
                     port.data.eq(Mux(wb_valid, wb_data, host_data))]
    return stored.data


def result_write(m, result, entry) -> None:
    """The result memory's write port: the offered result word (`res_entry_layout`), a
    write enable per field (``mask``), in the cycle it is offered."""
    acc_bits = len(entry.data.as_value()) // len(entry.mask)
    write = result.write_port(granularity=acc_bits)
    m.d.comb += [write.addr.eq(entry.addr), write.data.eq(entry.data.as_value()),
                 write.en.eq(Mux(entry.valid, entry.mask, 0))]


class UnitWriter(wiring.Component):
    """The writer of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the channel count, ``act_bits``, ``acc_bits``, ``requant_mult_bits``, G and
        the lane count ``write_lanes`` (`UnitFormat`).

    Members
    -------
    pixel : In(stream.Signature(pixel_layout(config)))
        Finished pixels; ``ready`` is raised the cycle the pixel's last group issues.
    insn : In(instruction_layout(config))
        The walk's instruction: ``n_valid`` (channels written), ``pool_k``, ``pool_w``,
        ``pool_h``, ``out_base``, ``out_pitch``, ``out_row_pitch``, ``out_bank``,
        ``acc_out`` and ``desc.out_w``; held for the walk.
    params : In(param_layout(config))
        The walk's multiplier and shift of every channel.
    restart : In(1)
        Move the output position to the walk's origin (a walk is being started).
    slot_next : In(1)
        The top's write stage takes this unit's word next cycle.
    walk_done : Out(1)
        The walk's last word is offered this cycle.
    act_entry : Out(act_entry_layout(config))
        The word offered this cycle (only in this unit's slot).
    res_entry : Out(res_entry_layout(config))
        The result word offered this cycle (only in this unit's slot).
    sc_read : Out(sc_read_layout(config))
        ``residual_adds`` only: the shortcut read of the lane group issuing (only in the
        cycle before this unit's slot).
    sc_act_data : In(unsigned(word_bits)), sc_res_data : In(L x acc_bits)
        ``residual_adds`` only: the shortcut read's data, the cycle after `sc_read`.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = UnitFormat(config)
        self._banking = Banking(config)
        super().__init__({
            "pixel": In(stream.Signature(pixel_layout(config))),
            "insn": In(instruction_layout(config)),
            "params": In(param_layout(config)),
            "restart": In(1),
            "slot_next": In(1),
            "walk_done": Out(1),
            "act_entry": Out(act_entry_layout(config)),
            "res_entry": Out(res_entry_layout(config)),
            **({"sc_read": Out(sc_read_layout(config)),
                "sc_act_data": In(unsigned(self._banking.word_bits)),
                "sc_res_data": In(unsigned(self._banking.lanes * config.acc_bits))}
               if config.residual_adds else {}),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def _product_shape(self):
        cfg = self._config
        return signed(cfg.acc_bits + cfg.requant_mult_bits + 2)

    def _w2_layout(self) -> data.StructLayout:
        """The W2 stage register: per lane the write, M*acc, acc and S; per group its
        element-group address (element / L), whether it ends a word, and the markers."""
        cfg, fmt = self._config, self._format
        lane = data.StructLayout({
            "write": 1, "product": self._product_shape(), "acc": signed(cfg.acc_bits),
            "shift": unsigned(fmt.shift_bits),
            **({"sc_mult": unsigned(cfg.requant_mult_bits),
                "sc_shift": unsigned(fmt.shift_bits),
                "mult": unsigned(cfg.requant_mult_bits)} if cfg.residual_adds else {})})
        sub = max(1, (self._banking.group // fmt.write_lanes - 1).bit_length())
        return data.StructLayout({"valid": 1, "max": 1, "walk_last": 1, "ends_word": 1,
                                  "group": unsigned(fmt.value_bits + 1),
                                  "sc_sub": unsigned(sub),   # shortcut group in its word
                                  "lanes": data.ArrayLayout(lane, fmt.write_lanes)})

    def elaborate(self, platform):
        cfg, fmt, insn, bank = self._config, self._format, self.insn, self._banking
        N, L, lb = cfg.channels_per_macro, fmt.write_lanes, bank.lane_bits
        per_word = bank.group // L                 # lane groups per activation word
        m = Module()
        full = self.pixel.valid
        n_grp = Signal(range(N + 2))               # lane group of the pixel issuing now
        advance = Signal()                         # the pixel's last group issues
        pos = self._position(m, advance)
        base = Signal(fmt.value_bits + 1)          # element of the pixel's channel 0
        phase = Signal(max(1, lb))
        group = Signal(fmt.value_bits + 1)         # element group (element / L) issuing
        last_group = Signal()
        ends_word = Signal()
        can, issue = Signal(), Signal()
        m.d.comb += [
            base.eq(insn.out_base + pos["pix_addr"]),
            phase.eq(base[:lb] if lb else 0),
            group.eq((base >> lb) + n_grp),
            last_group.eq((n_grp << lb) + L >= insn.n_valid + phase),
            ends_word.eq(last_group | (group[:per_word.bit_length() - 1].all()
                                       if per_word > 1 else 1)),
            can.eq(Mux(insn.acc_out | ends_word | self._adding(), self.slot_next, 1)),
            issue.eq(full & can),
            self.pixel.ready.eq(issue & last_group),
            advance.eq(issue & last_group),
        ]
        w2 = Signal(self._w2_layout())
        m.d.sync += [
            w2.valid.eq(issue),
            w2.max.eq(~pos["first_in_window"] & (insn.pool_k != 1)),
            w2.walk_last.eq(issue & last_group & self.pixel.payload.walk_last),
            w2.ends_word.eq(ends_word),
            w2.group.eq(group),
        ]
        for lane in range(L):
            self._lane(m, lane, n_grp, phase, pos, w2)
        if cfg.residual_adds:
            self._shortcut_read(m, issue, advance, n_grp, w2)
        with m.If(issue):
            m.d.sync += n_grp.eq(Mux(last_group, 0, n_grp + 1))
        m.d.comb += self.walk_done.eq(w2.valid & w2.walk_last)
        self._words(m, w2)
        with m.If(self.restart):
            m.d.sync += n_grp.eq(0)
        return m

    def _adding(self):
        """The walk reads a shortcut or a partial sum: every lane group waits for the slot
        (always 0 without ``residual_adds``)."""
        if not self._config.residual_adds:
            return Const(0, 1)
        return self.insn.add | self.insn.psum

    def _shortcut_read(self, m, issue, advance, n_grp, w2) -> None:
        """The shortcut read of the issuing lane group: element group
        ``(sc_base + sc_pix) / L + n_grp``, where ``sc_pix`` (the pixel's offset in the
        shortcut map) steps by ``sc_pitch`` with every pixel, row-major, like the macro's
        pixels (pooling does not change it: the shortcut has the unpooled shape)."""
        insn, bank = self.insn, self._banking
        lb, per_word = bank.lane_bits, bank.group // bank.lanes
        width = len(insn.sc_base) + 1
        sc_pix = Signal(width)
        sc_group = Signal(width)
        m.d.comb += sc_group.eq(((insn.sc_base + sc_pix) >> lb) + n_grp)
        with m.If(advance):
            m.d.sync += sc_pix.eq(sc_pix + insn.sc_pitch)
        with m.If(self.restart):
            m.d.sync += sc_pix.eq(0)
        word = sc_group >> (bank.group_bits - lb)
        r = self.sc_read
        m.d.comb += [r.act_en.eq(issue & insn.add & ~insn.sc_res),
                     r.res_en.eq(issue & ((insn.add & insn.sc_res) | insn.psum)),
                     r.act_addr.eq(Cat(word[:bank.half_addr_bits], insn.sc_bank)),
                     r.res_addr.eq(sc_group)]
        if per_word > 1:
            m.d.sync += w2.sc_sub.eq(sc_group[:(per_word - 1).bit_length()])

    def _lane(self, m, lane: int, n_grp, phase, pos: dict, w2) -> None:
        """W1 of one write lane: channel ``n_grp*L + lane - phase`` of the pixel."""
        cfg, fmt, insn = self._config, self._format, self.insn
        N, L = cfg.channels_per_macro, fmt.write_lanes
        hold, par = self.pixel.payload.accs, self.params
        ch = Signal(signed((N + 2 * L).bit_length() + 1), name=f"ch{lane}")
        index = Signal(range(N), name=f"index{lane}")
        m.d.comb += [ch.eq((n_grp << self._banking.lane_bits) + lane - phase),
                     index.eq(ch.as_unsigned())]
        w2l = w2.lanes[lane]
        m.d.sync += [
            w2l.write.eq(pos["in_bounds"] & (ch >= 0) & (ch < insn.n_valid)),
            w2l.product.eq(hold[index] * par[index].mult),
            w2l.acc.eq(hold[index]),
            w2l.shift.eq(par[index].shift),
        ]
        if cfg.residual_adds:
            m.d.sync += [w2l.sc_mult.eq(par[index].sc_mult),
                         w2l.sc_shift.eq(par[index].sc_shift),
                         w2l.mult.eq(par[index].mult)]

    def _words(self, m, w2) -> None:
        """W2: requantise the lanes, assemble activation words, offer words and results."""
        cfg, insn, bank = self._config, self.insn, self._banking
        G, L, Ab = bank.group, bank.lanes, cfg.act_bits
        per_word = G // L
        asm = Signal(unsigned(bank.word_bits))    # fields of the word being assembled
        asm_mask = Signal(G)
        lanes_q = Cat(*(self._requantise(m, lane, w2.lanes[lane], w2) for lane in range(L)))
        lanes_w = Cat(*(w2.lanes[lane].write for lane in range(L)))
        merged = Signal.like(asm)
        merged_mask = Signal.like(asm_mask)
        at = Signal(range(per_word)) if per_word > 1 else Const(0, 1)
        if per_word > 1:
            m.d.comb += at.eq(w2.group[:per_word.bit_length() - 1])
        m.d.comb += [merged.eq(asm), merged_mask.eq(asm_mask)]
        for k in range(per_word):
            with m.If(at == k):
                m.d.comb += [merged.word_select(k, L * Ab).eq(lanes_q),
                             merged_mask.word_select(k, L).eq(lanes_w)]
        offer = w2.valid & ~insn.acc_out
        with m.If(offer):
            m.d.sync += [asm.eq(merged), asm_mask.eq(Mux(w2.ends_word, 0, merged_mask))]
        with m.If(self.restart):
            m.d.sync += asm_mask.eq(0)
        word = w2.group >> (bank.group_bits - bank.lane_bits)
        e = self.act_entry
        m.d.comb += [e.valid.eq(offer & w2.ends_word),
                     e.addr.eq(Cat(word[:bank.half_addr_bits], insn.out_bank)),
                     e.data.eq(merged), e.mask.eq(merged_mask), e.max.eq(w2.max)]
        r = self.res_entry
        m.d.comb += [r.valid.eq(w2.valid & insn.acc_out), r.addr.eq(w2.group),
                     r.mask.eq(lanes_w)]
        for lane in range(L):
            if cfg.residual_adds:       # a partial sum from an earlier round joins in
                m.d.comb += r.data[lane].eq(w2.lanes[lane].acc + self._psum_lane(lane))
            else:
                m.d.comb += r.data[lane].eq(w2.lanes[lane].acc)

    def _requantise(self, m, lane: int, w2l, w2) -> Signal:
        """clamp((acc*M + ((1 << S) >> 1)) >> S, 0, 2**Ab - 1) from W2's product and S;
        with a residual add, the shortcut's rescaled value is added before the clamp."""
        shape = self._product_shape()
        act_max = self._config.act_max
        half = Signal(shape, name=f"half{lane}")
        body = Signal(shape, name=f"body{lane}")
        rounded = Signal(signed(shape.width + 1), name=f"rounded{lane}")
        requantised = Signal(unsigned(self._config.act_bits), name=f"requantised{lane}")
        # The rounding constant 2^(S-1) is (1 << S) >> 1, which is 0 for S = 0.
        m.d.comb += half.eq((Const(1, shape.width) << w2l.shift) >> 1)
        if self._config.residual_adds:
            # K-splitting: the stored partial sum joins the accumulator before the
            # requantisation, so the product is taken here (W2), after the read.
            total = Signal(signed(self._config.acc_bits), name=f"total{lane}")
            late = Signal(shape, name=f"late{lane}")
            m.d.comb += [total.eq(w2l.acc + self._psum_lane(lane)),
                         late.eq(total * w2l.mult)]
            m.d.comb += body.eq((Mux(self.insn.psum, late, w2l.product) + half)
                                >> w2l.shift)
        else:
            m.d.comb += body.eq((w2l.product + half) >> w2l.shift)
        if self._config.residual_adds:
            m.d.comb += rounded.eq(body + Mux(self.insn.add,
                                              self._shortcut_lane(m, lane, w2l, w2), 0))
        else:
            m.d.comb += rounded.eq(body)
        with m.If(rounded < 0):
            m.d.comb += requantised.eq(0)
        with m.Elif(rounded > act_max):
            m.d.comb += requantised.eq(act_max)
        with m.Else():
            m.d.comb += requantised.eq(rounded)
        return requantised

    def _psum_lane(self, lane: int):
        """The stored partial sum of this lane (K-splitting; 0 when the walk has none)."""
        acc = self._config.acc_bits
        return Mux(self.insn.psum, self.sc_res_data.word_select(lane, acc).as_signed(), 0)

    def _shortcut_lane(self, m, lane: int, w2l, w2) -> Signal:
        """rescale(sc, M_sc, S_sc) of this lane's shortcut value (W2, unclamped): field
        ``sc_sub * L + lane`` of the activation word, or lane `lane` of the result word."""
        cfg, bank = self._config, self._banking
        L, Ab, acc = bank.lanes, cfg.act_bits, cfg.acc_bits
        act_field = Signal(unsigned(Ab), name=f"sc_act{lane}")
        fields = [self.sc_act_data.word_select(k * L + lane, Ab) for k in range(bank.group // L)]
        m.d.comb += act_field.eq(fields[0])
        for k in range(1, len(fields)):
            with m.If(w2.sc_sub == k):
                m.d.comb += act_field.eq(fields[k])
        value = Signal(signed(acc + 1), name=f"sc_value{lane}")
        m.d.comb += value.eq(Mux(self.insn.sc_res,
                                 self.sc_res_data.word_select(lane, acc).as_signed(),
                                 act_field))
        shape = signed(acc + cfg.requant_mult_bits + 2)
        product = Signal(shape, name=f"sc_product{lane}")
        half = Signal(shape, name=f"sc_half{lane}")
        out = Signal(shape, name=f"sc_rescaled{lane}")
        m.d.comb += [product.eq(value * w2l.sc_mult),
                     half.eq((Const(1, shape.width) << w2l.sc_shift) >> 1),
                     out.eq((product + half) >> w2l.sc_shift)]
        return out

    def _position(self, m, last_channel) -> dict:
        """The pixel's output position, advanced as its last group issues.

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
