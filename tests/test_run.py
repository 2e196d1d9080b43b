"""`mars run` / `mars.sw.run` and the mapper on bad input: clear errors before any
simulator starts; and the golden backend against the network golden model."""

import dataclasses

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.cli import main
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.network import AddNode, IntegerNetwork
from mars.sw.layer import LayerGeometry
from mars.sw.mapper import MappingError, map_network
from mars.sw.run import RunError, check_inputs, densified, run_network_on
from mars.tb.networks import NETWORKS, random_inputs, random_layer

TINY = PRESETS["tiny"]


def network(name="cnn", config=TINY, seed=0):
    build, sparsity = NETWORKS[name]
    return build(config, np.random.default_rng(seed), sparsity)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 6, 6, 4), dtype=np.int64), "must have shape (B, 6, 6, 3)"),
    (np.zeros((2, 6, 6, 3), dtype=np.float32), "quantised integers"),
    (np.full((1, 6, 6, 3), 16), "must lie in [0, 15]"),
    (np.full((1, 6, 6, 3), -1), "must lie in [0, 15]"),
    (np.zeros((0, 6, 6, 3), dtype=np.int64), "no inputs"),
])
def test_bad_inputs_are_refused(bad, message):
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        check_inputs(bad, network())


def test_single_image_gets_a_batch_axis():
    x = np.zeros((6, 6, 3), dtype=np.int64)
    assert check_inputs(x, network()).shape == (1, 6, 6, 3)


def test_golden_backend_is_the_accelerator_golden_model():
    net = network("odd")
    x = random_inputs(net, np.random.default_rng(1), 3)
    result = run_network_on(net, x, "golden")
    np.testing.assert_array_equal(result.logits, run_accelerator(net, x).reshape(3, -1))
    assert result.layer_cycles.shape == (3, len(result.mapping.layers))
    assert (result.cycles == result.phase_cycles.sum(axis=1)).all()


def test_unknown_backend():
    with pytest.raises(RunError, match="unknown backend 'spice'"):
        run_network_on(network(), np.zeros((1, 6, 6, 3), dtype=np.int64), "spice")


def test_residual_add_is_refused_by_name():
    net = network("mlp")
    add = AddNode("skip", ("fc1", "fc1"), np.ones((2, 11), dtype=np.int64),
                  np.ones((2, 11), dtype=np.int64))
    bad = dataclasses.replace(net, nodes=(net.nodes[0], add, net.nodes[1]))
    with pytest.raises(MappingError, match="node 'skip': residual adds"):
        map_network(bad)


def test_map_too_large_for_the_buffer():
    rng = np.random.default_rng(0)
    g = LayerGeometry.linear(TINY.act_buffer_words + 1, 4)
    layer = random_layer(rng, TINY, "fc", "input", g, "acc", 0.5)
    net = IntegerNetwork(TINY, (1, 1, g.cin), (layer,), "fc")
    with pytest.raises(MappingError, match="exceeds an activation buffer"):
        map_network(net)


def test_result_memory_limit():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, TINY, "fc", "input", LayerGeometry.linear(8, 17), "acc", 0.0)
    net = IntegerNetwork(TINY, (1, 1, 8), (layer,), "fc")
    with pytest.raises(MappingError, match="17 outputs exceed the result memory"):
        map_network(net)


def test_network_for_another_configuration():
    with pytest.raises(MappingError, match="built for configuration"):
        map_network(network(), PRESETS["default"])


def test_densified_keeps_every_group():
    net = network("sparse")
    dense = densified(net)
    for layer in dense.layers:
        assert (layer.weight != 0).all()
    assert map_network(dense).layers[0].packed.sparsity == 0.0


def test_cli_run_refuses_a_missing_package(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert main(["run", "--package", str(missing), "--out", str(tmp_path / "y.npz")]) == 2
    assert "not a model package" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("count", ["0", "-3"])
def test_cli_flow_refuses_a_count_below_one(tmp_path, capsys, count):
    assert main(["flow", "--out", str(tmp_path), "--count", count]) == 2
    assert capsys.readouterr().err == f"mars: error: --count must be at least 1, not {count}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cycles, words", [
    ([[50, 20]], "70 cycles per inference"),
    ([[50, 20], [0, 20], [0, 20]], "70 cycles for the first inference (weight loads), "
                                   "20 per later one"),
    ([[30, 40], [30, 40]], "70 cycles per inference"),
    ([[50, 20], [0, 20], [1, 20]], "70 cycles for the first inference (weight loads), "
                                   "20..21 per later one"),
])
def test_cycles_summary_separates_the_first_inference(cycles, words):
    from mars.sw.run import RunResult

    result = RunResult("golden", None, np.zeros((len(cycles), 3), dtype=np.int64),
                       np.array(cycles, dtype=np.int64), 0.0)
    assert result.cycles_summary() == words
