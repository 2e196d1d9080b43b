"""Amaranth-simulator tests of the register helpers (`mars.hw.regs`).

`ring2` with a read pointer split into copies (``fanout``) must be the same FIFO as with
one pointer: both are driven with the same random pushes, pops and values and compared
in every cycle with each other and with a Python deque (the independent expectation),
and its `full_next` must be the deque's fullness after the cycle's push and pop.  `queue`
must be a FIFO too (against a deque, to every depth), its `head_next` the next head.
`run_reset` must hold a block in reset in exactly the cycles the register it copies
(``running``) is low, as a Python counter model says.
"""

from __future__ import annotations

import random
from collections import deque

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, unsigned
from amaranth.sim import Simulator

from mars.contract.netlist import REPLICA
from mars.hw.regs import queue, replicas, ring2, run_reset

BITS = 37


class RingBench(Elaboratable):
    def __init__(self, fanout):
        self.fanout = fanout
        self.new = Signal(BITS)
        self.push, self.pop = Signal(), Signal()
        self.out = Signal(BITS)
        self.valid, self.full, self.full_next = Signal(), Signal(), Signal()
        self.copies = []

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        ring = ring2(m, unsigned(BITS), self.new, self.push, self.pop, name="ring",
                     fanout=self.fanout)
        m.d.comb += [self.out.eq(ring.payload), self.valid.eq(ring.valid),
                     self.full.eq(ring.full), self.full_next.eq(ring.full_next)]
        return m


@pytest.mark.parametrize("fanout", [None, 5, 8, 36, 37])
def test_ring_with_copied_read_pointer_is_the_same_fifo(fanout):
    bench = RingBench(fanout)
    rng = random.Random(fanout or 0)
    seen = []

    async def testbench(ctx):
        model = deque()
        for _ in range(400):
            valid, full = ctx.get(bench.valid), ctx.get(bench.full)
            assert valid == (len(model) > 0) and full == (len(model) == 2)
            if model:
                assert ctx.get(bench.out) == model[0]
            push = not full and rng.random() < 0.6
            pop = valid and rng.random() < 0.5
            value = rng.getrandbits(BITS)
            ctx.set(bench.new, value)
            ctx.set(bench.push, push)
            ctx.set(bench.pop, pop)
            expected_next = len(model) + push - pop == 2
            assert ctx.get(bench.full_next) == expected_next
            await ctx.tick()
            if pop:
                model.popleft()
            if push:
                model.append(value)
            seen.append(len(model))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert {0, 1, 2} <= set(seen)             # empty, one and two entries all visited


def test_replicas_follow_the_register_and_carry_the_replica_name():
    class Bench(Elaboratable):
        def __init__(self):
            self.value, self.enable = Signal(6), Signal()
            self.reg = Signal(6, init=5)

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain()
            with m.If(self.enable):
                m.d.sync += self.reg.eq(self.value)
            self.copies = replicas(m, self.reg, self.value, 3, name="sel",
                                   enable=self.enable)
            return m

    bench = Bench()
    rng = random.Random(1)

    async def testbench(ctx):
        for _ in range(100):
            assert [ctx.get(c) for c in bench.copies] == [ctx.get(bench.reg)] * 3
            ctx.set(bench.value, rng.getrandbits(6))
            ctx.set(bench.enable, rng.random() < 0.5)
            await ctx.tick()

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert [c.name for c in bench.copies] == [f"sel{k}{REPLICA}" for k in range(3)]
    assert all(c.init == 5 for c in bench.copies)


def test_run_reset_holds_the_block_exactly_while_running_is_low():
    class Counter(Elaboratable):
        def __init__(self):
            self.count = Signal(8)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.count.eq(self.count + 1)
            return m

    class Bench(Elaboratable):
        def __init__(self):
            self.running_next = Signal()
            self.running = Signal()             # the controller's register
            self.block = Counter()

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain()
            m.d.sync += self.running.eq(self.running_next)
            self.idle = run_reset(m, self.block, ~self.running_next, name="block")
            return m

    bench = Bench()
    rng = random.Random(3)
    held = []

    async def testbench(ctx):
        count = 0
        for t in range(300):
            running = ctx.get(bench.running)
            assert ctx.get(bench.idle) == 1 - running          # the copy is ~running
            assert ctx.get(bench.block.count) == count
            held.append(not running)
            # long idle and running stretches with single-cycle flips between them
            ctx.set(bench.running_next, running ^ (rng.random() < 0.15))
            await ctx.tick()
            count = 0 if not running else (count + 1) % 256     # reset while ~running

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert True in held and False in held
    assert bench.idle.name == f"block_idle{REPLICA}" and bench.idle.init == 1


@pytest.mark.parametrize("depth", [1, 2, 6])
def test_queue_is_a_fifo_and_gives_the_next_head(depth):
    class Bench(Elaboratable):
        def __init__(self):
            self.new, self.push, self.pop = Signal(5), Signal(), Signal()

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain()
            self.head, self.valid, self.head_next = queue(
                m, unsigned(5), self.new, self.push, self.pop, depth, name="q")
            return m

    bench = Bench()
    rng = random.Random(depth)
    seen = []

    async def testbench(ctx):
        model = deque()
        for _ in range(500):
            assert ctx.get(bench.valid) == (len(model) > 0)
            if model:
                assert ctx.get(bench.head) == model[0]
            # pushes and pops in bursts, so that the queue fills up and drains
            bias = 0.8 if (len(seen) // 40) % 2 else 0.2
            pop = bool(model) and rng.random() < 1 - bias
            push = (len(model) < depth or pop) and rng.random() < bias
            value = rng.getrandbits(5)
            ctx.set(bench.new, value)
            ctx.set(bench.push, push)
            ctx.set(bench.pop, pop)
            if pop:
                model.popleft()
            if push:
                model.append(value)
            if model:
                assert ctx.get(bench.head_next) == model[0]
            await ctx.tick()
            seen.append(len(model))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert set(range(depth + 1)) <= set(seen)   # every fill level visited
