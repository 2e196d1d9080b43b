"""Amaranth-simulator unit tests of the CIM macro against the NumPy golden model."""

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from mars.config import PRESETS, MarsConfig, ReadoutMode
from mars.hw.macro import CimMacro
from mars.sw.golden import macro_compute, pack_row

CONFIGS = [
    PRESETS["tiny"],
    PRESETS["adc3"],
    PRESETS["wide8"],
    PRESETS["tiny"].replace(name="tiny-macro-skip", skip_granularity="macro"),
    # bit-parallel (one step per cycle), odd G, no saturation headroom
    MarsConfig(name="parallel", rows=24, cols=12, partitions=2, rows_per_step=3,
               weight_bits=3, act_bits=2, act_bits_per_cycle=2, readout_bits=2,
               readout_mode="saturating", cores=1, macros_per_core=1,
               weight_sram_rows=32, act_buffer_words=64),
]


def random_weights(rng, config):
    return rng.integers(config.weight_min, config.weight_max + 1,
                        size=(config.rows, config.channels_per_macro))


def run_macro(config, weights, slots, acts, *, stall_prob=0.0, seed=0):
    """Write `weights`, stream the requests, return (results, cycles of the compute)."""
    dut = CimMacro(config)
    rng = np.random.default_rng(seed)
    results = []
    G = config.rows_per_step
    timing = {}

    async def writer(ctx):
        for row in range(config.rows):
            ctx.set(dut.write.payload, {"slot": row // G, "lane": row % G,
                                        "data": pack_row(weights[row], config)})
            ctx.set(dut.write.valid, 1)
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        timing["start"] = 0
        count = 0
        for slot, x in zip(slots, acts):
            ctx.set(dut.request.payload, {"slots": slot.tolist(), "acts": x.tolist()})
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            count += 1
        ctx.set(dut.request.valid, 0)

    async def reader(ctx):
        cycles = 0
        while len(results) < len(slots):
            # `request.ready` comes from the macro's registers, not from the
            # accumulator's `ready` of this cycle (docs/synthesis.md, "The ready chain")
            seen = []
            for ready in (0, 1):
                ctx.set(dut.result.ready, ready)
                seen.append(ctx.get(dut.request.ready))
            assert seen[0] == seen[1], "request.ready follows result.ready"
            ready = int(rng.random() >= stall_prob)
            ctx.set(dut.result.ready, ready)
            await ctx.tick()
            cycles += 1
            # sampled at the edge: the transfer happened if valid & ready were high
        timing["cycles"] = cycles

    async def monitor(ctx):
        async for clk, _, valid, ready, payload in ctx.tick().sample(
                dut.result.valid, dut.result.ready, dut.result.payload):
            if valid and ready:
                results.append([int(v) for v in payload])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.add_process(monitor)
    sim.run_until(1e-8 * (config.rows + len(slots) * (config.cycles_per_step + 2) * 10 + 100))
    return np.array(results), timing


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_macro_matches_golden(config):
    rng = np.random.default_rng(1)
    weights = random_weights(rng, config)
    n = 40
    D = config.wordline_domains
    slots = rng.integers(0, config.row_slots, size=(n, D))
    acts = rng.integers(0, config.act_max + 1, size=(n, D, config.rows_per_step))
    results, _ = run_macro(config, weights, slots, acts, stall_prob=0.3)
    expected = macro_compute(weights, slots, acts, config)
    assert results.shape == expected.shape
    np.testing.assert_array_equal(results, expected)


# -- Row-serial read, readouts and timing (independent expectations from docs/macro.md) --

TINY = PRESETS["tiny"]

