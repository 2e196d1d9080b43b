"""BN folding and quantisation (`mars.sw.train.quant`, `.export`) and the integer operations
of the network golden model (`mars.sw.golden.network`).

Expectations are independent: the float network with its BatchNorm layers in eval mode,
exact rational arithmetic with Python integers and fractions, brute-force loops.
"""

from __future__ import annotations

import fractions
import math

import numpy as np
import pytest
import torch
from torch import nn

from mars.config import PRESETS
from mars.sw.golden.network import (im2col, max_pool, quantise_image, requantise, rescale,
                                    shift_range)
from mars.sw.layer import LayerGeometry, LayerKind
from mars.sw.train.export import ExportError, requant_parameters
from mars.sw.train.models import Residual, digits_cnn, parse_model, resnet_cifar
from mars.sw.train.quant import QNetwork, input_codes, round_half_up, weight_codes

CONFIG = PRESETS["default"]


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            with torch.no_grad():
                module.weight.copy_(torch.randn(n, generator=gen))
                module.bias.copy_(torch.randn(n, generator=gen))


# -- BN folding ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, shape", [
    (lambda: digits_cnn((1, 8, 8), 10), (1, 8, 8)),
    (lambda: resnet_cifar((3, 8, 8), 10, depth=8, width=4), (3, 8, 8)),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.BatchNorm1d(7), nn.ReLU(),
                           nn.Linear(7, 3)), (3, 2, 2)),
    (lambda: nn.Sequential(nn.Conv2d(2, 5, 3, stride=2, padding=1, bias=True),
                           nn.BatchNorm2d(5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                           nn.Linear(5 * 2 * 2, 4)), (2, 8, 8)),
])
def test_folded_equals_unfolded_in_float(build, shape):
    torch.manual_seed(0)
    model = build()
    randomise_bn(model, 1)
    model.eval()
    qnet = QNetwork(parse_model(model, shape), CONFIG)
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        folded = qnet(x)
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-5)
    # and the folded layers really have no BN left: weights differ from the raw ones
    layer = next(iter(qnet.layers.values()))
    if layer.folds_bn:
        assert not torch.allclose(layer.folded()[0], layer.weight)


def test_folding_formula_by_hand():
    conv = nn.Conv2d(1, 2, 1, bias=True)
    bn = nn.BatchNorm2d(2, eps=0.5)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[2.0]]], [[[-1.0]]]]))
        conv.bias.copy_(torch.tensor([1.0, 3.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([3.5, 1.5]))
        bn.weight.copy_(torch.tensor([4.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.25, -0.5]))
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    qnet = QNetwork(parse_model(model, (1, 1, 1)), CONFIG)
    w_f, b_f = qnet.layers["conv0"].folded()
    # scale = gamma / sqrt(var + eps) = [4/2, 2/sqrt(2)]
    assert w_f.flatten().tolist() == pytest.approx([4.0, -2.0 / 2 ** 0.5])
    assert b_f.tolist() == pytest.approx([0.25 + 0.5 * 2.0, -0.5 + 4.0 * 2 ** 0.5])


# -- weight and activation quantisation ---------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_codes_round_trip(bits):
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(6, 3, 3, 3, generator=gen)
    w[2] = 0.0                                              # an all-zero channel
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 16, 2))
    with torch.no_grad():
        model[0].weight.copy_(w)
    config = CONFIG.replace(weight_bits=bits, cols=64, partitions=1)
    layer = QNetwork(parse_model(model, (3, 4, 4)), config).layers["conv0"]
    s_w = layer.weight_scale(w)
    codes = weight_codes(w, s_w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert codes.abs().max() == qmax                          # the range is used ...
    assert codes.min() >= -qmax                               # ... symmetrically
    assert torch.equal(codes, torch.round(codes))
    per_channel_max = codes.abs().amax(dim=(1, 2, 3))
    assert torch.all((per_channel_max == qmax) | (torch.arange(6) == 2))
    err = (codes * s_w.view(-1, 1, 1, 1) - w).abs()
    assert torch.all(err <= s_w.view(-1, 1, 1, 1) / 2 + 1e-7)
    assert torch.all(codes[2] == 0) and s_w[2] > 0


def test_last_layer_shares_one_weight_scale():
    model = digits_cnn()
    qnet = QNetwork(parse_model(model, (1, 8, 8)), CONFIG)
    last = qnet.layers["fc0"]
    s_w = last.weight_scale(last.folded()[0])
    assert torch.all(s_w == s_w[0])
    first = qnet.layers["conv0"]
    assert len(set(first.weight_scale(first.folded()[0]).tolist())) > 1


def test_round_half_up():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999, -0.50001])
    assert round_half_up(x).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 0.0, -1.0]


@pytest.mark.parametrize("pixel_max", [16, 255])
@pytest.mark.parametrize("bits", [1, 2, 4, 7, 8])
def test_input_codes_match_the_exact_integer_formula(pixel_max, bits):
    pixels = np.arange(pixel_max + 1)
    images = torch.from_numpy(pixels.astype(np.float32) / np.float32(pixel_max))
    from_torch = input_codes(images, bits).numpy().astype(np.int64)
    qmax = 2 ** bits - 1
    exact = [math.floor(fractions.Fraction(int(p) * qmax, pixel_max) + fractions.Fraction(1, 2))
             for p in pixels]
    assert from_torch.tolist() == exact
    assert quantise_image(pixels, pixel_max, bits).tolist() == exact


