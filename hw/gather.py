"""A macro unit's activation gather: D decoder payloads in, one macro compute step out.

The D decoders (one per word-line domain) run in step: they share one descriptor but for
their index codes, which fillers pad to the same length, so their payloads arrive in the
same cycles (tests/test_hw_decoder.py checks it).  Each domain takes its payload when it
is there and stage B is free (or moves on), so all D are taken together without an AND
over the domains.  The activation memory holds words of G activations
(`mars.contract.banking.Banking`); each domain has ONE read port (``act_addr[d]``: a word
address with the half as its top bit; data one cycle later in ``act_data[d]``).  A lane's
element address ``e`` (from the decoder) is field ``e % G`` of word ``e // G``.

Four stages (docs/banking.md, docs/synthesis.md "Timing the unit's blocks"):

* **Spare** (stage A): a payload register per domain behind the decoder's output
  register, loaded whenever it is empty, and its lane-word compares (one per pair of
  lanes, on the spare's registers) registered the cycle after; stage B takes from it
  only, once it is *ripe* (held since the cycle before).  Domain d is ready while its
  spare is empty, so the decoders' stall comes from one register here and not from the
  read progress below.  It costs each walk two cycles (its first payload passes the spare
  and waits for its compares) and nothing after: B keeps a step at least three cycles and
  the spare is ripe again three cycles after B takes it.  In exchange the compares read
  registers of the gather, not the decoder's output register across the die, and the
  take reads their registers (issue 9, docs/synthesis.md "Stage A always").
* **Take** (stage B loaded): each domain registers its payload's lane words and fields,
  which unpadded lanes share each lane's word and, as pending, its *leaders*: the
  unpadded lanes that share their word with no lower unpadded lane.  No read yet: the
  read address comes from registers only.
* **Reads** (stage B): each cycle a domain with leaders pending reads the word of its
  lowest one, which serves every lane sharing it; the fields already fetched are kept in
  registers.  A K-group that is one aligned run of G channels (and an all-padding one) is
  one read; others (layers whose channel count is not a multiple of G) take a read per
  distinct word.  Step B is done ``max_d(distinct words of domain d, at least 1) + 1``
  cycles after the take (`mars.sw.golden.cycles` counts them from the same rule).
* **Offer** (stage C): the finished step moves into a register, padded lanes forced to 0,
  and is offered to the macro.  C is loaded only when it was empty at the start of the
  cycle, so no path runs from the macro's ``ready`` (and the accumulator's and the
  writer's handshakes behind it) into the decoders and the read ports; C offers a step
  at most every other cycle, which the macro's ``Ab/b`` cycles a step hide (``Ab/b`` >=
  2 on every preset).

The markers (last step of a pixel, last step of the walk) travel beside C and the
macro in a small FIFO, written as a step moves into C (not as the macro accepts it: no
path from the macro's ``ready`` into the FIFO) and read (``side.ready``) as the
accumulator takes the step's result: C and the macro keep steps in order, so the FIFO's
head always belongs to the result in flight.  The FIFO holds 6 entries; a step moves into
C only when C is empty, and the macro holds at most five steps (docs/macro.md: front,
stages R and P, the result register and its spare), so at most 6 are outstanding and it
never overflows.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.decoder import DecoderFormat, payload_layout

from .macro import request_layout
from .regs import queue, replicas, run_reset

__all__ = ["ActivationGather", "marker_layout"]


def marker_layout() -> data.StructLayout:
    """The markers of one compute step: last step of its pixel, last of the walk.

    A pixel's first step is the one after a last step (or the run's first): the
    accumulator keeps that as a register of its own (`mars.hw.accumulator`)."""
    return data.StructLayout({"last": 1, "walk_last": 1})


class ActivationGather(wiring.Component):
    """The activation gather of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets D (word-line domains), G (rows per step) and the address widths.

    Members
    -------
    payloads : In(stream.Signature(payload_layout(config))).array(D)
        The decoders' payloads, one stream per word-line domain, valid in the same
        cycles (the decoders run in step); all are taken into stage B together.  Stage
        B's valid and markers follow domain 0.  ``ready`` is a register (domain d's spare
        is empty): it depends on no input of the cycle.
    in_bank : In(region_bits)
        The activation region the walk reads (top bits of every word address).
    act_en : Out(unsigned(D))
        Read strobe of each domain's read port.
    act_addr : Out(data.ArrayLayout(unsigned(word_addr_bits), D))
        Each domain's word address (`Banking.word_addr_bits`, the half on top).
    act_data : In(data.ArrayLayout(unsigned(G * act_bits), D))
        The words read, one cycle after ``act_en`` (held while ``act_en`` is low).
    request : Out(stream.Signature(request_layout(config)))
        Compute steps for the macro: a row slot and G activations per domain, padded lanes
        zero.
    side : Out(stream.Signature(marker_layout()))
        The markers of the oldest step the macro accepted and whose result was not yet
        taken; ``ready`` pops it (with the macro's result).  Every field is a register.
    idle_next : In(1)
        The next cycle is idle (the controller's ``~running_next``): the gather holds
        itself in its run reset, in parts (`mars.hw.regs.run_reset` per part), instead
        of being wrapped in one.  Its copies are 1 from the domain's reset, so the
        gather is held for the cycle after one even while this input is 0.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._banking = bank = Banking(config)
        D = config.wordline_domains
        super().__init__({
            "payloads": In(stream.Signature(payload_layout(config))).array(D),
            "in_bank": In(bank.region_bits),
            "act_en": Out(unsigned(D)),
            "act_addr": Out(data.ArrayLayout(unsigned(bank.word_addr_bits), D)),
            "act_data": In(data.ArrayLayout(unsigned(bank.word_bits), D)),
            "request": Out(stream.Signature(request_layout(config))),
            "side": Out(stream.Signature(marker_layout())),
            "idle_next": In(1),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        D = cfg.wordline_domains
        # The run reset in parts, each from a copy of ~running of its own (`run_reset`):
        # stage B's flags, stage C and the markers in `m`, each domain's spare and lane
        # registers in ``lanes[d]``.  One copy for all 1,648 flip-flops that keep it was
        # one LUT (the copy ORed with the domain's reset) driving their LSR pins across
        # the gather: the default top's worst path at seed 1 with the rip-up, 9.9 ns of
        # routing at seed 3 without (issue 9, docs/synthesis.md "The gather's run reset").
        top, m = Module(), Module()
        lanes = [Module() for _ in range(D)]
        run_reset(top, m, self.idle_next, name="stage")
        for d, part in enumerate(lanes):
            run_reset(top, part, self.idle_next, name=f"domain{d}")
        outs = list(self.payloads)
        # Stage B: the step being read (its slots, pad masks and markers).
        b_valid = Signal()
        b_slots = Signal(data.ArrayLayout(range(cfg.row_slots), D))
        b_pad = Signal(data.ArrayLayout(unsigned(cfg.rows_per_step), D))
        b_side = Signal(marker_layout())
        # Stage C: the finished step offered to the macro (acts masked, from registers).
        request = self.request
        c_valid = Signal()
        take = Signal()
        fresh = Signal(2)                    # B was loaded one / two cycles ago
        move = Signal()                      # B's step (every word read) moves into C
        busy_any = Signal()                  # some domain reads (its `busy`, a register)
        busys = [Signal(name=f"reads{d}") for d in range(D)]   # domain d's `busy`
        # Neither `take` nor `move` looks at the macro's `ready`: C moves on the cycle
        # after the macro took its step, so no path runs from the macro's (and the
        # accumulator's, the writer's) handshake into the decoders and the read ports.
        # Stage A: a spare payload per domain (a 2-entry skid buffer with the decoder's
        # output register).  A domain is ready while its spare is empty, so the decoders'
        # stall (their pipelines' enables) comes from one register here, not from `take`
        # (the read progress of every domain: `pend` -> `busy` -> `move` -> `take`).
        spare_valid = [Signal(name=f"spare_valid{d}") for d in range(D)]
        spares = [Signal(payload_layout(cfg), name=f"spare{d}") for d in range(D)]
        # The spare has held its payload since the cycle before (its compares are
        # registered, `_domain`): B takes only then.
        ripe = [Signal(name=f"ripe{d}") for d in range(D)]
        m.d.sync += fresh.eq(Cat(take, fresh[0]))
        # `move` is ``b_valid & ~fresh.any() & ~c_valid`` and no domain reading or with its
        # last word in flight (``busy | busy_r``), kept as a register: its next value from
        # this cycle's (a take sets `fresh`, a move clears `b_valid`; without a take no
        # domain starts reading, so next cycle's ``busy | busy_r`` is `busy` now).
        # `take`, which selects the next value of every stage-B register across the unit,
        # is then one AND away from flip-flops: the unit's critical path ran from a
        # domain's `pend` to the central `take` and back out (issue 9).
        move_next = ~take & ~move & b_valid & ~fresh[0] & ~busy_any & ~(c_valid & ~request.ready)
        m.d.sync += move.eq(move_next)
        # Domain d's payload is in its spare.  The D decoders run in step (one descriptor,
        # the same steps; hw/unit.py), so every domain's spare fills in the same cycle and
        # each domain takes on its own: no AND over the domains, whose decoders lie across
        # the die, runs into the takes (issue 9: the unit's critical path ran from a
        # domain's spare to that AND and back into another domain's stage B, 8 of its 10 ns
        # routing).  The central `take` (stage B's valid and markers) follows domain 0.
        m.d.comb += [take.eq(ripe[0] & (~b_valid | move)),
                     request.valid.eq(c_valid)]
        # Each domain takes with copies of `take` of its own, each from its own copies
        # of `b_valid`, `move` and `ripe` (names ending in REPLICA: synthesis
        # keeps them apart), so that the one `take` does not fan out to every stage-B
        # register of the unit: one copy for the domain's stage-B registers, one for its
        # spare's flag (which lies at the decoder's output, away from them); each copy is
        # one LUT of three flip-flops.  (Issue 9: the unit's critical path ran a domain's
        # spare through `take`, across the gather and back into another domain's `busy`;
        # with one copy a domain, from its stage-B registers back to its spare's flag; a
        # shared flag sat 14 tiles from the domain's `pend` registers on the whole top's
        # critical path at 90f3d6d, seed 1.)
        spare_next = [Signal(name=f"spare_next{d}") for d in range(D)]
        ripe_next = [spare_valid[d] & spare_next[d] for d in range(D)]
        ripe_flags = [replicas(lanes[d], ripe[d], ripe_next[d], 2, name=f"ripe{d}_take")
                      for d in range(D)]
        b_valid_next = Mux(take, 1, Mux(move, 0, b_valid))
        copies = []
        for k, (b_valid_k, move_k) in enumerate(zip(
                replicas(m, b_valid, b_valid_next, 2 * D, name="b_valid"),
                replicas(m, move, move_next, 2 * D, name="move"))):
            copy = Signal(name=f"take{k}")
            m.d.comb += copy.eq(ripe_flags[k % D][k // D] & (~b_valid_k | move_k))
            copies.append(copy)
        takes, spare_takes = copies[:D], copies[D:]
        for d, (o, dm) in enumerate(zip(outs, lanes)):
            # Stage A: the spare loads the decoder's payload whenever it is empty (its
            # flag, a register, is the data's enable; only the flag sees `take`).  B takes
            # from the spare only, so the lane-word compares (`_domain`) read registers of
            # the gather: on the decoder's output register, across the die from the
            # gather, they were the whole top's most frequent late path (issue 9,
            # docs/synthesis.md "Stage A always": 5.2 ns of routing before the compare).
            dm.d.comb += [spare_next[d].eq(spare_valid[d]), o.ready.eq(~spare_valid[d])]
            dm.d.sync += [spare_valid[d].eq(spare_next[d]), ripe[d].eq(ripe_next[d])]
            with dm.If(~spare_valid[d]):
                dm.d.sync += [spares[d].addrs.eq(o.payload.addrs),
                              spares[d].pad.eq(o.payload.pad), spares[d].slot.eq(o.payload.slot)]
                if d == 0:
                    dm.d.sync += [spares[d].last.eq(o.payload.last),
                                  spares[d].walk_last.eq(o.payload.walk_last)]
                dm.d.comb += spare_next[d].eq(o.valid)
            with dm.Elif(spare_takes[d]):
                dm.d.comb += spare_next[d].eq(0)
        with m.If(take):
            m.d.sync += [b_valid.eq(1), b_side.last.eq(spares[0].last),
                         b_side.walk_last.eq(spares[0].walk_last)]
        with m.Elif(move):
            m.d.sync += b_valid.eq(0)
        for d, src in enumerate(spares):
            with m.If(takes[d]):
                m.d.sync += [b_slots[d].eq(src.slot), b_pad[d].eq(src.pad)]
        with m.If(move):
            m.d.sync += c_valid.eq(1)
        with m.Elif(request.ready):
            m.d.sync += c_valid.eq(0)
        # C's data registers follow B while C is empty (a register as their enable, not
        # `move`, which would fan out to all of them): what they hold when `move` sets
        # c_valid is B's finished step.
        with m.If(~c_valid):
            m.d.sync += request.payload.slots.eq(b_slots)
        m.d.comb += busy_any.eq(Cat(*busys).any())
        for d, src in enumerate(spares):
            acts, word = self._domain(lanes[d], d, src, takes[d], busys)
            m.d.comb += [self.act_en[d].eq(busys[d]),
                         self.act_addr[d].eq(Cat(word, self.in_bank))]
            with m.If(~c_valid):
                for g, value in enumerate(acts):
                    m.d.sync += request.payload.acts[d][g].eq(Mux(b_pad[d][g], 0, value))

        # The head in a register: the accumulator's `ready` and its pixel registers'
        # push hang off the head's `last`, and an unregistered LUT-RAM read behind its
        # (then) `first` was a critical path of the unit (issue 9).  (The accumulator
        # registers the markers again, beside its running sums: stage S.)
        head, valid, _ = queue(m, marker_layout(), b_side, move,
                               self.side.ready & self.side.valid, 6, name="side")
        m.d.comb += [self.side.valid.eq(valid), self.side.payload.eq(head)]
        return top

    def _lane_word(self, addr) -> Value:
        """The activation word of a lane's element address (its field cut off)."""
        sh, ab = self._banking.group_bits, DecoderFormat(self._config).addr_bits
        return addr[sh:] if sh < ab else C(0, 1)

    def _domain(self, m, d: int, payload, take, busys) -> tuple[list, Value]:
        """Domain `d`'s word reads, in `m` (its part of the run reset); returns its G
        lanes' activations (before the pad mask) and the word it reads (when ``busys[d]``).

        The take cycle registers the spare's payload: every lane's word and field, which
        unpadded lanes share a word with each lane (``same[g]``, from ``near``: the
        compares of the spare's words, registered the cycle before) and, as pending, the
        *leaders*: the unpadded lanes that share their word with no lower unpadded lane.
        The leaders are the words to read, one a cycle, lowest first (``low``, a one-hot
        register kept with ``pend``); the word of leader g serves the lanes of
        ``same[g]``.  This reads the
        same words in the same order as "read the lowest pending lane's word and serve
        every pending lane in it": the lowest unserved lane is always a leader.  A read
        cycle's next ``pend``/``low`` are a mask and a lowest-bit pick of registers (no
        row select in the loop: issue 9, ``busy``/``low`` were 5 of the whole top's 40
        latest nets at f434e78 seed 3); the read address is a one-hot select of
        registers; no address compare lies behind the take."""
        cfg, bank = self._config, self._banking
        G, Ab, sh = cfg.rows_per_step, cfg.act_bits, bank.group_bits
        ab = DecoderFormat(cfg).addr_bits
        word_bits = max(1, ab - sh)
        words = Signal(data.ArrayLayout(unsigned(word_bits), G), name=f"words{d}")
        fields = Signal(data.ArrayLayout(unsigned(max(1, sh)), G), name=f"fields{d}")
        same = Signal(data.ArrayLayout(unsigned(G), G), name=f"same{d}")
        pend = Signal(G, name=f"pend{d}")        # leaders whose word is not read yet
        served = Signal(G, name=f"served{d}")    # lanes served by the word on act_data
        kept = Signal(data.ArrayLayout(unsigned(Ab), G), name=f"kept{d}")
        low = Signal(G, name=f"low{d}")          # the lowest pending leader, one-hot
        word = Signal(word_bits, name=f"word{d}")
        # ``busy`` is ``pend.any()`` kept as a register (its next value computed beside
        # pend's), so `move`, which gates `take`, which selects the next value of every
        # stage-B register, starts at flip-flops (the unit's critical path was
        # pend -> busy -> take -> served, issue 9).
        busy = Signal(name=f"busy{d}")
        m.d.comb += word.eq(_or_select(low, [words[g] for g in range(G)]))
        # The word read lands in a register (data_r) the cycle after it leaves the block
        # RAM; `served_r` says which lanes it serves.  The step is done once no read is in
        # flight: the last read's word is in data_r.
        data_r = Signal.like(self.act_data[d], name=f"data_r{d}")
        served_r = Signal(G, name=f"served_r{d}")
        m.d.sync += [data_r.eq(self.act_data[d]), served_r.eq(served)]
        m.d.comb += busys[d].eq(busy)
        data_word = data_r

        def field(g):
            return data_word.word_select(fields[g], Ab) if sh else data_word[:Ab]

        # Which unpadded lanes share lane g's word: the compares of the spare's words,
        # registered every cycle (``near[g][h]``, h != g), so the take reads registers
        # (B takes a spare only the cycle after it loaded, `ripe`).  The compare and the
        # leaders' OR behind it in one cycle, into `pend`, were the whole top's critical
        # path at 233fcf6 seed 1 and 11 of the 15 nets after 10 ns at seeds 1 and 3
        # (issue 9).
        unpadded = ~payload.pad
        lane_words = [self._lane_word(payload.addrs[g]) for g in range(G)]
        near = Signal(data.ArrayLayout(unsigned(G), G), name=f"near{d}", reset_less=True)
        m.d.sync += [near[g][h].eq(unpadded[h] & (lane_words[g] == lane_words[h]))
                     for g in range(G) for h in range(G) if g != h]
        shares_word = [Cat(*(near[g][h] if h != g else C(1, 1) for h in range(G)))
                       for g in range(G)]
        leaders = Cat(*(unpadded[g] & ~near[g][:g].any() if g else unpadded[0]
                        for g in range(G)))
        # A take and a read never fall in one cycle (B takes only when empty or moving,
        # and it moves only once no domain reads), so `busy`, a register, chooses the next
        # values and `take` reaches only these registers' enables: with the take's priority
        # it also selected every bit's next value (issue 9: spare flag -> take -> pend was
        # the whole top's critical path at 90f3d6d, seed 1).  The lowest leader is the
        # lowest unpadded lane.
        rest = pend & ~low
        with m.If(busy | take):
            m.d.sync += [pend.eq(Mux(busy, rest, leaders)),
                         low.eq(Mux(busy, _lowest(rest), _lowest(unpadded))),
                         served.eq(Mux(busy, _or_select(low, [same[g] for g in range(G)]), 0)),
                         busy.eq(Mux(busy, rest.any(), unpadded.any()))]
        # Keep the fields each word served (every cycle: data_r and served_r change
        # together, one cycle after the read port's word and `served`).
        for g in range(G):
            with m.If(served_r[g]):
                m.d.sync += kept[g].eq(field(g))
        with m.If(take):
            for g in range(G):
                m.d.sync += [words[g].eq(lane_words[g]), same[g].eq(shares_word[g]),
                             fields[g].eq(payload.addrs[g][:sh] if sh else 0)]
        return [Mux(served_r[g], field(g), kept[g]) for g in range(G)], word


def _lowest(bits):
    """The lowest set bit of `bits`, one-hot (0 when none): a prefix OR, no carry chain."""
    return Cat(*(bits[g] & ~bits[:g].any() if g else bits[0] for g in range(len(bits))))


def _or_select(onehot, values):
    """``values[g]`` for the one bit g set in `onehot` (0 when none): an AND-OR tree."""
    out = 0
    for g, value in enumerate(values):
        out = out | Mux(onehot[g], value, 0)
    return out