#: Geometry corners of the row-serial read (Q = gcd(G, Ab/b) reads of G/Q rows a step):
#: Q < Ab/b, odd G, Q = 1 (one read, b = Ab or G prime to Ab/b), a G/Q of 3 rows a word,
#: the saturating clamp exactly at G (linear path) and just below it (per bit plane), and
#: the HCiM binary/ternary readouts (random scale codes).
CORNERS = [
    PRESETS["ice40"],                                                   # G=2, Q=2 < 4
    TINY.replace(name="g3-q1", rows=48, rows_per_step=3),               # odd G, Q=1 < 4
    TINY.replace(name="g5-q1", rows=40, rows_per_step=5),               # odd G, Q=1
    TINY.replace(name="g6-q2", rows=48, rows_per_step=6),               # 3 rows a word
    TINY.replace(name="g3-q3", rows=48, rows_per_step=3, act_bits=6,    # odd G, Q=Ab/b=3
                 act_bits_per_cycle=2),
    TINY.replace(name="parallel-q1", act_bits_per_cycle=4),            # b = Ab: Q=1, 1 cycle
    TINY.replace(name="g6-q6", rows=48, rows_per_step=6, act_bits=6),  # 6 reads of 1 row
    TINY.replace(name="sat-at-g", rows=48, rows_per_step=3,             # clamp 3 = G: linear
                 readout_mode="saturating", readout_bits=2),
    TINY.replace(name="sat-below-g", readout_mode="saturating",         # clamp 3 < G=4
                 readout_bits=2),
    TINY.replace(name="sat-g3-q3", rows=48, rows_per_step=3, act_bits=6,
                 act_bits_per_cycle=2, readout_mode="saturating", readout_bits=1),
    PRESETS["hcim"],                                                    # ternary, G=2, Q=2
    PRESETS["hcim"].replace(name="hcim-binary", readout_mode="binary"),
    # a binary default geometry (G=8, 2 bits a cycle: Q=2 reads of 4 rows), T=3
    PRESETS["default"].replace(name="default-binary", readout_mode="binary",
                               readout_threshold=3, act_bits_per_cycle=2),
    TINY.replace(name="ternary-t-at-g", readout_mode="ternary", readout_threshold=4,
                 scale_bits=6, scale_frac_bits=2),
    TINY.replace(name="binary-g3-q1", rows=48, rows_per_step=3, readout_mode="binary",
                 readout_threshold=2, scale_bits=5, scale_frac_bits=1),
    TINY.replace(name="ternary-parallel", readout_mode="ternary", readout_threshold=1,
                 act_bits_per_cycle=4, scale_bits=6, scale_frac_bits=0),
    TINY.replace(name="b2-q2", act_bits_per_cycle=2),                   # 2 cycles, 2 reads
    # the binary default's read pattern (2 bits a cycle, 2 reads a step) on tiny's size
    TINY.replace(name="binary-b2", readout_mode="binary", readout_threshold=2,
                 act_bits_per_cycle=2, scale_bits=7, scale_frac_bits=3),
]

#: The corners small enough to simulate in a fraction of a second (the HCiM presets'
#: 16 channels x Ab x Wb running counts take about a second to build a simulation of):
#: every test runs these, the big ones only where they add a case.
SMALL = [config for config in CORNERS if config.cols <= 16]
HCIM = [config for config in CORNERS if config.name == "hcim"]


class Run:
    """One simulated run: results in order and the cycle of every handshake."""

    def __init__(self):
        self.results, self.accepts, self.taken, self.valid_from = [], [], [], []
        self.max_in_flight = 0


def random_scale_codes(rng, config):
    top = 1 << (config.scale_bits - 1)
    return rng.integers(-top, top, size=(config.channels_per_macro, config.weight_bits))


