"""Amaranth-simulator test of a macro unit's activation gather (`mars.hw.gather`).

Random decoder payloads arrive on the D streams with random gaps, in step (all D in the
same cycle, as the unit's decoders offer them); the macro side takes compute steps with
random stalls (at most two in flight, as the macro holds) and pops the markers.  The
activation memory holds words of G activations with ONE read port per domain, as the top
wires it.  Every compute step must carry, per domain, the row slot of
that domain's payload and its G activations (element ``addrs[g]`` of half ``in_bank``),
zero where the payload's pad bit is set; the markers must come out in step order.  Every
cycle the test also checks that no input of that cycle reaches a decoder's ``ready``.  The
lanes' addresses are random, so most payloads need several word reads.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Fragment, Module, ResetInserter, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.banking import Banking
from mars.hw.gather import ActivationGather
from mars.tb.fragments import signals_by_name

# A small activation memory keeps the simulation quick.
TINY = PRESETS["tiny"].replace(name="tiny-small-act", act_buffer_words=256)


class GatherBench(Elaboratable):
    """The gather with the activation memory's read ports, wired as the top wires them."""

    def __init__(self, config, act_init):
        self.config = config
        self.dut = ActivationGather(config)
        bank = Banking(config)
        self.act = Memory(shape=unsigned(bank.word_bits), depth=bank.words,
                          init=bank.pack(act_init))

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.act = self.dut, self.act
        for d in range(self.config.wordline_domains):
            read = self.act.read_port()
            m.d.comb += [read.addr.eq(self.dut.act_addr[d]), read.en.eq(self.dut.act_en[d]),
                         self.dut.act_data[d].eq(read.data)]
        return m


def test_steps_carry_slots_and_activations():
    seed, config = 31, TINY
    rng = np.random.default_rng(seed)
    D, G, words = config.wordline_domains, config.rows_per_step, config.act_buffer_words
    act = rng.integers(0, 1 << config.act_bits, size=2 * words)
    in_bank, n = 1, 60

    def addrs():        # scattered, or within a few words (lanes that share one)
        if rng.random() < 0.5:
            return [int(a) for a in rng.integers(0, words, size=G)]
        base = int(rng.integers(0, words - 2 * G))
        return [base + int(a) for a in rng.integers(0, 2 * G, size=G)]

    payloads = [[{"slot": int(rng.integers(0, config.row_slots)), "addrs": addrs(),
                  "pad": int(rng.integers(0, 1 << G)), "first": int(rng.integers(0, 2)),
                  "last": int(rng.integers(0, 2)), "walk_last": int(rng.integers(0, 2))}
                 for _ in range(n)] for _ in range(D)]
    bench = GatherBench(config, act.tolist())
    dut = bench.dut
    steps, markers, reads = [], [], [0] * D

    async def testbench(ctx):
        ctx.set(dut.in_bank, in_bank)
        await ctx.tick()    # the gather's run-reset copies hold it the cycle after a reset
        offered = [0] * D                    # next payload index per domain
        holding = [False] * D
        cycles = 0
        while len(markers) < n:
            act_en = ctx.get(dut.act_en)
            for d in range(D):
                reads[d] += act_en >> d & 1
            # The decoders run in step (hw/unit.py): all D offer their next payload in
            # the same cycle, and the gather takes them in the same cycle.
            if not any(holding) and offered[0] < n and rng.random() < 0.6:
                for d, port in enumerate(dut.payloads):
                    ctx.set(port.payload, payloads[d][offered[d]])
                holding = [True] * D
            for d, port in enumerate(dut.payloads):
                ctx.set(port.valid, holding[d])
            in_flight = len(steps) - len(markers)
            ctx.set(dut.request.ready, int(in_flight < 2 and rng.random() < 0.7))
            ctx.set(dut.side.ready, int(ctx.get(dut.side.valid) and rng.random() < 0.6
                                        and in_flight > 0))
            # The decoders' `ready` comes from registers (their spares): flipping any
            # other input of this cycle (a domain's `valid`, the macro's `ready`, the
            # markers' `ready`) must leave every one as it is (docs/synthesis.md, "The
            # decoders' ready").
            readies = [ctx.get(port.ready) for port in dut.payloads]
            assert len(set(readies)) == 1, \
                f"seed {seed}, cycle {cycles}: the domains fall out of step: ready {readies}"
            for flipped in [port.valid for port in dut.payloads] + [dut.request.ready,
                                                                    dut.side.ready]:
                was = ctx.get(flipped)
                ctx.set(flipped, 1 - was)
                seen = [ctx.get(port.ready) for port in dut.payloads]
                ctx.set(flipped, was)
                assert seen == readies, \
                    f"seed {seed}, cycle {cycles}: a decoder's ready follows {flipped.name}"
            if ctx.get(dut.request.valid) and ctx.get(dut.request.ready):
                step = ctx.get(dut.request.payload)
                steps.append(([int(step.slots[d]) for d in range(D)],
                              [[int(step.acts[d][g]) for g in range(G)] for d in range(D)]))
            if ctx.get(dut.side.valid):
                side = ctx.get(dut.side.payload)
                if ctx.get(dut.side.ready):
                    markers.append((int(side.last), int(side.walk_last)))
            for d, port in enumerate(dut.payloads):
                if holding[d] and ctx.get(port.ready):
                    holding[d] = False
                    offered[d] += 1
            await ctx.tick()
            cycles += 1
            assert cycles < 2000, f"seed {seed}: the gather hangs"

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(steps) == n, f"seed {seed}: {len(steps)} steps for {n} payloads"
    for i, (slots, acts) in enumerate(steps):
        want_slots = [payloads[d][i]["slot"] for d in range(D)]
        want_acts = [[0 if payloads[d][i]["pad"] >> g & 1
                      else int(act[in_bank * words + payloads[d][i]["addrs"][g]])
                      for g in range(G)] for d in range(D)]
        assert (slots, acts) == (want_slots, want_acts), f"seed {seed}: step {i}"
    want_markers = [(p["last"], p["walk_last"]) for p in payloads[0]]
    assert markers == want_markers, f"seed {seed}: markers"
    # One read per distinct word of a payload's unpadded lanes (lanes that share a word
    # are served by one read).
    sh = Banking(config).group_bits
    want_reads = [sum(len({p["addrs"][g] >> sh for g in range(G) if not p["pad"] >> g & 1})
                      for p in payloads[d]) for d in range(D)]
    assert reads == want_reads, f"seed {seed}: reads per domain"


