"""Readout-aware training and export: the trainer's product and the package's logits are
the accelerator's, for every readout mode and preset.

Independent expectations: the macro golden model's `macro_step` applied K-group by K-group
in a plain loop (the specification of one compute step), and a brute-force popcount
per K-group, bit plane and bit column written here from docs/macro.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mars.config import PRESETS, ReadoutMode
from mars.sw.golden import macro_step
from mars.sw.golden.accel import macro_product, run_accelerator
from mars.sw.golden.network import im2col, load_package, run_network
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


CONFIGS = dict(readout_configs())


def loop_product(patches, weight, config):
    """``patches @ W.T`` as one `macro_step` per K-group of G K-rows (zero-padded)."""
    G = config.rows_per_step
    k = weight.shape[1]
    pad = -k % G
    x = np.pad(patches, [(0, 0)] * (patches.ndim - 1) + [(0, pad)])
    w = np.pad(weight.T, [(0, pad), (0, 0)])
    total = np.zeros(patches.shape[:-1] + (weight.shape[0],), dtype=np.int64)
    for kg in range(x.shape[-1] // G):
        total += macro_step(x[..., kg * G:(kg + 1) * G], w[kg * G:(kg + 1) * G], config)
    return total


def brute_product(x, w, config):
    """Scalar loops over patches, channels, K-groups, bit planes and bit columns."""
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
                        if config.readout_mode is ReadoutMode.SATURATING:
                            p = min(p, top)
                        sign = -1 if j == Wb - 1 else 1
                        out[m, n] += sign * (p << (i + j))
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
    expected = loop_product(x, w, config)
    got_numpy = macro_product(x, w, None, config, chunk=5)
    got_torch = readout_product(torch.from_numpy(x), torch.from_numpy(w), config, chunk=3)
    assert np.array_equal(got_numpy, expected), f"seed {seed}"
    assert np.array_equal(got_torch.numpy().astype(np.int64), expected), f"seed {seed}"


def test_the_golden_step_against_brute_force_popcounts():
    config = PRESETS["adc3"]
    rng = np.random.default_rng(7)
    x = rng.integers(0, config.act_max + 1, (3, 40))
    w = rng.integers(config.weight_min, config.weight_max + 1, (4, 40))
    assert np.array_equal(loop_product(x, w, config), brute_product(x, w, config))


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


def test_gradients_flow_straight_through_the_readout():
    config = CONFIGS["adc3-sat2"]
    qnet, images = random_qnet(config, 4)
    qnet.train()
    qnet(images[:4]).sum().backward()
    for layer in qnet.layers.values():
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


QUICK = TrainOptions(epochs=2, qat_epochs=1, train_subset=128, test_subset=40,
                     test_vectors=40, sparsity=0.5)


@pytest.fixture(scope="module", params=sorted(PRESETS))
def package(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("readout") / request.param
    result = train(PRESETS[request.param], QUICK, out, progress=False, log=lambda line: None)
    return request.param, result, load_package(out)


def test_package_logits_are_the_accelerators(package):
    name, result, pkg = package
    assert pkg.network.config.readout_mode is PRESETS[name].readout_mode
    golden = run_accelerator(pkg.network, pkg.test_inputs)
    assert np.array_equal(pkg.test_logits, golden)
    # independently: the per-K-group macro steps (a few images: a slow loop)
    looped = run_network(pkg.network, pkg.test_inputs[:4],
                         product=lambda p, w, layer, c: loop_product(p, w, c))
    assert np.array_equal(pkg.test_logits[:4], looped)
    assert pkg.manifest["accuracy"]["integer"] == result.integer_accuracy
    assert result.integer_accuracy == np.mean(golden.argmax(axis=1) == pkg.test_labels)
    # the fake-quantised network predicts what the hardware does
    codes = torch.from_numpy(pkg.test_inputs).permute(0, 3, 1, 2).float()
    fake = predict(result.qnet, codes / pkg.network.config.act_max).numpy()
    assert np.mean(fake == golden.argmax(axis=1)) >= 0.95
    if PRESETS[name].readout_mode is ReadoutMode.SATURATING:
        exact = run_network(pkg.network, pkg.test_inputs)
        assert not np.array_equal(exact, golden)         # the readout is not a no-op here