def simulate(config, weights, slots, acts, *, scales=None, stall_prob=0.0, gap_prob=0.0,
             seed=0, writes=(), hold_ready=None, before_reset=None, reset_cycle=None,
             background=(), wait_at=None):
    """Write `weights` (row by row), then offer the steps with random `valid` gaps and
    take the results with random `ready` stalls, cycle by cycle from one testbench.
    Cycles count from the first one after the weight writes.

    writes: (step index, lane, row) tuples: that row is written into lane `lane` of the
        step's slot (domain 0's) in the cycle the step is accepted.
    hold_ready: (first, last) cycles with the result's `ready` low.
    before_reset, reset_cycle: steps (slots, acts) offered first, then the reset (the
        run reset, ``ResetInserter``) high in cycle `reset_cycle`, whatever is in flight;
        the steps `slots`, `acts` are offered from the next cycle on and only their
        results are recorded.
    background, wait_at: (slot, lane, row) writes issued in order beside the steps, one
        in most cycles (random gaps) from the first; step `wait_at` and the ones after
        it are offered only once every one is written.
    """
    cfg = config
    G = cfg.rows_per_step
    rst = Signal()
    dut = CimMacro(cfg)
    bench = Module()
    bench.submodules.dut = ResetInserter(rst)(dut)
    rng = np.random.default_rng(seed)
    run = Run()
    writes = {step: (lane, row) for step, lane, row in writes}

    async def testbench(ctx):
        for row in range(cfg.rows):
            ctx.set(dut.write.payload, {"slot": row // G, "lane": row % G,
                                        "data": pack_row(weights[row], cfg)})
            ctx.set(dut.write.valid, 1)
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        if scales is not None:
            ctx.set(dut.scales, [[int(a) for a in channel] for channel in scales])
        cycle = 0
        if before_reset is not None:
            pre_slots, pre_acts = before_reset
            nxt = 0
            while cycle < reset_cycle:
                if nxt < len(pre_slots):
                    ctx.set(dut.request.payload, {"slots": pre_slots[nxt].tolist(),
                                                  "acts": pre_acts[nxt].tolist()})
                ctx.set(dut.request.valid, int(nxt < len(pre_slots)))
                ctx.set(dut.result.ready, int(rng.random() >= stall_prob))
                if nxt < len(pre_slots) and ctx.get(dut.request.ready):
                    nxt += 1
                await ctx.tick()
                cycle += 1
            ctx.set(rst, 1)
            ctx.set(dut.request.valid, 0)
            await ctx.tick()
            ctx.set(rst, 0)
            cycle += 1
        nxt, offered, was_valid = 0, False, False
        pending = list(background)
        while len(run.results) < len(slots):
            may_offer = wait_at is None or nxt < wait_at or not pending
            if not offered and nxt < len(slots) and may_offer and rng.random() >= gap_prob:
                ctx.set(dut.request.payload, {"slots": slots[nxt].tolist(),
                                              "acts": acts[nxt].tolist()})
                offered = True
            ctx.set(dut.request.valid, int(offered))
            ready = int(rng.random() >= stall_prob)
            if hold_ready is not None and hold_ready[0] <= cycle <= hold_ready[1]:
                ready = 0
            ctx.set(dut.result.ready, ready)
            accept = offered and ctx.get(dut.request.ready)
            if accept and nxt in writes:
                lane, row = writes[nxt]
                ctx.set(dut.write.payload, {"slot": int(slots[nxt][0]), "lane": lane,
                                            "data": pack_row(row, cfg)})
            background_write = (not (accept and nxt in writes) and pending
                                and rng.random() < 0.7)
            if background_write:
                slot, lane, row = pending.pop(0)
                ctx.set(dut.write.payload, {"slot": slot, "lane": lane,
                                            "data": pack_row(row, cfg)})
            ctx.set(dut.write.valid, int(accept and nxt in writes or bool(background_write)))
            valid = ctx.get(dut.result.valid)
            # a new result is valid from this cycle: none was, or the one before was taken
            if valid and (not was_valid or (run.taken and run.taken[-1] == cycle - 1)):
                run.valid_from.append(cycle)
            if valid and ready:
                run.results.append([int(v) for v in ctx.get(dut.result.payload)])
                run.taken.append(cycle)
            was_valid = valid
            if accept:
                run.accepts.append(cycle)
                nxt += 1
                offered = False
            run.max_in_flight = max(run.max_in_flight, len(run.accepts) - len(run.taken))
            await ctx.tick()
            cycle += 1
            assert cycle < 60 * (len(slots) + 10) * cfg.cycles_per_step, \
                f"seed {seed}: the macro hangs"

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return run


