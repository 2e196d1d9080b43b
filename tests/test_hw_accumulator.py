"""Amaranth-simulator test of a macro unit's accumulator (`mars.hw.accumulator`).

Random partial sums, pixels of 1 to 5 compute steps, random gaps on the macro side and
random back-pressure from the writer; every pixel that comes out must equal the NumPy sum
of its steps plus its walk's bias (in ``acc_bits`` two's complement), in order, with its
``walk_last`` marker.  Three walks, each with its own bias, set `BIAS_LEAD` to two more
cycles before the walk's first step is offered (the bias's contract; a cycle less fails).
Binary/ternary readouts: the sum of the steps is shifted right by ``scale_frac_bits``
(floor, Python's ``>>`` on unbounded ints) before the bias is added.
Every cycle the test also checks that the writer's ``pixel.ready`` does not reach
``result.ready`` combinationally (the timing cut of docs/synthesis.md, "The ready chain"),
and the handshake against a model kept in the testbench, stage S (one step registered)
in front of a 2-entry FIFO of pixels: ``pixel.valid`` (a register since "Registered
enables") is high exactly while a finished pixel is held, and ``result.ready`` is low
exactly while S holds a pixel's last step and two pixels are held.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from mars.config import PRESETS, ReadoutMode
from mars.hw.accumulator import BIAS_LEAD, Accumulator

TINY = PRESETS["tiny"]
TERNARY = TINY.replace(name="tiny-tern", readout_mode=ReadoutMode.TERNARY, scale_frac_bits=3)


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement wrap to `bits` bits."""
    values = np.asarray(values, dtype=object) % (1 << bits)
    return np.where(values >= 1 << (bits - 1), values - (1 << bits), values).astype(np.int64)


@pytest.mark.parametrize("config, seed", [
    (TINY, 11), (TINY.replace(acc_bits=12), 12), (TERNARY, 13),
    # the smallest acc_bits the ternary tiny allows: full-range biases wrap
    (TERNARY.replace(acc_bits=27), 14),
], ids=["acc32", "acc12-wraps", "ternary-shift", "ternary-acc27-wraps"])
def test_pixel_sums_against_numpy(config, seed):
    got, expected, walk_last, ends = _walks(config, seed, BIAS_LEAD, slack=3)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e.tolist(), f"seed {seed}: pixel {i}: got {g}, want {e.tolist()}"
    assert walk_last == [int(e) for e in ends], f"seed {seed}: walk_last {walk_last}"


def test_bias_set_a_cycle_late_is_wrong():
    """The contract is tight: a bias set only BIAS_LEAD - 1 cycles before a walk's first
    step misses a walk's first pixel."""
    got, expected, _, _ = _walks(TINY, 11, BIAS_LEAD - 1, slack=1)
    assert len(got) == len(expected)
    assert any(g != e.tolist() for g, e in zip(got, expected))


