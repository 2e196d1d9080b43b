"""The cycle model (`mars.sw.golden.cycles`) against cycles counted by hand, stage by stage.

The counts follow the blocks' state machines as docs/architecture.md ("Cycle model")
describes them; the sim tests compare the same model with the RTL's own counters.

* A walk, from the cycle after its START to its last write: 8 (decoder: issue, 7 stages with
  the output register) + 6 (gather: the payload in its spare, stage A, and its lane
  compares registered; registered in stage B; its word read; the word registered; the
  offer register C) + 1 (the macro takes the request) + T (the first pixel's
  macro steps, T = (steps - 1) x P + Ab/b, P = max(Ab/b, 3): the gather takes a payload at
  most every third cycle) + 2 (the macro's R and P stages) + 2 (accumulator: its stage S,
  then the running sums) + w (writer: w = ceil(valid channels / write lanes)) + 4 (the
  writer's stages S2, S3, S4 and its output register after S1), then one pixel every
  max(steps x P, w) cycles: the macro and the writer overlap, the slower one sets the
  pace.  The spares behind the macro's result register and the accumulator's hold register
  (docs/synthesis.md, "The ready chain") add no cycle: the first pixel meets no full
  register, and afterwards the writer finds the next pixel held whenever it finishes one.
* A unit's sequencer (hw/sequencer.py): its fetch engine reads the program in order, a
  SYNC in S = 3 cycles (recognised from its first stored word), a WALK with its
  parameters in F = max(ki + 2, kp + 5) (ki, kp: stored words of an instruction and of a
  parameter word, read side by side from the two memories; the parameter reads start
  once the instruction's first stored word, which holds ``param_addr``, is registered);
  the decoders take a fetched WALK's descriptor in the cycle the engine has it, if they
  are free and no SYNC lies before it (or one, whose next phase exists), and the
  executor takes the WALK in the cycle it is free (walk done, ``go``) once the decoders
  have it (the cycle after at the earliest): START the cycle after.  The walk's first
  payload reaches the decoders' output DECODER_START = 9 cycles after they took the
  descriptor and waits there until START: the walk then runs as a walk started at
  v = max(START - 8, the decoders' cycle) would (W from v + 1, done seen at v + W + 1).
* A loader's LOAD state: per LOAD FETCH, DECODE, count + 1 COPY cycles; then FETCH,
  DECODE, SYNC.  With ``skip_loads`` every count is 0.
"""

from types import SimpleNamespace

import pytest

from mars.config import MAX_WRITER_STAGES, MIN_WRITER_STAGES, PRESETS
from mars.contract.program import UnitFormat
from mars.sw.golden.cycles import layer_walk_cycles, network_cycles, walk_cycles
from mars.sw.mapper import Load, Phase, Walk

TINY, DEFAULT = PRESETS["tiny"], PRESETS["default"]
#: Writer stages after a group's issue cycle's register S0 (mars.hw.writer: S1 the lanes'
#: rotation, S2 partial products, S3 product, S4 clamp inputs, the output register).
WRITER_EXTRA = 5