def random_steps(rng, config, n):
    D, G = config.wordline_domains, config.rows_per_step
    slots = rng.integers(0, config.row_slots, size=(n, D))
    acts = rng.integers(0, config.act_max + 1, size=(n, D, G))
    return slots, acts


def expect(config, weights, slots, acts, scales):
    return macro_compute(weights, slots, acts, config,
                         *(() if scales is None else (scales,)))


@pytest.mark.parametrize("config", CORNERS, ids=lambda c: c.name)
def test_corners_match_golden_with_gaps_and_stalls(config):
    """Random steps, random `valid` gaps and `ready` stalls, bit-exact with the golden."""
    seed = 7
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    slots, acts = random_steps(rng, config, 40)
    # mostly stalled: the result register and its spare fill, so `adv` drops while the
    # front is in a step's chunk reads
    run = simulate(config, weights, slots, acts, scales=scales, stall_prob=0.7,
                   gap_prob=0.2, seed=seed)
    np.testing.assert_array_equal(np.array(run.results),
                                  expect(config, weights, slots, acts, scales),
                                  err_msg=f"seed {seed}")


@pytest.mark.parametrize("config", SMALL + HCIM + [
    config for config in CORNERS if config.name == "default-binary"] + [
    PRESETS["wide8"], PRESETS["adc3"]], ids=lambda c: c.name)
def test_extremes_of_psum_range(config):
    """All-max activations on all-min (and all-max, all -1) weights, the scale codes'
    extremes: bit-exact with the golden model, and the extreme steps reach the ends of
    `psum_range` (so every result bit of the sums is exercised)."""
    rng = np.random.default_rng(3)
    G, D, N = config.rows_per_step, config.wordline_domains, config.channels_per_macro
    weights = random_weights(rng, config)
    fill = [config.weight_min, config.weight_max, -1]      # slots 0, 1, 2
    for slot, value in enumerate(fill):
        weights[slot * G:(slot + 1) * G] = value
    top = 1 << (config.scale_bits - 1)
    steps = []
    for slot in range(len(fill) + 1):
        for x in (config.act_max, 0, None):
            x = rng.integers(0, config.act_max + 1, size=(D, G)) if x is None else \
                np.full((D, G), x)
            steps.append((np.full(D, slot), x))
    slots = np.array([s for s, _ in steps])
    acts = np.array([a for _, a in steps])
    if config.scaled_readout:
        # the most negative sum: every comparator bit one (all -1 weights, all-max acts)
        # and every code -2**(B-1) (ternary: the sign column +2**(B-1) - 1 instead)
        low = np.full((N, config.weight_bits), -top)
        if config.readout_mode is ReadoutMode.TERNARY:
            low[:, -1] = top - 1
        high = np.where(low == -top, top - 1, -top)       # the most positive
        scale_sets = [low, high]         # random codes: the tests above
    else:
        scale_sets = [None]
    ends = set()
    for scales in scale_sets:
        run = simulate(config, weights, slots, acts, scales=scales, stall_prob=0.3, seed=5)
        want = expect(config, weights, slots, acts, scales)
        np.testing.assert_array_equal(np.array(run.results), want)
        ends |= {int(want.min()), int(want.max())}
        if scales is not None:
            # step 6: all -1 weights (every weight bit one), all-max activations: every
            # comparator bit is one, y[n] = (2**Ab - 1) * sum_j s_j a[n][j]
            s = np.ones(config.weight_bits, dtype=np.int64)
            if config.readout_mode is ReadoutMode.TERNARY:
                s[-1] = -1
            np.testing.assert_array_equal(run.results[6], config.act_max * (scales @ s))
    lo, hi = config.psum_range
    assert lo <= min(ends) and max(ends) <= hi
    if config.readout_mode is not ReadoutMode.TERNARY:     # ternary's bound is not tight
        assert lo in ends, f"no step reaches psum_range's low end {lo}: {sorted(ends)}"
    if not config.scaled_readout:
        assert hi in ends, f"no step reaches psum_range's high end {hi}: {sorted(ends)}"


