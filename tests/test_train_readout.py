"""Readout-aware training and export: the trainer's product and the package's logits are
the accelerator's, for every readout mode and preset.

Independent expectations: the macro golden model's `macro_step` applied K-group by K-group
in a plain loop (the specification of one compute step), and a brute-force popcount
per K-group, bit plane and bit column written here from docs/macro.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mars.config import PRESETS, ReadoutMode
from mars.sw.golden import macro_step
from mars.sw.golden.accel import macro_product, run_accelerator
from mars.sw.golden.network import im2col, run_network
from mars.sw.package import load_package
from mars.sw.train.models import digits_cnn, parse_model
from mars.sw.train.quant import QNetwork, bias_codes, weight_codes
from mars.sw.train.readout import readout_product
from mars.sw.train.trainer import TrainOptions, predict, train


def readout_configs():
    """Every preset with every readout mode and width it accepts (a few widths each)."""
    for name, base in PRESETS.items():
        for bits in range(1, base.exact_readout_bits + 1):
            yield f"{name}-sat{bits}", base.replace(readout_mode="saturating",
                                                    readout_bits=bits)
        yield f"{name}-exact", base.replace(readout_mode="exact",
                                            readout_bits=base.exact_readout_bits)
        # A scaled sum needs wider accumulators than an exact one (the configuration
        # check): ice40's 15 bits are sized for its exact readout (docs/board.md).
        acc_bits = max(base.acc_bits, 24)
        for mode in ("binary", "ternary"):
            for threshold in (1, base.rows_per_step // 2):
                yield f"{name}-{mode}{threshold}", base.replace(
                    readout_mode=mode, readout_threshold=threshold, scale_bits=10,
                    scale_frac_bits=2, acc_bits=acc_bits)


CONFIGS = dict(readout_configs())


def loop_product(patches, weight, config, scales=None):
    """``patches @ W.T`` as one `macro_step` per K-group of G K-rows (zero-padded); with
    a binary/ternary readout the sum shifted right by scale_frac_bits (floor)."""
    G = config.rows_per_step
    k = weight.shape[1]
    pad = -k % G
    x = np.pad(patches, [(0, 0)] * (patches.ndim - 1) + [(0, pad)])
    w = np.pad(weight.T, [(0, pad), (0, 0)])
    total = np.zeros(patches.shape[:-1] + (weight.shape[0],), dtype=np.int64)
    for kg in range(x.shape[-1] // G):
        total += macro_step(x[..., kg * G:(kg + 1) * G], w[kg * G:(kg + 1) * G], config,
                            scales)
    return total >> config.scale_frac_bits if config.scaled_readout else total


def brute_product(x, w, config, scales=None):
    """Scalar loops over patches, channels, K-groups, bit planes and bit columns
    (docs/macro.md, "Readout")."""
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    top = 2 ** config.readout_bits - 1
    out = np.zeros((len(x), len(w)), dtype=np.int64)
    for m in range(len(x)):
        for n in range(len(w)):
            for start in range(0, x.shape[1], G):
                for i in range(Ab):
                    for j in range(Wb):
                        p = sum(((int(x[m, k]) >> i) & 1) * ((int(w[n, k]) >> j) & 1)
                                for k in range(start, min(start + G, x.shape[1])))
                        sign = -1 if j == Wb - 1 else 1
                        if config.readout_mode is ReadoutMode.SATURATING:
                            p = min(p, top)
                        if config.readout_mode is ReadoutMode.BINARY:
                            out[m, n] += (p >= config.readout_threshold) * \
                                int(scales[n, j]) << i
                        elif config.readout_mode is ReadoutMode.TERNARY:
                            out[m, n] += sign * (p >= config.readout_threshold) * \
                                int(scales[n, j]) << i
                        else:
                            out[m, n] += sign * (p << (i + j))
    if config.scaled_readout:
        return out >> config.scale_frac_bits
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_products_equal_the_macro_golden_model(name):
    config = CONFIGS[name]
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 5 * config.rows_per_step))
    n = int(rng.integers(1, 12))
    x = rng.integers(0, config.act_max + 1, (2, 7, k))
    w = rng.integers(config.weight_min, config.weight_max + 1, (n, k))
    # corners: all ones saturate every column, zeros give zero popcounts
    x[0, 0] = config.act_max
    w[0] = -1
    scales = None
    if config.scaled_readout:
        top = 1 << (config.scale_bits - 1)
        scales = rng.integers(-top, top, (n, config.weight_bits))
    expected = loop_product(x, w, config, scales)
    got_numpy = macro_product(x, w, Layer(scales), config, chunk=5)
    got_torch = readout_product(torch.from_numpy(x), torch.from_numpy(w), config, chunk=3,
                                scales=None if scales is None else torch.from_numpy(scales))
    assert np.array_equal(got_numpy, expected), f"seed {seed}"
    assert np.array_equal(got_torch.numpy().astype(np.int64), expected), f"seed {seed}"


class Layer:
    """The part of a `LayerNode` the product reads: its column scale factors."""

    def __init__(self, scales):
        self.scales = scales


@pytest.mark.parametrize("name", ["adc3-sat3", "adc3-binary1", "adc3-ternary8",
                                  "wide8-ternary4", "tiny-binary2"])
def test_the_golden_step_against_brute_force_popcounts(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(7)
    x = rng.integers(0, config.act_max + 1, (3, 40))
    w = rng.integers(config.weight_min, config.weight_max + 1, (4, 40))
    scales = rng.integers(-64, 64, (4, config.weight_bits))
    assert np.array_equal(loop_product(x, w, config, scales),
                          brute_product(x, w, config, scales))


def random_qnet(config, seed):
    torch.manual_seed(seed)
    model = digits_cnn(width=4)
    model.eval()
    qnet = QNetwork(parse_model(model, (1, 8, 8)), config)
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    qnet.calibrate(images)
    qnet.quantised = True
    qnet.eval()
    return qnet, images


@pytest.mark.parametrize("name", ["adc3-sat1", "adc3-sat3", "wide8-sat2", "tiny-sat2"])
def test_fake_quantised_layers_compute_the_hardware_accumulators(name):
    """Each QLayer's forward pass (eval) gives the macro's product plus the bias code."""
    config = CONFIGS[name]
    qnet, images = random_qnet(config, 3)
    # the second conv layer (K = 3*3*4), on random activation codes
    node = [n for n in qnet.nodes if n.is_layer][1]
    layer = qnet.layers[node.name]
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, config.act_max + 1, (5, node.geometry.cin, node.geometry.in_h,
                                                  node.geometry.in_w), generator=gen).float()
    step = torch.tensor(0.05)
    with torch.no_grad():
        acc, _ = layer(codes * step, step, codes)
        w_f, b_f = layer.folded()
        s_w = layer.weight_scale(w_f)
        w = layer.matrix(weight_codes(w_f, s_w, config.weight_bits)).numpy().astype(np.int64)
        b = bias_codes(b_f, step, s_w).numpy().astype(np.int64)
    patches = im2col(codes.permute(0, 2, 3, 1).numpy().astype(np.int64), node.geometry)
    expected = loop_product(patches, w, config) + b                 # (B, H, W, N)
    assert np.array_equal(acc.permute(0, 2, 3, 1).numpy().astype(np.int64), expected)
    # and the readout matters on these numbers (the test can fail)
    assert not np.array_equal(expected, patches @ w.T + b)


@pytest.mark.parametrize("name", ["adc3-sat2", "adc3-ternary8", "default-binary4"])
def test_gradients_flow_straight_through_the_readout(name):
    config = CONFIGS[name]
    qnet, images = random_qnet(config, 4)
    qnet.train()
    qnet(images[:4]).sum().backward()
    # (a random network with a comparator readout may leave later layers without input)
    assert qnet.layers["conv0"].weight.grad.abs().sum() > 0
    if config.scaled_readout:        # the scale factors are trained
        assert any(layer.column_scale.grad is not None and layer.column_scale.grad.abs().sum() > 0
                   for layer in qnet.layers.values())


@pytest.mark.parametrize("fields, words", [
    ({"scale_bits": 20}, ["scale_bits (20)", "acc_bits", "act_buffer_words"]),
    ({"readout_threshold": 9}, ["readout_threshold (9)", "rows_per_step"]),
    ({"scale_frac_bits": 12}, ["scale_frac_bits (12)", "scale_bits (12)"]),
    ({"scale_rounding": "up"}, ["scale_rounding", "'up'"]),
])
def test_impossible_scale_factor_formats_are_refused(fields, words):
    from mars.config import ConfigError

    with pytest.raises(ConfigError) as error:
        PRESETS["default"].replace(readout_mode="ternary", **fields)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("field", ["readout_threshold", "scale_bits", "scale_frac_bits"])
def test_scale_fields_are_integers(field):
    from mars.config import ConfigError

    for bad in ("8", True, 2.5, None):
        with pytest.raises(ConfigError, match=f"{field} must be an integer"):
            PRESETS["default"].replace(readout_mode="binary", **{field: bad})
    with pytest.raises(ConfigError, match=f"{field} must be at least"):
        PRESETS["default"].replace(readout_mode="binary", **{field: -1})


def test_scale_codes_round_as_configured():
    for rounding, expected in (("nearest", [3, -2, 2, 127]), ("floor", [2, -3, 2, 127])):
        # 0.625 * 2^2 = 2.5 rounds half up to 3 or floors to 2; 1000 clamps at 2^7 - 1
        config = CONFIGS["default-binary4"].replace(scale_rounding=rounding, scale_bits=8,
                                                    scale_frac_bits=2)
        qnet, _ = random_qnet(config, 1)
        layer = next(iter(qnet.layers.values()))
        with torch.no_grad():
            layer.column_scale[0] = torch.tensor([0.625, -0.625, 0.5, 1000.0])
        assert layer.scale_codes()[0].tolist() == expected, rounding


QUICK = TrainOptions(epochs=2, qat_epochs=1, train_subset=128, test_subset=40,
                     test_vectors=40, sparsity=0.5)


#: every preset (adc3 also with readout-aware QAT), and the ADC-less readouts on two; not
#: ice40, whose 256-word activation buffers hold no digits network (docs/board.md), nor the
#: paper-sized mars (the default macro with 8 partitions, as wide8's: 10 s for no new case)
PACKAGE_CONFIGS = {**{name: config for name, config in PRESETS.items()
                      if name not in ("ice40", "mars")},
                   "adc3-aware": PRESETS["adc3"],
                   "adc3-ternary": PRESETS["adc3"].replace(readout_mode="ternary",
                                                           readout_threshold=3),
                   "tiny-binary": PRESETS["tiny"].replace(readout_mode="binary",
                                                          readout_threshold=2)}


@pytest.fixture(scope="module", params=sorted(PACKAGE_CONFIGS))
def package(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("readout") / request.param
    options = dataclasses.replace(QUICK, readout_aware=True) \
        if request.param.endswith("-aware") else QUICK
    result = train(PACKAGE_CONFIGS[request.param], options, out, progress=False,
                   log=lambda line: None)
    aware = options.readout_aware if options.readout_aware is not None else \
        PACKAGE_CONFIGS[request.param].scaled_readout
    assert all(layer.readout_aware == aware for layer in result.qnet.layers.values())
    return request.param, result, load_package(out)


def test_package_logits_are_the_accelerators(package):
    name, result, pkg = package
    config = PACKAGE_CONFIGS[name]
    assert pkg.network.config.readout_mode is config.readout_mode
    golden = run_accelerator(pkg.network, pkg.test_inputs)
    assert np.array_equal(pkg.test_logits, golden)
    # independently: the per-K-group macro steps (a few images: a slow loop)
    looped = run_network(pkg.network, pkg.test_inputs[:4],
                         product=lambda p, w, layer, c: loop_product(p, w, c, layer.scales))
    assert np.array_equal(pkg.test_logits[:4], looped)
    assert pkg.manifest["accuracy"]["integer"] == result.integer_accuracy
    assert result.integer_accuracy == np.mean(golden.argmax(axis=1) == pkg.test_labels)
    # the fake-quantised network predicts what the hardware does
    codes = torch.from_numpy(pkg.test_inputs).permute(0, 3, 1, 2).float()
    fake = predict(result.qnet, codes / pkg.network.config.act_max).numpy()
    assert np.mean(fake == golden.argmax(axis=1)) >= 0.95
    if config.readout_mode is not ReadoutMode.EXACT:
        exact = run_network(pkg.network, pkg.test_inputs)
        assert not np.array_equal(exact, golden)         # the readout is not a no-op here
    for layer in pkg.network.layers:
        if config.scaled_readout:
            assert layer.scales.shape == (layer.weight.shape[0], config.weight_bits)
            assert np.abs(layer.scales).max() < 1 << (config.scale_bits - 1)
        else:
            assert layer.scales is None
