"""Amaranth-simulator unit tests of the CIM macro against the NumPy golden model."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from mars.config import PRESETS, MarsConfig
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