@pytest.mark.parametrize("config", SMALL + HCIM, ids=lambda c: c.name)
def test_latency_and_throughput(config):
    """docs/macro.md: steps accepted back to back run at one per Ab/b cycles (the next
    step is accepted in the last cycle of the one before, no bubble, also with Q < Ab/b),
    and a step accepted in cycle 0 has its result valid in cycle Ab/b + 3; with random
    `valid` gaps too (an idle macro accepts at once)."""
    rng = np.random.default_rng(11)
    steps = config.cycles_per_step
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    slots, acts = random_steps(rng, config, 16)
    want = expect(config, weights, slots, acts, scales)
    for gap_prob in (0.0, 0.5):
        run = simulate(config, weights, slots, acts, scales=scales, gap_prob=gap_prob,
                       seed=12)
        np.testing.assert_array_equal(np.array(run.results), want)
        accepts = np.array(run.accepts)
        if gap_prob == 0.0:
            np.testing.assert_array_equal(accepts, np.arange(len(slots)) * steps,
                                          err_msg="one step per Ab/b cycles")
        else:
            assert np.all(np.diff(accepts) >= steps)
        np.testing.assert_array_equal(np.array(run.valid_from), accepts + steps + 3,
                                      err_msg="result valid Ab/b + 3 cycles after accept")
        np.testing.assert_array_equal(np.array(run.taken), accepts + steps + 3)


@pytest.mark.parametrize("config", SMALL + HCIM, ids=lambda c: c.name)
def test_steps_in_flight_with_result_held(config):
    """docs/macro.md: with the result's `ready` low, the macro takes steps until its
    result register and spare are full: five in flight with one cycle a step, four with
    more; when `ready` returns every result comes out in order, bit-exact."""
    rng = np.random.default_rng(21)
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    slots, acts = random_steps(rng, config, 16)
    run = simulate(config, weights, slots, acts, scales=scales, seed=22,
                   hold_ready=(0, 40 * config.cycles_per_step))
    np.testing.assert_array_equal(np.array(run.results),
                                  expect(config, weights, slots, acts, scales))
    assert run.max_in_flight == (5 if config.cycles_per_step == 1 else 4)


#: The reset tests' cases: each small corner with the reset in the last cycle of a step
#: (the next one's accept) and mid-step (in a chunk read when Q > 1); hcim mid-step.
RESET_CASES = [(config, phase) for config in SMALL for phase in ("accept", "mid")] + [
    (config, "mid") for config in HCIM]


@pytest.mark.parametrize(("config", "phase"), RESET_CASES,
                         ids=lambda c: c if isinstance(c, str) else c.name)
