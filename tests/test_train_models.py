"""Network definitions and their translation into the accelerator graph
(`mars.sw.train.models`): supported layers accepted, anything else rejected by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mars.sw.train.models import (MODELS, ModelError, Residual, build_model, hwc_permutation,
                                  parse_model)


def ops(nodes):
    return [(n.name, n.op, n.inputs, n.out_shape) for n in nodes]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builtin_models_parse_and_run(name):
    shape = (1, 8, 8) if name == "digits-cnn" else (3, 32, 32)
    model = build_model(name, shape, 10)
    nodes = parse_model(model, shape)
    assert nodes[-1].op == "linear" and nodes[-1].output == "acc"
    assert nodes[-1].out_shape == (1, 1, 10)
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, *shape)).shape == (2, 10)
    if name.startswith("resnet"):
        adds = [n for n in nodes if n.op == "add"]
        assert len(adds) == (int(name[6:]) - 2) // 2
        for add in adds:            # each add sums a raw conv output and a shortcut
            producers = {n.name: n for n in nodes}
            assert producers[add.inputs[0]].output == "acc"


def test_digits_cnn_graph():
    nodes = parse_model(build_model("digits-cnn", (1, 8, 8), 10), (1, 8, 8))
    assert ops(nodes) == [
        ("conv0", "conv", ("input",), (8, 8, 16)),
        ("conv1", "conv", ("conv0",), (8, 8, 32)),
        ("pool0", "maxpool", ("conv1",), (4, 4, 32)),
        ("conv2", "conv", ("pool0",), (4, 4, 32)),
        ("pool1", "maxpool", ("conv2",), (2, 2, 32)),
        ("flatten0", "flatten", ("pool1",), (1, 1, 128)),
        ("fc0", "linear", ("flatten0",), (1, 1, 10)),
    ]
    assert nodes[-1].flatten_from == (2, 2, 32)
    assert [n.bn is not None for n in nodes if n.is_layer] == [True, True, True, False]


def test_user_model_with_every_supported_layer():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.MaxPool2d(2), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    nodes = parse_model(model, (3, 6, 6))
    assert [n.op for n in nodes] == ["conv", "maxpool", "conv", "add", "flatten", "linear",
                                     "linear"]
    assert nodes[0].source == "0.0"
    assert nodes[3].inputs == ("conv1", "pool0")       # body, identity shortcut


def test_maxpool_before_relu_is_reordered():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2, 3))
    nodes = parse_model(model, (1, 4, 4))
    assert [n.op for n in nodes] == ["conv", "maxpool", "flatten", "linear"]
    assert nodes[0].output == "act"


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Dropout(), nn.Flatten(), nn.Linear(8, 2)),
     r"layer '2' \(Dropout\) is not supported"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                   nn.Linear(2, 2)), r"layer '2' \(AvgPool2d\) is not supported"),
    (nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), nn.Flatten(),
                   nn.Linear(8, 2)), r"layer '0.1' \(Sigmoid\)"),
    (nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                   nn.Linear(8, 2)), r"layer '0' \(BatchNorm2d\) must directly follow"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Flatten(),
                   nn.Linear(8, 2)), r"layer '0' \(Conv2d\) is followed by layer '1'.*"
                                     r"without a ReLU"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1, dilation=2), nn.ReLU(), nn.Flatten(),
                   nn.Linear(2, 2)), r"layer '0' \(Conv2d\): groups and dilation"),
    (nn.Sequential(nn.Conv2d(1, 2, (3, 1)), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)),
     r"kernel_size must be equal on both axes"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 2)),
     r"layer '2' \(Linear\) gets a 2x2x2 map: put an nn.Flatten before it"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2), nn.ReLU()),
     r"must end in a Conv2d or Linear layer without ReLU"),
    (nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)),
     r"expects 3 input channels"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                   nn.Flatten(), nn.Linear(32, 2)), r"only numeric zero padding"),
    (nn.Sequential(Residual(nn.Sequential(nn.Conv2d(1, 2, 1))), nn.ReLU(), nn.Flatten(),
                   nn.Linear(32, 2)), r"Residual\): body gives a 4x4x2 map, shortcut 4x4x1"),
])
def test_unsupported_networks_are_rejected_by_name(model, message):
    with pytest.raises(ModelError, match=message):
        parse_model(model, (1, 4, 4))


def test_non_sequential_model_is_rejected():
    class Net(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="must be an nn.Sequential.*not Net"):
        parse_model(Net(), (1, 4, 4))


def test_unknown_model_names():
    with pytest.raises(ModelError, match="unknown model 'lenet'"):
        build_model("lenet", (1, 8, 8), 10)
    with pytest.raises(ModelError, match="cannot load model factory"):
        build_model("no_such_module_xyz:make", (1, 8, 8), 10)


def test_hwc_permutation_matches_a_transposed_flatten():
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 5, 3, 4)          # N, C, H, W
    perm = torch.from_numpy(hwc_permutation((3, 4, 5)))
    chw = torch.flatten(x, 1)
    hwc = x.permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(chw[:, perm], hwc)
    assert sorted(perm.tolist()) == list(range(60))
    assert np.array_equal(hwc_permutation((1, 1, 6)), np.arange(6))
