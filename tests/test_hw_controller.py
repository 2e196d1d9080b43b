"""Amaranth-simulator tests of the phase controller (`mars.hw.controller.Controller`).

The loaders and units are scripted: after its ``go`` (or, for the loaders, the start) a
participant stops waiting for a set number of cycles, then waits at its SYNC again.  The
expected phase cycle counts are counted by hand from those scripts (see each case).
"""

from __future__ import annotations

from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.hw.controller import Controller

# Two loaders (cores) and two units.
CONFIG = PRESETS["tiny"].replace(name="tiny-2c", cores=2, macros_per_core=1)


def run(phases: int, loads: list[list[int]], walks: list[list[int]], *, skip=0,
        start_when_zero=False, hide=False):
    """Run `phases` phases; ``loads[k][c]``: cycles loader c is busy in its k-th program
    segment (it leaves a SYNC on every ``go_loaders``; without ``hide_loads`` segment k is
    phase k's loads), ``walks[p][u]``: cycles unit u is busy in phase p (each waits again
    from the cycle after).  With ``hide``, ``hide_loads``: ``go_loaders`` also comes with
    every ``go_units`` (the next phase's hidden loads).  Returns the trace."""
    dut = Controller(CONFIG.replace(hide_loads=hide))
    trace = {"phase_end": [], "go_units": [], "go_loaders": [], "done_at": None, "more": [],
             "more_next": [], "running": [], "running_next": []}

    async def testbench(ctx):
        if start_when_zero:       # phases not written yet, or written back to 0: ignored
            for count in (None, 5, 0):
                if count is not None:
                    ctx.set(dut.control.valid, 1)
                    ctx.set(dut.control.payload, {"addr": 0, "data": count})
                    await ctx.tick()
                    ctx.set(dut.control.valid, 0)
                if count != 5:
                    ctx.set(dut.start, 1)
                    await ctx.tick()
                    ctx.set(dut.start, 0)
                    await ctx.tick()
                    trace.setdefault("ignored", []).append(
                        (ctx.get(dut.running), ctx.get(dut.done)))
        for addr, data in ((0, phases), (1, skip)):
            ctx.set(dut.control.valid, 1)
            ctx.set(dut.control.payload, {"addr": addr, "data": data})
            await ctx.tick()
        ctx.set(dut.control.valid, 0)
        # one copy per loader, all equal
        trace["skip_loads"] = [ctx.get(dut.skip_loads) >> c & 1 for c in range(CONFIG.cores)]
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(Controller.START_LATENCY - 1):       # to the run's first cycle
            assert not ctx.get(dut.running)
            await ctx.tick()
        t, phase, seg = 0, 0, 0               # t: cycle of the run, 0 = the first LOAD cycle
        loader_wait_from = list(loads[0])     # loaders run from the first LOAD cycle
        unit_wait_from = [0] * CONFIG.macros  # units start at their first SYNC
        while ctx.get(dut.running):
            trace["more"].append(ctx.get(dut.more))
            trace["more_next"].append(ctx.get(dut.more_next))
            ctx.set(dut.loaders_waiting, sum(1 << c for c, w in enumerate(loader_wait_from)
                                             if t >= w))
            ctx.set(dut.units_waiting, sum(1 << u for u, w in enumerate(unit_wait_from)
                                           if t >= w))
            if ctx.get(dut.phase_end):
                trace["phase_end"].append((t, ctx.get(dut.phase), ctx.get(dut.phase_cycles) + 1))
                phase += 1
            if ctx.get(dut.go_units):
                trace["go_units"].append(t)
                unit_wait_from = [t + 1 + w for w in walks[phase]]
            if ctx.get(dut.go_loaders):
                trace["go_loaders"].append(t)
                seg += 1
                loader_wait_from = [t + 1 + n for n in loads[seg]]
            await ctx.tick()
            t += 1
            assert t < 500, "the controller hangs"
        trace["done_at"] = t
        trace["done"] = ctx.get(dut.done)
        trace["total_cycles"] = ctx.get(dut.total_cycles)

    async def watch_running(ctx):          # at every clock edge, from the first
        async for _clk, _rst, running, running_next, early in ctx.tick().sample(
                dut.running, dut.running_next, dut.running_early):
            trace["running"].append(running)
            trace["running_next"].append(running_next)
            trace.setdefault("running_early", []).append(early)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_process(watch_running)
    sim.run()
    # `running_next` (what the top's copies of `running` beside each block load) is
    # `running` a cycle early, from the idle cycles before the start to the end.
    assert trace["running_next"][:-1] == trace["running"][1:]
    assert trace["running_early"][:-1] == trace["running_next"][1:]
    assert 0 in trace["running"] and 1 in trace["running"]
    # `more_next` (what each unit's own copy of `more` loads) is `more` a cycle early.
    assert trace["more_next"][:-1] == trace["more"][1:]
    return trace


