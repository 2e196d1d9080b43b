"""Amaranth-simulator tests of a macro unit's sequencer (`mars.hw.sequencer.UnitSequencer`).

A program of WALKs and SYNCs runs with scripted decoders and writer.  Every decoder must
take exactly one descriptor per WALK, carrying the walk's descriptor with its own domain's
``index_start`` and ``count``; the parameter word the WALK names must be presented while
it runs; the sequencer waits at each SYNC until ``go``.  The timing of the first test is
counted by hand from the fetch engine's rule (`fetch_times`), one instruction ahead of the
executor.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.program import (
    CONTROL_WORD_BITS,
    Op,
    UnitFormat,
    instruction_layout,
    join_words,
    param_layout,
    split_word,
)
from mars.contract.netlist import REPLICA
from mars.hw.sequencer import UnitSequencer
from mars.tb.fragments import signals_by_name

from mars.tb.networks import residual_config

TINY = PRESETS["tiny"]
FMT = UnitFormat(TINY)
#: Configurations the sequencer runs on: tiny, where both of a WALK's streams end
#: together (ki + 2 = kp + 5 = 11), default, where its parameter word is the longer
#: (24 stored words against 10), and ice40, where its instruction is (7 against 2).
CONFIGS = [TINY, PRESETS["default"], PRESETS["ice40"]]


def walk(rng, config, param_word):
    """A WALK word with random decoder fields (as a dict of instruction_layout fields)
    that names parameter word `param_word` (stored at param_word x param_chunks)."""
    D = config.wordline_domains
    return {"op": Op.WALK, "param_addr": param_word * UnitFormat(config).param_chunks,
            "index_start": [int(v) for v in rng.integers(0, 32, size=D)],
            "count": [int(v) for v in rng.integers(0, 16, size=D)],
            "desc": {"out_w": int(rng.integers(1, 9)), "out_h": int(rng.integers(1, 9)),
                     "k_groups": int(rng.integers(1, 9)), "steps": int(rng.integers(0, 9))},
            "n_valid": int(rng.integers(0, config.channels_per_macro + 1))}


def sync(rng=None, config=TINY):
    """A SYNC word: only its ``op`` counts; with `rng`, random other fields."""
    if rng is None:
        return {"op": Op.SYNC}
    return {**walk(rng, config, int(rng.integers(0, config.param_words))), "op": Op.SYNC}


def encode(config, words):
    layout = instruction_layout(config)
    return [part for w in words
            for part in split_word(layout.const(w).as_bits(), UnitFormat(config).insn_chunks)]


def encode_params(config, words):
    layout = param_layout(config)
    return [part for w in words
            for part in split_word(layout.const(w).as_bits(), UnitFormat(config).param_chunks)]


def run(program, params, *, config=TINY, ready_prob=1.0, done_delay=(0, 1), go_after=2,
        seed=0, max_cycles=400):
    """Run until the sequencer has waited at ``len(syncs)`` SYNCs; returns the trace."""
    D = config.wordline_domains
    dut = UnitSequencer(config, program=encode(config, program),
                        params=encode_params(config, params))
    rng = np.random.default_rng(seed)
    syncs = sum(w["op"] == Op.SYNC for w in program)
    trace = {"starts": [[] for _ in range(D)], "waiting": [], "starting": [], "release": [],
             "params_in_run": [], "insn_in_run": [], "params_at_start": [],
             "insn_at_start": []}

    # The read-valid flags' copies (each enables a share of a shadow) and the flag.
    fragment = Fragment.get(dut, None)
    regs = signals_by_name(fragment)
    flag_copies = {flag: [s for name, s in regs.items()
                          if name.startswith(f"{flag}_") and name.endswith(REPLICA)]
                   for flag in ("iv2", "pv2")}
    assert all(flag_copies.values()), sorted(regs)

    async def testbench(ctx):
        cycle, released, wait_since, done_at = 0, 0, None, None
        while released < syncs:
            for flag, flag_regs in flag_copies.items():
                assert [ctx.get(c) for c in flag_regs] == \
                    [ctx.get(regs[flag])] * len(flag_regs), f"cycle {cycle}: {flag}"
            # The controller's ``more``: the phase after the SYNC ahead exists (the
            # unit is in phase `released`; SYNC k ends phase k).
            ctx.set(dut.more, released + 1 < syncs)
            for d, start in enumerate(dut.starts):
                ctx.set(start.ready, int(rng.random() < ready_prob))
            taken = [bool(ctx.get(s.valid) and ctx.get(s.ready)) for s in dut.starts]
            for d, start in enumerate(dut.starts):
                if taken[d]:
                    trace["starts"][d].append((cycle, ctx.get(start.payload)))
            # The writer finishes the walk a random number of cycles (at least one) after
            # the executor takes it (START; the decoders may have taken its descriptor
            # long before).  Like the writer's register, `walk_done` is announced a cycle
            # ahead (`walk_done_next`).
            if ctx.get(dut.starting) and done_at is None:
                done_at = cycle + max(int(rng.integers(*done_delay)), 1)
            done = done_at == cycle
            ctx.set(dut.walk_done, done)
            ctx.set(dut.walk_done_next, done_at == cycle + 1)
            if done:
                trace["params_in_run"].append(ctx.get(dut.params))
                trace["insn_in_run"].append(ctx.get(dut.insn))
                done_at = None
            trace["starting"].append(ctx.get(dut.starting))
            if ctx.get(dut.starting):       # the writer reads both at its restart
                trace["params_at_start"].append(ctx.get(dut.params))
                trace["insn_at_start"].append(ctx.get(dut.insn))
            copies = ctx.get(dut.release)       # one copy per domain, all equal
            assert copies in (0, (1 << config.wordline_domains) - 1), copies
            trace["release"].append(copies & 1)
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

    sim = Simulator(fragment)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return trace


def fetch_times(fmt):
    """(S, F) counted by hand for the fetch engine (hw/sequencer.py), from its first read.
    A SYNC: its first stored word is read (cycle 0), on the read port (1) and registered
    (2), where its ``op`` shows: S = 3.  A WALK: its ki words are read in cycles 0 ..
    ki - 1, the last registered in ki + 1 and shifted in (ki + 2); its first word, which
    holds ``param_addr``, is registered in cycle 2, the kp parameter words are read from
    3, the last registered in kp + 4 and shifted in (kp + 5): F = max(ki + 2, kp + 5)."""
    return 3, max(fmt.insn_chunks + 2, fmt.param_chunks + 5)


def zero_params(config, count):
    return [[{"bias": 0, "mult": 0, "shift": 0}] * config.channels_per_macro] * count


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_timing_hand_counted(config):
    # Walks that end the cycle after START.  The engine has WALK0 at F: the decoders
    # take its descriptor that cycle, the executor takes it the next (F + 1: START at
    # F + 2) and the engine fetches WALK1 from F + 2: the decoders take it at 2F + 2,
    # START at 2F + 4 (WALK0 is done long before).  WALK1 runs one cycle; the SYNC,
    # fetched from 2F + 4, is there at 2F + S + 4: waiting from 2F + S + 5, go two cycles
    # later (2F + S + 7); WALK2, fetched from 2F + S + 4, is there at 3F + S + 4 (after the
    # go): decoders then, START at 3F + S + 6; the last SYNC is there at 3F + 2S + 6,
    # waited at from 3F + 2S + 7.  The SYNCs' other fields are random: only their first
    # stored word is read.
    S, F = fetch_times(UnitFormat(config))
    rng = np.random.default_rng(1)
    program = [walk(rng, config, 0), walk(rng, config, 1), sync(rng, config),
               walk(rng, config, 2), sync(rng, config)]
    trace = run(program, zero_params(config, 3), config=config)
    for d in range(config.wordline_domains):
        assert [c for c, _ in trace["starts"][d]] == [F, 2 * F + 2, 3 * F + S + 4]
    first, second = 2 * F + S + 5, 3 * F + 2 * S + 7
    assert trace["waiting"] == [first, first + 1, first + 2, second, second + 1, second + 2]
    starting = [F + 2, 2 * F + 4, 3 * F + S + 6]
    assert [i for i, s in enumerate(trace["starting"]) if s] == starting
    # `release` rises with START and stays (no payload passes here)
    assert trace["release"][F + 1] == 0 and trace["release"][F + 2] == 1


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_decoders_start_the_next_walk_early_hand_counted(config):
    """Walks that run R = F + 10 cycles after START: every next WALK's descriptor goes to
    the decoders as soon as it is fetched, while the walk before it runs, across a SYNC
    too (``more``), and the executor takes it the cycle its predecessor ends.  WALK0: there
    at F, decoders then, START at F + 2, done at F + R + 2 = 2F + 12.  WALK1: fetched from
    F + 2, decoders at 2F + 2, START at 2F + 13, done at 3F + 23.  The SYNC, fetched from
    2F + 13, is there at 2F + S + 13; WALK2, fetched from then, is there at 3F + S + 13,
    one SYNC ahead, and its phase exists: decoders then.  Waiting from 3F + 24, go at
    3F + 26, START at 3F + 27, done at 4F + 37; waiting at the last SYNC from 4F + 38.
    What the engine reads past that SYNC (zeros: a WALK) never goes to the decoders:
    ``more`` is low in the last phase."""
    S, F = fetch_times(UnitFormat(config))
    R = F + 10
    rng = np.random.default_rng(4)
    program = [walk(rng, config, 0), walk(rng, config, 1), sync(rng, config),
               walk(rng, config, 2), sync(rng, config)]
    trace = run(program, zero_params(config, 3), config=config, done_delay=(R, R + 1))
    assert 3 * F + S + 13 < 3 * F + 23             # WALK2 is fetched while WALK1 runs
    for d in range(config.wordline_domains):
        assert [c for c, _ in trace["starts"][d]] == [F, 2 * F + 2, 3 * F + S + 13]
    starting = [F + 2, 2 * F + 13, 3 * F + 27]
    assert [i for i, s in enumerate(trace["starting"]) if s] == starting
    first, second = 3 * F + 24, 4 * F + 38
    assert trace["waiting"] == [first, first + 1, first + 2, second, second + 1, second + 2]


def test_syncs_in_a_row_take_three_cycles_each():
    """Four SYNCs, a WALK, a SYNC, each ``go`` at once: SYNC k is counted in cycle
    kS + S - 1, taken by the executor the next cycle, waited at (one cycle) the cycle
    after; the WALK, fetched from 4S, is there at 4S + F: the decoders take it then (its
    phase exists), the executor the cycle after, or the cycle of the last SYNC's go if
    that is later (START one cycle after)."""
    config = TINY
    S, F = fetch_times(FMT)
    rng = np.random.default_rng(2)
    program = [sync(rng) for _ in range(4)] + [walk(rng, config, 0), sync()]
    trace = run(program, zero_params(config, 1), go_after=0)
    waits = [k * S + S + 1 for k in range(4)]
    assert trace["waiting"][:4] == waits
    for d in range(config.wordline_domains):
        assert [c for c, _ in trace["starts"][d]] == [4 * S + F]
    start = max(waits[-1] + 1, 4 * S + F + 2)
    assert [i for i, s in enumerate(trace["starting"]) if s] == [start]


def test_op_and_param_addr_lie_in_the_first_stored_word():
    """The sequencer reads them from an instruction's first stored word (hw/sequencer.py):
    on every preset, and with residual adds (the widest instruction)."""
    for config in [*PRESETS.values(), residual_config(PRESETS["mars"])]:
        layout = instruction_layout(config)
        assert layout["op"].offset == 0, config.name
        field = layout["param_addr"]
        assert field.offset + field.width <= CONTROL_WORD_BITS, config.name


def test_split_words_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        bits = int(rng.integers(1, 1000))
        value = int.from_bytes(rng.bytes(bits // 8 + 1), "little") & ((1 << bits) - 1)
        chunks = -(-bits // CONTROL_WORD_BITS)
        parts = split_word(value, chunks)
        assert len(parts) == chunks and all(0 <= p < 1 << CONTROL_WORD_BITS for p in parts)
        assert join_words(parts) == value, f"seed 3: {bits} bits"


def random_params(rng, config, count):
    """`count` parameter words with random bias, M and S within their fields."""
    fmt = UnitFormat(config)
    acc = 1 << (config.acc_bits - 1)
    return [[{"bias": int(rng.integers(-acc, acc)),
              "mult": int(rng.integers(0, 1 << config.requant_mult_bits)),
              "shift": int(rng.integers(0, 1 << fmt.shift_bits))}
             for _ in range(config.channels_per_macro)] for _ in range(count)]


@pytest.mark.parametrize("done_delay", [(0, 6), (20, 40)], ids=["short", "long"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_descriptors_and_parameters_with_stalls(config, done_delay):
    """Every walk runs with its own descriptors, parameters and instruction.  Short walks
    end before the next WALK is fetched; long ones after it, so the executor takes it in
    the cycle the walk ends (`insn` and `params` must load the shadow in that cycle)."""
    seed = 5
    rng = np.random.default_rng(seed)
    D, N = config.wordline_domains, config.channels_per_macro
    params = random_params(rng, config, min(6, config.param_words))
    program, walks = [], []
    for phase in range(3):
        for _ in range(int(rng.integers(1, 4))):
            w = walk(rng, config, int(rng.integers(0, len(params))))
            program.append(w)
            walks.append(w)
        program.append(sync(rng, config))
    trace = run(program, params, config=config, ready_prob=0.4, done_delay=done_delay,
                go_after=3, seed=seed, max_cycles=1000)
    where = f"{config.name}, seed {seed}"
    for d in range(D):
        got = trace["starts"][d]
        assert len(got) == len(walks), f"{where}: domain {d} took {len(got)} descriptors"
        for i, ((_, desc), w) in enumerate(zip(got, walks)):
            want = {**w["desc"], "index_start": w["index_start"][d], "count": w["count"][d]}
            fields = {k: int(getattr(desc, k)) for k in want}
            assert fields == want, f"{where}: walk {i}, domain {d}: {fields} != {want}"
    for when in ("at_start", "in_run"):
        assert len(trace[f"params_{when}"]) == len(walks)
        for i, (par, insn, w) in enumerate(zip(trace[f"params_{when}"],
                                               trace[f"insn_{when}"], walks)):
            got = [{k: int(getattr(par[n], k)) for k in ("bias", "mult", "shift")}
                   for n in range(N)]
            want = params[w["param_addr"] // UnitFormat(config).param_chunks]
            assert got == want, f"{where}: walk {i}, {when}: parameters"
            assert int(insn.n_valid) == w["n_valid"], f"{where}: walk {i}, {when}: instruction"