def _walks(config, seed: int, lead: int, slack: int):
    """Three walks of random pixels through the accumulator, each walk's bias set `lead`
    plus 0 to `slack` - 1 cycles before its first step may be offered.  Returns the
    pixels taken, the NumPy pixels, the ``walk_last`` markers taken and the expected
    ones."""
    rng = np.random.default_rng(seed)
    N, P = config.channels_per_macro, config.psum_bits
    n_pixels, n_walks = 40, 3
    steps = rng.integers(1, 6, size=n_pixels)
    walk_of = np.sort(rng.integers(0, n_walks, size=n_pixels))
    walk_of[:n_walks] = np.arange(n_walks)      # every walk has a pixel
    walk_of.sort()
    psums = [rng.integers(-(1 << (P - 1)), 1 << (P - 1), size=(s, N)) for s in steps]
    biases = rng.integers(-(1 << (config.acc_bits - 1)), 1 << (config.acc_bits - 1),
                          size=(n_walks, N))
    f = config.scale_frac_bits if config.scaled_readout else 0
    expected = [wrap(biases[w] + (p.sum(axis=0) >> f), config.acc_bits)
                for w, p in zip(walk_of, psums)]
    ends = [bool(i == n_pixels - 1 or walk_of[i + 1] != walk_of[i]) for i in range(n_pixels)]
    queue = [(p[s], s == len(p) - 1, ends[i] and s == len(p) - 1, walk_of[i])
             for i, p in enumerate(psums) for s in range(len(p))]
    dut = Accumulator(config)
    got, walk_last = [], []
    held = 0                                    # finished pixels not yet drained
    s_last = None                               # stage S: its step's `last` (None: empty)

    async def testbench(ctx):
        nonlocal held, s_last
        walk, offer_from = 0, lead + int(rng.integers(0, slack))
        ctx.set(dut.bias, [int(b) for b in biases[0]])
        cycles = 0
        while len(got) < n_pixels:
            if queue and queue[0][3] != walk:
                # a new walk's bias: set after the previous walk's last step was taken,
                # at least BIAS_LEAD cycles before the new walk's first step (the contract)
                walk = queue[0][3]
                ctx.set(dut.bias, [int(b) for b in biases[walk]])
                offer_from = cycles + lead + int(rng.integers(0, slack))
            offer = bool(queue) and cycles >= offer_from and rng.random() < 0.7
            if offer:
                psum, last, wl, _ = queue[0]
                ctx.set(dut.result.payload, [int(v) for v in psum])
                ctx.set(dut.side.payload, {"last": last, "walk_last": wl})
            ctx.set(dut.result.valid, offer)
            ctx.set(dut.side.valid, offer)
            # the macro's `ready` comes from registers: the writer's `ready` of this
            # cycle must not reach it (no combinational path through two blocks)
            seen = []
            for ready in (0, 1):
                ctx.set(dut.pixel.ready, ready)
                seen.append(ctx.get(dut.result.ready))
            assert seen[0] == seen[1], f"seed {seed}: result.ready follows pixel.ready"
            ctx.set(dut.pixel.ready, int(rng.random() < 0.5))
            assert ctx.get(dut.pixel.valid) == (held > 0), \
                f"seed {seed}: pixel.valid with {held} pixels held"
            # S holds its step only if it is a pixel's last and both pixels are held
            hold = bool(s_last) and held == 2
            assert ctx.get(dut.result.ready) == (not hold), \
                f"seed {seed}: result.ready with S {s_last} and {held} pixels held"
            assert ctx.get(dut.side.ready) == (offer and not hold), \
                f"seed {seed}: the markers are not popped with the result"
            held += int(bool(s_last) and not hold)  # S's last step into a pixel register
            if not hold:
                s_last = queue.pop(0)[1] if offer else None
            if ctx.get(dut.pixel.valid) and ctx.get(dut.pixel.ready):
                held -= 1
                pixel = ctx.get(dut.pixel.payload)
                got.append([int(pixel.accs[n]) for n in range(N)])
                walk_last.append(int(pixel.walk_last))
            await ctx.tick()
            cycles += 1
            assert cycles < 2000, f"seed {seed}: the accumulator hangs"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return got, expected, walk_last, ends


@pytest.mark.parametrize("config", [TINY, TERNARY], ids=["acc32", "ternary-shift"])
def test_run_reset_mid_pixel(config):
    """A run reset in the middle of a pixel drops it: the next pixels start from the new
    walk's bias, set in the cycle after the reset and held `BIAS_LEAD` cycles before the
    first step (the contract: the bias is registered, the running sums follow the
    register)."""
    rng = np.random.default_rng(21)
    N, P = config.channels_per_macro, config.psum_bits
    f = config.scale_frac_bits if config.scaled_readout else 0
    old, new = (rng.integers(-(1 << 20), 1 << 20, size=N) for _ in range(2))
    aborted = rng.integers(-(1 << (P - 1)), 1 << (P - 1), size=(2, N))
    pixels = [rng.integers(-(1 << (P - 1)), 1 << (P - 1), size=(s, N)) for s in (1, 3)]
    expected = [wrap(new + (p.sum(axis=0) >> f), config.acc_bits).tolist() for p in pixels]
    rst = Signal()
    dut = Accumulator(config)
    top = ResetInserter({"sync": rst})(dut)
    got = []

    async def offer(ctx, psum, last, walk_last=False):
        ctx.set(dut.result.payload, [int(v) for v in psum])
        ctx.set(dut.side.payload, {"last": last, "walk_last": walk_last})
        ctx.set(dut.result.valid, 1)
        ctx.set(dut.side.valid, 1)
        assert ctx.get(dut.result.ready), "a step waits with no pixel held"
        await ctx.tick()
        ctx.set(dut.result.valid, 0)
        ctx.set(dut.side.valid, 0)

    async def testbench(ctx):
        ctx.set(dut.pixel.ready, 0)             # the two pixels wait in the pixel registers
        ctx.set(dut.bias, [int(b) for b in old])
        await ctx.tick()
        for psum in aborted:                    # two middle steps of a pixel, then reset
            await offer(ctx, psum, last=False)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        ctx.set(dut.bias, [int(b) for b in new])
        for _ in range(BIAS_LEAD):              # the cycles the contract asks for
            await ctx.tick()
        for i, p in enumerate(pixels):
            for s, psum in enumerate(p):
                await offer(ctx, psum, last=s == len(p) - 1, walk_last=i == len(pixels) - 1)
        ctx.set(dut.pixel.ready, 1)
        for _ in range(4):
            if ctx.get(dut.pixel.valid):
                got.append([int(v) for v in ctx.get(dut.pixel.payload).accs])
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert got == expected, f"got {got}, want {expected}"
