"""The MARS-like preset and the paper-networks benchmark (issue 11 parts 3 and 5).

The preset's values are checked against what the paper publishes, the shapes of the
networks it is sized for, its documentation table and the block-RAM budget; the bench's
pieces against hand counts and formulas, on networks reduced to a few channels."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mars.config import PRESETS, describe, preset
from mars.sw.budget import FitError, check_fit, estimate
from mars.sw.golden.network import AddNode
from mars.sw.layer import LayerGeometry
from mars.sw.train.models import parse_model
from mars.tb.networks import random_layer

ROOT = Path(__file__).resolve().parent.parent
MARS = PRESETS["mars"]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "paper_networks", ROOT / "bench" / "paper_networks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pn = _bench()


def _doc_table() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## The `mars` preset", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows[cells[0]] = cells[1]
    return rows


# -- the preset ------------------------------------------------------------------------------

def test_preset_has_the_published_structure_and_is_named():
    assert preset("mars") is MARS and MARS.name == "mars"
    assert (MARS.cores, MARS.partitions) == (4, 8)           # published
    text = describe(MARS)
    assert "4 cores" in text and "8 partitions" in text, text


def test_buffers_hold_the_largest_map_of_vgg16_and_resnet18():
    """The largest activation map (input or any node's output) of both CIFAR-10 networks,
    from the trainer's own graph of the torch models, fits one buffer whole."""
    largest = 0
    for name in ("vgg16", "resnet18"):
        graph = parse_model(pn.NETWORKS[name]((3, 32, 32), 10), (3, 32, 32))
        largest = max([largest, 32 * 32 * 3] + [math.prod(n.out_shape) for n in graph])
    assert largest == 32 * 32 * 64
    assert MARS.act_buffer_words >= largest
    assert MARS.act_buffer_words < 2 * largest    # a power of two, not more


def test_doc_table_gives_every_value_of_the_preset():
    rows = _doc_table()
    for field, cell in rows.items():
        names = re.findall(r"`(\w+)`", field)
        values = re.split(r",\s*|\s+x\s+", cell.split(" (")[0])
        if cell == "as `default`":
            for name in names:
                if hasattr(MARS, name):
                    assert getattr(MARS, name) == getattr(PRESETS["default"], name), name
            continue
        assert len(names) == len(values), (field, cell)
        for name, value in zip(names, values):
            actual = getattr(MARS, name)
            actual = getattr(actual, "value", actual)
            assert str(actual) == value.strip("`"), (name, value, actual)
    # every field that differs from the default is in the table
    documented = {n for f in rows for n in re.findall(r"`(\w+)`", f)}
    differ = {k for k, v in MARS.to_dict().items()
              if v != PRESETS["default"].to_dict()[k] and k != "name"}
    assert differ <= documented, differ - documented


def test_budget_says_it_does_not_fit_the_ecp5_part_and_the_doc_says_how_much():
    rows = estimate(MARS, "ecp5")
    total = sum(r["bram"] for r in rows)
    assert total > 208
    with pytest.raises(FitError, match=f"about {total} block RAMs"):
        check_fit(MARS, "ecp5")
    doc = " ".join((ROOT / "docs" / "configuration.md").read_text().split())
    assert f"totals {total} DP16KD" in doc
    # the activation memory: one copy per unit's domain, one for the writer and the host,
    # one for the residual adds' shortcut read port
    act = next(r for r in rows if r["name"] == "activation memory")
    assert MARS.residual_adds
    assert act["copies"] == 1 + MARS.macros * MARS.wordline_domains + 1 == 66


def test_resnet18_needs_residual_adds_and_a_third_region():
    """ResNet18's structure (at 1/32 width: 2 .. 16 channels) maps on the preset and is
    refused, naming the field, without residual adds or with two activation regions (its
    last add is an identity block's, pooled: it cannot write over its own shortcut)."""
    assert pn.measure(pn.build_network("resnet18", MARS, 0.5, width=1 / 32))["maps"]
    for field, value in (("residual_adds", False), ("act_regions", 2)):
        config = MARS.replace(name="less", **{field: value})
        result = pn.measure(pn.build_network("resnet18", config, 0.5, width=1 / 32))
        assert not result["maps"] and field in result["reason"], (field, result)


# -- the bench's pieces ----------------------------------------------------------------------

@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.9])
def test_balanced_prune_keeps_the_same_count_in_every_block(sparsity):
    seed = 11
    rng = np.random.default_rng(seed)
    g = LayerGeometry.linear(37, 7)                 # K = 37: 5 K-groups of G = 8, last short
    layer = random_layer(rng, MARS, "fc", "input", g, "acc", 0.0)
    pruned = pn.balanced_prune(layer, MARS, sparsity, rng)
    G, cpg = MARS.rows_per_step, MARS.channels_per_group
    keep = {0.0: 5, 0.5: 3, 0.75: 2, 0.9: 1}[sparsity]  # ceil((1 - s) * 5), at least 1
    for cb in range(-(-7 // cpg)):
        block = pruned.weight[cb * cpg:(cb + 1) * cpg]
        kept = [kg for kg in range(5) if block[:, kg * G:(kg + 1) * G].any()]
        assert len(kept) == keep, f"seed {seed}, block {cb}"
        # a kept group has no zero weight left: nothing is pruned by accident
        for kg in kept:
            assert (block[:, kg * G:(kg + 1) * G] != 0).all(), f"seed {seed}"


def test_build_network_follows_the_torch_graph():
    network = pn.build_network("resnet18", MARS, 0.5, width=1 / 32)
    graph = parse_model(pn.resnet18((3, 32, 32), 10, 1 / 32), (3, 32, 32))
    assert [n.name for n in network.nodes] == [n.name for n in graph]
    adds = [n for n in network.nodes if isinstance(n, AddNode)]
    assert len(adds) == 8                                   # 4 stages x 2 basic blocks
    shapes = {n.name: n.out_shape for n in graph}
    for add in adds:
        channels = shapes[add.name][2]
        assert add.multiplier.shape == add.shift.shape == (2, channels), add.name
    first = network.layers[0]
    assert (first.weight != 0).all()                        # the first layer stays dense


def test_measure_on_a_reduced_vgg16_against_the_formulas():
    """VGG16 at 1/32 width (2 .. 16 channels) on the mars preset, through the bench's own
    path: the ideal bound is kept groups x output pixels x Ab/b over the macros' domains,
    counted here from the shapes and the block-balanced keep count."""
    sparsity = 0.5
    network = pn.build_network("vgg16", MARS, sparsity, width=1 / 32, seed=3)
    result = pn.measure(network)
    assert result["maps"], result.get("reason")
    G, cpg = MARS.rows_per_step, MARS.channels_per_group
    lanes = MARS.macros * MARS.wordline_domains
    ideal = 0.0
    for i, layer in enumerate(network.layers):
        g = layer.geometry
        kg = -(-g.k // G)
        keep = kg if i == 0 else max(1, math.ceil((1 - sparsity) * kg))
        ideal += -(-g.cout // cpg) * keep * g.out_h * g.out_w * MARS.cycles_per_step / lanes
    assert result["ideal_cycles"] == pytest.approx(ideal)
    assert result["cycles"] == result["load_cycles"] + result["walk_cycles"]
    assert result["utilisation"] == pytest.approx(ideal / result["cycles"])
    assert result["fps_100mhz"] == pytest.approx(1e8 / result["cycles"])
    assert result["fps_fmax"] == pytest.approx(pn.FMAX_MHZ * 1e6 / result["cycles"])
    assert sum(r["walk_cycles"] + r["load_cycles"] for r in result["layers"]) == \
        result["cycles"]
    assert 0 < result["utilisation"] < result["compute_utilisation"] <= 1
    lines = pn.table([{"network": "vgg16", "sparsity": sparsity, **result}])
    assert f"| vgg16 | 50% | {result['cycles']} |" in lines[2]


def test_digits_per_layer_later_inferences_add_up_to_the_steady_count():
    """The digits network is resident on default: a later inference skips every load.
    Its per-layer figures add up to the steady cycle model's total, and the table shows
    both inferences' utilisation."""
    result = pn.digits_layers()
    assert result["maps"] and result["resident"]
    assert sum(r["steady_walk_cycles"] + r["steady_load_cycles"]
               for r in result["layers"]) == result["steady_cycles"]
    for row in result["layers"]:
        assert row["steady_load_cycles"] <= row["load_cycles"]
        assert row["steady_utilisation"] == pytest.approx(
            row["ideal"] / (row["steady_walk_cycles"] + row["steady_load_cycles"]))
    lines = pn.digits_table(result)
    first = result["layers"][0]
    assert lines[2].endswith(f"| {first['steady_walk_cycles']} / "
                             f"{first['steady_load_cycles']} | "
                             f"{first['steady_utilisation']:.1%} |")


def test_a_cell_that_does_not_map_carries_the_mappers_one_line_reason():
    # 64-word buffers hold no 32x32x3 image: the mapper names the field
    network = pn.build_network("vgg16", MARS.replace(name="small", act_buffer_words=64), 0.9,
                               width=1 / 32)
    result = pn.measure(network)
    assert result == {"maps": False, "reason": result["reason"]}
    assert "act_buffer_words" in result["reason"] and "\n" not in result["reason"]
    row = pn.table([{"network": "vgg16", "sparsity": 0.9, **result}])[2]
    assert row.startswith("| vgg16 | 90% | does not map: ") and result["reason"] in row


def test_bad_config_is_one_line_and_exit_2(capsys):
    assert pn.main(["--config", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset 'nope'" in err