def lanes_of(config):
    """Channels the writer writes a cycle: ceil(C/Wb / cycles_per_step) (architecture.md,
    "Arithmetic of the writer")."""
    n = config.channels_per_macro
    return min(n, -(-n // config.cycles_per_step))


def walk_by_hand(cps, lanes, steps, pixels, n_valid, writer_stages=MAX_WRITER_STAGES):
    """`writer_stages` below the full pipeline leave out writer stages (one cycle each)."""
    P = max(cps, 3)                       # cycles between two steps the gather offers
    T, w = (steps - 1) * P + cps, -(-n_valid // lanes)
    first = 8 + 6 + 1 + T + 2 + 2 + w + WRITER_EXTRA - (MAX_WRITER_STAGES - writer_stages)
    return first + (pixels - 1) * max(steps * P, w)


# (cycles per step, lanes, steps, pixels, valid channels): counted on paper.
HAND = [
    ((1, 1, 1, 1, 1), 26),      # 8+6+1+1+2+2+1+5: one payload through every stage
    ((1, 4, 1, 1, 4), 26),      # four channels in one writer cycle
    ((4, 1, 1, 1, 1), 29),      # the macro takes Ab/b = 4 cycles a step
    ((1, 1, 2, 3, 1), 29 + 2 * 6),  # gather-bound (Ab/b = 1): a pixel every 2 x 3 cycles
    ((4, 1, 2, 3, 1), 33 + 2 * 8),  # macro-bound: a pixel every 2 x 4 cycles
    ((1, 1, 1, 3, 4), 29 + 2 * 4),  # writer-bound: a pixel every 4 cycles
    # writer-bound and long: the accumulator's hold register and spare and the macro's
    # result register and spare fill and the macro stalls, the writer still never waits
    ((1, 1, 1, 8, 12), 37 + 7 * 12),    # 8+6+1+1+2+2+12+5, then a pixel every 12 cycles
]


@pytest.mark.parametrize("args,cycles", HAND, ids=[str(a) for a, _ in HAND])
def test_walk_cycles_counted_by_hand(args, cycles):
    assert walk_by_hand(*args) == cycles
    assert walk_cycles(*args) == cycles


def test_walk_cycles_formula_over_a_grid():
    for cps in (1, 2, 4):
        for lanes in (1, 2, 4):
            for n_valid in (1, 3, 8, 16):
                for steps in (1, 2, 5):
                    for pixels in (1, 2, 7):
                        args = (cps, lanes, steps, pixels, n_valid)
                        assert walk_cycles(*args) == walk_by_hand(*args), args


@pytest.mark.parametrize("writer_stages", range(MIN_WRITER_STAGES, MAX_WRITER_STAGES))
def test_fewer_writer_stages_shorten_every_walk_by_one_cycle_each(writer_stages):
    """A writer with fewer stages offers each group that many cycles sooner; the pace
    (a pixel every max(steps x P, w) cycles) does not change."""
    for cps in (1, 4):
        for lanes in (1, 4):
            for n_valid in (1, 3, 12):
                for steps in (1, 2):
                    for pixels in (1, 3, 8):
                        args = (cps, lanes, steps, pixels, n_valid)
                        got = walk_cycles(*args, latency=writer_stages)
                        assert got == walk_by_hand(*args, writer_stages), args
                        assert got == walk_cycles(*args) - (MAX_WRITER_STAGES - writer_stages), args


def fetch_times(config):
    """(S, F): cycles the fetch engine takes for a SYNC and for a WALK (counted in
    tests/test_hw_sequencer.py, `fetch_times`)."""
    fmt = UnitFormat(config)
    return 3, max(fmt.insn_chunks + 2, fmt.param_chunks + 5)


def first_sync_wait(config):
    """Index (from the run's first cycle) of the first cycle a unit waits at its first
    SYNC: the engine has it at S, the executor takes it then, waits from S + 1."""
    return fetch_times(config)[0] + 1


#: Cycles from the decoders taking a descriptor to its first payload in their output
#: register: the start edge, issue, the 7 stages (hw/decoder.py).
DECODER_START = 9


def unit_walk_state(config, L, Ws):
    """WALK-state cycles of a unit whose program is SYNC, walks of W = `Ws`, SYNC, in the
    first phase after a LOAD state of `L` cycles, counted event by event: the engine
    fetches the first WALK from S (after the first SYNC), each later instruction from the
    cycle after the previous WALK was taken.  The decoders take a WALK the cycle the
    engine has it (the first during the LOAD state, where ``more`` is high); the executor
    takes it in the first cycle it is free (the WALK state's first cycle, when the
    registered ``go`` comes, or the cycle that sees the previous walk done) after that:
    START the cycle after.  A walk's W is a number or, for a unit with write slots, a
    function of the walk's first cycle after its virtual start v (`slotted`).

    The decoders take the next WALK when the engine has it and they are free; they are
    free once the walk's last payload is in their output register, at the latest when the
    gather takes it, and from then the walk needs at least 4 (gather) + 1 + Ab/b (macro)
    + 2 + 1 + 1 + 4 (writer) > DECODER_START cycles: their being busy never delays the
    next walk (test_a_long_walks_decoders_never_delay_the_next)."""
    S, F = fetch_times(config)
    a = S + F                                 # the decoders take the first WALK
    s = max(L, a + 1) + 1                     # its START
    for i, W in enumerate(Ws):
        v = max(s - DECODER_START, a)         # runs as if started (old style) at v
        W = W(v + 1) if callable(W) else W
        d = v + W + 1                         # the RUN cycle that sees the walk done
        if i + 1 < len(Ws):
            a = s + F                         # the engine fetched the next one from s
            s = max(d, a + 1) + 1
    waits = max(d, s + S) + 1                 # the final SYNC, fetched from s
    return waits - L + 1


def slotted(cfg, w, t0=None):
    """`walk_cycles` of walk `w` on its unit's write slot, first cycle after START t0; with
    t0 None, the function of t0 (for `unit_walk_state`).  Without residual adds the
    writer's latency is its ``writer_stages``."""
    assert not cfg.residual_adds
    if t0 is None:
        return lambda t: slotted(cfg, w, t)
    return walk_cycles(cfg.cycles_per_step, lanes_of(cfg), w.steps, w.pixels, w.n_valid,
                       group=cfg.rows_per_step, slot=w.unit, units=cfg.macros, t0=t0,
                       latency=cfg.writer_stages)


def fake_mapping(config, phases, resident=False):
    return SimpleNamespace(config=config, phases=phases, resident=resident,
                           layers=[None] * (1 + max(p.layer for p in phases)))


def walk(unit, steps, rows, out_w, n_valid):
    return Walk(unit, 0, 0, rows, out_w, steps, n_valid, {})


def test_one_phase_one_unit_counted_by_hand():
    cfg = TINY
    cps, lanes = cfg.cycles_per_step, lanes_of(cfg)
    walks = [walk(0, 1, 1, 1, 4), walk(0, 1, 1, 5, 2)]
    phase = Phase(0, [Load(0, 0, 0, 2), Load(0, 8, 8, 2)], walks)
    [result] = network_cycles(fake_mapping(cfg, [phase]))
    load = (2 + 3) + (2 + 3) + 3                # per LOAD: FETCH, DECODE, count+1 COPY
    assert load > first_sync_wait(cfg)          # the loader is the slower one
    W = [walk_by_hand(cps, lanes, w.steps, w.pixels, w.n_valid) for w in walks]
    S, F = fetch_times(cfg)
    # The first walk waits for the engine: its decoders take it at S + F, START at
    # S + F + 2, so it runs as if started at S + F.  The second is fetched from
    # S + F + 2 while the first runs (its decoders, one payload, are free): decoders at
    # 2F + S + 2, START the cycle after the first is seen done (S + F + W0 + 1), as if
    # started 8 cycles before.
    assert S + F + 2 > load and W[0] + 1 >= F + 2 and W[1] + 1 >= S
    walk_state = (S + F + 2 - load) + W[0] + (W[1] + 2 - DECODER_START) + 1
    assert unit_walk_state(cfg, load, W) == walk_state
    assert (result.load_cycles, result.walk_cycles) == (load, walk_state)
    assert result.cycles == load + walk_state


def test_skip_loads_leaves_fetch_decode_and_one_copy_cycle():
    cfg = TINY
    phase = Phase(0, [Load(0, 0, 0, 8), Load(0, 8, 8, 4)], [walk(0, 1, 1, 1, 1)])
    [result] = network_cycles(fake_mapping(cfg, [phase]), skip_loads=True)
    assert result.load_cycles == max(2 * 3 + 3, first_sync_wait(cfg) + 1)


def test_phase_without_loads_waits_for_the_first_sync_only():
    [result] = network_cycles(fake_mapping(TINY, [Phase(0, [], [walk(0, 1, 1, 1, 1)])]))
    assert result.load_cycles == first_sync_wait(TINY) + 1    # the first SYNC's fetch


def test_phases_release_every_unit_together():
    """Two cores of two units: a WALK state lasts as long as its slowest unit; a LOAD
    state as long as its slowest core loader; each phase starts from the SYNCs."""
    cfg = DEFAULT
    short, long = walk(1, 1, 1, 2, 3), walk(2, 3, 2, 4, cfg.channels_per_macro)
    phases = [
        Phase(0, [Load(0, 0, 0, 16), Load(3, 0, 0, 40)], [short, long]),
        Phase(1, [Load(1, 0, 0, 5)], [walk(0, 2, 1, 3, 1), walk(3, 2, 1, 3, 1)]),
    ]
    results = network_cycles(fake_mapping(cfg, phases))
    load0 = max(max(16, 40) + 3 + 3, first_sync_wait(cfg) + 1)
    # Phase 1's walks were fetched during phase 0 (S + S + F cycles after the start), and
    # their decoders took them in phase 0's WALK state (the cycle after its go, at their
    # second SYNC, one SYNC ahead, phase 1 exists): they start (START) the cycle after the
    # WALK state's first cycle t1 and run as if started DECODER_START cycles earlier.
    S, F = fetch_times(cfg)
    walk0 = max(unit_walk_state(cfg, load0, [slotted(cfg, w)]) for w in (short, long))
    assert 2 * S + F < load0 + walk0
    load1 = 1 + 5 + 3 + 3                       # go_loaders comes in its first cycle
    t1 = load0 + walk0 + load1
    # go_units comes in the WALK state's first cycle t1, START in t1 + 1
    assert load0 + 1 <= t1 + 1 - DECODER_START
    walk1 = 1 + max(slotted(cfg, w, t1 + 2 - DECODER_START) for w in phases[1].walks) + 2 + 1
    walk1 -= DECODER_START
    expected = [(load0, walk0), (load1, walk1)]
    assert [(r.load_cycles, r.walk_cycles) for r in results] == expected
    assert [r.layer for r in results] == [0, 1]
    assert layer_walk_cycles(fake_mapping(cfg, phases), results) == [e[1] for e in expected]


@pytest.mark.parametrize("cfg", [DEFAULT, PRESETS["ice40"]], ids=lambda c: c.name)
def test_a_unit_with_two_walks_outlasts_two_units_with_one_each(cfg):
    """On default a WALK's fetch is set by its parameter word (F = kp + 5), on ice40 by its
    instruction (F = ki + 2; one macro unit, so no split)."""
    n = min(9, cfg.channels_per_macro)
    a, b, b1 = walk(0, 1, 1, 1, 4), walk(0, 1, 3, 3, n), walk(1, 1, 3, 3, n)
    [same] = network_cycles(fake_mapping(cfg, [Phase(0, [], [a, b])]))
    L = first_sync_wait(cfg) + 1
    S, F = fetch_times(cfg)
    # a: decoders at S + F, START at S + F + 2, runs as if started at S + F; b: fetched
    # from S + F + 2, its decoders take it when it is there (a's one payload left them
    # long before), the executor when a is seen done and the decoders have it
    d_a = S + F + slotted(cfg, a, S + F + 1) + 1
    a_b = 2 * F + S + 2
    s_b = max(d_a, a_b + 1) + 1
    v_b = max(s_b - DECODER_START, a_b)
    assert same.walk_cycles == max(v_b + slotted(cfg, b, v_b + 1) + 1, s_b + S) + 1 - L + 1
    assert same.walk_cycles == unit_walk_state(cfg, L, [slotted(cfg, a), slotted(cfg, b)])
    if cfg.macros > 1:
        [split] = network_cycles(fake_mapping(cfg, [Phase(0, [], [a, b1])]))
        assert split.walk_cycles == max(unit_walk_state(cfg, L, [slotted(cfg, w)])
                                        for w in (a, b1))


def test_a_mapped_one_layer_network_counted_by_hand():
    """A real mapping (one linear layer on `tiny`, two block sets on one unit): its first
    inference loads both sets' rows in the first phase, then walks them one by one; the
    steady state skips the loads."""
    import numpy as np

    from mars.sw.golden.network import IntegerNetwork
    from mars.sw.layer import LayerGeometry
    from mars.sw.mapper import map_network
    from mars.tb.networks import random_layer, stable_seed

    cfg = TINY
    seed = stable_seed("one-layer")
    layer = random_layer(np.random.default_rng(seed), cfg, "fc", "input",
                         LayerGeometry.linear(20, 7), "acc", 0.3)
    mapping = map_network(IntegerNetwork(cfg, (1, 1, 20), (layer,), "fc"))
    [phase] = mapping.phases
    assert mapping.resident and len(phase.walks) == 2, f"seed {seed}"
    cps, lanes = cfg.cycles_per_step, lanes_of(cfg)
    W = [walk_by_hand(cps, lanes, w.steps, 1, w.n_valid) for w in phase.walks]
    loads = max(sum(ld.count + 3 for ld in phase.loads) + 3, first_sync_wait(cfg) + 1)
    skipped = max(3 * len(phase.loads) + 3, first_sync_wait(cfg) + 1)
    [first] = network_cycles(mapping)
    [steady] = network_cycles(mapping, skip_loads=True)
    assert (first.load_cycles, first.walk_cycles) == (
        loads, unit_walk_state(cfg, loads, W)), f"seed {seed}"
    assert (steady.load_cycles, steady.walk_cycles) == (
        skipped, unit_walk_state(cfg, skipped, W))


# Write slots (docs/banking.md): a lane group that offers a word issues only K = 6 cycles
# (the writer's latency) before its unit's slot, (t + 6) % U == slot, i.e. (t + 2) % 4 ==
# slot for U = 4.  One pixel, cps 1, 4 lanes, G = 8, U = 4.
# Without slots the group(s) issue at ticks 20 (and 21): 7 and 8 behind the 3-stage decoder,
# 7 more behind the 7-stage decoder and the macro's stages R and P (docs/decoder.md,
# docs/macro.md), 5 more behind the gather's spare, its compares, the payload, word and
# offer registers, 1 more behind the accumulator's stage S (mars.hw.accumulator).  With slots
# the word-ending group waits for the next cycle i >= its tick with (i + 2) % 4 == slot;
# the walk ends at i + 6.
SLOTS = [
    ((4, 0), 28), ((4, 1), 29), ((4, 2), 26), ((4, 3), 27),   # one group, ends the word
    ((8, 0), 28), ((8, 1), 29), ((8, 2), 30), ((8, 3), 27),   # 2nd group ends it (tick 21)
]


@pytest.mark.parametrize("args,cycles", SLOTS)
def test_write_slots_counted_by_hand(args, cycles):
    n_valid, slot = args
    assert walk_cycles(1, 4, 1, 1, n_valid, group=8, slot=slot, units=4) == cycles


def test_extra_word_reads_delay_the_step_by_hand():
    """A payload whose lanes lie in 3 words takes 2 more gather cycles (mars.hw.gather):
    one pixel, one step, cps 1: 26 + 2 cycles; a second pixel's 3 reads hide behind the
    first pixel's macro step only when the step is long enough (cps 4: 29 + 4 + 1: one
    of them does not)."""
    from mars.sw.golden.cycles import _Walk, _WalkInfo

    def run(cps, pixels, extra):
        w = _Walk(cps, 1)
        w.begin(1, pixels, 1, _WalkInfo(extra=extra))
        cycles = 1
        w.tick()
        while not w.walk_done():
            w.tick()
            cycles += 1
        return cycles

    assert run(1, 1, (2,)) == 26 + 2
    assert run(4, 2, (0, 2)) == 29 + 4 + 1
    assert run(4, 2, (2, 2)) == 29 + 2 + 4 + 1



@pytest.mark.parametrize("stages", range(MIN_WRITER_STAGES, MAX_WRITER_STAGES + 1))
@pytest.mark.parametrize("macros", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("residual", [False, True])
def test_writer_latency_agrees_with_the_rtl(macros, residual, stages):
    """The model's writer latency is the RTL's (mars.hw.writer): ``writer_stages`` (6
    by default), with residual adds the next value 1 + d modulo U, so that the shortcut
    read, d cycles after a lane group's issue (1 with S0 registered, at 6 stages), falls
    in the cycle before a slot of its unit (the top's shortcut port)."""
    from mars.hw.writer import writer_latency as rtl_latency
    from mars.sw.golden.cycles import writer_latency

    cfg = TINY.replace(name="u", macros_per_core=macros, residual_adds=residual,
                       writer_stages=stages)
    k = writer_latency(cfg)
    # The RTL's own function, which UnitWriter's ``latency`` is (an unelaborated
    # UnitWriter would raise Amaranth's UnusedElaboratable warning when collected).
    assert k == rtl_latency(cfg)
    assert k >= stages
    if residual:
        d = 1 if stages == MAX_WRITER_STAGES else 0
        assert k % macros == (1 + d) % macros and k - macros < stages
    else:
        assert k == stages
    if stages == MAX_WRITER_STAGES:
        assert k == writer_latency(TINY.replace(name="u", macros_per_core=macros,
                                                residual_adds=residual))


@pytest.mark.parametrize("hidden_rows", [5, 120])
def test_hidden_loads_run_with_the_walks(hidden_rows):
    """``hide_loads``: the loader program is, per phase, its own loads, SYNC, the next
    phase's hidden loads, SYNC.  The LOAD state releases the loaders with the units, the
    WALK state lasts until both wait again, so phase 1's hidden LOAD of `hidden_rows`
    rows costs phase 0's WALK state only what exceeds the walk (1 + (count + 3) + 3
    cycles, as in a LOAD state), and phase 1's LOAD state only the empty segment's
    go cycle, FETCH, DECODE and SYNC (4 cycles instead of 1 + (count + 3) + 3)."""
    cfg = TINY.replace(hide_loads=True)
    w0, w1 = walk(0, 1, 1, 1, 4), walk(0, 1, 2, 3, 2)
    S, F = fetch_times(cfg)
    phases = [Phase(0, [Load(0, 0, 0, 8)], [w0]),
              Phase(1, [Load(0, 8, 8, hidden_rows, hidden=True)], [w1])]
    results = network_cycles(fake_mapping(cfg, phases))
    load0 = max(8 + 3 + 3, first_sync_wait(cfg) + 1)
    units0 = unit_walk_state(cfg, load0, [slotted(cfg, w0)])
    loader0 = 1 + (hidden_rows + 3) + 3
    walk0 = max(units0, loader0)
    assert (walk0 == loader0) == (hidden_rows == 120)     # both limits are reached
    load1 = 1 + 3
    t1 = load0 + walk0 + load1
    # w1's decoders took it once fetched (w0's one payload had left them; one SYNC ahead,
    # phase 1 exists), after w0's START (S + F + 2), the SYNC and w1's fetch: it starts at
    # t1 + 1 and runs as if started DECODER_START cycles earlier
    assert (S + F + 2) + S + F <= t1 + 1 - DECODER_START
    walk1 = 1 + slotted(cfg, w1, t1 + 2 - DECODER_START) + 2 + 1 - DECODER_START
    assert [(r.load_cycles, r.walk_cycles) for r in results] == [(load0, walk0),
                                                                 (load1, walk1)]
    # the same phases without hide_loads: the load runs in phase 1's LOAD state
    serial = network_cycles(fake_mapping(TINY, [
        phases[0], Phase(1, [Load(0, 8, 8, hidden_rows)], [w1])]))
    load1 = 1 + (hidden_rows + 3) + 3
    walk1 = (1 + slotted(cfg, w1, load0 + units0 + load1 + 2 - DECODER_START) + 2 + 1
             - DECODER_START)
    assert [(r.load_cycles, r.walk_cycles) for r in serial] == [(load0, units0),
                                                                (load1, walk1)]


@pytest.mark.parametrize("cfg", [TINY, DEFAULT], ids=lambda c: c.name)
def test_a_long_walks_decoders_never_delay_the_next(cfg):
    """A one-pixel walk of n steps, then a one-step walk, on one unit: for large n the
    decoders are busy with the first long after the engine has the second WALK (F cycles
    after the first's START), yet they take it before the executor could (the first walk
    drains for more than DECODER_START cycles after its last payload left them): the
    count of `unit_walk_state`, which ignores them, holds for every n."""
    S, F = fetch_times(cfg)
    L = first_sync_wait(cfg) + 1
    for n in range(1, 13):
        walks = [walk(0, n, 1, 1, 1), walk(0, 1, 1, 1, 1)]
        [result] = network_cycles(fake_mapping(cfg, [Phase(0, [], walks)]))
        W = [slotted(cfg, w) for w in walks]
        assert result.walk_cycles == unit_walk_state(cfg, L, W), n