def test_run_reset_mid_step(config, phase):
    """The run reset (``ResetInserter``, as hw/top.py wraps the unit) in a cycle of a
    step while others are in flight: the steps after it are bit-exact (no stale result,
    no count or accumulator carried over)."""
    rng = np.random.default_rng(31)
    steps = config.cycles_per_step
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    pre = random_steps(rng, config, 8)
    slots, acts = random_steps(rng, config, 12)
    # back to back, the third step is accepted in cycle 2 * steps (the last cycle of the
    # second); "accept": the reset in that cycle, "mid": in the third step's middle
    offset = 0 if phase == "accept" else max(1, steps // 2)
    run = simulate(config, weights, slots, acts, scales=scales, seed=32, stall_prob=0.3,
                   before_reset=pre, reset_cycle=2 * steps + offset)
    np.testing.assert_array_equal(np.array(run.results),
                                  expect(config, weights, slots, acts, scales))


@pytest.mark.parametrize("config", [PRESETS["tiny"]] + [
    config for config in SMALL if config.name in ("ice40", "g6-q2", "g3-q3", "binary-b2")],
    ids=lambda c: c.name)
def test_row_rewritten_as_a_step_reads_its_slot(config):
    """docs/macro.md, "Storage": a step reads its slot's rows G/Q a cycle, the word of
    rows ``c*G/Q .. (c+1)*G/Q - 1`` in its cycle c (c = 0 in the accept cycle), and a write
    in the cycle of a word's read is not seen by it (the read port is not transparent).
    So a row written in the accept cycle of a step on its slot reaches that step if and
    only if its word is read later (c >= 1); the steps after it see it."""
    rng = np.random.default_rng(41)
    G, r = config.rows_per_step, config.rows_per_read
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    n = 4 * G
    slots, acts = random_steps(rng, config, n)
    slots[:, :] = slots[:, :1]                   # every domain on the written slot
    writes = []
    for lane in range(G):                        # step 4*lane + 1 rewrites a row of its
        i = 4 * lane + 1                         # slot, step 4*lane + 2 reads it again
        slots[i + 1] = slots[i]
        row = rng.integers(config.weight_min, config.weight_max + 1,
                           size=config.channels_per_macro)
        writes.append((i, lane, row))
    run = simulate(config, weights, slots, acts, scales=scales, writes=writes,
                   stall_prob=0.5, gap_prob=0.2, seed=42)
    want, current = [], weights.copy()
    by_step = {i: (lane, row) for i, lane, row in writes}
    for i in range(n):
        seen = current
        if i in by_step:
            lane, row = by_step[i]
            current = current.copy()
            current[slots[i][0] * G + lane] = row
            seen = current if lane // r >= 1 else seen
        want.append(expect(config, seen, slots[i:i + 1], acts[i:i + 1], scales)[0])
    np.testing.assert_array_equal(np.array(run.results), np.array(want))


@pytest.mark.parametrize("config", [PRESETS["tiny"]] + [
    config for config in SMALL if config.name in ("ice40", "g6-q2", "g3-q3", "binary-b2",
                                                  "sat-below-g")], ids=lambda c: c.name)
def test_rows_written_beside_running_steps(config):
    """Hidden reloads (docs/architecture.md): rows written into the upper half of the row
    slots, one in most cycles, while steps on the lower half run with random stalls: those
    steps are bit-exact with the old contents, and the steps after the writes that read
    the upper half see every new row (each lane's word and sub-word)."""
    rng = np.random.default_rng(51)
    G, D, S = config.rows_per_step, config.wordline_domains, config.row_slots
    weights = random_weights(rng, config)
    scales = random_scale_codes(rng, config) if config.scaled_readout else None
    n_low, n_high = 24, 16
    slots, acts = random_steps(rng, config, n_low + n_high)
    slots[:n_low] = rng.integers(0, S // 2, size=(n_low, D))
    slots[n_low:] = rng.integers(S // 2, S, size=(n_high, D))
    rows = rng.permutation(np.arange(S // 2 * G, S * G))     # every upper row, any order
    new = weights.copy()
    new[rows] = rng.integers(config.weight_min, config.weight_max + 1,
                             size=(len(rows), config.channels_per_macro))
    background = [(int(row) // G, int(row) % G, new[row]) for row in rows]
    run = simulate(config, weights, slots, acts, scales=scales, stall_prob=0.4,
                   gap_prob=0.2, seed=52, background=background, wait_at=n_low)
    want = np.concatenate([expect(config, weights, slots[:n_low], acts[:n_low], scales),
                           expect(config, new, slots[n_low:], acts[n_low:], scales)])
    np.testing.assert_array_equal(np.array(run.results), want)