@pytest.mark.parametrize("config", [TINY, TINY.replace(name="tiny-g2", rows_per_step=2),
                                    TINY.replace(name="tiny-one-domain",
                                                 skip_granularity="macro")],
                         ids=lambda c: c.name)
def test_registered_move_and_busy_equal_the_expressions(config):
    """`move` and each domain's `busy` are registers whose next values are computed from
    the cycle's state (hw/gather.py); in every cycle they must equal what the
    combinational expressions before gave: ``busy = pend.any()`` and ``move = b_valid &
    ~fresh.any() & ~c_valid & ~any(busy | busy_r)`` (``busy_r``: busy one cycle before,
    cleared by the reset).  Random payloads (aligned runs, scattered lanes, all-padding
    ones), random macro `ready` (also while C is empty) and run resets at random cycles."""
    seed = 57
    rng = np.random.default_rng(seed)
    D, G, words = config.wordline_domains, config.rows_per_step, config.act_buffer_words
    act = rng.integers(0, 1 << config.act_bits, size=2 * words)
    rst = Signal()
    bench = GatherBench(config, act.tolist())
    top = Module()
    top.submodules.bench = ResetInserter(rst)(bench)
    fragment = Fragment.get(top, None)
    dut_fragment = fragment.find_subfragment("bench").find_subfragment("dut")
    regs = signals_by_name(dut_fragment)
    move, b_valid, c_valid, fresh = (regs[name] for name in ("move", "b_valid", "c_valid",
                                                               "fresh"))
    busy = [regs[f"busy{d}"] for d in range(D)]
    pend = [regs[f"pend{d}"] for d in range(D)]
    dut = bench.dut

    def payload():
        kind = rng.integers(0, 3)
        base = int(rng.integers(0, words // G)) * G
        addrs = ([base + g for g in range(G)] if kind == 0        # one aligned word
                 else [int(a) for a in rng.integers(0, words, size=G)])
        pad = (1 << G) - 1 if rng.random() < 0.15 else int(rng.integers(0, 1 << G))
        return {"slot": int(rng.integers(0, config.row_slots)), "addrs": addrs, "pad": pad,
                "first": 0, "last": 0, "walk_last": 0}

    checked = {"cycles": 0, "moves": 0}

    async def testbench(ctx):
        ctx.set(dut.in_bank, 1)
        busy_r = [0] * D
        in_flight = 0
        holding = [False] * D
        for cycle in range(3000):
            reset = rng.random() < 0.01
            ctx.set(rst, int(reset))
            if not any(holding) and rng.random() < 0.7:     # in step, as in the unit
                for port in dut.payloads:
                    ctx.set(port.payload, payload())
                holding = [True] * D
            for port in dut.payloads:
                ctx.set(port.valid, int(holding[0]))
            ctx.set(dut.request.ready, int(in_flight < 3 and rng.random() < 0.6))
            ctx.set(dut.side.ready, int(in_flight > 0 and rng.random() < 0.6))
            busy_now = [ctx.get(b) for b in busy]
            assert busy_now == [int(ctx.get(p) != 0) for p in pend], \
                f"seed {seed}, cycle {cycle}: busy != pend.any()"
            old_move = (ctx.get(b_valid) and not ctx.get(fresh) and not ctx.get(c_valid)
                        and not any(busy_now) and not any(busy_r))
            assert ctx.get(move) == int(old_move), \
                f"seed {seed}, cycle {cycle}: move {ctx.get(move)}, expression {old_move}"
            checked["moves"] += int(old_move)
            if reset:
                busy_r, in_flight = [0] * D, 0
            else:
                busy_r = busy_now
                in_flight += (ctx.get(dut.request.valid) and ctx.get(dut.request.ready)) \
                    - (ctx.get(dut.side.valid) and ctx.get(dut.side.ready))
            readies = [ctx.get(port.ready) for port in dut.payloads]
            assert len(set(readies)) == 1, f"seed {seed}, cycle {cycle}: ready {readies}"
            # a payload is offered until taken
            holding = [h and not (readies[0] and not reset) for h in holding]
            await ctx.tick()
            checked["cycles"] += 1

    sim = Simulator(fragment)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert checked["moves"] > 100, f"seed {seed}: only {checked['moves']} moves"


@pytest.mark.parametrize("seed", [5, 17, 40])
def test_an_idle_cycle_leaves_no_trace(seed):
    """`idle_next` holds the gather in its run reset, a copy of ~running per part
    (hw/gather.py).  Gather A is interrupted by one idle cycle mid-walk (a domain reading,
    its spare full, steps in C and in the marker FIFO); gather B was idle from the start.
    From the cycle after A's reset on, fed the same inputs, both must give the same
    outputs in every cycle: a part left out of the run reset (its state from before the
    idle cycle kept) shows."""
    config = TINY
    rng = np.random.default_rng(seed)
    D, G, words = config.wordline_domains, config.rows_per_step, config.act_buffer_words
    act = rng.integers(0, 1 << config.act_bits, size=2 * words).tolist()
    benches = GatherBench(config, act), GatherBench(config, act)
    top = Module()
    top.submodules.a, top.submodules.b = benches
    a, b = (bench.dut for bench in benches)

    def payload():
        return {"slot": int(rng.integers(0, config.row_slots)),
                "addrs": [int(x) for x in rng.integers(0, words, size=G)],
                "pad": int(rng.integers(0, 1 << G)) & ~1,       # lane 0 read: a busy domain
                "first": 0, "last": int(rng.integers(0, 2)), "walk_last": 0}

    def outputs(dut, ctx) -> tuple:
        request, side = ctx.get(dut.request.valid), ctx.get(dut.side.valid)
        act_en = ctx.get(dut.act_en)
        return ([ctx.get(port.ready) for port in dut.payloads], act_en,
                [ctx.get(dut.act_addr[d]) if act_en >> d & 1 else None for d in range(D)],
                request, ctx.get(dut.request.payload).as_value().value if request else None,
                side, ctx.get(dut.side.payload).as_value().value if side else None)

    seen = {"compared": 0, "steps": 0}

    async def testbench(ctx):
        for dut in (a, b):
            ctx.set(dut.in_bank, 1)
            ctx.set(dut.idle_next, 1)
        idle_at, holding, in_flight = None, False, 0
        for cycle in range(3000):
            if idle_at is not None and cycle > idle_at + 500:
                break                           # compared for 500 cycles after the idle one
            if idle_at is None and cycle > 30 and ctx.get(a.act_en) and in_flight \
                    and not ctx.get(a.payloads[0].ready) and ctx.get(a.request.valid):
                idle_at = cycle                 # mid-walk: A's idle cycle follows
            ctx.set(a.idle_next, int(cycle == idle_at))
            ctx.set(b.idle_next, int(idle_at is None or cycle <= idle_at))
            if not holding and rng.random() < 0.6:
                offers = [payload() for _ in range(D)]
                for dut in (a, b):
                    for port, offer in zip(dut.payloads, offers):
                        ctx.set(port.payload, offer)
                holding = True
            ready = int(in_flight < 3 and rng.random() < 0.6)
            pop = int(in_flight > 0 and rng.random() < 0.6)
            for dut in (a, b):
                for port in dut.payloads:
                    ctx.set(port.valid, int(holding))
                ctx.set(dut.request.ready, ready)
                ctx.set(dut.side.ready, pop)
            if idle_at is not None and cycle >= idle_at + 2:
                assert outputs(a, ctx) == outputs(b, ctx), \
                    f"seed {seed}, cycle {cycle}: A (idle at {idle_at}) differs from a fresh gather"
                seen["compared"] += 1
                seen["steps"] += ctx.get(a.request.valid) & ready
            if idle_at is not None and cycle == idle_at + 1:
                holding, in_flight = False, 0   # what A held is gone
            else:
                in_flight += (ctx.get(a.request.valid) & ready) - (ctx.get(a.side.valid) & pop)
                holding = holding and not ctx.get(a.payloads[0].ready)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["compared"] > 300 and seen["steps"] > 20, f"seed {seed}: {seen}"
