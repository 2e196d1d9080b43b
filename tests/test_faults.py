"""Stuck-at cell faults (`mars.sw.faults`): fault maps, the faulty weight image, the golden
model computed from it, `mars run --faults` and its errors.  The RTL side is
tb/test_faults.py (Verilator)."""

import dataclasses

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.contract.host import HostMemory
from mars.sw.cli import main
from mars.sw.faults import (
    FaultError, FaultMap, FaultModel, fault_sweep, inject_faults, macro_weights, run_mapping,
    walk_weights,
)
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.network import IntegerNetwork, LayerNode
from mars.sw.layer import LayerGeometry, LayerKind
from mars.sw.mapper import map_network
from mars.sw.sparse import groups_of
from mars.tb.networks import (
    NETWORKS, random_inputs, random_layer, stable_seed, write_random_package,
)

TINY, DEFAULT = PRESETS["tiny"], PRESETS["default"]
#: reloads hidden behind the walks: loader programs of two segments a phase
TINY_HIDE = TINY.replace(name="tiny-hide", hide_loads=True)
BINARY = DEFAULT.replace(name="binary", readout_mode=ReadoutMode.BINARY, readout_threshold=3)
TERNARY = TINY.replace(name="ternary", readout_mode=ReadoutMode.TERNARY, readout_threshold=2,
                       scale_bits=6)


def case(config, name="cnn", seed=0, count=4):
    """A random network with random scale factors for binary/ternary, and inputs."""
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    if config.scaled_readout:
        hi = 1 << (config.scale_bits - 1)
        nodes = tuple(dataclasses.replace(n, scales=rng.integers(-hi, hi, (len(n.weight),
                                                                         config.weight_bits)))
                      if isinstance(n, LayerNode) else n for n in network.nodes)
        network = dataclasses.replace(network, nodes=nodes)
    return network, random_inputs(network, rng, count)


def with_weights(network, weights):
    nodes, it = [], iter(weights)
    for node in network.nodes:
        nodes.append(dataclasses.replace(node, weight=next(it))
                     if isinstance(node, LayerNode) else node)
    return dataclasses.replace(network, nodes=tuple(nodes))


# -- the fault model and the fault map ---------------------------------------------------------

@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), float("inf")])
def test_rate_outside_unit_interval_is_refused(rate):
    with pytest.raises(FaultError, match="--faults"):
        FaultModel(rate)


def test_negative_seed_is_refused():
    with pytest.raises(FaultError, match="--fault-seed"):
        FaultModel(0.1, -1)


def test_map_is_reproducible_nested_and_at_the_rate():
    a = FaultMap.draw(FaultModel(0.1, 7), DEFAULT)
    assert np.array_equal(a.stuck, FaultMap.draw(FaultModel(0.1, 7), DEFAULT).stuck)
    assert not np.array_equal(a.stuck, FaultMap.draw(FaultModel(0.1, 8), DEFAULT).stuck)
    low = FaultMap.draw(FaultModel(0.01, 7), DEFAULT)
    assert not (low.stuck & ~a.stuck).any()              # nested over rates
    cells = a.stuck.size                                 # 4 macros x 512 x 64
    # binomial: within 5 standard deviations of the rate, and of half stuck at 1
    assert abs(a.count - 0.1 * cells) < 5 * np.sqrt(cells * 0.1 * 0.9)
    ones = int((a.stuck & a.value).sum())
    assert abs(ones - a.count / 2) < 5 * np.sqrt(a.count / 4)
    assert FaultMap.draw(FaultModel(0.0, 7), DEFAULT).count == 0
    assert FaultMap.draw(FaultModel(1.0, 7), DEFAULT).count == cells


def test_apply_sets_exactly_the_stuck_bits():
    rng = np.random.default_rng(1)
    faults = FaultMap.draw(FaultModel(0.3, 2), TINY)
    words = [int(w) for w in rng.integers(0, 1 << TINY.cols, size=5)]
    got = faults.apply(0, 10, words)
    for r, (word, new) in enumerate(zip(words, got)):
        for c in range(TINY.cols):
            expected = (int(faults.value[0, 10 + r, c]) if faults.stuck[0, 10 + r, c]
                        else word >> c & 1)
            assert new >> c & 1 == expected, (r, c)
    with pytest.raises(FaultError, match="leave the macro"):
        faults.apply(0, TINY.rows - 2, words)