def test_two_phases_hand_counted():
    # The go pulses are registers: each comes the cycle after the decision, and the state
    # it starts ignores the waiting flags in that cycle.
    # Phase 0: the loaders wait from t = 3 and t = 5, so every participant waits at t = 5:
    # decision at t = 5, go_units at t = 6 (LOAD: t = 0..5, 6 cycles).  The units stop
    # waiting at t = 7 for 4 and 7 cycles: all wait again at t = 14, the phase ends there
    # (WALK: t = 6..14, 9 cycles): 15 cycles, and go_loaders at t = 15.
    # Phase 1 (from t = 15): loaders busy 2 and 1 cycles from t = 16 -> all wait at 18,
    # go_units at t = 19; units busy 1 and 2 cycles from t = 20 -> all wait at t = 22, the
    # end: 8 cycles.  FINISH and FINISH2 at t = 23, 24 (counted in no phase), idle and
    # done from t = 25.
    trace = run(2, loads=[[3, 5], [2, 1]], walks=[[4, 7], [1, 2]])
    assert trace["go_units"] == [6, 19]
    assert trace["go_loaders"] == [15]                  # not after the last phase
    assert trace["phase_end"] == [(14, 0, 15), (22, 1, 8)]
    assert trace["done_at"] == 25 and trace["done"] == 1
    assert trace["total_cycles"] == 15 + 8
    assert trace["skip_loads"] == [0, 0]
    # `more`: the cycle after a LOAD cycle or a WALK cycle of phase 0 (not the last): high
    # from t = 1 (t = 0 follows the idle cycle of the start) to t = 19, the first WALK
    # cycle of phase 1, then low (phase 1 is the last; nothing follows its SYNC) to the
    # FINISH2 cycle.
    assert trace["more"] == [0] + [1] * 19 + [0] * 5


def test_one_phase_ready_at_once_and_skip_loads():
    # Loaders already waiting at t = 0 (skip: nothing to copy): decision at t = 0, go_units
    # at t = 1; the units busy 3 and 1 cycles from t = 2: all wait at t = 5, end: 6 cycles.
    trace = run(1, loads=[[0, 0]], walks=[[3, 1]], skip=1, start_when_zero=True)
    assert trace["ignored"] == [(0, 0)] * 2             # no phases: start did nothing
    assert trace["skip_loads"] == [1, 1]
    assert trace["go_units"] == [1]
    assert trace["phase_end"] == [(5, 0, 6)]
    assert trace["total_cycles"] == 6 and trace["done"] == 1


def test_hidden_loads_run_with_the_walks_hand_counted():
    # Phase 0: the loaders wait from t = 3 and 5: decision at 5, go_units and go_loaders at
    # t = 6 (LOAD: t = 0..5, 6 cycles).  The units walk 4 and 7 cycles (wait from 11 and
    # 14); the loaders copy phase 1's hidden rows for 2 and 20 cycles (wait from 9 and
    # 27): the WALK ends at t = 27, when the last loader waits (t = 6..27, 22 cycles), not
    # at 14; go_loaders at 28.  Phase 1: its own loads 1 and 0 cycles (wait from 30 and
    # 29), decision at 30, go_units and go_loaders (the empty hidden segment, 0 cycles:
    # waiting from 32) at 31 (LOAD: 28..30, 3 cycles; the go cycle 28 is ignored).  Units
    # walk 5 and 2 cycles: all wait at 37, the run ends (WALK 31..37, 7 cycles).
    trace = run(2, [[3, 5], [2, 20], [1, 0], [0, 0]], [[4, 7], [5, 2]], hide=True)
    assert trace["go_units"] == [6, 31]
    assert trace["go_loaders"] == [6, 28, 31]
    assert trace["phase_end"] == [(27, 0, 28), (37, 1, 10)]
    assert trace["total_cycles"] == 28 + 10 and trace["done"] == 1


def test_a_start_in_the_last_cycle_of_a_run_starts_the_next():
    """``start`` is ignored while a run is in progress, up to its last cycle (FINISH2,
    ``running`` high, ``running_next`` low): held high through a run, it starts the next
    run after exactly one idle cycle.  Units and loaders always wait."""
    dut = Controller(CONFIG, phases=1)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.loaders_waiting, 0b11)
        ctx.set(dut.units_waiting, 0b11)
        ctx.set(dut.start, 1)
        last_seen = False
        for _ in range(40):
            running, running_next = ctx.get(dut.running), ctx.get(dut.running_next)
            seen.append(running)
            await ctx.tick()
            if last_seen:
                ctx.set(dut.start, 0)       # the start of the last cycle was taken
            last_seen = last_seen or (running and not running_next)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    trace = "".join(map(str, seen))
    runs = [r for r in trace.strip("0").split("0") if r]
    assert len(runs) == 2 and runs[0] == runs[1], trace       # two equal runs
    assert runs[0] + "0" + runs[1] in trace, trace            # one idle cycle apart
