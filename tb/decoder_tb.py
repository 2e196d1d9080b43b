"""cocotb testbench of `sparse_decoder`: random layers walked by the RTL, every payload
checked bit for bit against `mars.sw.golden.decoder_walk`, throughput measured.

Run through `mars.tb.sim.run_testbench` (see tb/test_decoder.py), which sets:

``MARS_CONFIG``  configuration JSON of the generated Verilog (required)
``MARS_STATS``   where to write the statistics JSON (required)
``MARS_LAYERS``  random layers in the golden-model test (default 48)
``MARS_SEED``    random seed (default: cocotb's seed)
``MARS_READY``   chance per cycle that the consumer takes a payload (default 0.7)
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from mars.config import MarsConfig
from mars.contract.decoder import (
    DecoderFormat,
    DecoderLimitError,
    descriptor,
    descriptor_layout,
    index_write_layout,
    ktable_words,
    ktable_write_layout,
    payload_layout,
)
from mars.contract.layer import LayerGeometry
from mars.sw.golden import decoder_walk
from mars.tb.streams import Scoreboard, StreamDriver, StreamMonitor

CLOCK_NS = 10
_ERRORS = ("descriptor", "index_range", "index_order")


def _settings():
    config = MarsConfig.from_json(Path(os.environ["MARS_CONFIG"]).read_text())
    seed = int(os.environ.get("MARS_SEED", cocotb.RANDOM_SEED))
    return config, seed


def _cycles() -> int:
    return int(get_sim_time(unit="ns") // CLOCK_NS)


def _write_stats(name: str, **stats) -> None:
    """Merge `stats` under `name` into the statistics file (one file per run)."""
    path = Path(os.environ["MARS_STATS"])
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[name] = stats
    path.write_text(json.dumps(merged))


def payload_dict(const, config: MarsConfig) -> dict:
    """A monitored payload in the form of `DecoderTrace.payloads`."""
    G = config.rows_per_step
    return {"slot": int(const.slot), "kgroup": int(const.kgroup),
            "addrs": [int(const.addrs[g]) for g in range(G)], "pad": int(const.pad),
            "first": int(const.first), "last": int(const.last),
            "walk_first": int(const.walk_first), "walk_last": int(const.walk_last),
            "filler": int(const.filler)}


def random_layer(rng: np.random.Generator, config: MarsConfig) -> LayerGeometry:
    """A random conv (1x1 to 4x4 kernels, stride 1 to 3, padding) or linear layer that fits
    the decoder, small enough to simulate quickly."""
    fmt = DecoderFormat(config)
    while True:
        try:
            if rng.random() < 0.2:
                geometry = LayerGeometry.linear(int(rng.integers(1, 100)), 8)
            else:
                kh, kw = (int(v) for v in rng.integers(1, 5, 2))
                geometry = LayerGeometry(
                    "conv", int(rng.integers(1, 11)), int(rng.integers(1, 11)),
                    int(rng.integers(1, 17)), 8, kh, kw, int(rng.choice([1, 1, 2, 3])),
                    int(rng.integers(0, min(kh, kw))))
            fmt.check_layer(geometry)
        except (ValueError, DecoderLimitError):
            continue
        return geometry


class DecoderBench:
    """Drivers, monitor and scoreboard around one decoder."""

    def __init__(self, dut, config: MarsConfig, seed: int, ready_prob: float,
                 start_prob: float = 0.7):
        self.dut = dut
        self.config = config
        self.format = DecoderFormat(config)
        self.rng = np.random.default_rng(seed)
        py_rng = random.Random(seed)
        self.index_writer = StreamDriver(dut, "index_write", dut.clk,
                                         index_write_layout(config))
        self.ktable_writer = StreamDriver(dut, "ktable_write", dut.clk,
                                          ktable_write_layout(config))
        self.starter = StreamDriver(dut, "start", dut.clk, descriptor_layout(config),
                                    valid_prob=start_prob, rng=py_rng)
        self.scoreboard = Scoreboard("sparse_decoder")
        self.arrivals: list[int] = []
        self.monitor = StreamMonitor(dut, "out", dut.clk, payload_layout(config),
                                     self._received, ready_prob=ready_prob, rng=py_rng)
        for part in (self.index_writer, self.ktable_writer, self.starter, self.monitor):
            cocotb.start_soon(part.run())

    def _received(self, const) -> None:
        self.arrivals.append(_cycles())
        self.scoreboard.check(payload_dict(const, self.config))

    async def reset(self) -> None:
        dut = self.dut
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def load(self, index: list[int], ktable: list[int]) -> None:
        """Write both memories through their write ports."""
        self.index_writer.extend({"addr": a, "data": w} for a, w in enumerate(index))
        self.ktable_writer.extend({"addr": a, "data": w} for a, w in enumerate(ktable))
        while not (self.index_writer.idle and self.ktable_writer.idle):
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    async def run(self, descriptors: list[dict], expected: list[dict], budget: int) -> None:
        """Start the walks, wait until every payload arrived and the decoder is idle."""
        for payload in expected:
            self.scoreboard.expect(payload)
        self.starter.extend(descriptors)
        start = _cycles()
        while _cycles() - start < budget:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if self.starter.idle and not self.scoreboard.pending and not self.dut.busy.value:
                break
        await RisingEdge(self.dut.clk)
        if self.scoreboard.pending or not self.starter.idle:
            raise AssertionError(f"{self.scoreboard.pending} payloads missing after {budget} "
                                 f"cycles: the decoder hangs")

    def errors(self) -> dict[str, int]:
        flags = self.dut.error.value.to_unsigned()
        return {name: (flags >> i) & 1 for i, name in enumerate(_ERRORS)}


def _batch(bench: DecoderBench, n_layers: int, densities: list[float]):
    """Random layers that fit the memories together: (index, ktable, walks, expected)."""
    cfg, fmt, rng = bench.config, bench.format, bench.rng
    index, ktable, walks, expected = [], [], [], []
    for n in range(n_layers):
        geometry = random_layer(rng, cfg)
        n_kgroups = -(-geometry.k // cfg.rows_per_step)
        kept = np.flatnonzero(rng.random(n_kgroups) < densities[n % len(densities)])
        steps = len(kept) + int(rng.integers(0, 3))       # fillers, as in a block set
        if (len(index) + steps > fmt.index_depth
                or len(ktable) + n_kgroups > fmt.max_kgroups):
            break
        act_base = int(rng.integers(0, cfg.act_buffer_words))
        walks.append(descriptor(geometry, cfg, count=len(kept), steps=steps,
                                act_base=act_base, ktable_base=len(ktable),
                                index_start=len(index), slot_base=len(index)))
        expected += decoder_walk(geometry, kept, cfg, steps=steps, act_base=act_base,
                                 slot_base=len(index)).payloads()
        ktable += ktable_words(geometry, cfg)
        index += kept.tolist() + [0] * (steps - len(kept))
    return index, ktable, walks, expected


@cocotb.test()
async def random_layers_against_golden(dut):
    """Random layers, group sparsity from 0 % to 100 %, random stalls on both sides."""
    config, seed = _settings()
    n_layers = int(os.environ.get("MARS_LAYERS", 48))
    bench = DecoderBench(dut, config, seed, float(os.environ.get("MARS_READY", 0.7)))
    await bench.reset()
    wall = time.perf_counter()
    start, walks_done = _cycles(), 0
    densities = [1.0, 0.0, 0.5, 0.25, 0.1, 0.9, 0.75]
    while walks_done < n_layers:
        index, ktable, walks, expected = _batch(bench, n_layers - walks_done, densities)
        if not walks:
            continue
        await bench.load(index, ktable)
        await bench.run(walks, expected, budget=20 * len(expected) + 200)
        assert bench.errors() == dict.fromkeys(_ERRORS, 0), bench.errors()
        walks_done += len(walks)
        densities = densities[len(walks) % len(densities):] + densities
    cycles = _cycles() - start
    wall = time.perf_counter() - wall
    _write_stats("random", walks=walks_done, payloads_compared=bench.scoreboard.compared,
                 mismatches=bench.scoreboard.mismatch_count, cycles=cycles, wall_s=wall,
                 cycles_per_s=cycles / wall, seed=seed)
    bench.scoreboard.assert_clean()


@cocotb.test()
async def sustained_throughput(dut):
    """With a consumer that never stalls, one payload (kept group) per cycle: every
    payload of a walk arrives one cycle after the previous one, pruned groups take none."""
    config, seed = _settings()
    bench = DecoderBench(dut, config, seed + 1, 1.0, 1.0)
    await bench.reset()
    G = config.rows_per_step
    geometry = LayerGeometry("conv", 6, 6, 2 * G, 8, 3, 3, 1, 1)
    n_kgroups = -(-geometry.k // G)
    rows = []
    for density in (1.0, 0.5, 0.25, 0.1):
        kept = np.flatnonzero(bench.rng.random(n_kgroups) < density)
        if not len(kept):
            kept = np.array([n_kgroups - 1])
        await bench.load(kept.tolist(), ktable_words(geometry, config))
        expected = decoder_walk(geometry, kept, config).payloads()
        bench.arrivals.clear()
        walk = descriptor(geometry, config, count=len(kept))
        await bench.run([walk], expected, budget=4 * len(expected) + 100)
        span = bench.arrivals[-1] - bench.arrivals[0] + 1
        gaps = np.diff(bench.arrivals)
        rows.append({"group_sparsity": 1 - len(kept) / n_kgroups, "payloads": len(expected),
                     "cycles": span, "groups_per_cycle": len(expected) / span,
                     "max_gap": int(gaps.max()) if len(gaps) else 1})
    _write_stats("throughput", walks=rows, layer=geometry.to_dict())
    bench.scoreboard.assert_clean()
    for row in rows:
        assert row["cycles"] == row["payloads"] and row["max_gap"] == 1, (
            f"{row['payloads']} payloads took {row['cycles']} cycles (largest gap "
            f"{row['max_gap']}); one per cycle is required")


@cocotb.test()
async def bad_index_sets_error(dut):
    """An index word out of range or out of order: the payloads before it, then nothing,
    and a sticky error flag; a following good walk clears it."""
    config, seed = _settings()
    bench = DecoderBench(dut, config, seed + 2, 0.7)
    await bench.reset()
    geometry = LayerGeometry("conv", 4, 4, config.rows_per_step, 8, 3, 3, 1, 1)
    n_kgroups = -(-geometry.k // config.rows_per_step)
    cases = [([0, 1, n_kgroups], 2, "index_range"), ([0, 2, 2], 2, "index_order"),
             ([1, 0], 1, "index_order")]
    for kept, bad_at, flag in cases:
        await bench.load(kept, ktable_words(geometry, config))
        prefix = decoder_walk(geometry, kept[:bad_at], config, steps=len(kept)).payloads()
        await bench.run([descriptor(geometry, config, count=len(kept))], prefix[:bad_at],
                        budget=200)
        errors = bench.errors()
        assert errors == {**dict.fromkeys(_ERRORS, 0), flag: 1}, (kept, errors)
        for _ in range(5):          # sticky: still set while idle
            await RisingEdge(dut.clk)
        assert bench.errors() == errors
    await bench.load([0, 1], ktable_words(geometry, config))
    await bench.run([descriptor(geometry, config, count=2)],
                    decoder_walk(geometry, [0, 1], config).payloads(), budget=400)
    assert bench.errors() == dict.fromkeys(_ERRORS, 0)
    bench.scoreboard.assert_clean()
    _write_stats("errors", cases=len(cases), payloads_compared=bench.scoreboard.compared)
