"""A macro unit's writer: requantisation, ReLU, fused max pooling, output words.

The writer drains a finished pixel (`pixel_layout`) one *lane group* a cycle: ``L =
write_lanes`` consecutive element addresses aligned to L (`mars.contract.banking`).  The
pixel's channels start at element ``s = out_base + pix_addr`` (its pooled position); with
``phase = s % L`` the pixel takes ``ceil((phase + n_valid) / L)`` groups, lane l of group
i holding channel ``i*L + l - phase`` (lanes outside ``[0, n_valid)`` write nothing).  An
aligned layout (``out_base`` and the pitches multiples of L) has phase 0 and
``ceil(n_valid / L)`` groups, as before banking.

A lane group goes through six register stages from its issue to its offer (K =
`writer_latency`, docs/synthesis.md, "Timing the unit's blocks"), one group a cycle; a
configuration's ``writer_stages`` below 6 leaves out S0's registers (5), also S2's (4),
S3's (3) and S4's (2): the same logic for a slower clock (`UnitWriter.registered`):

* issue: the pixel's registers (taken one pixel ahead: its element group, phase, last
  group index, bounds and pooling flag) decide whether the group issues now;
* S0: position j of the *aligned* group ``n_grp`` (channel ``n_grp*L + j``), an
  N/L-way choice of the accumulator, M and S, and each lane's write flag;
* S1: each lane's accumulator, M and S.  No lane indexes all N channels: the previous
  group's S0 is kept, and lane l takes position ``l - phase`` of the one or ``l - phase
  + L`` of the other (an L-way choice);
* S2: the product ``acc * M`` in two halves (the accumulator's low 16 bits unsigned and
  its high bits signed, one 18 x 18 multiplier each; on the ECP5 a MULT18X18D whose
  input registers hold copies of S1's values and whose output register is S2's,
  `mars.hw.dsp.registered_product`);
* S3: their sum, the product p (and the mask of the bits at or above ``S + Ab``);
* S4: only what the clamp needs (docs/architecture.md, "Arithmetic of the writer";
  docs/model-package.md)::

      q = clamp((acc * M + ((1 << S) >> 1)) >> S, 0, 2**Ab - 1)
        = 0                     if p < 0
          2**Ab - 1             if p >> S >= 2**Ab - 1 (a bit of p at or above S + Ab
                                set, or the Ab bits from bit S all set)
          (p >> S) + p[S - 1]   otherwise (p[S - 1] read as 0 for S = 0)

  the sign, the overflow bit and the Ab + 1 bits from bit S - 1 (the clamp at 0 is the
  ReLU);
* OUT (registers): the clamped lanes are placed in the word being assembled (G
  activations, ``G / L`` groups).  A group that ends a word, or the pixel's last group,
  offers the word (`act_entry`: word address, fields, field mask, max flag) to the top's
  write stage, which merges it into the stored word (taking the maximum with it when the
  pixel is not the first of its pooling window) and writes it.

The top's write stage takes one unit's word a cycle, unit ``t mod U`` in cycle t
(`mars.hw.top`): a group that offers a word issues only K cycles before this unit's slot,
so offered words never collide; other groups issue at once.  The writer knows that cycle
from ``slot_next`` (the slot is next cycle), which recurs every U cycles: delayed by
``(1 - K) mod U`` cycles, or U for 0 (U = 1, 2 or 4), it tells the slot K cycles on.  The
delay line starts empty with the run (no slot in its first U cycles), long before a
walk's first pixel reaches the writer.  With
``acc_out`` set every group goes to the result memory instead (`res_entry`: result word
``e // L`` with a lane mask; raw accumulators, unpooled, not requantised: the network's
last layer) and waits for the slot the same way.

**Residual adds** (``residual_adds`` configurations, a walk with ``add`` set;
docs/architecture.md, "Residual adds").  Every lane group then waits for the unit's slot
like a result group, and in its issue cycle the writer reads the shortcut's lane group
through the top's shortcut read port (`sc_read`, one port per memory, taken by the unit
whose slot is next), from S0's registers when S0 is registered (`shortcut_read_delay` d =
1, else 0; K is 1 + d modulo U here, `writer_latency`): element ``sc_base + pixel *
sc_pitch + channel`` of activation region ``sc_bank``, or of the result memory (raw
accumulators of a conv shortcut) with ``sc_res``.  The data arrives in S1; S2 adds the
partial sum and picks the shortcut's field, S3 takes both products, S4 both rescales and
their sum (full width: the sum is clamped, not each term), and OUT clamps::

    q = clamp(rescale(acc, M, S) + rescale(sc, M_sc, S_sc), 0, 2**Ab - 1)
    rescale(v, M, S) = (v * M + ((1 << S) >> 1)) >> S        (no clamp)

The mapper keeps the shortcut's lane groups aligned with the output's (same element
offset modulo L), so one read serves a group.

**Partial sums** (K-splitting, a walk with ``psum`` set): a block set whose kept groups
exceed the macro's row slots is computed in several walks over parts of its groups; each
but the last writes raw accumulators to the result memory (``acc_out``), and every walk
but the first reads the stored partial sum of its element (the same element as the
shortcut's, from the result memory) and adds it to the accumulator: raw out, or before
the requantisation (``((acc + psum) * M + 2^(S-1)) >> S``, the product taken in S3).

A walk's pixels come row-major over ``out_w`` columns of the pre-pooling map; pixel
(x, y) belongs to the pooled output (x // k, y // k) for a pool window k
(``pool_k``, 1 = no pooling); pooled positions outside ``pool_w`` x ``pool_h`` are not
written (floor pooling).  Channel ch of pooled position (px, py) is element
``out_base + py * out_row_pitch + px * out_pitch + ch`` of half ``out_bank``.
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring, stream
from amaranth.lib.wiring import In, Out

from mars.config import MAX_WRITER_STAGES, MarsConfig
from mars.contract.banking import Banking
from mars.contract.netlist import REPLICA
from mars.contract.program import UnitFormat, instruction_layout, param_layout

from .accumulator import pixel_layout
from .dsp import registered_product
from .regs import SELECT_FANOUT, replicas, shares, valid_register

# Coarse bits of the clamp window per copy of the shift's high part (`_shift_selects`):
# each bit is an 8-way multiplexer, four LUTs on the copy's low bit.
CLAMP_SELECT_FANOUT = 6

__all__ = ["UnitWriter", "act_entry_layout", "res_entry_layout", "sc_read_layout",
           "act_write_stage", "result_write", "shortcut_read_delay", "writer_latency"]


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


def act_write_stage(m, act, entry, *, host_addr=0, host_data=0, host_write=0,
                    copy_groups=()):
    """The activation memory's write stage: one write port and one read port of `act`.

    Four cycles (five for the copies), each ending in registers, so that no path runs
    from the read port's output (a block RAM's clock-to-out) through logic, nor from the
    merge to the write ports of every copy spread over the die:

    * S0: the offered word (``entry``, `act_entry_layout`) addresses the read port;
    * S1: the stored word is registered as it leaves the read port;
    * S2: the merge: offered fields replace stored ones, or keep the larger for a later
      pixel of a pooling window (``max``); fields outside ``mask`` keep their stored
      value.  The merge is registered;
    * S3: the registered merge is written into `act`;
    * S4: with more than one group in `copy_groups` (the read copies of `act` beside one
      unit, say), each group has its own register of S3's write (enable, address, data,
      host writes included), which the placer can put near the group's copies, and
      which writes them a cycle after `act`.  One S3 register fanning out over the die
      to every copy was the floorplanned top's critical path (docs/synthesis.md).
      Yosys would merge the identical registers again; their names end in
      `mars.contract.netlist.REPLICA`, which `mars.sw.synth` marks ``keep``.  A single
      group is written in S3 with `act`.

    A copy thus holds a word at the edge ending cycle offer + 6 at the latest (the top's
    offer register, its register of the slot's offer, S0 .. S4).  The next phase's
    gathers read no earlier (a gather take in cycle offer + 6 reads at the edge after),
    with no interlock: phases are separated by
    the controller's WALK, LOAD, WALK sequence, 7 cycles at the least.  The cycle model
    measures that gap (`mars.sw.golden.cycles.READ_MARGIN`, `read_margins`);
    tests/test_mapper.py and tests/test_residual.py check it on every mapping.

    An offer of a word that a merge writes in S0's, S1's or S2's cycle (pooled pixels of
    one word, back to back or nearly) merges with that merge instead of its stale read
    (registered address matches).  The read port is not transparent: Amaranth writes a
    transparent port as an address register and an asynchronous read, and Yosys's
    ``memory_dff`` then merges S1's register into the block RAM as its read register,
    so that the merge started at the block RAM's clock-to-out (5.8 ns on an ECP5; the
    whole top's critical path at 05caebc, docs/synthesis.md).  The write in S0's cycle
    is bypassed instead, and S1 chooses between the two older merges, so that S2's
    choice stays three-way.  While nothing is offered the host's address
    reads and, with ``host_write``, writes in the same cycle through the same ports (the
    host writes only while the accelerator is idle, when no merge is in flight).  The
    returned value, the host's answer, is S1's register of the stored word: the word the
    host's address read in cycle t, in cycle t + 2 (`mars.hw.host.HostPort`).
    """
    cfg_bits = len(entry.data) // len(entry.mask)
    write = act.write_port()
    stored = act.read_port()
    m.d.comb += stored.addr.eq(Mux(entry.valid, entry.addr, host_addr))
    # Reset-less (hw/regs.py): words, addresses and merges are read only under the
    # valid bits (s1, s2, wb_valid) or by a merge that a valid bit writes.
    layout = entry.shape()
    s1, s1_data, s1_valid = valid_register(m, layout, name="act_s1")
    s2, s2_data, s2_valid = valid_register(m, layout, name="act_s2")
    old_r = Signal.like(entry.data, name="act_old_r", reset_less=True)   # stored word
    wb_valid = Signal(name="act_wb_valid")                 # S3: the merge being written
    wb_addr = Signal.like(entry.addr, name="act_wb_addr", reset_less=True)
    wb_data = Signal.like(entry.data, name="act_wb_data", reset_less=True)
    # the merge written the cycle before (in S1's cycle: S0's write, which the read missed)
    wb2_valid = Signal(name="act_wb2_valid")
    wb2_addr = Signal.like(entry.addr, name="act_wb2_addr", reset_less=True)
    wb2_data = Signal.like(entry.data, name="act_wb2_data", reset_less=True)
    alt = Signal.like(entry.data, name="act_old_alt", reset_less=True)
    near, far = Signal(name="act_bypass1"), Signal(name="act_bypass2")
    # the word S1 holds is the one S3 writes now (newer) or wrote in S0's cycle
    now = Signal(name="act_wb_match")
    m.d.comb += now.eq(wb_valid & (s1.addr == wb_addr))
    m.d.sync += [s1_data.eq(entry), s1_valid.eq(entry.valid), s2_data.eq(s1),
                 s2_valid.eq(s1.valid), old_r.eq(stored.data), wb2_valid.eq(wb_valid),
                 wb2_addr.eq(wb_addr), wb2_data.eq(wb_data),
                 alt.eq(Mux(now, wb_data, wb2_data)),
                 # ... or the one S2 merges, written next
                 near.eq(s1.valid & s2.valid & (s1.addr == s2.addr)),
                 far.eq(s1.valid & (now | (wb2_valid & (s1.addr == wb2_addr))))]
    old_word = Signal.like(entry.data, name="act_old")
    m.d.comb += old_word.eq(Mux(near, wb_data, Mux(far, alt, old_r)))
    merged = Signal(len(entry.data), name="act_merged")
    for g in range(len(entry.mask)):
        old = old_word.word_select(g, cfg_bits)
        new = s2.data.word_select(g, cfg_bits)
        keep = ~s2.mask[g] | (s2.max & (old > new))
        m.d.comb += merged.word_select(g, cfg_bits).eq(Mux(keep, old, new))
    m.d.sync += [wb_valid.eq(s2.valid), wb_addr.eq(s2.addr), wb_data.eq(merged)]
    en = Signal(name="act_w_en")
    addr = Signal.like(entry.addr, name="act_w_addr")
    word = Signal.like(entry.data, name="act_w_data")
    m.d.comb += [en.eq(wb_valid | host_write), addr.eq(Mux(wb_valid, wb_addr, host_addr)),
                 word.eq(Mux(wb_valid, wb_data, host_data))]
    drives = [((write,), (en, addr, word))]
    for k, group in enumerate(copy_groups):
        if len(copy_groups) == 1:
            # one group (one unit, no shortcut copy): no fanout to split, no S4
            drives.append(([copy.write_port() for copy in group], (en, addr, word)))
            continue
        # S4, all reset-less, the enable too: S3's write lands in `act` even in a reset
        # cycle (memories have no reset), so S4 must repeat it to the copies (tests/
        # test_hw_writer.py).  A ``keep`` wire attribute would not stop Yosys merging
        # these registers (it merges cells): `mars.sw.synth` marks the cells.
        replica = (Signal(name=f"act_w{k}_en{REPLICA}", reset_less=True),
                   Signal.like(addr, name=f"act_w{k}_addr{REPLICA}", reset_less=True),
                   Signal.like(word, name=f"act_w{k}_data{REPLICA}", reset_less=True))
        m.d.sync += [r.eq(v) for r, v in zip(replica, (en, addr, word))]
        drives.append(([copy.write_port() for copy in group], replica))
    for ports, (en_d, addr_d, word_d) in drives:
        for port in ports:
            m.d.comb += [port.en.eq(en_d), port.addr.eq(addr_d), port.data.eq(word_d)]
    return old_r


def result_write(m, result, entry) -> None:
    """The result memory's write port: the offered result word (`res_entry_layout`), a
    write enable per field (``mask``), in the cycle it is offered."""
    acc_bits = len(entry.data.as_value()) // len(entry.mask)
    write = result.write_port(granularity=acc_bits)
    m.d.comb += [write.addr.eq(entry.addr), write.data.eq(entry.data.as_value()),
                 write.en.eq(Mux(entry.valid, entry.mask, 0))]


#: Register stages from a lane group's issue to its offer (S0 .. S4 and the output
#: register) of the full pipeline, without residual adds; a configuration's
#: ``writer_stages`` may leave out S0 and S2 .. S4 (`UnitWriter.registered`), and
#: `writer_latency` gives its value.
WRITER_STAGES = MAX_WRITER_STAGES

#: The least ``writer_stages`` at which stage S<key> is registered: S0 is left out first,
#: then S2, S3 and S4 (S1 and the output register always are).
_STAGE_NEEDS = {0: 6, 2: 5, 3: 4, 4: 3}


def shortcut_read_delay(config: MarsConfig) -> int:
    """Cycles from a lane group's issue to its shortcut read (residual adds): 1 when S0 is
    registered (the read's address and enables are S0 registers), else 0 (the read is
    issued with the group)."""
    return int(config.writer_stages >= _STAGE_NEEDS[0])


def writer_latency(config: MarsConfig) -> int:
    """Cycles from a lane group's issue to the cycle its word is offered (K).

    ``writer_stages`` (6 for the full pipeline, `WRITER_STAGES`), or with
    ``residual_adds`` the next value ``1 + d (mod U)`` (U = ``macros``, d =
    `shortcut_read_delay`): the shortcut read, d cycles after the issue, falls in the
    cycle before the unit's slot (the top's shortcut port serves the unit whose slot is
    next), and the word must be offered in a slot of the same unit.  The cycle model
    (`mars.sw.golden.cycles`) uses the same rule.
    """
    k, units = config.writer_stages, config.macros
    if config.residual_adds:
        k += (1 + shortcut_read_delay(config) - k) % units
    return k


class UnitWriter(wiring.Component):
    """The writer of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the channel count, ``act_bits``, ``acc_bits``, ``requant_mult_bits``, G, the
        lane count ``write_lanes`` (`UnitFormat`) and the unit count U (``macros``: the
        write slots' period).

    Members
    -------
    pixel : In(stream.Signature(pixel_layout(config)))
        Finished pixels; ``ready`` is raised the cycle the pixel's last group issues.
    insn : In(instruction_layout(config))
        The walk's instruction: ``n_valid`` (channels written), ``pool_k``, ``pool_w``,
        ``pool_h``, ``out_base``, ``out_pitch``, ``out_row_pitch``, ``out_bank``,
        ``acc_out`` and ``desc.out_w``; held from ``restart`` to ``walk_done``.
    params : In(param_layout(config))
        The walk's multiplier and shift of every channel, held like ``insn``.
    restart : In(1)
        Move the output position to the walk's origin (a walk is being started).
    slot_next : In(1)
        The top's write stages take this unit's word next cycle.  The slots recur every U
        cycles (unit ``t mod U`` in cycle t), which the writer relies on to know its slot
        K cycles ahead (`writer_latency`).
    walk_done : Out(1)
        The walk's last word is offered this cycle (a register).
    walk_done_next : Out(1)
        The value `walk_done` takes at the next clock edge (for registers that copy an
        enable computed from it: hw/sequencer.py).
    act_entry : Out(act_entry_layout(config))
        The word offered this cycle (only in this unit's slot; a register).
    res_entry : Out(res_entry_layout(config))
        The result word offered this cycle (only in this unit's slot; a register).
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
        #: Cycles from a group's issue to its offer (`writer_latency`).
        self.latency = writer_latency(config)
        #: Cycles ``slot_next`` is delayed to tell, at issue, the slot ``latency`` cycles on:
        #: ``(1 - latency) mod U``, or U rather than 0, so that the input is registered
        #: (the slots recur every U cycles).
        self.slot_delay = (1 - self.latency) % config.macros or config.macros
        super().__init__({
            "pixel": In(stream.Signature(pixel_layout(config))),
            "insn": In(instruction_layout(config)),
            "params": In(param_layout(config)),
            "restart": In(1),
            "slot_next": In(1),
            "walk_done": Out(1),
            "walk_done_next": Out(1),
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

    def _group_layout(self) -> data.StructLayout:
        """What travels with a lane group through S1 .. S4: valid, the pooling max flag,
        the walk's last group, whether it ends a word, its element group (element / L)
        and, with residual adds, the shortcut's group in its word."""
        fmt = self._format
        sub = max(1, (self._banking.group // fmt.write_lanes - 1).bit_length())
        return data.StructLayout({"valid": 1, "max": 1, "walk_last": 1, "ends_word": 1,
                                  "group": unsigned(fmt.value_bits + 1),
                                  "sc_sub": unsigned(sub)})

    def elaborate(self, platform):
        cfg, fmt, insn, bank = self._config, self._format, self.insn, self._banking
        N, L, lb = cfg.channels_per_macro, fmt.write_lanes, bank.lane_bits
        per_word = bank.group // L                 # lane groups per activation word
        m = Module()

        # -- the pixel issuing: registers set when it is taken (one pixel ahead) --------
        # Reset-less (hw/regs.py): the pixel registers are loaded at every take, and a
        # walk's first take (`prime`, after `restart`) comes before any issue (`loaded`);
        # everything from S1 on is data travelling with the group's valid bit.  The
        # flags, `n_grp`, `last_group`, the slot delay line and `asm_mask` keep the reset.
        n_grp = Signal(range(N + 2))               # lane group of the pixel issuing now
        group = Signal(fmt.value_bits + 1, reset_less=True)  # its element group (/ L)
        # the pixel's channel 0 modulo L: only its copies per lane (`phases`, below)
        phase = Signal(max(1, lb), reset_less=True)
        last_n = Signal(range(N + 2), reset_less=True)  # index of the pixel's last group
        in_bounds = Signal(reset_less=True)        # inside the pooled map
        pool_max = Signal(reset_less=True)         # a later pixel of its pooling window
        advance = Signal()                         # the pixel's last group issues
        prime = Signal()                           # the cycle after a walk's restart
        restart_d = Signal()
        loaded = Signal()                          # the pixel registers are the walk's
        m.d.sync += restart_d.eq(self.restart)
        m.d.comb += prime.eq(restart_d & ~self.restart)
        loaded_next = Mux(self.restart, 0, Mux(prime, 1, loaded))
        m.d.sync += loaded.eq(loaded_next)
        # `issue` and `take` enable hundreds of flip-flops in three places: each lane's S0
        # and `prev` choices (`issue`), the position counters (`take`) and the rest.
        # Lane j's `issue` and the counters' `take` are LUTs of their own, each from its
        # own copy of `loaded` (and of `last_group`): otherwise one LUT each drove the
        # lanes' and the counters' enables across the writer (issue 9: 34 and 25 to 26 of
        # the whole top's late sinks, docs/synthesis.md, session 18).  The copies differ
        # by name only (`replicas`: kept apart), so Yosys cannot merge the LUTs.
        loadeds = replicas(m, loaded, loaded_next, L + 1, name="loaded")
        take = advance | prime
        take_pos = Signal()
        pos = self._position(m, take_pos)
        base = Signal(fmt.value_bits + 1)          # element of the next pixel's channel 0
        count = Signal(range(N + L + 1))           # phase + n_valid of the next pixel
        # The phase is ``base % L``, from `_position`'s own low-bit counter (``base_lo``),
        # not from `base`'s adder: `last_group`'s next value then sums lb bits with
        # n_valid, not the whole address first (issue 9: the unit's critical path at one
        # seed ran pix_addr -> base -> count -> last_group through three carry chains).
        m.d.comb += [base.eq(insn.out_base + pos["pix_addr"]),
                     count.eq(pos["base_lo"] + insn.n_valid)]
        next_last_n = Signal.like(last_n)
        m.d.comb += next_last_n.eq(Mux(count == 0, 0, (count - 1) >> lb))
        with m.If(take):
            m.d.sync += [last_n.eq(next_last_n),
                         in_bounds.eq(pos["in_bounds"]),
                         pool_max.eq(~pos["first_in_window"] & (insn.pool_k != 1))]

        # -- issue: a lane group a cycle, words and reads only K cycles before the slot --
        slot = self.slot_next
        for _ in range(self.slot_delay):           # at least one register
            delayed = Signal()
            m.d.sync += delayed.eq(slot)
            slot_before, slot = slot, delayed
        ends_word = Signal()
        can = Signal()
        issue = Signal()
        # `n_grp == last_n`, kept as a register: set one group ahead from compares of
        # registers, so no comparator lies in front of the issue decision (and behind it
        # the position counters' enables).
        last_group = Signal(init=1)
        # ``acc_out | adding`` from copies a cycle late (`replicas`, below): copy L for the
        # central `can` (S0's valid and markers).  The instruction's `acc_out` (the
        # sequencer's register) ran through `can` and the pop into the accumulator's
        # `full` copies: the whole top's worst path at seed 3 with the rip-up (issue 9,
        # docs/synthesis.md).
        alls = replicas(m, Signal(), insn.acc_out | self._adding(), L + 1, name="wait_all")
        m.d.comb += [
            ends_word.eq(last_group | (group[:per_word.bit_length() - 1].all()
                                       if per_word > 1 else 1)),
            can.eq(Mux(alls[L] | ends_word, slot, 1)),
            issue.eq(self.pixel.valid & can & loaded),
            self.pixel.ready.eq(advance),
            advance.eq(self.pixel.valid & slot & loaded & last_group),
        ]
        n_grp_next = Signal.like(n_grp)
        last_group_next = Signal()
        group_next = Signal.like(group)
        m.d.comb += [n_grp_next.eq(n_grp), last_group_next.eq(last_group),
                     group_next.eq(group)]
        m.d.sync += [n_grp.eq(n_grp_next), last_group.eq(last_group_next),
                     group.eq(group_next)]
        with m.If(issue):
            m.d.comb += [n_grp_next.eq(Mux(last_group, 0, n_grp + 1)),
                         last_group_next.eq(n_grp + 1 == last_n),
                         group_next.eq(group + 1)]
        with m.If(self.restart):
            m.d.comb += [n_grp_next.eq(0), last_group_next.eq(last_n == 0)]
        with m.If(take):                            # after the issue's update: a new pixel
            m.d.comb += [n_grp_next.eq(0), last_group_next.eq(count <= L),
                         group_next.eq(base >> lb)]
        # Lane j's `can` is a LUT of copies of its own of `can`'s
        # registers (`replicas`), beside the lane: one `can` LUT drove the L + 1 issue
        # LUTs, and those the lanes' S0 enables, across the writer (issue 9: 100 of the
        # whole top's late sinks, the LUT 21 tiles from its sinks on average,
        # docs/synthesis.md, session 23).  The copy of ``acc_out | adding`` is a cycle
        # late: the instruction changes only in a START cycle or when no walk runs, and
        # no group issues then or in the cycle after (`loaded` is low from `restart`
        # until the cycle after `prime`; before a START the walk has drained).
        sub = per_word.bit_length() - 1            # group bits of the lane group in a word
        slots = replicas(m, slot, slot_before, L + 1, name="slot")
        last_groups = replicas(m, last_group, last_group_next, L + 1, name="last_group")
        subs = (replicas(m, Signal(sub), group_next[:sub], L, name="group_lo") if sub
                else [Const(1, 1)] * L)            # one group a word: every group ends one
        cans = [Mux(all_k | last_k | sub_k.all(), slot_k, 1)     # lanes only (zip: L)
                for slot_k, last_k, sub_k, all_k in zip(slots, last_groups, subs, alls)]
        # A pixel's last group ends a word, so it issues only in the slot: its issue is
        # ``valid & slot & loaded & last_group``, an AND of registers, with no `can` LUT
        # in front (issue 9: can -> issue -> last group's issue into the `n_grp` copies'
        # resets, 3 LUTs and 8.4 ns of routing, was the whole top's critical path at
        # f434e78 seed 3 and b96f798 seeds 1 and 3; the same `can` ran into the
        # accumulator's pop at 233fcf6 seed 3).
        # Copy L of `slot`, `loaded` and `last_group` is the position counters'.
        ends = [self.pixel.valid & slot_k & loaded_k & last_k
                for slot_k, loaded_k, last_k in zip(slots, loadeds, last_groups)]
        m.d.comb += take_pos.eq(ends[L] | prime)
        issues = [Signal(name=f"issue{j}") for j in range(L)]
        m.d.comb += [issue_j.eq(self.pixel.valid & can_j & loaded_j)
                     for issue_j, can_j, loaded_j in zip(issues, cans, loadeds)]
        # `n_grp` and `phase` choose every lane's S1 values (`_select`): a copy of each
        # per lane, placed beside its lane's choice (issue 9: in the whole top `n_grp`
        # fanned out over the unit's quadrant, 5.8 ns, into the S1 choice).  Each copy of
        # `n_grp` counts by itself, from lane j's `issue` and `last_group` copies: loaded
        # with `n_grp_next`, the ~20 copies of a writer hung off one LUT cone of the
        # counters' copies, up to 30 tiles from them (issue 9: 60 of the whole top's late
        # sinks at d31e33c, seed 1).  Their next value is `n_grp_next`'s: 0 at a restart,
        # at `prime` and at the issue of a pixel's last group, + 1 at its other issues.
        clear = Signal()
        m.d.comb += clear.eq(self.restart | prime)

        def group_copy(j: int, name: str, onehot: int = 0) -> Signal:
            if onehot:
                # ``1 << (n_grp % onehot)`` (`onehot` a power of two): rotated at each issue
                copy = Signal(onehot, init=1, name=f"{name}{REPLICA}")
                m.d.sync += copy.eq(Mux(clear | ends[j], 1,
                                        Mux(issues[j], copy.rotate_left(1), copy)))
                return copy
            copy = Signal.like(n_grp, name=f"{name}{REPLICA}")
            m.d.sync += copy.eq(Mux(clear | ends[j], 0, Mux(issues[j], copy + 1, copy)))
            return copy

        n_grps = [group_copy(j, f"n_grp{j}") for j in range(L)] if L > 1 else [n_grp]
        phases = (replicas(m, phase, pos["base_lo"], L, name="phase", enable=take) if lb
                  else [Const(0, 1)] * L)

        # -- S0 (if registered) and S1: the group's lanes, in output order --------------
        # The group's values are registered at the issue: in S1, or in S0 with S1 a copy.
        s1, s1_data, s1_valid = valid_register(m, self._group_layout(), name="s1")
        first, first_data, first_valid = s1, s1_data, s1_valid
        if self.registered(0):
            first, first_data, first_valid = valid_register(m, self._group_layout(),
                                                            name="s0")
            m.d.sync += [s1_data.eq(first), s1_valid.eq(first_valid)]
        m.d.sync += [
            first_valid.eq(issue),
            first_data.max.eq(pool_max),
            first_data.walk_last.eq(issue & last_group & self.pixel.payload.walk_last),
            first_data.ends_word.eq(ends_word),
            first_data.group.eq(group),
        ]
        lanes, nexts = self._select(m, issues, n_grps, group_copy, phases, in_bounds)
        if cfg.residual_adds:
            self._shortcut_read(m, issue, advance, n_grp, first_data)
            last = self._residual_lanes(m, lanes, s1)
        else:
            last = self._plain_lanes(m, lanes, nexts, s1, platform)
        self._words(m, *last)
        return m

    def _adding(self):
        """The walk reads a shortcut or a partial sum: every lane group waits for the slot
        (always 0 without ``residual_adds``)."""
        if not self._config.residual_adds:
            return Const(0, 1)
        return self.insn.add | self.insn.psum

    def _select(self, m, issues, n_grps, group_copy, phases,
                in_bounds) -> tuple[list, list]:
        """S1 of every lane: the accumulator, M and S of channel ``n_grp*L + lane - phase``
        and whether the lane writes (lane j uses copy j of `n_grps`, `phases` and
        `issues`, the copies of ``n_grp``, ``phase`` and ``issue``; position j's choice
        copies of its own of `n_grp`, ``group_copy(j, name)``, counting from lane j's
        issue).

        No lane indexes all N channels: position j of *aligned* group ``n_grp`` (channel
        ``n_grp*L + j``) is an ``N/L``-way choice, the previous group's choice is kept in
        a register, and lane l takes position ``l - phase`` of the aligned group or
        ``l - phase + L`` of the previous one (an L-way choice by the pixel's phase).
        With S0 registered (`registered`) the aligned choice and each lane's write flag
        are registers of their own, and the L-way choice is made from them a cycle
        later: no net carries ``n_grp``'s choice to every lane in one cycle (issue 9: the
        whole top's critical path at seeds 1 and 2, 1.7 ns of logic and 15 ns of routing).
        Returns the S1 registers of the lanes (`data.View` of acc, mult, shift, write and,
        with residual adds, sc_mult and sc_shift) and the values they load (without
        write), in lane order.
        """
        cfg, insn = self._config, self.insn
        N, L, lb = cfg.channels_per_macro, self._format.write_lanes, self._banking.lane_bits
        n_groups = -(-N // L)
        hold, par = self.pixel.payload.accs, self.params
        names = ["mult", "shift"] + (["sc_mult", "sc_shift"] if cfg.residual_adds else [])
        fields = {"acc": signed(cfg.acc_bits),
                  **{n: par[0][n].shape() for n in names}}
        lane_layout = data.StructLayout(fields)
        cur = []
        for j in range(L):
            options = []
            for g in range(n_groups):
                ch = g * L + j
                value = Signal(lane_layout, name=f"opt{j}_{g}")
                if ch < N:
                    m.d.comb += [value.acc.eq(hold[ch]),
                                 *(value[n].eq(par[ch][n]) for n in names)]
                options.append(value)
            pick = Signal(lane_layout, name=f"aligned{j}")
            # a power-of-two count: the low bits choose (n_grp = N/L, a group past the
            # channels, only has lanes that do not write)
            pow2 = n_groups & (n_groups - 1) == 0
            if n_groups == 1:
                m.d.comb += pick.eq(options[0])
            else:
                # A copy of `n_grp` per share of the position's bits (`replicas`): one
                # copy a position chose its ~50 bits, whose options lie with N/L
                # channels' pixel registers across the accumulator, 47 tiles from the
                # copy (issue 9: 48 of the whole top's late sinks at 05caebc).
                # With a power-of-two count the copies are one-hot (the low bits of
                # n_grp decoded as they count), so each option's select is a register
                # and not a decode LUT in front of the pixel registers' choice (issue
                # 9: n_grp -> decode -> ring entry choice -> `s0_aligned` was 10.01 ns
                # on the whole top at d6346c9, seed 1).
                parts = shares(len(Value.cast(pick)), SELECT_FANOUT // 8)
                copies = [group_copy(j, f"n_grp{j}_{k}", onehot=n_groups if pow2 else 0)
                          for k in range(len(parts))]
                flat, bits = [Value.cast(v) for v in options], Value.cast(pick)
                for copy, part in zip(copies, parts):
                    if pow2:
                        m.d.comb += bits[part].eq(functools.reduce(operator.or_, (
                            Mux(copy[g], value[part], 0) for g, value in enumerate(flat))))
                        continue
                    with m.Switch(copy):
                        for g, value in enumerate(flat):
                            with m.Case(g):
                                m.d.comb += bits[part].eq(value[part])
            cur.append(pick)
        staged = self.registered(0)
        if staged:                                 # S0: the aligned choice, registered
            aligned = [Signal(lane_layout, name=f"s0_aligned{j}", reset_less=True)
                       for j in range(L)]
            for a, c, issue_j in zip(aligned, cur, issues):
                with m.If(issue_j):
                    m.d.sync += a.eq(c)
            cur, before = aligned, aligned         # `prev` follows S0's registers
        else:
            before = cur
        prev = [Signal(lane_layout, name=f"prev{j}", reset_less=True) for j in range(L)]
        for p, c, issue_j in zip(prev, before, issues):
            if staged:
                # Every cycle: S0's registers change only at an issue, so `prev` holds
                # the group issued before S0's in the cycle after each issue, the one
                # cycle S1 reads it.  Lane j's `issue` then enables S0 only (issue 9:
                # from one LUT to ~100 clock enables across the lane's options, 7.7 ns
                # of routing, the whole top's critical path at 8e2dff1, seed 1).
                m.d.sync += p.eq(c)
            else:
                with m.If(issue_j):
                    m.d.sync += p.eq(c)
        s1, nexts = [], []
        for lane in range(L):
            reg = Signal(data.StructLayout({**fields, "write": 1}), name=f"s1_lane{lane}",
                         reset_less=True)
            n_grp, phase = n_grps[lane], phases[lane]
            write, rotate = reg.write, phase
            # the lane's S1 values as they are loaded (`_plain_lanes` registers them again
            # at the multiplier's inputs)
            nxt = Signal(lane_layout, name=f"s1_next{lane}")
            parts = shares(len(Value.cast(nxt)), SELECT_FANOUT // 8)
            rotates = [rotate] * len(parts)
            if staged:
                # the issue's write flag and phase, a cycle on (the phase copies load at
                # the pixel's last issue, before its last group's rotation); a copy of
                # the phase per 16 bits of the lane (`replicas`): one register chose all
                # of them, 6.4 ns of routing into the multipliers' operands (issue 9:
                # the whole top's critical path at 1434093, seed 1)
                write = Signal(name=f"s0_write{lane}", reset_less=True)
                m.d.sync += reg.write.eq(write)
                if lb:
                    rotates = replicas(m, Signal.like(phase, reset_less=True), phase,
                                       len(parts), name=f"s0_phase{lane}_")
            if lb:
                bits = Value.cast(nxt)
                for rotate_k, part in zip(rotates, parts):
                    with m.Switch(rotate_k):
                        for p in range(L):
                            src = cur[lane - p] if lane >= p else prev[lane - p + L]
                            with m.Case(p):
                                m.d.comb += bits[part].eq(Value.cast(src)[part])
            else:
                m.d.comb += nxt.eq(cur[lane])
            m.d.sync += [reg.acc.eq(nxt.acc), *(reg[n].eq(nxt[n]) for n in names)]
            nexts.append(nxt)
            ch = Signal(signed((N + 2 * L).bit_length() + 1), name=f"ch{lane}")
            m.d.comb += ch.eq((n_grp << lb) + lane - phase)
            m.d.sync += write.eq(in_bounds & (ch >= 0) & (ch < insn.n_valid))
            s1.append(reg)
        return s1, nexts

    def registered(self, stage: int) -> bool:
        """Whether stage S`stage` (0, 2, 3 or 4) ends in registers: ``writer_stages`` 6
        registers all four, 5 leaves out S0 (the aligned choice and the lanes' rotation
        in one stage, S1), 4 also S2 (the product in one stage), 3 also S3 (the product
        and the clamp window in one), 2 also S4 (S1 to the output register in one); a
        stage left out is the same logic without its registers."""
        return self._config.writer_stages >= _STAGE_NEEDS[stage]

    def _domain(self, stage: int) -> str:
        """The domain stage S`stage`'s values are assigned in: ``sync`` if it is
        `registered`, else ``comb``."""
        return "sync" if self.registered(stage) else "comb"

    def _group_stages(self, m, s1) -> list:
        """The lane group's values in S1 .. S4: S1 and its copies in S2, S3 and S4 (the
        group travels beside its lanes' arithmetic; registers where the stage is)."""
        groups = [s1]
        for stage, name in enumerate(("s2", "s3", "s4"), 2):
            if self.registered(stage):
                reg, payload, valid = valid_register(m, self._group_layout(), name=name)
                m.d.sync += [payload.eq(groups[-1]), valid.eq(groups[-1].valid)]
            else:
                reg = Signal(self._group_layout(), name=name)
                m.d.comb += reg.eq(groups[-1])
            groups.append(reg)
        return groups

    def _plain_lanes(self, m, s1_lanes, s1_nexts, s1, platform):
        """S2 .. S4 without residual adds: the product in two DSP halves (S2), their sum
        (S3), then only what the clamp needs (S4): the sign, whether ``floor(p / 2^S)``
        reaches 2^Ab, and the Ab + 1 bits from bit S - 1 (the rounding bit and the low Ab
        bits of ``p >> S``).  Returns the S4 group register and a function of the OUT
        stage giving each lane's (value, write, acc).

        With S2 registered each half is a `mars.hw.dsp.registered_product` of the lane's
        S1 values (`s1_nexts`): its operand registers are copies of S1's, its product
        register is S2's, both inside the MULT18X18D on the ECP5 (hw/dsp.py)."""
        cfg = self._config
        Ab, acc_bits = cfg.act_bits, cfg.acc_bits
        shape = self._product_shape()
        h = 16 if acc_bits > 18 else 0             # low half of the accumulator, unsigned
        groups = self._group_stages(m, s1)
        s2, s3, s4 = (self._domain(stage) for stage in (2, 3, 4))
        s4_lanes = []
        for lane, r1 in enumerate(s1_lanes):
            # S2: partial products (one MULT18X18D each on ECP5)
            # (data of the group in the same stage: reset-less, hw/regs.py)
            shift2 = Signal.like(r1.shift, name=f"s2_shift{lane}", reset_less=True)
            write2 = Signal(name=f"s2_write{lane}", reset_less=True)
            acc2 = Signal.like(r1.acc, name=f"s2_acc{lane}", reset_less=True)
            m.d[s2] += [shift2.eq(r1.shift), write2.eq(r1.write), acc2.eq(r1.acc)]
            if self.registered(2):
                n1 = s1_nexts[lane]
                lo = (registered_product(m, n1.acc.as_unsigned()[:h], n1.mult,
                                         platform=platform, name=f"s2_lo{lane}")
                      if h else Const(0, 1))
                hi = registered_product(m, n1.acc[h:].as_signed(), n1.mult,
                                        platform=platform, name=f"s2_hi{lane}")
            else:
                lo = Signal(unsigned(h + cfg.requant_mult_bits), name=f"s2_lo{lane}")
                hi = Signal(signed(acc_bits - h + cfg.requant_mult_bits + 1),
                            name=f"s2_hi{lane}")
                m.d.comb += [lo.eq(r1.acc.as_unsigned()[:h] * r1.mult if h else 0),
                             hi.eq(r1.acc[h:].as_signed() * r1.mult)]
            # S3: the product
            p = Signal(shape, name=f"s3_product{lane}", reset_less=True)
            shift3 = Signal.like(shift2, name=f"s3_shift{lane}")
            write3 = Signal(name=f"s3_write{lane}", reset_less=True)
            acc3 = Signal.like(acc2, name=f"s3_acc{lane}")
            m.d[s3] += [p.eq((hi << h) + lo), shift3.eq(shift2),
                         write3.eq(write2), acc3.eq(acc2)]
            # S4: sign, overflow, window (bit S-1 .. S+Ab-1; bit -1 is 0 for S = 0)
            neg = Signal(name=f"s4_neg{lane}", reset_less=True)
            # The two overflow terms registered apart and ORed in the output stage, whose
            # clamp LUT reads them anyway: one LUT level off S4's deepest path (issue 9:
            # p -> coarse choice -> fine OR -> `over` was 10.06 ns on the whole top at
            # d6346c9, seed 3).
            over = Signal(2, name=f"s4_over{lane}", reset_less=True)
            window = Signal(Ab + 1, name=f"s4_window{lane}", reset_less=True)
            write4 = Signal(name=f"s4_write{lane}", reset_less=True)
            acc4 = Signal.like(acc3, name=f"s4_acc{lane}")
            selects = self._shift_selects(m, lane, shift2, shift3)
            win, sticky, above = self._clamp_window(m, lane, p, selects)
            m.d[s4] += [neg.eq(p[-1]), over.eq(Cat(sticky, above)), window.eq(win),
                         write4.eq(write3), acc4.eq(acc3)]
            s4_lanes.append((neg, over, window, write4, acc4))

        def lane_out(lane):
            neg, over, window, write, acc = s4_lanes[lane]
            t, rb = window[1:], window[0]
            q = Signal(unsigned(Ab), name=f"q{lane}")
            with m.If(neg):
                m.d.comb += q.eq(0)
            with m.Elif(over.any() | (t == cfg.act_max)):
                m.d.comb += q.eq(cfg.act_max)
            with m.Else():
                m.d.comb += q.eq(t + rb)
            return q, write, acc
        return groups[-1], lane_out

    def _clamp_parts(self, shift_bits: int) -> tuple[int, int, list[slice]]:
        """The clamp window's split of the shift S = 8a + b (`_clamp_window`): the fine
        step's bit count (b), the coarse bits kept, and the shares of those bits that
        each take their own copy of a (`_shift_selects`)."""
        fb = min(3, shift_bits)
        span = (1 << fb) + self._config.act_bits
        return fb, span, shares(span, CLAMP_SELECT_FANOUT)

    def _shift_selects(self, m, lane: int, shift2, shift3) -> tuple[list, Value, Value]:
        """The clamp window's selects: a for each coarse share, a for the sticky OR and
        b for the fine step, each from its own copy of S3's shift when S3 is registered
        (`replicas`, loading what `shift3` loads).  With one register, bit 0 of a fed
        the 49 LUTs of a lane's coarse multiplexers, and its route branched 8 ways at
        one wire: nextpnr's ECP5 model adds a delay per branch that router2 does not
        see while it routes (issue 9, docs/synthesis.md: seed 3's worst path at
        080b079, 2.08 ns of routing within one tile)."""
        fb, _, parts = self._clamp_parts(len(shift3))
        if not self.registered(3):
            return [shift3[fb:]] * len(parts), shift3[fb:], shift3[:fb]
        a_like = Signal(len(shift3) - fb, reset_less=True)
        b_like = Signal(fb, reset_less=True)
        *coarse, sticky = replicas(m, a_like, shift2[fb:], len(parts) + 1,
                                   name=f"s3_shift_a{lane}_")
        fine, = replicas(m, b_like, shift2[:fb], 1, name=f"s3_shift_b{lane}_")
        return coarse, sticky, fine

    def _clamp_window(self, m, lane: int, p, selects):
        """What the clamp needs of the product p shifted right by S: the Ab + 1 bits
        from bit S - 1 (bit -1 reads 0) and whether any bit at or above S + Ab is set.

        With ``u = p << 1`` (so that bit S - 1 of p is bit S of u) and S = 8a + b: the
        coarse step takes the 8 + Ab bits of u from bit 8a (an 8-way choice by a) and
        whether any bit of u from 8a + 8 + Ab up is set (the suffix ORs, chosen by a);
        the fine step takes Ab + 1 bits from bit b of the coarse ones and ORs those at
        or above b + Ab + 1.  Far fewer LUTs than a full shifter of the product.
        `selects` is `_shift_selects`'s (a per coarse share, a for the sticky OR, b).
        Returns the window and the two overflow terms (coarse, fine): any bit at or
        above S + Ab is set iff either is.
        """
        Ab = self._config.act_bits
        coarse_sels, sticky_sel, b = selects
        u = Cat(Const(0, 1), p.as_unsigned())
        fb, span, parts = self._clamp_parts(len(sticky_sel) + len(b))
        steps = 1 << len(sticky_sel)               # coarse positions

        def coarse_bits(k: int, part: slice) -> Value:
            lo = k << fb
            return Cat(*(u[i] if i < len(u) else Const(0, 1)
                         for i in range(lo + part.start, lo + part.stop)))

        coarse = Signal(span, name=f"s4_coarse{lane}")
        for a, part in zip(coarse_sels, parts):
            with m.Switch(a):
                for k in range(steps):
                    with m.Case(k):
                        m.d.comb += coarse[part].eq(coarse_bits(k, part))
        sticky = Signal(name=f"s4_sticky{lane}")
        with m.Switch(sticky_sel):
            for k in range(steps):
                lo = (k << fb) + span
                with m.Case(k):
                    m.d.comb += sticky.eq(u[lo:].any() if lo < len(u) else 0)
        window = Signal(Ab + 1, name=f"s4_fine{lane}")
        above = Signal(name=f"s4_above{lane}")
        with m.Switch(b):
            for k in range(1 << fb):
                with m.Case(k):
                    high = coarse[k + Ab + 1:] if k + Ab + 1 < span else Const(0, 1)
                    m.d.comb += [window.eq(coarse[k:k + Ab + 1]), above.eq(high.any())]
        return window, sticky, above

    def _residual_lanes(self, m, s1_lanes, s1):
        """S2 .. S4 with residual adds (docs/architecture.md, "Residual adds"): the
        stored partial sum joins the accumulator and the shortcut value is chosen (S2),
        both products (S3), both rescaled and added (S4).  Same return as
        `_plain_lanes`."""
        cfg, insn, bank = self._config, self.insn, self._banking
        L, Ab, acc_bits = bank.lanes, cfg.act_bits, cfg.acc_bits
        shape = self._product_shape()
        sc_shape = signed(acc_bits + cfg.requant_mult_bits + 2)
        groups = self._group_stages(m, s1)
        s2, s3, s4 = (self._domain(stage) for stage in (2, 3, 4))
        s4_lanes = []
        for lane, r1 in enumerate(s1_lanes):
            # S2: acc + partial sum, the shortcut value (field sc_sub*L + lane, or lane)
            # (data of the group in the same stage: reset-less, hw/regs.py)
            total = Signal(signed(acc_bits), name=f"s2_total{lane}", reset_less=True)
            value = Signal(signed(acc_bits + 1), name=f"s2_sc{lane}", reset_less=True)
            act_field = Signal(unsigned(Ab), name=f"sc_act{lane}")
            fields = [self.sc_act_data.word_select(k * L + lane, Ab)
                      for k in range(bank.group // L)]
            m.d.comb += act_field.eq(fields[0])
            for k in range(1, len(fields)):
                with m.If(s1.sc_sub == k):
                    m.d.comb += act_field.eq(fields[k])
            res_lane = self.sc_res_data.word_select(lane, acc_bits).as_signed()
            r2 = Signal.like(r1, name=f"s2_lane{lane}")
            m.d[s2] += [total.eq(r1.acc + Mux(insn.psum, res_lane, 0)),
                         value.eq(Mux(insn.sc_res, res_lane, act_field)), r2.eq(r1)]
            # S3: both products
            prod = Signal(shape, name=f"s3_product{lane}", reset_less=True)
            sc_prod = Signal(sc_shape, name=f"s3_sc_product{lane}", reset_less=True)
            total3 = Signal.like(total, name=f"s3_total{lane}")
            r3 = Signal.like(r1, name=f"s3_lane{lane}")
            m.d[s3] += [prod.eq(total * r2.mult), sc_prod.eq(value * r2.sc_mult),
                         total3.eq(total), r3.eq(r2)]
            # S4: rescale(acc + psum, M, S) + rescale(sc, M_sc, S_sc) (add walks only)
            half = Signal(shape, name=f"half{lane}")
            sc_half = Signal(sc_shape, name=f"sc_half{lane}")
            body = Signal(shape, name=f"body{lane}")
            sc_out = Signal(sc_shape, name=f"sc_rescaled{lane}")
            rounded = Signal(signed(shape.width + 1), name=f"s4_rounded{lane}",
                             reset_less=True)
            write4 = Signal(name=f"s4_write{lane}", reset_less=True)
            total4 = Signal.like(total, name=f"s4_total{lane}")
            # The rounding constant 2^(S-1) is (1 << S) >> 1, which is 0 for S = 0.
            m.d.comb += [half.eq((Const(1, shape.width) << r3.shift) >> 1),
                         sc_half.eq((Const(1, sc_shape.width) << r3.sc_shift) >> 1),
                         body.eq((prod + half) >> r3.shift),
                         sc_out.eq((sc_prod + sc_half) >> r3.sc_shift)]
            m.d[s4] += [rounded.eq(body + Mux(insn.add, sc_out, 0)),
                         write4.eq(r3.write), total4.eq(total3)]
            s4_lanes.append((rounded, write4, total4))

        def lane_out(lane):
            rounded, write, total = s4_lanes[lane]
            q = Signal(unsigned(Ab), name=f"q{lane}")
            with m.If(rounded < 0):
                m.d.comb += q.eq(0)
            with m.Elif(rounded > cfg.act_max):
                m.d.comb += q.eq(cfg.act_max)
            with m.Else():
                m.d.comb += q.eq(rounded)
            return q, write, total
        return groups[-1], lane_out

    def _shortcut_read(self, m, issue, advance, n_grp, s1) -> None:
        """The shortcut read of the issuing lane group (`shortcut_read_delay` cycles after
        its issue; `s1` is the group's first register stage): element group
        ``(sc_base + sc_pix) / L + n_grp``, where ``sc_pix`` (the pixel's offset in the
        shortcut map) steps by ``sc_pitch`` with every pixel, row-major, like the macro's
        pixels (pooling does not change it: the shortcut has the unpooled shape)."""
        insn, bank = self.insn, self._banking
        lb, per_word = bank.lane_bits, bank.group // bank.lanes
        width = len(insn.sc_base) + 1
        sc_pix = Signal(width, reset_less=True)      # cleared by `restart` before use
        sc_group = Signal(width)
        m.d.comb += sc_group.eq(((insn.sc_base + sc_pix) >> lb) + n_grp)
        with m.If(advance):
            m.d.sync += sc_pix.eq(sc_pix + insn.sc_pitch)
        with m.If(self.restart):
            m.d.sync += sc_pix.eq(0)
        word = sc_group >> (bank.group_bits - lb)
        read = Signal.like(self.sc_read, name="sc_read_next")
        m.d.comb += [read.act_en.eq(issue & insn.add & ~insn.sc_res),
                     read.res_en.eq(issue & ((insn.add & insn.sc_res) | insn.psum)),
                     read.act_addr.eq(Cat(word[:bank.half_addr_bits], insn.sc_bank)),
                     read.res_addr.eq(sc_group)]
        if shortcut_read_delay(self._config):
            # issued from S0's registers: only the enables keep the reset (hw/regs.py)
            enables = Signal(2, name="s0_sc_en")
            addrs = Signal.like(read, name="s0_sc_read", reset_less=True)
            m.d.sync += [enables.eq(Cat(read.act_en, read.res_en)), addrs.eq(read)]
            m.d.comb += [self.sc_read.eq(addrs), self.sc_read.act_en.eq(enables[0]),
                         self.sc_read.res_en.eq(enables[1])]
        else:
            m.d.comb += self.sc_read.eq(read)
        if per_word > 1:
            m.d.sync += s1.sc_sub.eq(sc_group[:(per_word - 1).bit_length()])

    def _words(self, m, s4, lane_out) -> None:
        """OUT: clamp the lanes, assemble activation words, offer words and results (all
        registered), delayed to the writer's latency (`writer_latency`)."""
        cfg, insn, bank = self._config, self.insn, self._banking
        G, L, Ab = bank.group, bank.lanes, cfg.act_bits
        per_word = G // L
        outs = [lane_out(lane) for lane in range(L)]
        # fields of the word being assembled (reset-less: only fields in the mask count)
        asm = Signal(unsigned(bank.word_bits), reset_less=True)
        asm_mask = Signal(G)
        lanes_q = Cat(*(q for q, _, _ in outs))
        lanes_w = Cat(*(w for _, w, _ in outs))
        merged = Signal.like(asm)
        merged_mask = Signal.like(asm_mask)
        at = Signal(range(per_word)) if per_word > 1 else Const(0, 1)
        if per_word > 1:
            m.d.comb += at.eq(s4.group[:per_word.bit_length() - 1])
        m.d.comb += [merged.eq(asm), merged_mask.eq(asm_mask)]
        for k in range(per_word):
            with m.If(at == k):
                m.d.comb += [merged.word_select(k, L * Ab).eq(lanes_q),
                             merged_mask.word_select(k, L).eq(lanes_w)]
        offer = s4.valid & ~insn.acc_out
        with m.If(offer):
            m.d.sync += [asm.eq(merged), asm_mask.eq(Mux(s4.ends_word, 0, merged_mask))]
        with m.If(self.restart):
            m.d.sync += asm_mask.eq(0)
        word = s4.group >> (bank.group_bits - bank.lane_bits)
        # the offered words: only their valid bits keep the reset (hw/regs.py)
        e, e_data, e_valid = valid_register(m, act_entry_layout(cfg), name="out_act")
        r, r_data, r_valid = valid_register(m, res_entry_layout(cfg), name="out_res")
        done = Signal(name="out_done")
        done_next = s4.valid & s4.walk_last
        m.d.sync += [e_valid.eq(offer & s4.ends_word),
                     e_data.addr.eq(Cat(word[:bank.half_addr_bits], insn.out_bank)),
                     e_data.data.eq(merged), e_data.mask.eq(merged_mask),
                     e_data.max.eq(s4.max),
                     r_valid.eq(s4.valid & insn.acc_out), r_data.addr.eq(s4.group),
                     r_data.mask.eq(lanes_w), done.eq(done_next)]
        m.d.sync += [r_data.data[lane].eq(acc) for lane, (_, _, acc) in enumerate(outs)]
        for k in range(self.latency - cfg.writer_stages):   # residual adds: in step
            e2, e2_data, e2_valid = valid_register(m, act_entry_layout(cfg),
                                                   name=f"out_act_d{k}")
            r2, r2_data, r2_valid = valid_register(m, res_entry_layout(cfg),
                                                   name=f"out_res_d{k}")
            done2 = Signal()
            m.d.sync += [e2_data.eq(e), e2_valid.eq(e.valid), r2_data.eq(r),
                         r2_valid.eq(r.valid), done2.eq(done)]
            e, r, done, done_next = e2, r2, done2, done
        m.d.comb += [self.act_entry.eq(e), self.res_entry.eq(r), self.walk_done.eq(done),
                     self.walk_done_next.eq(done_next)]

    def _position(self, m, take) -> dict:
        """The output position of the next pixel to be taken, advanced as it is taken.

        Returns the signals the pixel registers take: ``pix_addr`` (the pooled position's
        offset from ``out_base``), ``base_lo`` (``(out_base + pix_addr) % L``, a register,
        0 when L is 1), ``in_bounds`` and ``first_in_window``.
        """
        fmt, insn, lb = self._format, self.insn, self._banking.lane_bits
        # Reset-less (hw/regs.py): `restart` clears them before a walk's first take.
        ox = Signal(fmt.value_bits, reset_less=True)      # column in the pre-pooling map
        kx = Signal(fmt.pool_bits, reset_less=True)       # position inside the pool window
        ky = Signal(fmt.pool_bits, reset_less=True)
        px = Signal(fmt.value_bits, reset_less=True)      # pooled position
        py = Signal(fmt.value_bits, reset_less=True)
        row_addr = Signal(fmt.value_bits + 1, reset_less=True)  # offset of pooled row py
        pix_addr = Signal(fmt.value_bits + 1, reset_less=True)  # offset of pixel (px, py)
        # (out_base + row_addr) % L and (out_base + pix_addr) % L, stepped beside them:
        # lb-bit adds, so the pixel's phase and last group need no full-width add.
        row_lo = Signal(max(1, lb), reset_less=True)
        pix_lo = Signal(max(1, lb), reset_less=True)

        def lo(value):
            return value[:lb] if lb else Const(0, 1)

        def lo_sum(a, b):
            return (lo(a) + lo(b))[:lb] if lb else Const(0, 1)

        # `ox == out_w - 1`, `kx == pool_k - 1` and `ky == pool_k - 1` kept as registers
        # (set with the counters, from compares of registers), so the counters' enables
        # are `take` and a flag, not `take` and a compare (issue 9: the unit's critical
        # path at one seed ran the write slot -> issue -> take -> the compares -> the
        # position counters' enables).
        ox_last = Signal(reset_less=True)
        kx_last = Signal(reset_less=True)
        ky_last = Signal(reset_less=True)
        pool_one = insn.pool_k == 1
        with m.If(take):
            with m.If(ox_last):
                m.d.sync += [ox.eq(0), kx.eq(0), px.eq(0),
                             ox_last.eq(insn.desc.out_w == 1), kx_last.eq(pool_one)]
                with m.If(ky_last):
                    m.d.sync += [ky.eq(0), ky_last.eq(pool_one), py.eq(py + 1),
                                 row_addr.eq(row_addr + insn.out_row_pitch),
                                 pix_addr.eq(row_addr + insn.out_row_pitch),
                                 row_lo.eq(lo_sum(row_lo, insn.out_row_pitch)),
                                 pix_lo.eq(lo_sum(row_lo, insn.out_row_pitch))]
                with m.Else():
                    m.d.sync += [ky.eq(ky + 1), ky_last.eq(ky + 1 == insn.pool_k - 1),
                                 pix_addr.eq(row_addr), pix_lo.eq(row_lo)]
            with m.Else():
                m.d.sync += [ox.eq(ox + 1), ox_last.eq(ox + 1 == insn.desc.out_w - 1)]
                with m.If(kx_last):
                    m.d.sync += [kx.eq(0), kx_last.eq(pool_one), px.eq(px + 1),
                                 pix_addr.eq(pix_addr + insn.out_pitch),
                                 pix_lo.eq(lo_sum(pix_lo, insn.out_pitch))]
                with m.Else():
                    m.d.sync += [kx.eq(kx + 1), kx_last.eq(kx + 1 == insn.pool_k - 1)]
        with m.If(self.restart):
            m.d.sync += [ox.eq(0), kx.eq(0), ky.eq(0), px.eq(0), py.eq(0),
                         row_addr.eq(0), pix_addr.eq(0),
                         row_lo.eq(lo(insn.out_base)), pix_lo.eq(lo(insn.out_base)),
                         ox_last.eq(insn.desc.out_w == 1), kx_last.eq(pool_one),
                         ky_last.eq(pool_one)]
        return {"pix_addr": pix_addr, "base_lo": pix_lo if lb else Const(0, 1),
                "in_bounds": (px < insn.pool_w) & (py < insn.pool_h),
                "first_in_window": (kx == 0) & (ky == 0)}
