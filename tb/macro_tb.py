"""cocotb testbench of `cim_macro`: random weights and compute steps, every result checked
bit for bit against `mars.sw.golden.macro_compute`.

Run through `mars.tb.sim.run_testbench` (see tb/test_macro.py), which sets:

``MARS_CONFIG``  configuration JSON of the generated Verilog (required)
``MARS_STATS``   where to write the statistics JSON (required)
``MARS_OPS``     compute steps per weight load (default 400)
``MARS_SEED``    random seed (default: cocotb's seed)
``MARS_VALID``   chance per cycle that the driver offers a request (default 0.8)
``MARS_READY``   chance per cycle that the result is taken (default 0.8)
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
from cocotb.triggers import ClockCycles, RisingEdge

from mars.config import MarsConfig
from mars.hw.macro import request_layout, result_layout, write_layout
from mars.sw.golden import macro_compute, pack_row
from mars.tb.streams import Scoreboard, StreamDriver, StreamMonitor

CLOCK_NS = 10


def _settings():
    config = MarsConfig.from_json(Path(os.environ["MARS_CONFIG"]).read_text())
    seed = int(os.environ.get("MARS_SEED", cocotb.RANDOM_SEED))
    return config, seed


async def _reset(dut):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.write__valid.value = 0
    dut.request__valid.value = 0
    dut.result__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _cycles() -> int:
    return int(get_sim_time(unit="ns") // CLOCK_NS)


class MacroBench:
    """Drivers, monitor and scoreboard around one macro."""

    def __init__(self, dut, config: MarsConfig, seed: int, valid_prob: float,
                 ready_prob: float):
        self.config = config
        self.clock = dut.clk
        self.rng = np.random.default_rng(seed)
        py_rng = random.Random(seed)
        self.writer = StreamDriver(dut, "write", dut.clk, write_layout(config))
        self.requests = StreamDriver(dut, "request", dut.clk, request_layout(config),
                                     valid_prob=valid_prob, rng=py_rng)
        self.scoreboard = Scoreboard("cim_macro")
        n_channels = config.channels_per_macro
        self.results = StreamMonitor(
            dut, "result", dut.clk, result_layout(config),
            lambda p: self.scoreboard.check(tuple(int(p[n]) for n in range(n_channels))),
            ready_prob=ready_prob, rng=py_rng)
        for part in (self.writer, self.requests, self.results):
            cocotb.start_soon(part.run())

    async def load_random_weights(self) -> np.ndarray:
        """Random weights (rows x channels) written row by row; returns them."""
        cfg = self.config
        weights = self.rng.integers(cfg.weight_min, cfg.weight_max + 1,
                                    size=(cfg.rows, cfg.channels_per_macro))
        G = cfg.rows_per_step
        self.writer.extend({"slot": r // G, "lane": r % G, "data": pack_row(weights[r], cfg)}
                           for r in range(cfg.rows))
        while not self.writer.idle:
            await RisingEdge(self.clock)
        return weights

    def set_random_scales(self, dut) -> np.ndarray | None:
        """Binary/ternary readouts: random column scale factor codes on the `scales`
        input (held for the following steps); returns them, (C/Wb, Wb)."""
        cfg = self.config
        if not cfg.scaled_readout:
            return None
        top = 1 << (cfg.scale_bits - 1)
        scales = self.rng.integers(-top, top, size=(cfg.channels_per_macro, cfg.weight_bits))
        mask = (1 << cfg.scale_bits) - 1
        word = 0
        for index, value in enumerate(scales.reshape(-1).tolist()):
            word |= (value & mask) << (index * cfg.scale_bits)
        dut.scales.value = word
        return scales

    async def compute(self, weights: np.ndarray, ops: int,
                      scales: np.ndarray | None = None) -> int:
        """`ops` random steps against `weights`; waits for every result; returns cycles."""
        cfg = self.config
        D = cfg.wordline_domains
        slots = self.rng.integers(0, cfg.row_slots, size=(ops, D))
        acts = self.rng.integers(0, cfg.act_max + 1, size=(ops, D, cfg.rows_per_step))
        expected = macro_compute(weights, slots, acts, cfg, scales)   # one vectorised call
        for row in expected:
            self.scoreboard.expect(tuple(row.tolist()))
        self.requests.extend({"slots": s.tolist(), "acts": x.tolist()}
                             for s, x in zip(slots, acts))
        start = _cycles()
        # Budget: every step at its worst with the random gaps, plus slack.
        budget = ops * (cfg.cycles_per_step + 2) * 20 + 100
        while self.scoreboard.pending and _cycles() - start < budget:
            await RisingEdge(self.clock)
        if self.scoreboard.pending:
            raise AssertionError(f"{self.scoreboard.pending} results missing after "
                                 f"{budget} cycles: the macro hangs")
        return _cycles() - start


def _write_stats(**stats) -> None:
    Path(os.environ["MARS_STATS"]).write_text(json.dumps(stats))


@cocotb.test()
async def random_steps_against_golden(dut):
    """Two weight loads, each followed by random steps with random stalls on both sides."""
    config, seed = _settings()
    ops = int(os.environ.get("MARS_OPS", 400))
    bench = MacroBench(dut, config, seed, float(os.environ.get("MARS_VALID", 0.8)),
                       float(os.environ.get("MARS_READY", 0.8)))
    await _reset(dut)
    wall = time.perf_counter()
    start = _cycles()
    for _ in range(2):              # a reload must replace every row
        weights = await bench.load_random_weights()
        scales = bench.set_random_scales(dut)
        await bench.compute(weights, ops, scales)
    cycles = _cycles() - start
    wall = time.perf_counter() - wall
    _write_stats(ops_compared=bench.scoreboard.compared,
                 mismatches=bench.scoreboard.mismatch_count,
                 cycles=cycles, wall_s=wall, cycles_per_s=cycles / wall, seed=seed)
    bench.scoreboard.assert_clean()


@cocotb.test()
async def sustained_throughput(dut):
    """With no stalls the macro takes one step per Ab/act_bits_per_cycle cycles."""
    config, seed = _settings()
    ops = 64
    bench = MacroBench(dut, config, seed + 1, 1.0, 1.0)
    await _reset(dut)
    weights = await bench.load_random_weights()
    cycles = await bench.compute(weights, ops, bench.set_random_scales(dut))
    bench.scoreboard.assert_clean()
    # Pipeline fill (docs/macro.md): the R and P stages, one cycle to register the result,
    # and the driver/monitor handshakes; the steady state must be exactly cycles_per_step.
    fill = 5
    assert cycles <= ops * config.cycles_per_step + fill, (
        f"{ops} steps took {cycles} cycles; a sustained rate of one step per "
        f"{config.cycles_per_step} cycles allows {ops * config.cycles_per_step + fill}")
