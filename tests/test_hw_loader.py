"""Amaranth-simulator test of a core's weight loader (`mars.hw.loader.CoreLoader`).

A random program of LOADs (``count`` rows from SRAM row ``src`` to macro row ``dst`` of
unit ``unit``) and SYNCs runs against a weight SRAM of random rows wired as the top wires
it.  Every row write that comes out must be exactly the program's, in order: macro row
``dst + i`` (slot ``// G``, lane ``% G``) of the named unit gets SRAM row ``src + i``; the
loader waits at every SYNC until ``go``; with ``skip`` it copies nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.program import Op, load_layout
from mars.hw.loader import CoreLoader

# Two units per core, so the unit field is exercised.
CONFIG = PRESETS["tiny"].replace(name="tiny-2u", macros_per_core=2)


class LoaderBench(Elaboratable):
    """The loader with its core's weight SRAM (read data one cycle after the enable)."""

    def __init__(self, config, program, sram_rows):
        self.dut = CoreLoader(config, init=program)
        self.sram = Memory(shape=config.cols, depth=config.weight_sram_rows, init=sram_rows)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.sram = self.dut, self.sram
        read = self.sram.read_port()
        m.d.comb += [read.addr.eq(self.dut.sram_addr), read.en.eq(self.dut.sram_en),
                     self.dut.sram_data.eq(read.data)]
        return m


def random_program(config, rng, phases):
    """Per phase a few random LOADs, then a SYNC: (words, [per phase [(unit, src, dst,
    count)]])."""
    layout = load_layout(config)
    words, loads = [], []
    for _ in range(phases):
        phase = []
        for _ in range(int(rng.integers(0, 4))):
            count = int(rng.integers(0, 9))
            dst = int(rng.integers(0, config.rows - count + 1))
            src = int(rng.integers(0, config.weight_sram_rows - count + 1))
            unit = int(rng.integers(0, config.macros_per_core))
            phase.append((unit, src, dst, count))
            words.append(layout.const({"op": Op.LOAD, "unit": unit, "src": src, "dst": dst,
                                       "count": count}).as_bits())
        words.append(layout.const({"op": Op.SYNC}).as_bits())
        loads.append(phase)
    return words, loads


@pytest.mark.parametrize("skip", [0, 1])
def test_copies_rows_as_the_program_says(skip):
    seed = 21 + skip
    rng = np.random.default_rng(seed)
    cfg, G = CONFIG, CONFIG.rows_per_step
    words, loads = random_program(cfg, rng, phases=4)
    sram = rng.integers(0, 1 << cfg.cols, size=cfg.weight_sram_rows)
    bench = LoaderBench(cfg, words, sram.tolist())
    dut = bench.dut
    got = [[] for _ in range(4)]                     # per phase: (unit, row, data)

    async def testbench(ctx):
        ctx.set(dut.skip, skip)
        phase, cycles = 0, 0
        while phase < 4:
            for u, port in enumerate(dut.loads):
                if ctx.get(port.valid):
                    w = ctx.get(port.payload)
                    got[phase].append((u, int(w.slot) * G + int(w.lane), int(w.data)))
            waiting = ctx.get(dut.waiting)
            release = waiting and rng.random() < 0.5
            ctx.set(dut.go, release)
            await ctx.tick()
            ctx.set(dut.go, 0)
            phase += int(release)
            cycles += 1
            assert cycles < 1000, f"seed {seed}: the loader hangs in phase {phase}"

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for p, phase in enumerate(loads):
        want = [] if skip else [(u, dst + i, int(sram[src + i]))
                                for u, src, dst, count in phase for i in range(count)]
        assert got[p] == want, f"seed {seed}, phase {p}: program {phase}: got {got[p]}"
