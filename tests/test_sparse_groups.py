"""Tests of the sparsity groups (`mars.sw.sparse.groups`) against brute-force loops written
from the definition: group (cb, kg) = W[cb*cpg:(cb+1)*cpg, kg*G:(kg+1)*G], pruned iff all
zero, padding past N and K counted as zeros."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.config import PRESETS, MarsConfig
from mars.sw.sparse import (
    expand_group_mask,
    group_counts,
    group_view,
    groups_of,
    iter_groups,
)

CONFIGS = [
    PRESETS["tiny"], PRESETS["default"], PRESETS["adc3"], PRESETS["wide8"],
    PRESETS["tiny"].replace(name="tiny-macro", skip_granularity="macro"),
    MarsConfig(name="odd", rows=24, cols=12, partitions=2, rows_per_step=3, weight_bits=3,
               act_bits=2, act_bits_per_cycle=2, readout_bits=2, cores=1, macros_per_core=1,
               weight_sram_rows=128, act_buffer_words=512),
]
HYPO = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def brute_force_kept(W, config):
    cpg, G = config.channels_per_group, config.rows_per_step
    n, k = W.shape
    blocks, kgroups = -(-n // cpg), -(-k // G)
    kept = np.zeros((blocks, kgroups), dtype=bool)
    for cb in range(blocks):
        for kg in range(kgroups):
            for o in range(cb * cpg, min(n, (cb + 1) * cpg)):
                for r in range(kg * G, min(k, (kg + 1) * G)):
                    if W[o, r] != 0:
                        kept[cb, kg] = True
    return kept


@st.composite
def sparse_matrices(draw):
    config = draw(st.sampled_from(CONFIGS))
    n = draw(st.integers(1, 3 * config.channels_per_group + 1))
    k = draw(st.integers(1, 5 * config.rows_per_step + 2))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    W = rng.integers(config.weight_min, config.weight_max + 1, size=(n, k))
    W = np.where(rng.random((n, k)) < density, W, 0)
    return config, W


@HYPO
@given(sparse_matrices())
def test_kept_matches_brute_force(case):
    config, W = case
    gm = groups_of(W, config)
    kept = brute_force_kept(W, config)
    np.testing.assert_array_equal(gm.kept, kept)
    assert gm.n_kept == kept.sum() and gm.n_pruned == (~kept).sum()
    assert gm.sparsity == pytest.approx((~kept).mean())
    for cb in range(gm.n_blocks):
        assert gm.kept_kgroups(cb).tolist() == [kg for kg in range(kept.shape[1])
                                                if kept[cb, kg]]
    assert [g.pruned for g in iter_groups(W, config)] == (~kept).reshape(-1).tolist()


@HYPO
@given(sparse_matrices())
def test_group_view_and_masks(case):
    config, W = case
    n, k = W.shape
    cpg, G = config.channels_per_group, config.rows_per_step
    view = group_view(W, config)
    blocks, kgroups = group_counts(n, k, config)
    assert view.shape == (blocks, kgroups, cpg, G)
    for cb, kg, j, g in np.ndindex(view.shape):
        o, r = cb * cpg + j, kg * G + g
        assert view[cb, kg, j, g] == (W[o, r] if o < n and r < k else 0)
    # pruning with an element mask drops exactly the masked groups
    rng = np.random.default_rng(int(abs(W).sum()))
    mask = rng.random((blocks, kgroups)) < 0.5
    pruned = W * expand_group_mask(mask, n, k, config)
    np.testing.assert_array_equal(groups_of(pruned, config).kept, brute_force_kept(W, config)
                                  & mask)
    np.testing.assert_array_equal(groups_of(W, config).element_mask() * W, W)


def test_float_weights_and_errors():
    config = PRESETS["tiny"]
    W = np.zeros((3, 9))
    W[2, 8] = 1e-3
    gm = groups_of(W, config)
    assert gm.kept.tolist() == [[False, False, False], [False, False, True]]
    with pytest.raises(ValueError, match=r"shape \(N=Cout, K\)"):
        groups_of(np.zeros(5), config)
    with pytest.raises(ValueError, match="must be numbers"):
        groups_of(np.array([["a"]]), config)
    with pytest.raises(ValueError, match="group mask of an 3 x 9 matrix has shape"):
        expand_group_mask(np.ones((1, 3)), 3, 9, config)
    with pytest.raises(IndexError, match="output block 2 out of range"):
        gm.kept_kgroups(2)
    with pytest.raises(ValueError, match="K must be a positive integer"):
        group_counts(3, 0, config)


def test_granularity_sets_block_width():
    """At macro granularity a group spans every channel of the macro."""
    part = PRESETS["tiny"]
    macro = part.replace(name="m", skip_granularity="macro")
    W = np.zeros((part.channels_per_macro, 4), dtype=int)
    W[0, 0] = 1
    assert groups_of(W, part).kept.tolist() == [[True], [False]]
    assert groups_of(W, macro).kept.tolist() == [[True]]
