"""Tests of packing (`mars.sw.sparse.pack`): exact round trips over shapes, sparsities and
configurations, the row layout against a brute-force construction written from
docs/sparse-format.md, and clear errors for rows or codes that do not match the layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.config import PRESETS, MarsConfig
from mars.sw.golden import pack_row
from mars.sw.layer import LayerGeometry, flatten_conv_weight, unflatten_conv_weight
from mars.sw.sparse import (
    MemoryImage,
    expand_group_mask,
    group_counts,
    groups_of,
    pack_layer,
    unpack_layer,
)

CONFIGS = [
    PRESETS["tiny"], PRESETS["default"], PRESETS["adc3"], PRESETS["wide8"],
    PRESETS["tiny"].replace(name="tiny-macro", skip_granularity="macro"),
    MarsConfig(name="odd", rows=24, cols=12, partitions=2, rows_per_step=3, weight_bits=3,
               act_bits=2, act_bits_per_cycle=2, readout_bits=2, cores=1, macros_per_core=1,
               weight_sram_rows=128, act_buffer_words=512),
]
HYPO = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw):
    config = draw(st.sampled_from(CONFIGS))
    kind = draw(st.sampled_from(["1x1", "3x3", "linear", "other"]))
    cpg = config.channels_per_group
    cout = draw(st.integers(1, 3 * cpg * config.wordline_domains // 2 + 2))
    cin = draw(st.integers(1, 3 * config.rows_per_step))
    if kind == "linear":
        geometry = LayerGeometry.linear(cin, cout)
    elif kind == "1x1":
        geometry = LayerGeometry("conv", 3, 3, cin, cout)
    elif kind == "3x3":
        geometry = LayerGeometry("conv", 4, 4, cin, cout, 3, 3, 1, 1)
    else:
        geometry = LayerGeometry("conv", 5, 5, cin, cout, 2, 3, 2, 0)
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.75, 0.9, 1.0]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return config, geometry, sparsity, seed


def pruned_weights(config, geometry, sparsity, seed):
    """Random weights with whole groups pruned; inside kept groups a few zeros too."""
    rng = np.random.default_rng(seed)
    n, k = geometry.cout, geometry.k
    W = rng.integers(config.weight_min, config.weight_max + 1, size=(n, k))
    W = np.where(rng.random((n, k)) < 0.2, 0, W)
    blocks, kgroups = group_counts(n, k, config)
    keep = rng.random((blocks, kgroups)) >= sparsity
    if rng.random() < 0.3:
        keep[0] = True                      # a fully dense block
    if rng.random() < 0.3:
        keep[-1] = False                    # a fully pruned block
    return W * expand_group_mask(keep, n, k, config)


def expected_rows(W, config):
    """Row words built straight from the layout description, channel by channel."""
    cpg, G, D = config.channels_per_group, config.rows_per_step, config.wordline_domains
    gm = groups_of(W, config)
    codes = [gm.kept_kgroups(cb) for cb in range(gm.n_blocks)]
    n, k = W.shape
    words = []
    for b in range(-(-len(codes) // D)):
        members = range(b * D, min(len(codes), (b + 1) * D))
        steps = max(len(codes[cb]) for cb in members)
        for s in range(steps):
            for g in range(G):
                row = np.zeros(config.channels_per_macro, dtype=np.int64)
                for cb in members:
                    if s < len(codes[cb]):
                        r = codes[cb][s] * G + g
                        for j in range(cpg):
                            o = cb * cpg + j
                            if o < n and r < k:
                                row[(cb % D) * cpg + j] = W[o, r]
                words.append(pack_row(row, config))
    return words


@HYPO
@given(layers())
def test_round_trip_is_exact(case):
    config, geometry, sparsity, seed = case
    W = pruned_weights(config, geometry, sparsity, seed)
    packed = pack_layer(W, geometry, config)
    np.testing.assert_array_equal(packed.unpack(), W)
    gm = groups_of(W, config)
    assert [c.tolist() for c in packed.index_codes] == [
        gm.kept_kgroups(cb).tolist() for cb in range(gm.n_blocks)]
    assert list(packed.rows) == expected_rows(W, config)
    assert packed.sparsity == gm.sparsity
    assert packed.stored_groups == gm.n_kept
    assert packed.stored_weight_bits == gm.n_kept * config.channels_per_group \
        * config.rows_per_step * config.weight_bits
    # through the memory images and back
    rows = MemoryImage.from_bytes(packed.weight_image().to_bytes(), config, "weights").words
    np.testing.assert_array_equal(unpack_layer(rows, packed.index_codes, geometry, config), W)


@HYPO
@given(layers())
def test_index_memory_and_descriptors(case):
    config, geometry, sparsity, seed = case
    W = pruned_weights(config, geometry, sparsity, seed)
    packed = pack_layer(W, geometry, config)
    D = config.wordline_domains
    memories = [packed.index_memory(d) for d in range(D)]
    for cb, code in enumerate(packed.index_codes):
        b, d = divmod(cb, D)
        start = packed.set_slot_start[b]
        assert memories[d][start:start + len(code)] == code.tolist()
        if len(code) and packed.stored_slots <= config.weight_sram_rows // config.rows_per_step:
            desc = packed.descriptor(cb)
            assert (desc["index_start"], desc["slot_base"]) == (start, start)
            assert (desc["count"], desc["steps"]) == (len(code), packed.set_steps[b])
    assert packed.stored_slots * config.rows_per_step == len(packed.rows)


def test_pytorch_conv_weight_and_more_slots_than_the_macro():
    """A (Cout, Cin, kh, kw) weight is flattened; stored groups beyond R/G are legal."""
    config = PRESETS["tiny"]
    geometry = LayerGeometry("conv", 4, 4, 16, 4, 3, 3, 1, 1)      # 36 K-groups of G=4
    rng = np.random.default_rng(0)
    W = rng.integers(1, 8, size=(geometry.cout, geometry.k))           # dense, no zeros
    packed = pack_layer(unflatten_conv_weight(W, geometry), geometry, config)
    assert packed.set_steps == (36,) and packed.stored_slots > config.row_slots
    np.testing.assert_array_equal(flatten_conv_weight(unflatten_conv_weight(W, geometry)), W)
    np.testing.assert_array_equal(packed.unpack(), W)


def test_fully_pruned_layer():
    config = PRESETS["default"]
    geometry = LayerGeometry.linear(20, 9)
    packed = pack_layer(np.zeros((9, 20), dtype=int), geometry, config)
    assert packed.rows == () and packed.sparsity == 1.0 and packed.stored_groups == 0
    assert all(len(code) == 0 for code in packed.index_codes)
    np.testing.assert_array_equal(packed.unpack(), np.zeros((9, 20)))


@pytest.mark.parametrize("weights, message", [
    (np.zeros((4, 9), dtype=int), r"shape \(Cout, K\) = \(4, 18\)"),
    (np.zeros((4, 18)), "must be integers"),
    (np.full((4, 18), 8), r"must lie in \[-8, 7\]"),
])
def test_bad_weights(weights, message):
    geometry = LayerGeometry("conv", 3, 3, 2, 4, 3, 3)
    with pytest.raises(ValueError, match=message):
        pack_layer(weights, geometry, PRESETS["tiny"])


def test_unpack_rejects_rows_and_codes_that_do_not_match():
    config = PRESETS["tiny"]
    geometry = LayerGeometry.linear(10, 6)           # blocks of 2 channels, K-groups of 4
    W = np.zeros((6, 10), dtype=int)
    W[0, 0], W[2, 5], W[5, 9] = 1, -2, 3
    packed = pack_layer(W, geometry, config)
    codes, rows = packed.index_codes, list(packed.rows)
    with pytest.raises(ValueError, match="has 3 output blocks .* got 2 index codes"):
        unpack_layer(rows, codes[:2], geometry, config)
    with pytest.raises(ValueError, match="output block 1: index entry 0 is K-group 3, out of"):
        unpack_layer(rows, [codes[0], np.array([3]), codes[2]], geometry, config)
    with pytest.raises(ValueError, match="need 8 macro rows .* got 7"):
        unpack_layer(rows[:-1], codes, geometry, config)
    with pytest.raises(ValueError, match="does not fit the macro's 16 columns"):
        unpack_layer(rows[:-1] + [1 << 16], codes, geometry, config)
    # a weight in the half of a row that belongs to a block storing nothing there
    block1_rows = [r ^ (1 << 15) for r in rows]
    with pytest.raises(ValueError, match="nonzero weight in a domain whose block stores no"):
        unpack_layer(block1_rows, [codes[0], np.array([], dtype=int), codes[2]],
                     geometry, config)
    # a nonzero weight in the K padding (rows 10, 11 of K-group 2 do not exist)
    padded = list(rows)
    padded[-1] |= 1
    with pytest.raises(ValueError, match="padding past Cout or past K"):
        unpack_layer(padded, codes, geometry, config)
