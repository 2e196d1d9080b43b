"""CIM-aware group pruning (`mars.sw.train.prune`): masks have the group structure of the
configuration, checked by brute-force enumeration of groups and against the sparse
format's own group listing (`mars.sw.sparse.groups_of`)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mars.config import PRESETS
from mars.sw.sparse import groups_of
from mars.sw.train.models import parse_model
from mars.sw.train.prune import Pruner, agp_sparsity, group_listing, group_scores
from mars.sw.train.quant import QNetwork

CONFIGS = {name: PRESETS[name] for name in ("default", "tiny", "adc3", "wide8")}


def brute_groups(n, k, G, cpg):
    """Every group as the list of its (row, col) cells, enumerated with plain loops."""
    groups = {}
    for o in range(n):
        for kk in range(k):
            groups.setdefault((o // cpg, kk // G), []).append((o, kk))
    return groups


def network(cin=5, cout=11, k=3, hidden=7, classes=3, hw=4):
    """conv (K = 9*cin, N = cout: both unaligned) -> flatten -> linear -> linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(cin, 4, 1), nn.ReLU(),                       # first layer (exempt)
        nn.Conv2d(4, cout, k, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Flatten(), nn.Linear(cout * hw * hw, hidden), nn.ReLU(), nn.Linear(hidden, classes))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_group_masks_have_the_group_structure(name, sparsity):
    config = CONFIGS[name]
    G, cpg = config.rows_per_step, config.channels_per_group
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), config)
    pruner = Pruner(qnet.layers.values(), G=G, cpg=cpg, sparsity=sparsity,
                    exempt=("conv0",))
    before = {name: layer.matrix(layer.folded()[0]).detach().clone()
              for name, layer in qnet.layers.items()}
    pruner.step(sparsity)
    assert torch.all(qnet.layers["conv0"].mask == 1)
    for lname in ("conv1", "fc0", "fc1"):
        layer = qnet.layers[lname]
        mask = layer.matrix(layer.mask).numpy()
        n, k = mask.shape
        groups = brute_groups(n, k, G, cpg)
        kept = {key: bool(mask[cells[0]]) for key, cells in groups.items()}
        for key, cells in groups.items():
            values = {bool(mask[c]) for c in cells}
            assert len(values) == 1, f"{lname}: group {key} is partly pruned"
        expected = min(round(sparsity * len(groups)), len(groups) - 1)   # keeps one
        assert sum(not v for v in kept.values()) == expected
        # the pruned groups are those of lowest L2 norm of the folded float weights
        norms = {key: math.sqrt(sum(float(before[lname][c]) ** 2 for c in cells))
                 for key, cells in groups.items()}
        worst_kept = min(norms[key] for key, v in kept.items() if v)
        best_pruned = max((norms[key] for key, v in kept.items() if not v), default=0.0)
        assert best_pruned <= worst_kept
        # the raw weights of pruned groups are zero, and so is everything the export sees
        folded = layer.matrix(layer.folded()[0]).detach().numpy()
        assert np.all(folded[mask == 0] == 0)
        # the sparse format lists the same groups as pruned
        gm = groups_of(np.where(mask > 0, 1, 0), config)
        for (cb, kg), value in kept.items():
            assert gm.kept[cb, kg] == value


def test_linear_after_flatten_is_grouped_in_hwc_order():
    G, cpg = 8, 2
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), PRESETS["default"])
    layer = qnet.layers["fc0"]
    Pruner([layer], G=G, cpg=cpg, sparsity=0.5).step(0.5)
    hwc = layer.matrix(layer.mask).numpy()
    torch_order = layer.mask.numpy()
    # structured in the accelerator's (HWC) column order ...
    for cells in brute_groups(*hwc.shape, G, cpg).values():
        assert len({hwc[c] for c in cells}) == 1
    # ... which is not PyTorch's CHW order (11 channels x 16 pixels)
    assert any(len({torch_order[c] for c in cells}) > 1
               for cells in brute_groups(*torch_order.shape, G, cpg).values())
    assert np.array_equal(layer.from_matrix(layer.matrix(layer.mask)).numpy(), torch_order)


def test_block_scope_balances_the_output_blocks():
    config = PRESETS["default"]
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), config)
    Pruner(qnet.layers.values(), G=config.rows_per_step, cpg=config.channels_per_group,
           sparsity=0.75, scope="block", exempt=("conv0",)).step(0.75)
    for lname in ("conv1", "fc0"):
        layer = qnet.layers[lname]
        kept = groups_of(layer.matrix(layer.mask).numpy().astype(np.int64), config).kept
        per_block = kept.sum(axis=1)
        assert np.all(per_block == round(0.25 * kept.shape[1]))


def test_global_scope_reaches_the_target_over_all_layers():
    config = PRESETS["default"]
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), config)
    layers = [qnet.layers[n] for n in ("conv1", "fc0", "fc1")]
    Pruner(layers, G=8, cpg=2, sparsity=0.6, scope="global").step(0.6)
    total = pruned = 0
    for layer in layers:
        scores = group_scores(layer.matrix(layer.mask), 8, 2)
        total += scores.numel()
        pruned += int((scores == 0).sum())
    assert pruned == round(0.6 * total)


def test_unstructured_pruning_counts_weights():
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), PRESETS["default"])
    layer = qnet.layers["fc0"]
    Pruner([layer], G=8, cpg=2, sparsity=0.7, structure="unstructured").step(0.7)
    assert int((layer.mask == 0).sum()) == round(0.7 * layer.mask.numel())


def test_pruning_never_revives_and_grows_monotonically():
    qnet = QNetwork(parse_model(network(), (5, 4, 4)), PRESETS["default"])
    layer = qnet.layers["conv1"]
    pruner = Pruner([layer], G=8, cpg=2, sparsity=0.8)
    previous = torch.ones_like(layer.mask)
    for s in (0.2, 0.5, 0.5, 0.8):
        with torch.no_grad():                     # training would move the weights
            layer.weight.add_(torch.randn_like(layer.weight))
        pruner.step(s)
        assert torch.all(layer.mask <= previous)
        previous = layer.mask.clone()


def test_group_listing_matches_brute_force():
    for n, k, G, cpg in itertools.product([1, 5, 8], [1, 7, 16, 17], [1, 4, 8], [1, 2, 3]):
        listing = group_listing(n, k, G, cpg)
        brute = brute_groups(n, k, G, cpg)
        assert len(listing) == len(brute)
        for cb, kg, rows, cols in listing:
            cells = [(o, kk) for o in range(n)[rows] for kk in range(k)[cols]]
            assert cells == brute[(cb, kg)]


def test_agp_schedule():
    assert agp_sparsity(0, 0, 100, 0.9) == 0.0
    assert agp_sparsity(100, 0, 100, 0.9) == 0.9
    assert agp_sparsity(150, 0, 100, 0.9) == 0.9
    assert agp_sparsity(50, 0, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    values = [agp_sparsity(t, 0, 100, 0.9) for t in range(101)]
    assert values == sorted(values)


def test_bad_pruner_arguments():
    with pytest.raises(ValueError, match="sparsity must lie"):
        Pruner([], G=8, cpg=2, sparsity=1.0)
    with pytest.raises(ValueError, match="needs group pruning"):
        Pruner([], G=8, cpg=2, sparsity=0.5, structure="unstructured", scope="block")
