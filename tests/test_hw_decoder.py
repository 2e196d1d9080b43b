"""Amaranth-simulator tests of the sparse-weight decoder against the NumPy golden model.

The expected payloads come from `mars.sw.golden.decoder_walk`, which works from
`LayerGeometry.im2col` alone, independently of the descriptor and k-table arithmetic the
RTL uses.  Error behaviour is checked against hand-built bad index codes and descriptors.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from mars.config import PRESETS, MarsConfig
from mars.contract.decoder import DecoderFormat, descriptor, ktable_words, payload_layout
from mars.contract.layer import LayerGeometry
from mars.hw.decoder import SparseDecoder
from mars.sw.golden import decoder_walk

TINY = PRESETS["tiny"]
# odd G (3, not a power of two) and memories whose depths are not powers of two
ODD = MarsConfig(name="odd", rows=24, cols=12, partitions=2, rows_per_step=3, weight_bits=3,
                 act_bits=2, act_bits_per_cycle=2, readout_bits=2, cores=1,
                 macros_per_core=1, weight_sram_rows=128, act_buffer_words=512)


def payload_dict(const, config) -> dict:
    G = config.rows_per_step
    return {"slot": int(const.slot), "kgroup": int(const.kgroup),
            "addrs": [int(const.addrs[g]) for g in range(G)], "pad": int(const.pad),
            "first": int(const.first), "last": int(const.last),
            "walk_first": int(const.walk_first), "walk_last": int(const.walk_last),
            "filler": int(const.filler)}


def run_decoder(config, walks, *, index=(), ktable=(), write_index=(), write_ktable=(),
                ready_prob=1.0, seed=0, max_cycles=20000, overlap=False):
    """Load memories, run `walks` (descriptors) back to back, collect payloads.

    Returns (payloads, error flags after each walk, cycles from first start to last
    payload).  `write_*` are written through the write ports before the first walk.
    With `overlap` each walk is offered as soon as the one before it has started (the
    decoder takes it once its stages are empty, while the last payload may still wait
    at the output, as in a unit); the flags are then read after the last walk only.
    """
    dut = SparseDecoder(config, index_init=list(index), ktable_init=list(ktable))
    rng = np.random.default_rng(seed)
    got, errors, timing = [], [], {}

    async def control(ctx):
        ctx.set(dut.start.valid, 0)
        for addr, word in write_index:
            ctx.set(dut.index_write.payload, {"addr": addr, "data": word})
            ctx.set(dut.index_write.valid, 1)
            await ctx.tick()
        ctx.set(dut.index_write.valid, 0)
        for addr, word in write_ktable:
            ctx.set(dut.ktable_write.payload, {"addr": addr, "data": word})
            ctx.set(dut.ktable_write.valid, 1)
            await ctx.tick()
        ctx.set(dut.ktable_write.valid, 0)
        cycles = 0
        for i, desc in enumerate(walks):
            ctx.set(dut.start.payload, desc)
            ctx.set(dut.start.valid, 1)
            await ctx.tick().until(dut.start.ready)
            timing.setdefault("start", cycles)
            ctx.set(dut.start.valid, 0)
            await ctx.tick()
            if overlap and i < len(walks) - 1:
                continue
            while ctx.get(dut.busy):
                await ctx.tick()
                cycles += 1
                assert cycles < max_cycles, "the decoder hangs (busy for too long)"
            err = ctx.get(dut.error)
            errors.append({k: int(getattr(err, k))
                           for k in ("descriptor", "index_range", "index_order")})
        timing["done"] = True

    async def consumer(ctx):
        while True:
            ctx.set(dut.out.ready, int(rng.random() < ready_prob))
            await ctx.tick()

    async def monitor(ctx):
        cycle = 0
        async for _, _, valid, ready, payload, start_valid, start_ready in ctx.tick().sample(
                dut.out.valid, dut.out.ready, dut.out.payload, dut.start.valid,
                dut.start.ready):
            cycle += 1
            if start_valid and start_ready:
                timing.setdefault("first_start", cycle)
            if valid and ready:
                got.append(payload_dict(payload, config))
                timing.setdefault("first_out", cycle)
                timing["last_out"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(consumer, background=True)
    sim.add_process(monitor)
    sim.run()
    assert "done" in timing, "the decoder did not finish its walks"
    return got, errors, timing


def random_kept(rng, n_kgroups, density):
    return np.flatnonzero(rng.random(n_kgroups) < density)


LAYERS = [
    LayerGeometry("conv", 5, 6, 3, 8, 3, 3, 1, 1),     # first layer: Cin < G, pad 1
    LayerGeometry("conv", 7, 5, 8, 8, 3, 2, 2, 1),     # stride 2, non-square kernel
    LayerGeometry("conv", 4, 4, 5, 8, 1, 1, 1, 0),     # 1x1
    LayerGeometry("conv", 2, 2, 4, 8, 3, 3, 1, 2),     # kernel larger than the map
    LayerGeometry.linear(37, 10),                      # K not a multiple of G
    # kernel rows shorter than G: a lane wraps past several kernel rows (L = 1, L = 2)
    LayerGeometry("conv", 6, 5, 1, 8, 5, 1, 1, 0),
    LayerGeometry("conv", 5, 4, 2, 8, 3, 1, 2, 0),
]


@pytest.mark.parametrize("config", [TINY, ODD], ids=lambda c: c.name)
def test_walks_match_golden(config):
    """Several layers back to back, sparsities from dense to empty, random stalls."""
    rng = np.random.default_rng(3)
    fmt = DecoderFormat(config)
    walks, expected, index, ktable = [], [], [], []
    for n, geometry in enumerate(LAYERS):
        KG = -(-geometry.k // config.rows_per_step)
        kept = random_kept(rng, KG, [1.0, 0.5, 0.3, 0.0, 0.7, 1.0, 0.6][n])
        steps = len(kept) + (n % 2)
        base_k, base_i = len(ktable), len(index)
        ktable += ktable_words(geometry, config)
        index += kept.tolist()
        act_base = int(rng.integers(0, config.act_buffer_words))
        walks.append(descriptor(geometry, config, count=len(kept), steps=steps,
                                act_base=act_base, ktable_base=base_k, index_start=base_i,
                                slot_base=base_i))
        expected += decoder_walk(geometry, kept, config, steps=steps, act_base=act_base,
                                 slot_base=base_i).payloads()
    assert len(ktable) <= fmt.max_kgroups and len(index) <= fmt.index_depth
    got, errors, _ = run_decoder(config, walks, index=index, ktable=ktable, ready_prob=0.6)
    assert all(not any(e.values()) for e in errors)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"payload {i}"


@pytest.mark.parametrize("geometry", [
    LayerGeometry("conv", 4, 5, 1, 4, 3, 3, 1, 1),     # one channel: a lane per column
    LayerGeometry("conv", 4, 4, 2, 4, 2, 2, 1, 1),
], ids=["3x3-cin1", "2x2-cin2"])
def test_each_pixels_first_step_has_its_own_x_window(geometry):
    """Dense walks whose first K-group spans several kernel columns, so that the step
    opening a pixel (and a row) is padded at the right edge by its own window origin
    (the layers above still pass with a register of ``row_size - bx`` one item late,
    tried in session 30, docs/synthesis.md)."""
    rng = np.random.default_rng(7)
    kept = np.arange(-(-geometry.k // TINY.rows_per_step))
    act_base = int(rng.integers(0, TINY.act_buffer_words))
    walk = descriptor(geometry, TINY, count=len(kept), act_base=act_base)
    expected = decoder_walk(geometry, kept, TINY, act_base=act_base).payloads()
    got, errors, _ = run_decoder(TINY, [walk], index=kept.tolist(),
                                 ktable=ktable_words(geometry, TINY), ready_prob=0.7)
    assert not any(errors[0].values())
    assert got == expected


def test_write_ports_load_the_memories():
    """The same walk with memories loaded through the write ports instead of init."""
    config = TINY
    geometry = LAYERS[0]
    kept = np.array([0, 2, 3, 6])
    kt = ktable_words(geometry, config)
    desc = descriptor(geometry, config, count=len(kept), index_start=5, ktable_base=9,
                      slot_base=5)
    got, errors, _ = run_decoder(
        config, [desc], write_index=[(5 + i, int(k)) for i, k in enumerate(kept)],
        write_ktable=[(9 + i, w) for i, w in enumerate(kt)])
    assert errors == [{"descriptor": 0, "index_range": 0, "index_order": 0}]
    assert got == decoder_walk(geometry, kept, config, slot_base=5).payloads()


def test_one_group_per_cycle():
    """With a consumer that never stalls, n payloads arrive in n consecutive cycles."""
    config = TINY
    geometry = LayerGeometry("conv", 6, 6, 4, 4, 3, 3, 1, 1)
    kept = np.array([0, 1, 4, 5, 8])
    desc = descriptor(geometry, config, count=len(kept))
    got, _, timing = run_decoder(config, [desc], index=kept.tolist(),
                                 ktable=ktable_words(geometry, config))
    n = geometry.out_h * geometry.out_w * len(kept)
    assert len(got) == n
    assert timing["last_out"] - timing["first_out"] == n - 1
    # latency (docs/decoder.md): issue, index read, index word register + checks, k-table
    # read, k-table word register + lanes P/A, lanes B, lanes C (a0, steps, pad test),
    # lanes D (addresses), output register
    assert timing["first_out"] - timing["first_start"] == 9


def bad_walk(config, kept, *, k_groups_geometry=LAYERS[1]):
    geometry = k_groups_geometry
    desc = descriptor(geometry, config, count=len(kept))
    return geometry, desc


@pytest.mark.parametrize("kept, bad_at, flag", [
    ([0, 3, 99, 5], 2, "index_range"),       # 99 >= k_groups
    ([1, 4, 4, 6], 2, "index_order"),        # repeated
    ([2, 7, 5], 2, "index_order"),           # decreasing
    ([12], 0, "index_range"),                # first entry out of range (k_groups = 12)
])
def test_bad_index_sets_sticky_flag(kept, bad_at, flag):
    """Payloads before the bad entry come out, nothing after it; the flag stays set until
    the next walk, which clears it."""
    config = TINY
    geometry = LAYERS[1]
    KG = -(-geometry.k // config.rows_per_step)
    assert KG == 12
    # the descriptor is built for a valid code of the same length, then the memory is bad
    desc = descriptor(geometry, config, count=len(kept))
    kt = ktable_words(geometry, config)
    good_kept = np.arange(2)
    good = descriptor(geometry, config, count=2, index_start=len(kept))
    got, errors, _ = run_decoder(config, [desc, good], index=list(kept) + good_kept.tolist(),
                                 ktable=kt, ready_prob=0.7)
    prefix = decoder_walk(geometry, kept[:bad_at], config, steps=len(kept)).payloads()
    prefix = prefix[:bad_at]                   # the first pixel, up to the bad entry
    tail = decoder_walk(geometry, good_kept, config).payloads()
    assert got == prefix + tail
    assert errors[0] == {"descriptor": 0, "index_range": int(flag == "index_range"),
                         "index_order": int(flag == "index_order")}
    assert errors[1] == {"descriptor": 0, "index_range": 0, "index_order": 0}


@pytest.mark.parametrize("change", [
    {"k_groups": 0}, {"last_lanes": 0}, {"last_lanes": 5}, {"count": 3, "steps": 2},
    {"out_h": 0}, {"out_w": 0}, {"index_start": 63}, {"slot_base": 62},
    {"ktable_base": 505}, {"count": 12},
])
def test_bad_descriptor_is_rejected(change):
    config = TINY
    geometry = LAYERS[1]
    desc = {**descriptor(geometry, config, count=3), **change}
    got, errors, _ = run_decoder(config, [desc], index=[0, 1, 2],
                                 ktable=ktable_words(geometry, config))
    assert got == []
    assert errors == [{"descriptor": 1, "index_range": 0, "index_order": 0}]


@pytest.mark.parametrize("seed", range(3))
def test_bad_descriptor_behind_a_stalled_output(seed):
    """A bad descriptor taken while the walk before it still holds its last payload at
    the output (nothing advances): nothing of it is emitted, whenever the output moves;
    the good walk after it clears the flag."""
    config = TINY
    geometry = LAYERS[1]
    kept = [0, 1, 2]
    good = descriptor(geometry, config, count=len(kept))
    bad = {**good, "k_groups": 0}
    expected = decoder_walk(geometry, np.array(kept), config).payloads()
    kt = ktable_words(geometry, config)
    got, errors, _ = run_decoder(config, [good, bad], index=kept, ktable=kt,
                                 ready_prob=0.3, seed=seed, overlap=True)
    assert got == expected
    assert errors == [{"descriptor": 1, "index_range": 0, "index_order": 0}]
    got, errors, _ = run_decoder(config, [good, bad, good], index=kept, ktable=kt,
                                 ready_prob=0.3, seed=seed, overlap=True)
    assert got == expected + expected
    assert errors == [{"descriptor": 0, "index_range": 0, "index_order": 0}]


@pytest.mark.parametrize("config", [TINY, ODD], ids=lambda c: c.name)
def test_decoders_of_a_block_set_stay_in_step(config):
    """The D decoders of a unit share one descriptor but for their index code (start,
    count: how many K-groups each block keeps; fillers pad them to the same ``steps``).
    Started in the same cycle and stalled by the same ``ready``, they must offer their
    payloads and take their next descriptor in the same cycles, whatever their codes
    (the activation gather takes each domain's payload on its own arrival, hw/gather.py).
    Walks back to back (each offered as soon as the one before started), random stalls."""
    rng = np.random.default_rng(11)
    fmt = DecoderFormat(config)
    D = 3
    index, ktable, walks = [[] for _ in range(D)], [], []
    for n, geometry in enumerate(LAYERS):
        KG = -(-geometry.k // config.rows_per_step)
        kept = [random_kept(rng, KG, density) for density in (0.6, 0.3, 0.0)]
        steps = max(len(k) for k in kept) + (n % 2)
        base_k = len(ktable)
        ktable += ktable_words(geometry, config)
        act_base = int(rng.integers(0, config.act_buffer_words))
        walks.append([descriptor(geometry, config, count=len(kept[d]), steps=steps,
                                 act_base=act_base, ktable_base=base_k,
                                 index_start=len(index[d]), slot_base=0)
                      for d in range(D)])
        for d in range(D):
            index[d] += kept[d].tolist()
    assert len(ktable) <= fmt.max_kgroups
    assert all(len(code) <= fmt.index_depth for code in index)
    m = Module()
    duts = [SparseDecoder(config, index_init=index[d], ktable_init=ktable) for d in range(D)]
    for d, dut in enumerate(duts):
        m.submodules[f"decoder{d}"] = dut
    checked = {"cycles": 0, "payloads": 0}

    async def testbench(ctx):
        walk = 0
        while walk < len(walks) or any(ctx.get(dut.busy) for dut in duts):
            offer = walk < len(walks)
            ready = int(rng.random() < 0.6)
            for d, dut in enumerate(duts):
                if offer:
                    ctx.set(dut.start.payload, walks[walk][d])
                ctx.set(dut.start.valid, int(offer))
                ctx.set(dut.out.ready, ready)
            starts = [ctx.get(dut.start.ready) for dut in duts]
            valids = [ctx.get(dut.out.valid) for dut in duts]
            firsts = [ctx.get(dut.out.payload.walk_first) for dut in duts]
            cycle = checked["cycles"]
            assert len(set(starts)) == 1, f"cycle {cycle}: start.ready {starts}"
            assert len(set(valids)) == 1, f"cycle {cycle}: out.valid {valids}"
            assert not valids[0] or len(set(firsts)) == 1, f"cycle {cycle}: walk_first"
            checked["payloads"] += valids[0] & ready
            walk += int(offer and starts[0])
            await ctx.tick()
            checked["cycles"] += 1
            assert checked["cycles"] < 20000, "the decoders hang"
        flags = [{k: int(getattr(ctx.get(dut.error), k))
                  for k in ("descriptor", "index_range", "index_order")} for dut in duts]
        assert all(not any(f.values()) for f in flags), flags

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert checked["payloads"] == sum(w[0]["steps"] * g.out_h * g.out_w
                                      for w, g in zip(walks, LAYERS))


def test_empty_walk_emits_nothing():
    config = TINY
    desc = descriptor(LAYERS[1], config, count=0)
    got, errors, _ = run_decoder(config, [desc])
    assert got == [] and errors == [{"descriptor": 0, "index_range": 0, "index_order": 0}]


def test_payload_layout_matches_software_fields():
    layout = payload_layout(TINY)
    fmt = DecoderFormat(TINY)
    assert layout.size == (fmt.slot_bits + fmt.kgroup_bits + TINY.rows_per_step
                           * (fmt.addr_bits + 1) + 5)


def random_geometry(rng, config):
    """A random conv or linear layer that fits the decoder of `config`."""
    while True:
        if rng.random() < 0.2:
            geometry = LayerGeometry.linear(int(rng.integers(1, 80)), 4)
        else:
            kh, kw = (int(v) for v in rng.integers(1, 5, 2))
            try:
                geometry = LayerGeometry(
                    "conv", int(rng.integers(1, 7)), int(rng.integers(1, 7)),
                    int(rng.integers(1, 10)), 4, kh, kw, int(rng.integers(1, 4)),
                    int(rng.integers(0, min(kh, kw))))
            except ValueError:
                continue
        try:
            DecoderFormat(config).check_layer(geometry)
        except ValueError:
            continue
        return geometry


@pytest.mark.parametrize("name", ["default", "adc3", "wide8"])
def test_random_layers_other_presets(name):
    """Random layers (shapes, strides, padding, sparsity 0..100 %) on the bigger presets."""
    config = PRESETS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    walks, expected, index, ktable = [], [], [], []
    for _ in range(6):
        geometry = random_geometry(rng, config)
        KG = -(-geometry.k // config.rows_per_step)
        kept = random_kept(rng, KG, rng.random())
        act_base = int(rng.integers(0, config.act_buffer_words))
        walks.append(descriptor(geometry, config, count=len(kept), act_base=act_base,
                                ktable_base=len(ktable), index_start=len(index)))
        expected += decoder_walk(geometry, kept, config, act_base=act_base).payloads()
        ktable += ktable_words(geometry, config)
        index += kept.tolist()
    got, errors, _ = run_decoder(config, walks, index=index, ktable=ktable, ready_prob=0.8,
                                 seed=1)
    assert not any(any(e.values()) for e in errors)
    assert got == expected