# -- the golden model from the image -----------------------------------------------------------

@pytest.mark.parametrize("config", [TINY, DEFAULT, PRESETS["adc3"], BINARY, TERNARY,
                                    TINY_HIDE], ids=lambda c: c.name)
@pytest.mark.parametrize("name", ["cnn", "odd"])
def test_clean_image_gives_the_accelerator_model(config, name):
    network, x = case(config, name)
    np.testing.assert_array_equal(run_mapping(map_network(network), x),
                                  run_accelerator(network, x))


@pytest.mark.parametrize("config", [TINY, DEFAULT, BINARY, TINY_HIDE], ids=lambda c: c.name)
@pytest.mark.parametrize("stuck_at_one, code", [(0.0, 0), (1.0, -1)])
def test_every_cell_stuck(config, stuck_at_one, code):
    """All cells stuck at 0: every stored weight reads 0; at 1: every stored weight reads
    all ones, -1 in two's complement; pruned groups are not stored and stay 0."""
    network, x = case(config, "cnn", seed=3)
    faults = FaultMap.draw(FaultModel(1.0, 0, stuck_at_one), config)
    got = run_mapping(inject_faults(map_network(network), faults), x)
    weights = [np.where(groups_of(n.weight, config).element_mask(), code, 0)
               for n in network.layers]
    np.testing.assert_array_equal(got, run_accelerator(with_weights(network, weights), x))


def test_one_stuck_cell_is_in_one_macro_only():
    """The default mapping copies the first layer's block set into units 0 and 1 of core
    0 (bands of output rows).  One stuck cell in unit 1 changes unit 1's copy of one weight
    by its bit's value and nothing in unit 0's copy."""
    network, x = case(DEFAULT, "cnn", seed=5)
    mapping = map_network(network)
    first = {walk.unit: (walk, words) for walk, words in macro_weights(mapping)[0]}
    assert {0, 1} <= set(first) and first[0][0].block_set == first[1][0].block_set == 0
    plan = mapping.layers[0]
    walk, words = first[1]
    clean = walk_weights(words, plan.packed, 0)
    np.testing.assert_array_equal(clean, network.layers[0].weight[:len(clean)])
    # lane 0 of the first kept K-group of block 0 (domain 0), channel 0, bit 1
    G = DEFAULT.rows_per_step
    kg = int(plan.packed.index_codes[0][0])
    row = walk.word["desc"]["slot_base"] * G
    old = int(clean[0, kg * G])
    bit = (old >> 1) & 1
    stuck = np.zeros((DEFAULT.macros, DEFAULT.rows, DEFAULT.cols), dtype=bool)
    value = np.zeros_like(stuck)
    stuck[1, row, 1] = True
    value[1, row, 1] = not bit
    faulty = inject_faults(mapping, FaultMap(DEFAULT, stuck, value))
    after = {w.unit: (w, ws) for w, ws in macro_weights(faulty)[0]}
    expected = clean.copy()
    expected[0, kg * G] = old + (-2 if bit else 2)
    np.testing.assert_array_equal(walk_weights(after[1][1], plan.packed, 0), expected)
    np.testing.assert_array_equal(walk_weights(after[0][1], plan.packed, 0), clean)
    # two copies in core 0's weight SRAM, the loaders point at them
    image = faulty.memories[(HostMemory.WEIGHTS, 0, 0)]
    loads = {ld.unit: ld for ld in faulty.phases[0].loads if ld.unit in (0, 1)}
    assert loads[0].src != loads[1].src
    assert image[loads[1].src] != image[loads[0].src]
    assert faulty.memories[(HostMemory.LOADER, 0, 0)] != mapping.memories[
        (HostMemory.LOADER, 0, 0)]
    # the first layer's outputs: unit 0's band as without the fault, unit 1's band as
    # with the one changed weight
    changed = [n.weight.copy() for n in network.layers]
    changed[0][0, kg * G] = expected[0, kg * G]
    _, got = run_mapping(faulty, x, keep=True)
    _, before = run_accelerator(network, x, keep=True)
    _, after_all = run_accelerator(with_weights(network, changed), x, keep=True)
    name = plan.node.name
    band0 = slice(first[0][0].row0, first[0][0].row0 + first[0][0].rows)
    band1 = slice(walk.row0, walk.row0 + walk.rows)
    channels = slice(0, len(clean))
    np.testing.assert_array_equal(got[name][:, band0, :, channels],
                                  before[name][:, band0, :, channels])
    np.testing.assert_array_equal(got[name][:, band1, :, channels],
                                  after_all[name][:, band1, :, channels])


