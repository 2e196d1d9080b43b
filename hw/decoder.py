"""Sparse-weight decoder: walks one output block's index code and emits, one payload per
cycle, the row slot of the next stored group and the activation-buffer addresses of the G
inputs that go with it.

A walk is started with a *descriptor* (`descriptor_layout`, built in software by
`mars.contract.decoder.descriptor`).  For every output pixel (oy, then ox, row-major) and every
step s of the pixel (``s < count``: the s-th kept K-group of the block; ``count <= s <
steps``: a filler) the decoder emits a payload (`payload_layout`).  Pruned groups take no
cycle: the index memory lists only kept groups.

Pipeline (one payload per cycle, all stages advance together when the output register is
free, so ``valid`` never waits on ``ready``; every block-RAM output is registered before
any logic uses it)::

    issue: walk counters, read index[index_start + s]
    S1:    index read in flight
    S2:    kg = index word (registered); range/order check; read ktable[ktable_base + kg]
    S3:    k-table read in flight; a bad index word (registered check) stops the walk;
           the window's per-pixel values (lane stage P)
    S4:    k-table word (p0, kh0, wraps) registered -> the group's first K-row, each
           lane's kernel row w(g) (lane stage A)
    S5:    -> row offset and w(g)*J (multipliers), the window tests (lane stage B)
    S6:    -> the row's first address a0, each lane's step, the pad test (lane stage C)
    S7:    -> addresses a0 + step (lane stage D)
    out:   registered payload

The lane arithmetic needs no divider and few carry chains: software puts the per-layer
values into the descriptor (steps of the window origin, row pitch, input height, the
row jump) and the k-table (kernel row and position of each K-group's first K-row, the
lanes that start a kernel row); see `mars.contract.decoder`, `LaneExpander` and
docs/decoder.md.

Errors (sticky, cleared when the next walk starts; ``error`` is a struct of flags):
``descriptor`` (checked in a register loaded at the start, set the cycle after it: the
walk's first step is dropped as it is issued, so nothing is emitted), ``index_range``
(an index word ``>= k_groups``) and ``index_order`` (an index word not above the
previous one of the same pixel).  An index error is caught before its payload is
emitted; the walk stops there, so the output carries the payloads before the bad entry
and nothing after it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
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
from mars.contract.netlist import REPLICA

from .bram import block_ram
from .decoder_stages import LANE_STAGES, LaneExpander, WalkIssue, item_layout
from .regs import valid_register

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
        m = Module()
        index_read, ktable_read = self._memories(m)
        m.submodules.issue = walk = WalkIssue(cfg)
        m.submodules.lanes = lanes = LaneExpander(cfg)
        desc, out = walk.desc, self.out
        # Stage registers: the markers and the window origin travel with each item
        # (s1: index read; s2: index word registered, checks; s3: k-table read; s4: k-table
        # word registered, lanes L1a; s5: lanes L1b; s6: a0, steps, pad test; s7:
        # addresses).
        # Reset-less (hw/regs.py): only the stages' valid bits, the checks' results, the
        # output's valid and the error flags keep the reset; the rest is data that travels
        # with a valid item, and `prev_kg` is read only after a kept group of the same
        # pixel (its first step, never a filler, sets it).
        stages = [valid_register(m, item_layout(cfg), name=f"s{i}") for i in range(1, 8)]
        s1, s2, s3, s4, s5, s6, s7 = (reg for reg, _, _ in stages)
        # The stages advance when the output register is free: ``~out.valid | out.ready``.
        # That enables about a thousand flip-flops spread over the decoder, so it is
        # computed four times, each from its own copy of `out.valid` (names ending in
        # REPLICA: kept apart), for the walk counters and index read (`walk_adv`), the
        # lane expander (`lane_adv`), the stage registers (`advance`) and the output
        # register (`out_adv`, with the padded lanes' clears): no one net spans the
        # decoder (issue 9: in the whole top the one `advance` and the walk counters'
        # enable behind it took 10 ns of routing; with the output register on the stages'
        # copy, a hop of 15 tiles, 5.5 ns, into a padded lane's clear).  The copies load
        # what `out.valid` loads, under their own (equal) advance, so they equal it.
        # The lane expander's ~440 enables take a copy per stage of its own (`LaneExpander`,
        # `LANE_STAGES`): with one, its LUT's net was 9.9 ns late on the whole top at
        # d6346c9, seed 1 (issue 9).
        walk_adv, advance, out_adv = (Signal(name=f"{name}_adv")
                                      for name in ("walk", "stage", "out"))
        lane_adv = Signal(LANE_STAGES, name="lane_adv")
        for name, adv in (("walk", walk_adv), ("stage", advance), ("out", out_adv),
                          *((f"lane{i}", lane_adv[i]) for i in range(LANE_STAGES))):
            valid = Signal(name=f"out_valid_{name}{REPLICA}")
            m.d.comb += adv.eq(~valid | out.ready)
            with m.If(adv):
                m.d.sync += valid.eq(s7.valid)
        s2_kg = Signal(fmt.kgroup_bits, reset_less=True)    # the index word, registered
        s3_kg = Signal(fmt.kgroup_bits, reset_less=True)
        s4_kg = Signal(fmt.kgroup_bits, reset_less=True)
        s4_entry = Signal(ktable_layout(cfg), reset_less=True)  # the k-table word
        payload = Signal(payload_layout(cfg), reset_less=True)  # drives `out.payload`
        m.d.comb += out.payload.eq(payload)

        # -- S2: the index word's checks, the k-table read ----------------------------------
        kg = s2_kg
        range_error = s2.valid & ~s2.filler & (kg >= desc.k_groups)
        prev_kg = Signal(fmt.kgroup_bits, reset_less=True)
        order_error = s2.valid & ~s2.filler & ~s2.first & (kg <= prev_kg)
        # The checks' results are registered with the item (S3), and the walk is stopped
        # from there: no comparator drives the walk counters' enables.
        s3_range = Signal()
        s3_order = Signal()
        index_kill = Signal()
        kill = Signal()
        wiring.connect(m, wiring.flipped(self.start), walk.start)
        m.d.comb += [
            walk.advance.eq(walk_adv), walk.stop.eq(kill),
            walk.in_flight.eq(s1.valid | s2.valid | s3.valid | s4.valid | s5.valid
                              | s6.valid | s7.valid),
            index_read.addr.eq(walk.index_addr), index_read.en.eq(walk_adv),
            index_kill.eq(s3.valid & (s3_range | s3_order)),
            kill.eq(index_kill | walk.reject),
            ktable_read.addr.eq(desc.ktable_base + Mux(s2.filler, 0, kg)),
            ktable_read.en.eq(advance),
            # -- S3 .. S7: lane expansion (stages P, A, B, C, D), pad test, addresses
            lanes.desc.eq(desc), lanes.advance.eq(lane_adv),
            lanes.bx.eq(s3.bx), lanes.by.eq(s3.by), lanes.kgroup.eq(s3_kg),
            lanes.filler.eq(s3.filler), lanes.entry.eq(s4_entry),
            self.busy.eq(walk.active | walk.in_flight | out.valid),
        ]

        # -- stage advance and output register ----------------------------------------------
        with m.If(advance):
            for (_, data_, valid), src in zip(stages, (walk.item, s1, s2, s3, s4, s5, s6)):
                m.d.sync += [data_.eq(src), valid.eq(src.valid)]
            m.d.sync += [
                s2_kg.eq(index_read.data),
                s3_kg.eq(Mux(s2.filler, 0, kg)),
                s3_range.eq(range_error), s3_order.eq(order_error),
                stages[3][2].eq(s3.valid & ~kill), s4_kg.eq(s3_kg),
                s4_entry.eq(ktable_read.data),
            ]
            with m.If(s2.valid & ~s2.filler):
                m.d.sync += prev_kg.eq(kg)
            with m.If(kill):
                # The bad item and the three issued behind it are dropped (a rejected
                # descriptor's: its first step, issued now); the walk ends.
                m.d.sync += [stages[0][2].eq(0), stages[1][2].eq(0), stages[2][2].eq(0)]
            with m.If(index_kill):
                m.d.sync += [
                    self.error.index_range.eq(self.error.index_range | s3_range),
                    self.error.index_order.eq(self.error.index_order | s3_order)]
        s5_kg = Signal(fmt.kgroup_bits, reset_less=True)
        s6_kg = Signal(fmt.kgroup_bits, reset_less=True)
        s7_kg = Signal(fmt.kgroup_bits, reset_less=True)
        with m.If(advance):
            m.d.sync += [s5_kg.eq(s4_kg), s6_kg.eq(s5_kg), s7_kg.eq(s6_kg)]
        with m.If(out_adv):
            m.d.sync += [out.valid.eq(s7.valid), payload.slot.eq(s7.slot),
                         payload.pad.eq(lanes.pad), payload.kgroup.eq(s7_kg)]
            for name in ("first", "last", "walk_first", "walk_last", "filler"):
                m.d.sync += getattr(payload, name).eq(getattr(s7, name))
        # A padded lane's address is 0: a synchronous reset of its register, with priority
        # over the enable (the flip-flops' own reset input, no multiplexer).
        for g in range(cfg.rows_per_step):
            with m.If(out_adv & lanes.pad[g]):
                m.d.sync += payload.addrs[g].eq(0)
            with m.Elif(out_adv):
                m.d.sync += payload.addrs[g].eq(lanes.addrs[g])
        with m.If(walk.rejected):
            m.d.sync += self.error.descriptor.eq(1)
        with m.If(walk.started):            # after: a start clears what came before
            m.d.sync += self.error.eq(0)
        return m

    def _memories(self, m):
        """The index and k-table memories with their write ports; returns the read ports.

        Block RAM without collision logic (`block_ram`): the memories are written only
        while no walk reads them (the host writes while the accelerator is idle), and a
        read issued with no walk in flight carries no item, so its data is never used.
        """
        fmt = self._format
        index_mem = block_ram(unsigned(fmt.kgroup_bits), fmt.index_depth,
                              init=self._index_init, collision_free=True)
        ktable_mem = block_ram(unsigned(fmt.ktable_bits), fmt.max_kgroups,
                               init=self._ktable_init, collision_free=True)
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
        ktable_read = ktable_mem.read_port(domain="sync")
        return index_mem.read_port(domain="sync"), ktable_read