# -- requantisation -----------------------------------------------------------------------

def test_requant_parameters_approximate_the_ratio():
    rng = np.random.default_rng(0)
    ratios = np.concatenate([10.0 ** rng.uniform(-9, 4, size=300), [1.0, 0.5, 2 ** -20]])
    m, s = requant_parameters(ratios, CONFIG, "test")
    lo, hi = shift_range(CONFIG)
    mb = CONFIG.requant_mult_bits
    assert np.all((s >= lo) & (s <= hi))
    assert np.all((m >= 0) & (m < 2 ** mb))
    for r, mi, si in zip(ratios, m.tolist(), s.tolist()):
        approx = fractions.Fraction(mi, 2 ** si)
        if si < hi:      # normalised: the multiplier uses its top bit, the error is tiny
            assert mi >= 2 ** (mb - 1)
            assert abs(float(approx) - r) <= r * 2.0 ** -(mb - 1)
        # a larger shift would overflow the multiplier
        if si < hi:
            assert int(fractions.Fraction(r) * 2 ** (si + 1) + fractions.Fraction(1, 2)) >= 2 ** mb


def test_requant_parameters_reject_what_cannot_be_held():
    with pytest.raises(ExportError, match="multiplier above"):
        requant_parameters(np.array([2.0 ** 20]), CONFIG, "layer 'x'")
    with pytest.raises(ExportError, match="not a positive number"):
        requant_parameters(np.array([0.0]), CONFIG, "layer 'x'")


def test_rescale_and_requantise_against_exact_rationals():
    rng = np.random.default_rng(1)
    acc = rng.integers(-2 ** 31, 2 ** 31, size=2000)
    acc[:6] = [0, -1, 1, -(2 ** 31), 2 ** 31 - 1, 7]
    m = rng.integers(0, 2 ** 16, size=2000)
    s = rng.integers(1, 48, size=2000)
    got = rescale(acc, m, s)
    for a, mi, si, g in zip(acc.tolist(), m.tolist(), s.tolist(), got.tolist()):
        # round half up of a*M/2^S: floor(a*M/2^S + 1/2), exact
        assert g == math.floor(fractions.Fraction(a * mi, 2 ** si) + fractions.Fraction(1, 2))
    out = requantise(acc, m, s, 4)
    assert np.array_equal(out, np.clip(got, 0, 15))


# -- im2col and pooling against brute force ----------------------------------------------

@pytest.mark.parametrize("k, stride, pad", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0),
                                            (5, 1, 2)])
def test_im2col_matches_a_direct_convolution(k, stride, pad):
    rng = np.random.default_rng(k * 10 + stride)
    g = LayerGeometry(LayerKind.CONV, 7, 6, 3, 4, k, k, stride, pad)
    x = rng.integers(0, 16, size=(2, 7, 6, 3))
    w = rng.integers(-8, 8, size=(4, 3, k, k))              # PyTorch layout
    from mars.sw.layer import flatten_conv_weight
    got = im2col(x, g) @ flatten_conv_weight(w).T
    expected = np.zeros((2, g.out_h, g.out_w, 4), dtype=np.int64)
    for b in range(2):
        for oy in range(g.out_h):
            for ox in range(g.out_w):
                for o in range(4):
                    total = 0
                    for c in range(3):
                        for r in range(k):
                            for q in range(k):
                                iy, ix = oy * stride - pad + r, ox * stride - pad + q
                                if 0 <= iy < 7 and 0 <= ix < 6:
                                    total += int(x[b, iy, ix, c]) * int(w[o, c, r, q])
                    expected[b, oy, ox, o] = total
    assert np.array_equal(got, expected)


def test_max_pool_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, size=(2, 7, 7, 3))
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (7, 7, 0)]:
        expected = torch.nn.functional.max_pool2d(
            torch.from_numpy(x).permute(0, 3, 1, 2).double(), k, s, p)
        got = max_pool(x, k, s, p)
        assert np.array_equal(got, expected.permute(0, 2, 3, 1).numpy().astype(np.int64))


def test_residual_block_is_relu_of_sum():
    block = Residual(nn.Sequential(nn.Conv2d(2, 2, 1)), None)
    x = torch.randn(3, 2, 4, 4)
    assert torch.equal(block(x), torch.relu(block.body(x) + x))


def test_calibration_on_maps_larger_than_float32_indices():
    """More than 2^24 elements (a CIFAR batch through vgg8): evenly spaced samples, the
    last element included, no index past the end (a float32 linspace gave 33554432)."""
    from mars.sw.train.quant import ACT_INIT_QUANTILE, CALIBRATION_SAMPLES, ActQuant

    n = 300 * 64 * 32 * 32          # 300 CIFAR images, 64 channels: the reported crash
    value = torch.arange(n, dtype=torch.float32)
    quant = ActQuant(PRESETS["default"])
    quant.calibrate(value)
    picks = np.arange(CALIBRATION_SAMPLES, dtype=np.int64) * (n - 1) // (CALIBRATION_SAMPLES - 1)
    expected = np.quantile(value.numpy()[picks].astype(np.float64),
                           ACT_INIT_QUANTILE) / quant.qmax
    assert quant.scale.item() == pytest.approx(expected, rel=1e-5)