def test_copies_that_overflow_the_weight_sram_are_refused():
    """One conv layer of 14 row slots (56 of 64 rows) whose block set two units of one
    core compute (two bands): it fits the 64-row weight SRAM once, not twice."""
    config = TINY.replace(name="tiny-2x", macros_per_core=2, weight_sram_rows=64,
                          result_words=256)
    layer = random_layer(np.random.default_rng(0), config, "c1", "input",
                         LayerGeometry(LayerKind.CONV, 6, 6, 6, 4, 3, 3, 1, 1), "acc", 0.0)
    mapping = map_network(IntegerNetwork(config, (6, 6, 6), (layer,), "c1"))
    with pytest.raises(FaultError, match="core 0 needs 112 weight-SRAM rows.*weight_sram_rows"):
        inject_faults(mapping, FaultMap.draw(FaultModel(0.01), config))


def test_sweep_rows_and_zero_rate():
    network, x = case(TINY, "cnn", seed=2, count=6)
    labels = run_accelerator(network, x).argmax(axis=1)
    rows = fault_sweep(network, x, labels, rates=[0.0, 0.2], seeds=[0, 1])
    assert [(r["rate"], r["seed"]) for r in rows] == [(0.0, 0), (0.0, 1), (0.2, 0), (0.2, 1)]
    assert rows[0]["accuracy"] == 1.0 and rows[0]["flipped"] == 0.0
    assert rows[0]["stuck_cells"] == 0 and rows[2]["stuck_cells"] > 0
    for r in rows:
        assert r["accuracy"] == pytest.approx(1 - r["flipped"])


# -- mars run --faults -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "pkg"
    write_random_package(out, TINY, "cnn", seed=stable_seed("faults", "cli"), count=4)
    return out


@pytest.mark.parametrize("rate", ["1.5", "-0.01", "nan"])
def test_cli_refuses_a_bad_rate(package, tmp_path, capsys, rate):
    assert main(["run", "--package", str(package), "--faults", rate,
                 "--out", str(tmp_path / "y.npz")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mars: error: ") and "--faults" in lines[0]


def test_cli_runs_the_faulty_image(package, tmp_path, capsys):
    from mars.sw.package import load_package

    network = load_package(package).network
    inputs = load_package(package).test_inputs
    for rate, seed, name in [("0", "0", "clean"), ("0.2", "4", "faulty")]:
        assert main(["run", "--package", str(package), "--faults", rate, "--fault-seed", seed,
                     "--out", str(tmp_path / f"{name}.npz")]) == 0
        line = capsys.readouterr().out
        # The summary says which faults produced the outputs (none for rate 0).
        assert ("stuck-at faults at rate 0.2, seed 4" in line) == (name == "faulty")
    clean = np.load(tmp_path / "clean.npz")["logits"]
    faulty = np.load(tmp_path / "faulty.npz")["logits"]
    np.testing.assert_array_equal(clean, run_accelerator(network, inputs))
    expected = run_mapping(inject_faults(map_network(network),
                                         FaultMap.draw(FaultModel(0.2, 4), TINY)), inputs)
    np.testing.assert_array_equal(faulty, expected)
    assert (faulty != clean).any()
