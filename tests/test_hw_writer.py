"""Amaranth-simulator tests of a macro unit's writer (`mars.hw.writer.UnitWriter`).

The writer is run alone, on a walk of random accumulators, with an activation memory of
G-activation words behind the write stage the top uses (`act_write_stage`: read, merge,
write) and a result memory of L-accumulator words (`result_write`).  The write slot
(``slot_next``) comes at random, and the bench checks that a word is only ever offered
``latency + slot_delay`` cycles after a cycle with ``slot_next`` (the writer issues a
group that will offer a word only ``slot_delay`` cycles after such a cycle).  The
expectation is computed independently with NumPy: the requantisation of the golden model
(`mars.sw.golden.network.requantise`, the formula of docs/model-package.md, whose clamp at
0 is the ReLU), then max pooling over k x k windows (floor), placed at element
``out_base + py * out_row_pitch + px * out_pitch + ch`` (element e: field e % G of word
e // G, `mars.contract.banking`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mars.config import MAX_WRITER_STAGES, MIN_WRITER_STAGES, PRESETS
from mars.contract.banking import Banking
from mars.hw.writer import UnitWriter, act_entry_layout, act_write_stage, result_write
from mars.sw.golden.network import requantise

TINY = PRESETS["tiny"]
# Two write lanes (4 channels, 2 cycles per step), so lanes past n_valid are exercised.
TWO_LANES = TINY.replace(name="two-lanes", act_bits_per_cycle=2)


class CollisionPoisoned:
    """A memory as a block RAM without collision logic (`mars.hw.bram.block_ram` with
    ``collision_free``, as the top's `act`) answers it: a read of the word written in
    the same cycle returns garbage, here the stored word inverted.  A write stage that
    used such a read would write wrong words; ``collisions`` is high the cycle such a
    read's data arrives, so that a test can count them (the ports are made in
    `act_write_stage`'s order: the write port first)."""

    def __init__(self, m, memory):
        self._m, self._memory, self._write = m, memory, None
        self.collisions = Signal()

    def write_port(self, **kwargs):
        self._write = self._memory.write_port(**kwargs)
        return self._write

    def read_port(self):
        m, port, write = self._m, self._memory.read_port(), self._write
        proxy = SimpleNamespace(addr=Signal.like(port.addr), data=Signal.like(port.data))
        m.d.comb += [port.addr.eq(proxy.addr),
                     proxy.data.eq(Mux(self.collisions, ~port.data, port.data))]
        m.d.sync += self.collisions.eq(write.en & (write.addr == proxy.addr))
        return proxy


class WriterBench(Elaboratable):
    """The writer with the activation and result memories of the top around it (the
    activation memory's same-cycle collisions poisoned: `CollisionPoisoned`)."""

    def __init__(self, config, act_init):
        self.config = config
        self.banking = bank = Banking(config)
        self.dut = UnitWriter(config)
        self.act = Memory(shape=unsigned(bank.word_bits), depth=bank.words,
                          init=bank.pack(act_init))
        self.result = Memory(shape=unsigned(bank.lanes * config.acc_bits),
                             depth=bank.result_depth, init=[])
        self.collisions = None

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.act, m.submodules.result = \
            self.dut, self.act, self.result
        poisoned = CollisionPoisoned(m, self.act)
        self.collisions = poisoned.collisions
        act_write_stage(m, poisoned, self.dut.act_entry)
        result_write(m, self.result, self.dut.res_entry)
        return m


def run_walk(config, accs, insn, mult, shift, act_init, *, seed, gap_prob=0.3,
             slot_prob=0.5, stats=None):
    """Offer the pixels `accs` (out_h, out_w, N) of one walk; return the activation memory
    and the result memory (as elements) and the cycles in which ``walk_done`` was high.
    With a dict `stats`, its ``collisions`` counts the write stage's reads that met a
    write of their word (`CollisionPoisoned`)."""
    bench = WriterBench(config, act_init)
    dut, bank = bench.dut, bench.banking
    rng = np.random.default_rng(seed)
    n_pixels = accs.shape[0] * accs.shape[1]
    flat = accs.reshape(n_pixels, -1)
    done_cycles = []
    # slot_next in the last latency + slot_delay + 1 cycles
    announced = [False] * (dut.latency + dut.slot_delay + 1)

    async def step(ctx, cycle):
        """One clock edge: check this cycle's offers against the slot announced
        ``latency + slot_delay`` cycles before, then draw the next cycle's
        ``slot_next``."""
        offered = ctx.get(dut.act_entry.valid) or ctx.get(dut.res_entry.valid)
        assert not offered or announced[0], f"seed {seed}: offer outside the slot"
        if ctx.get(dut.walk_done):
            done_cycles.append(cycle)
        if stats is not None:
            stats["collisions"] = stats.get("collisions", 0) + ctx.get(bench.collisions)
        done_next = ctx.get(dut.walk_done_next)
        await ctx.tick()
        # the sequencer copies an enable made from it (hw/sequencer.py)
        assert ctx.get(dut.walk_done) == done_next, f"seed {seed}: walk_done_next"
        announced[:] = announced[1:] + [bool(rng.random() < slot_prob)]
        ctx.set(dut.slot_next, announced[-1])

    async def testbench(ctx):
        ctx.set(dut.insn, insn)
        ctx.set(dut.params, [{"bias": 0, "mult": int(m), "shift": int(s)}
                             for m, s in zip(mult, shift)])
        ctx.set(dut.restart, 1)               # the sequencer's START
        await ctx.tick()
        ctx.set(dut.restart, 0)
        cycle = 0
        for p in range(n_pixels):
            while rng.random() < gap_prob:     # the accumulator is not always ready
                ctx.set(dut.pixel.valid, 0)
                await step(ctx, cycle)
                cycle += 1
            ctx.set(dut.pixel.valid, 1)
            ctx.set(dut.pixel.payload, {"accs": [int(a) for a in flat[p]],
                                        "walk_last": int(p == n_pixels - 1)})
            while True:
                taken = ctx.get(dut.pixel.ready)
                await step(ctx, cycle)
                cycle += 1
                if taken:
                    break
        ctx.set(dut.pixel.valid, 0)
        for _ in range(dut.latency + dut.slot_delay + 3):   # drain the writer, write stage
            await step(ctx, cycle)
            cycle += 1
        bench.act_words = [ctx.get(bench.act.data[i]) for i in range(bench.act.depth)]
        bench.result_words = [ctx.get(bench.result.data[i])
                              for i in range(bench.result.depth)]

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    acc, L = config.acc_bits, bank.lanes
    results = [(w >> (acc * lane)) & ((1 << acc) - 1)
               for w in bench.result_words for lane in range(L)]
    results = [r - (1 << acc) if r >> (acc - 1) else r for r in results]
    return (np.array(bank.unpack(bench.act_words)), np.array(results[:config.result_words]),
            done_cycles)


def insn_for(config, *, out_w, pool_k, pool_w, pool_h, n_valid, out_base, out_pitch,
             out_row_pitch, out_bank=0, acc_out=0):
    """An instruction with the writer's fields set (the rest zero)."""
    return {"desc": {"out_w": out_w}, "n_valid": n_valid, "pool_k": pool_k,
            "pool_w": pool_w, "pool_h": pool_h, "out_base": out_base, "out_pitch": out_pitch,
            "out_row_pitch": out_row_pitch, "out_bank": out_bank, "acc_out": acc_out}


CASES = [
    # config, out_h, out_w, pool_k, n_valid, out_bank
    (TINY, 3, 4, 1, 4, 0),          # no pooling, every channel
    (TINY, 4, 5, 2, 3, 1),          # 2x2 pooling, odd width (last column dropped), bank 1
    (TWO_LANES, 6, 6, 3, 3, 0),     # 3x3 pooling, two lanes, the second lane idle at ch 3
    (TWO_LANES, 5, 4, 2, 4, 1),     # odd height (last row dropped)
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_requantise_relu_pool_against_numpy(case):
    config, out_h, out_w, k, n_valid, bank = CASES[case]
    seed = 100 + case
    rng = np.random.default_rng(seed)
    N, Ab = config.channels_per_macro, config.act_bits
    words = config.act_buffer_words
    # Accumulators around zero and far outside the range (ReLU and the upper clamp).
    accs = rng.integers(-(1 << 13), 1 << 13, size=(out_h, out_w, N))
    mult = rng.integers(1, 1 << 10, size=N)
    # Most results land inside [0, 2^Ab - 1], where the rounding shows; S = 0 (no
    # rounding constant) on channel 0 clamps nearly everything.
    shift = rng.integers(17, 23, size=N)
    shift[0] = 0
    pool_w, pool_h = out_w // k, out_h // k
    out_base, out_pitch = int(rng.integers(0, 64)), n_valid + int(rng.integers(0, 3))
    row_pitch = pool_w * out_pitch + int(rng.integers(0, 5))
    act_init = rng.integers(0, 1 << Ab, size=2 * words)   # stale fields must not leak
    insn = insn_for(config, out_w=out_w, pool_k=k, pool_w=pool_w, pool_h=pool_h,
                    n_valid=n_valid, out_base=out_base, out_pitch=out_pitch,
                    out_row_pitch=row_pitch, out_bank=bank)
    stats = {}
    act, _, done = run_walk(config, accs, insn, mult, shift, act_init.tolist(), seed=seed,
                            stats=stats)
    # The write stage reads words that a merge writes in the same cycle (pooled pixels
    # of one word): those reads return garbage here, as on the chip (`CollisionPoisoned`).
    assert stats["collisions"] > 0, f"seed {seed}: no read met a write of its word"

    q = requantise(accs, mult, shift, Ab)                        # (out_h, out_w, N)
    assert ((q >= 0) & (q < 1 << Ab)).all()
    pooled = q[:pool_h * k, :pool_w * k].reshape(pool_h, k, pool_w, k, N).max(axis=(1, 3))
    expected = act_init.copy()
    for py in range(pool_h):
        for px in range(pool_w):
            for ch in range(n_valid):
                addr = out_base + py * row_pitch + px * out_pitch + ch
                expected[bank * words + addr] = pooled[py, px, ch]
    differ = np.flatnonzero(act != expected)
    assert differ.size == 0, (f"seed {seed}: {differ.size} elements differ, first at "
                              f"{differ[:5]}: got {act[differ[:5]]}, want {expected[differ[:5]]}")
    assert len(done) == 1, f"seed {seed}: walk_done high in cycles {done}"


@pytest.mark.parametrize("config, seed, n_valid", [
    (TWO_LANES, 7, 3),
    # 2 lane groups a word: a group that ends no word still waits for the slot
    (PRESETS["default"], 8, 13),
], ids=["two-lanes", "default"])
def test_acc_out_writes_raw_accumulators(config, seed, n_valid):
    """The last layer: raw accumulators to the result memory, activations untouched;
    every lane group is offered in the unit's slot."""
    rng = np.random.default_rng(seed)
    N = config.channels_per_macro
    out_h, out_w = 1, 3
    accs = rng.integers(-(1 << 30), 1 << 30, size=(out_h, out_w, N))
    act_init = rng.integers(0, 1 << config.act_bits, size=2 * config.act_buffer_words)
    insn = insn_for(config, out_w=out_w, pool_k=1, pool_w=out_w, pool_h=out_h,
                    n_valid=n_valid, out_base=2, out_pitch=n_valid, out_row_pitch=0,
                    acc_out=1)
    act, result, done = run_walk(config, accs, insn, np.ones(N, int), np.zeros(N, int),
                                 act_init.tolist(), seed=seed)
    expected = np.zeros(config.result_words, dtype=np.int64)
    for x in range(out_w):
        expected[2 + x * n_valid:2 + (x + 1) * n_valid] = accs[0, x, :n_valid]
    assert (result == expected).all(), f"seed {seed}: got {result}, want {expected}"
    assert (act == act_init).all(), f"seed {seed}: the activation memory was written"
    assert len(done) == 1, f"seed {seed}: walk_done high in cycles {done}"


def _near_magnitude(config, rng, out_h, out_w):
    """Accumulators and multipliers over their whole ranges, each shift near the
    product's magnitude; S = 0 and S = 63 on two channels.  Returns them and a test
    of the golden results that the operands cover their case."""
    N, Ab, acc = config.channels_per_macro, config.act_bits, config.acc_bits
    bits = rng.integers(2, acc + 1, size=N)               # each channel's magnitude
    bits[0], bits[1] = acc, acc
    accs = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(out_h, out_w, N))
    accs[0, 0, :2] = [-(1 << (acc - 1)), (1 << (acc - 1)) - 1]    # both extremes
    mult = rng.integers(1, 1 << config.requant_mult_bits, size=N)
    mult[3] = (1 << config.requant_mult_bits) - 1
    magnitude = bits - 1 + np.array([int(v).bit_length() for v in mult])
    shift = np.clip(magnitude - Ab + rng.integers(-1, 3, size=N), 0, 63)
    shift[0], shift[1] = 0, 63

    def covered(q):                      # the rounding shows: many results inside
        return ((q > 0) & (q < (1 << Ab) - 1)).mean() > 0.2
    return accs, mult, shift, covered


def _far_overflow(config, rng, out_h, out_w):
    """Products whose set bits all lie at or above bit 8a + 7 + Ab (S = 8a + b): only
    the coarse step's suffix OR sees them (the clamp window and the fine step's bits
    are zero), so a clamp that drops that term writes 0 or a rounding bit instead of
    the maximum.  Every other pixel is small (inside the clamp)."""
    N, Ab, acc = config.channels_per_macro, config.act_bits, config.acc_bits
    shift = rng.integers(0, acc - Ab - 10, size=N)
    exp = shift + Ab + 8 + rng.integers(0, 2, size=N)          # 8a + 7 + Ab <= exp
    mult = rng.integers(1, 1 << config.requant_mult_bits, size=N)
    accs = np.broadcast_to(1 << exp, (out_h, out_w, N)).copy()
    small = (np.arange(out_h * out_w).reshape(out_h, out_w) % 2 == 1)
    accs[small] = rng.integers(0, 1 << np.maximum(shift - 10, 1), size=(small.sum(), N))

    def covered(q):                      # every large pixel clamps to the maximum
        return (q[~small] == (1 << Ab) - 1).all()
    return accs, mult, shift, covered


@pytest.mark.parametrize("operands", [_near_magnitude, _far_overflow],
                         ids=["near-magnitude", "far-overflow"])
def test_default_lanes_full_range_against_numpy(operands):
    """`default` (4 write lanes, 2 lane groups a word, unaligned pixels): the clamp
    window (bit S - 1 up, the overflow test above bit S + Ab) sees every position."""
    config, seed = PRESETS["default"], 31
    rng = np.random.default_rng(seed)
    Ab = config.act_bits
    out_h, out_w, k, n_valid = 2, 5, 1, 14
    accs, mult, shift, covered = operands(config, rng, out_h, out_w)
    out_base, out_pitch = 3, n_valid + 1                             # phases 3, 2, 1, 0 ...
    row_pitch = out_w * out_pitch + 2
    words = config.act_buffer_words
    act_init = rng.integers(0, 1 << Ab, size=2 * words)
    insn = insn_for(config, out_w=out_w, pool_k=k, pool_w=out_w, pool_h=out_h,
                    n_valid=n_valid, out_base=out_base, out_pitch=out_pitch,
                    out_row_pitch=row_pitch, out_bank=1)
    act, _, done = run_walk(config, accs, insn, mult, shift, act_init.tolist(), seed=seed)
    q = requantise(accs, mult, shift, Ab)
    assert covered(q), f"seed {seed}: the operands miss the case they are drawn for"
    expected = act_init.copy()
    for y in range(out_h):
        for x in range(out_w):
            for ch in range(n_valid):
                expected[words + out_base + y * row_pitch + x * out_pitch + ch] = q[y, x, ch]
    differ = np.flatnonzero(act != expected)
    assert differ.size == 0, (f"seed {seed}: {differ.size} elements differ, first at "
                              f"{differ[:5]}: got {act[differ[:5]]}, want {expected[differ[:5]]}")
    assert len(done) == 1, f"seed {seed}: walk_done high in cycles {done}"


@pytest.mark.parametrize("stages", range(MIN_WRITER_STAGES, MAX_WRITER_STAGES))
def test_fewer_writer_stages_same_words_sooner(stages):
    """``writer_stages`` below the full pipeline (stages left out,
    `UnitWriter.registered`): the same words as NumPy's, each offered only ``latency +
    slot_delay`` cycles after a slot announcement (`run_walk` checks it), and
    ``walk_done`` MAX_WRITER_STAGES - stages cycles sooner than the full writer's on the
    same walk and slots."""
    base, seed = TWO_LANES, 200 + stages
    config = base.replace(name=f"stages{stages}", writer_stages=stages)
    rng = np.random.default_rng(seed)
    N, Ab, out_h, out_w, k, n_valid = config.channels_per_macro, config.act_bits, 4, 4, 2, 3
    accs = rng.integers(-(1 << 13), 1 << 13, size=(out_h, out_w, N))
    mult = rng.integers(1, 1 << 10, size=N)
    shift = rng.integers(17, 23, size=N)
    shift[1] = 0
    words = config.act_buffer_words
    act_init = rng.integers(0, 1 << Ab, size=2 * words)
    insn = insn_for(config, out_w=out_w, pool_k=k, pool_w=out_w // k, pool_h=out_h // k,
                    n_valid=n_valid, out_base=5, out_pitch=n_valid, out_row_pitch=7,
                    out_bank=1)
    runs = [run_walk(c, accs, insn, mult, shift, act_init.tolist(), seed=seed)
            for c in (config, base)]
    (act, _, done), (full_act, _, full_done) = runs
    q = requantise(accs, mult, shift, Ab)
    pooled = q.reshape(out_h // k, k, out_w // k, k, N).max(axis=(1, 3))
    expected = act_init.copy()
    for py in range(out_h // k):
        for px in range(out_w // k):
            for ch in range(n_valid):
                expected[words + 5 + py * 7 + px * n_valid + ch] = pooled[py, px, ch]
    differ = np.flatnonzero(act != expected)
    assert differ.size == 0, f"seed {seed}: {differ.size} elements differ"
    assert (full_act == expected).all(), f"seed {seed}"
    assert len(done) == 1 and done[0] == full_done[0] - (MAX_WRITER_STAGES - stages), \
        f"seed {seed}: walk_done in {done}, the full writer's in {full_done}"


class CopiesBench(Elaboratable):
    """`act_write_stage` alone with two groups of read copies (S4: a register each)."""

    def __init__(self, config):
        bank = Banking(config)
        self.entry = Signal(act_entry_layout(config))

        def memory():
            return Memory(shape=unsigned(bank.word_bits), depth=bank.words, init=[])

        self.act = memory()
        self.groups = [[memory()], [memory(), memory()]]
        self.domain = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.act = self.act
        for k, group in enumerate(self.groups):
            for j, copy in enumerate(group):
                m.submodules[f"copy{k}_{j}"] = copy
        act_write_stage(m, self.act, self.entry, copy_groups=self.groups)
        return m


@pytest.mark.parametrize("reset_at", [None, "S3"])
def test_every_copy_ends_up_with_the_word_written_into_act(reset_at):
    """A word offered to the write stage (``entry`` valid in cycle 0, S0) is in `act` at
    the edge ending cycle 3 (S3) and in every read copy one edge later (S4).  The copies
    are what the units read, `act` what the host reads and the merges read: they must
    hold the same words, also when the domain reset comes while a write is in flight (a
    run cut short: `mars.tb.pysim_host.PysimTransport.abort`).  S3's memory write still
    happens in the reset cycle (memory contents have no reset), so S4, which repeats it
    to the copies a cycle later, must not drop it: with a reset on S4's enable the copies
    miss the word `act` got."""
    bench = CopiesBench(TINY)
    addr, word = 5, 0xA5A5 & ((1 << len(bench.entry.data)) - 1)
    seen = {}

    async def testbench(ctx):
        ctx.set(bench.entry, {"valid": 1, "addr": addr, "data": word,
                              "mask": (1 << len(bench.entry.mask)) - 1, "max": 0})
        await ctx.tick()                              # edge ending cycle 0 (S0)
        ctx.set(bench.entry.valid, 0)
        await ctx.tick().repeat(2)                    # S1, S2
        # cycle 3: S3 writes act at its end (and S4 takes the write)
        if reset_at == "S3":
            ctx.set(bench.domain.rst, 1)
        await ctx.tick()
        ctx.set(bench.domain.rst, 0)
        seen["act"] = ctx.get(bench.act.data[addr])
        seen["copies_early"] = [ctx.get(c.data[addr]) for g in bench.groups for c in g]
        await ctx.tick().repeat(3)
        seen["copies"] = [ctx.get(c.data[addr]) for g in bench.groups for c in g]

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["act"] == word
    if reset_at is None:
        assert seen["copies_early"] == [0, 0, 0]      # S4: one edge after act
    assert seen["copies"] == [word] * 3, \
        f"act holds {word:#x}, the copies {[hex(c) for c in seen['copies']]}"
