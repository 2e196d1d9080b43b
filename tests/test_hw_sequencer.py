"""Amaranth-simulator tests of a macro unit's sequencer (`mars.hw.sequencer.UnitSequencer`).

A program of WALKs and SYNCs runs with scripted decoders and writer.  Every decoder must
take exactly one descriptor per WALK, carrying the walk's descriptor with its own domain's
``index_start`` and ``count``; the parameter word the WALK names must be presented while
it runs; the sequencer waits at each SYNC until ``go``.  The timing of the first test is
counted by hand.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.program import Op, instruction_layout, param_layout
from mars.hw.sequencer import UnitSequencer

TINY = PRESETS["tiny"]
D = TINY.wordline_domains


def walk(rng, config, param_addr):
    """A WALK word with random decoder fields (as a dict of instruction_layout fields)."""
    return {"op": Op.WALK, "param_addr": param_addr,
            "index_start": [int(v) for v in rng.integers(0, 32, size=D)],
            "count": [int(v) for v in rng.integers(0, 16, size=D)],
            "desc": {"out_w": int(rng.integers(1, 9)), "out_h": int(rng.integers(1, 9)),
                     "k_groups": int(rng.integers(1, 9)), "steps": int(rng.integers(0, 9))},
            "n_valid": int(rng.integers(0, config.channels_per_macro + 1))}


def encode(config, words):
    layout = instruction_layout(config)
    return [layout.const(w).as_bits() for w in words]


def run(program, params, *, ready_prob=1.0, done_delay=(0, 1), go_after=2, seed=0,
        max_cycles=400):
    """Run until the sequencer has waited at ``len(syncs)`` SYNCs; returns the trace."""
    config = TINY
    dut = UnitSequencer(config, program=encode(config, program),
                        params=[param_layout(config).const(p).as_bits() for p in params])
    rng = np.random.default_rng(seed)
    syncs = sum(w["op"] == Op.SYNC for w in program)
    trace = {"starts": [[] for _ in range(D)], "waiting": [], "starting": [],
             "params_in_run": [], "insn_in_run": []}

    async def testbench(ctx):
        cycle, released, wait_since, run_left = 0, 0, None, None
        while released < syncs:
            for d, start in enumerate(dut.starts):
                ctx.set(start.ready, int(rng.random() < ready_prob))
            taken = [bool(ctx.get(s.valid) and ctx.get(s.ready)) for s in dut.starts]
            for d, start in enumerate(dut.starts):
                if taken[d]:
                    trace["starts"][d].append((cycle, ctx.get(start.payload)))
            if any(taken) and run_left is None:
                run_left = int(rng.integers(*done_delay))
            # The writer finishes the walk `run_left` cycles after the first start.
            done = run_left is not None and run_left == 0 and not ctx.get(dut.starting)
            ctx.set(dut.walk_done, done)
            if done:
                trace["params_in_run"].append(ctx.get(dut.params))
                trace["insn_in_run"].append(ctx.get(dut.insn))
                run_left = None
            elif run_left:
                run_left -= 1
            trace["starting"].append(ctx.get(dut.starting))
            waiting = ctx.get(dut.waiting)
            if waiting:
                trace["waiting"].append(cycle)
                wait_since = cycle if wait_since is None else wait_since
            go = waiting and cycle - wait_since >= go_after
            ctx.set(dut.go, go)
            if go:
                released += 1
                wait_since = None
            await ctx.tick()
            cycle += 1
            assert cycle < max_cycles, f"seed {seed}: the sequencer hangs"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return trace


def test_timing_hand_counted():
    # FETCH 0, DECODE 1, START 2 (both decoders take it), RUN 3 (walk_done) -> the second
    # WALK starts at 6; the SYNC is fetched at 8, decoded at 9, waits from 10; go at 12
    # (two cycles later) -> the third WALK starts at 15; the last SYNC waits from 19.
    rng = np.random.default_rng(1)
    program = [walk(rng, TINY, 0), walk(rng, TINY, 1), {"op": Op.SYNC},
               walk(rng, TINY, 2), {"op": Op.SYNC}]
    params = [[{"bias": 0, "mult": 0, "shift": 0}] * TINY.channels_per_macro] * 3
    trace = run(program, params)
    for d in range(D):
        assert [c for c, _ in trace["starts"][d]] == [2, 6, 15]
    assert trace["waiting"] == [10, 11, 12, 19, 20, 21]
    assert [i for i, s in enumerate(trace["starting"]) if s] == [2, 6, 15]


def test_descriptors_and_parameters_with_stalls():
    seed = 5
    rng = np.random.default_rng(seed)
    N = TINY.channels_per_macro
    params = [[{"bias": int(rng.integers(-1000, 1000)), "mult": int(rng.integers(0, 1 << 16)),
                "shift": int(rng.integers(0, 40))} for _ in range(N)] for _ in range(6)]
    program, walks = [], []
    for phase in range(3):
        for _ in range(int(rng.integers(1, 4))):
            w = walk(rng, TINY, int(rng.integers(0, len(params))))
            program.append(w)
            walks.append(w)
        program.append({"op": Op.SYNC})
    trace = run(program, params, ready_prob=0.4, done_delay=(0, 6), go_after=3, seed=seed)
    for d in range(D):
        got = trace["starts"][d]
        assert len(got) == len(walks), f"seed {seed}: domain {d} took {len(got)} descriptors"
        for i, ((_, desc), w) in enumerate(zip(got, walks)):
            want = {**w["desc"], "index_start": w["index_start"][d], "count": w["count"][d]}
            fields = {k: int(getattr(desc, k)) for k in want}
            assert fields == want, f"seed {seed}: walk {i}, domain {d}: {fields} != {want}"
    assert len(trace["params_in_run"]) == len(walks)
    for i, (par, insn, w) in enumerate(zip(trace["params_in_run"], trace["insn_in_run"],
                                           walks)):
        got = [{k: int(getattr(par[n], k)) for k in ("bias", "mult", "shift")}
               for n in range(N)]
        assert got == params[w["param_addr"]], f"seed {seed}: walk {i}: parameters"
        assert int(insn.n_valid) == w["n_valid"], f"seed {seed}: walk {i}: instruction"
