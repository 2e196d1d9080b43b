"""Sparse-weight decoder: walks one output block's index code and emits, one payload per
cycle, the row slot of the next stored group and the activation-buffer addresses of the G
inputs that go with it.

A walk is started with a *descriptor* (`descriptor_layout`, built in software by
`mars.contract.decoder.descriptor`).  For every output pixel (oy, then ox, row-major) and every
step s of the pixel (``s < count``: the s-th kept K-group of the block; ``count <= s <
steps``: a filler) the decoder emits a payload (`payload_layout`).  Pruned groups take no
cycle: the index memory lists only kept groups.

Pipeline (one payload per cycle, all stages advance together when the output register is
free, so ``valid`` never waits on ``ready``)::

    issue: walk counters, read index[index_start + s]
    S1:    kg = index word; range/order check; read ktable[ktable_base + kg]
    S2:    k-table word (p0, rel0) -> G lanes by an increment chain -> pad test, addresses
    out:   registered payload

The lane arithmetic needs no multiplier and no divider: software puts the per-layer
products into the descriptor (steps of the window origin, row pitch, kernel-row length)
and the k-table (position and offset of each K-group's first K-row); see
`mars.contract.decoder` and docs/decoder.md.

Errors (sticky, cleared when the next walk starts; ``error`` is a struct of flags):
``descriptor`` (rejected at start: nothing is emitted), ``index_range`` (an index word
``>= k_groups``) and ``index_order`` (an index word not above the previous one of the
same pixel).  An index error is caught before its payload is emitted; the walk stops
there, so the output carries the payloads before the bad entry and nothing after it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import (
    DecoderFormat,
    descriptor_layout,
    error_layout,
    index_write_layout,
    ktable_layout,
    ktable_write_layout,
    payload_layout,
)

__all__ = ["SparseDecoder"]


class SparseDecoder(wiring.Component):
    """The sparse-weight decoder of one word-line domain.

    Parameters
    ----------
    config : MarsConfig
        Sets G, the buffer address width and the memory depths (`DecoderFormat`).
    index_init, ktable_init : list of int, optional
        Initial memory contents (e.g. `MemoryImage.read(...).words`); zeros by default.

    Members
    -------
    start : In(stream.Signature(descriptor_layout(config)))
        Starts a walk; ``ready`` while no walk is in flight.
    out : Out(stream.Signature(payload_layout(config)))
        One payload per step of the walk.
    index_write, ktable_write : In(stream.Signature(...))
        Memory writes (``ready`` is always 1; addresses past the depth are ignored).  Do
        not write a memory while a walk reads it.
    busy : Out(1)
        A walk is running or payloads are still to be taken.
    error : Out(error_layout())
        Sticky error flags, cleared when a walk starts.
    """

    def __init__(self, config: MarsConfig, *, index_init: list[int] | None = None,
                 ktable_init: list[int] | None = None):
        self._config = config
        self._format = DecoderFormat(config)
        self._index_init = list(index_init or [])
        self._ktable_init = list(ktable_init or [])
        for name, init, depth in (("index_init", self._index_init, self._format.index_depth),
                                  ("ktable_init", self._ktable_init,
                                   self._format.max_kgroups)):
            if len(init) > depth:
                raise ValueError(f"{name} has {len(init)} words, the memory {depth}")
        super().__init__({
            "start": In(stream.Signature(descriptor_layout(config))),
            "out": Out(stream.Signature(payload_layout(config))),
            "index_write": In(stream.Signature(index_write_layout(config))),
            "ktable_write": In(stream.Signature(ktable_write_layout(config))),
            "busy": Out(1),
            "error": Out(error_layout()),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg, fmt = self._config, self._format
        G, ab, vb, ob = cfg.rows_per_step, fmt.addr_bits, fmt.value_bits, fmt.offset_bits
        m = Module()

        # -- memories (block RAM; see hw/macro.py for why ram_style is needed) ---------------
        index_mem = Memory(shape=unsigned(fmt.kgroup_bits), depth=fmt.index_depth,
                           init=self._index_init, attrs={"ram_style": "block"})
        ktable_mem = Memory(shape=ktable_layout(cfg), depth=fmt.max_kgroups,
                            init=[{"p0": w & ((1 << vb) - 1), "rel0": w >> vb}
                                  for w in self._ktable_init],
                            attrs={"ram_style": "block"})
        m.submodules.index_mem = index_mem
        m.submodules.ktable_mem = ktable_mem
        for mem, port, depth in ((index_mem, self.index_write, fmt.index_depth),
                                 (ktable_mem, self.ktable_write, fmt.max_kgroups)):
            write = mem.write_port()
            m.d.comb += [
                write.addr.eq(port.payload.addr),
                write.data.eq(port.payload.data),
                write.en.eq(port.valid & (port.payload.addr < depth)),
                port.ready.eq(1),
            ]
        index_read = index_mem.read_port(domain="sync")
        ktable_read = ktable_mem.read_port(domain="sync")

        # -- the walk: descriptor, counters, issue stage ------------------------------------
        desc = Signal(descriptor_layout(cfg))
        active = Signal()
        s = Signal(range(fmt.index_depth + 1))
        ox = Signal(vb)
        oy = Signal(vb)
        bx = Signal(signed(ob))
        by = Signal(signed(ob))

        out = self.out
        advance = Signal()
        m.d.comb += advance.eq(~out.valid | out.ready)
        issue = Signal()
        m.d.comb += issue.eq(active & advance)

        # Stage registers: the markers and the window origin travel with each item.
        item = data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "walk_first": 1, "walk_last": 1, "filler": 1,
            "slot": unsigned(fmt.slot_bits), "bx": signed(ob), "pix": signed(ob)})
        s0 = Signal(item)
        s1 = Signal(item)
        s2 = Signal(item)
        s2_kg = Signal(fmt.kgroup_bits)

        last_step = s == desc.steps - 1
        last_pixel = (ox == desc.out_w - 1) & (oy == desc.out_h - 1)
        m.d.comb += [
            s0.valid.eq(issue),
            s0.first.eq(s == 0),
            s0.last.eq(last_step),
            s0.walk_first.eq((s == 0) & (ox == 0) & (oy == 0)),
            s0.walk_last.eq(last_step & last_pixel),
            s0.filler.eq(s >= desc.count),
            s0.slot.eq(desc.slot_base + s),
            s0.bx.eq(bx),
            s0.pix.eq(by + bx),
            # Fillers read a harmless in-range word instead of one past the code.
            index_read.addr.eq(desc.index_start + Mux(s0.filler, 0, s)),
            index_read.en.eq(advance),
        ]

        # -- S1: the index word, its checks, the k-table read -------------------------------
        kg = index_read.data
        range_error = s1.valid & ~s1.filler & (kg >= desc.k_groups)
        prev_kg = Signal(fmt.kgroup_bits)
        order_error = s1.valid & ~s1.filler & ~s1.first & (kg <= prev_kg)
        kill = Signal()
        m.d.comb += [
            kill.eq(range_error | order_error),
            ktable_read.addr.eq(desc.ktable_base + Mux(s1.filler | kill, 0, kg)),
            ktable_read.en.eq(advance),
        ]

        # -- S2: lane expansion, pad test, addresses ----------------------------------------
        entry = ktable_read.data
        p_lanes, a_lanes = [], []
        for g in range(G):
            p = Signal(vb, name=f"p{g}")
            a = Signal(signed(ob), name=f"a{g}")
            if g == 0:
                m.d.comb += [p.eq(entry.p0), a.eq(entry.rel0)]
            else:
                # Next K-row: one column further, or the start of the next kernel row.
                step = p_lanes[-1] + 1
                wrap = step == desc.row_len
                m.d.comb += [
                    p.eq(Mux(wrap, 0, step)),
                    a.eq(a_lanes[-1] + 1 + Mux(wrap, desc.row_jump, 0)),
                ]
            p_lanes.append(p)
            a_lanes.append(a)

        last_kgroup = s2_kg == desc.k_groups - 1
        lanes_ok = []
        addrs = []
        for g in range(G):
            xo = Signal(signed(ob), name=f"xo{g}")
            off = Signal(signed(ob), name=f"off{g}")
            ok = Signal(name=f"ok{g}")
            m.d.comb += [
                xo.eq(s2.bx + p_lanes[g]),
                off.eq(s2.pix + a_lanes[g]),
                # x inside the row, then (x being inside) the offset inside the map is
                # exactly y inside the map; lanes past K are padding too.
                ok.eq(~s2.filler & (xo >= 0) & (xo < desc.row_size) & (off >= 0)
                      & (off < desc.map_size) & (~last_kgroup | (g < desc.last_lanes))),
            ]
            lanes_ok.append(ok)
            addrs.append(Mux(ok, (desc.act_base + off)[:ab], 0))

        # -- output register and stage advance ----------------------------------------------
        with m.If(advance):
            m.d.sync += [
                s1.eq(s0),
                s2.eq(s1),
                s2.valid.eq(s1.valid & ~kill),
                s2_kg.eq(Mux(s1.filler, 0, kg)),
                out.valid.eq(s2.valid),
                out.payload.slot.eq(s2.slot),
                out.payload.kgroup.eq(s2_kg),
            ]
            for name in ("first", "last", "walk_first", "walk_last", "filler"):
                m.d.sync += getattr(out.payload, name).eq(getattr(s2, name))
            for g in range(G):
                m.d.sync += [out.payload.addrs[g].eq(addrs[g]),
                             out.payload.pad[g].eq(~lanes_ok[g])]
            with m.If(s1.valid & ~s1.filler):
                m.d.sync += prev_kg.eq(kg)
            with m.If(kill):
                # The bad item and the one issued behind it are dropped; the walk ends.
                m.d.sync += [s1.valid.eq(0), active.eq(0)]
                m.d.sync += [self.error.index_range.eq(self.error.index_range | range_error),
                             self.error.index_order.eq(self.error.index_order | order_error)]

        with m.If(issue & ~kill):
            with m.If(last_step):
                m.d.sync += s.eq(0)
                with m.If(ox == desc.out_w - 1):
                    m.d.sync += [ox.eq(0), bx.eq(desc.bx0)]
                    with m.If(oy == desc.out_h - 1):
                        m.d.sync += active.eq(0)
                    with m.Else():
                        m.d.sync += [oy.eq(oy + 1), by.eq(by + desc.step_y)]
                with m.Else():
                    m.d.sync += [ox.eq(ox + 1), bx.eq(bx + desc.step_x)]
            with m.Else():
                m.d.sync += s.eq(s + 1)

        # -- starting a walk ----------------------------------------------------------------
        new = self.start.payload
        bad = Signal()
        m.d.comb += [
            bad.eq((new.k_groups == 0) | (new.count > new.k_groups)
                   | (new.ktable_base + new.k_groups > fmt.max_kgroups)
                   | (new.last_lanes == 0) | (new.last_lanes > G)
                   | (new.steps < new.count)
                   | (new.index_start + new.count > fmt.index_depth)
                   | (new.slot_base + new.steps > fmt.index_depth)
                   | (new.out_h == 0) | (new.out_w == 0)),
            self.start.ready.eq(~active & ~s1.valid & ~s2.valid),
            self.busy.eq(active | s1.valid | s2.valid | out.valid),
        ]
        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [
                desc.eq(new),
                self.error.eq(0),
                self.error.descriptor.eq(bad),
                active.eq(~bad & (new.steps != 0)),
                s.eq(0), ox.eq(0), oy.eq(0), bx.eq(new.bx0), by.eq(new.by0),
            ]
        return m
