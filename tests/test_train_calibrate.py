"""The sequential least-squares start of binary/ternary scale factors and the clipped
straight-through estimator (`mars.sw.train.calibrate`, `mars.sw.train.readout`).

Independent expectations: with one row per step and threshold 1 a comparator bit is the
popcount itself, so the exact product is ``sum_j 2^j s'_j Q_j`` and the fit must return
the binary weights of the bit columns; synthetic targets built from known factors; the
clipped gradient counted by hand on a four-row example.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mars.config import PRESETS
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.network import im2col, run_network
from mars.sw.train.calibrate import (column_counts, least_squares_scales, scale_codes,
                                     sequential_scale_fit)
from mars.sw.train.readout import clip_limit, clipped_product, readout_product
from mars.sw.train.trainer import TrainOptions, train
from mars.tb.networks import NETWORKS, random_inputs

TINY = PRESETS["tiny"]


@pytest.mark.parametrize("mode", ["binary", "ternary"])
def test_one_row_per_step_recovers_the_bit_weights(mode):
    """G = 1, T = 1: the comparator is exact, the fit is ``2^j`` per column (the sign
    column -2^(Wb-1) for binary, whose comparator bit is unsigned; +2^(Wb-1) for ternary,
    whose column sign carries the minus), and the converted network computes exactly."""
    config = TINY.replace(rows_per_step=1, readout_mode=mode, readout_threshold=1)
    seed = 11
    rng = np.random.default_rng(seed)
    build, sparsity = NETWORKS["cnn"]
    network = build(config, rng, sparsity)
    inputs = random_inputs(network, rng, 24)
    fitted = sequential_scale_fit(network, inputs)
    wb, frac = config.weight_bits, config.scale_frac_bits
    bit_weights = np.array([2 ** j for j in range(wb - 1)]
                           + [-(2 ** (wb - 1)) if mode == "binary" else 2 ** (wb - 1)])
    # the converted network computes exactly, so each layer's inputs are the exact ones
    _, kept = run_network(network, inputs, keep=True)
    checked = 0
    for node in fitted.layers:
        x = kept[node.inputs[0]]
        g = node.geometry
        patches = im2col(x.reshape(len(x), g.in_h, g.in_w, g.cin), g).reshape(-1, g.k)
        counts = column_counts(patches, node.weight, config)
        for n in range(node.weight.shape[0]):
            # a unique fit needs Wb independent count columns (random codes give that
            # on the first layers; a saturated map may not)
            if np.linalg.matrix_rank(counts[:, :, n]) == wb:
                assert node.scales[n].tolist() == (bit_weights << frac).tolist(), \
                    (node.name, n, seed)
                checked += 1
    assert checked >= 10
    _, got = run_accelerator(fitted, inputs, keep=True)
    assert np.array_equal(got["c1"], kept["c1"])


def test_least_squares_recovers_known_factors():
    """Targets made from known factors (G = 2, T = 1, ternary) are fitted exactly."""
    config = PRESETS["default"].replace(rows_per_step=2, readout_mode="ternary",
                                        readout_threshold=1)
    rng = np.random.default_rng(3)
    patches = rng.integers(0, config.act_max + 1, (300, 10))
    weight = rng.integers(config.weight_min, config.weight_max + 1, (5, 10))
    counts = column_counts(patches, weight, config)
    known = rng.uniform(-20, 20, (5, config.weight_bits))
    target = np.einsum("mjn,nj->mn", counts, known)
    assert np.allclose(least_squares_scales(counts, target), known, atol=1e-8)
    # the counts are the golden model's: unit codes on one column at a time
    from mars.sw.golden.accel import macro_product

    class Layer:
        scales = np.zeros((5, config.weight_bits), dtype=np.int64)

    Layer.scales[:, 1] = 1 << config.scale_frac_bits
    assert np.array_equal(counts[:, 1, :], macro_product(patches, weight, Layer, config))


def test_scale_codes_round_and_clamp():
    config = TINY.replace(readout_mode="binary", scale_bits=6, scale_frac_bits=2)
    # 0.625 * 4 = 2.5 -> 3 (half up), -0.625 * 4 = -2.5 -> -2, 100 -> 31, -100 -> -32
    assert scale_codes(np.array([0.625, -0.625, 100.0, -100.0]), config).tolist() == \
        [3, -2, 31, -32]
    floor = config.replace(scale_rounding="floor")
    assert scale_codes(np.array([0.625, -0.625]), floor).tolist() == [2, -3]


def test_exact_readouts_have_no_scale_factors_to_fit():
    rng = np.random.default_rng(0)
    network = NETWORKS["mlp"][0](TINY, rng, 0.5)
    with pytest.raises(ValueError, match="no scale factors"):
        sequential_scale_fit(network, random_inputs(network, rng, 2))


def test_clipped_gradient_by_hand():
    """Saturating 1-bit readout, G = 2, one patch x = (1, 1, 1, 0) against one channel
    w = (1, 1, 1, 0): K-group 0 (rows 0, 1) has popcount 2 > 1 on bit plane 0 x bit
    column 0 (clipped), K-group 1 has popcount 1 (passed).  The gradient of the clipped
    product is w (x) on the rows of K-group 1 only: (0, 0, 1, 0)."""
    config = TINY.replace(rows_per_step=2, readout_mode="saturating", readout_bits=1)
    assert clip_limit(config) == 1.0
    x = torch.tensor([[1.0, 1.0, 1.0, 0.0]], requires_grad=True)
    w = torch.tensor([[1.0, 1.0, 1.0, 0.0]], requires_grad=True)
    hw, mask = readout_product(x.detach(), w.detach(), config, clip_mask=True)
    assert hw.tolist() == [[2.0]]            # min(2, 1) + min(1, 1)
    assert mask.shape == (2, 1, 1) and mask.flatten().tolist() == [False, True]
    prod = clipped_product(x, w, mask, 2)
    assert prod.tolist() == [[1.0]]
    prod.sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert w.grad.tolist() == [[0.0, 0.0, 1.0, 0.0]]


@pytest.mark.parametrize("fields", [
    {"readout_mode": "ternary", "readout_threshold": 2},
    {"rows_per_step": 2, "readout_mode": "binary", "readout_threshold": 1},
    {"rows_per_step": 2, "readout_mode": "saturating", "readout_bits": 1},
    {"rows_per_step": 2, "readout_mode": "ternary", "readout_threshold": 2},
], ids=["G4-ternary-T2", "G2-binary-T1", "G2-sat1", "G2-ternary-T2"])
def test_clip_mask_against_a_loop(fields):
    """The mask marks a K-group clipped iff one of its Ab x Wb popcounts exceeds the
    limit (a comparator's threshold, a saturating ADC's top), checked by loops; K padded
    (K = 11); G = 2 takes the two-product path of `readout_product`."""
    config = TINY.replace(**fields)
    limit = clip_limit(config)
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    rng = np.random.default_rng(5)
    x = rng.integers(0, config.act_max + 1, (6, 11))
    w = rng.integers(config.weight_min, config.weight_max + 1, (3, 11))
    _, mask = readout_product(torch.from_numpy(x), torch.from_numpy(w), config,
                              clip_mask=True, chunk=4)
    assert mask.shape == (-(-11 // G), 6, 3)
    assert not mask.all() or limit >= G      # the example clips somewhere
    for kg in range(-(-11 // G)):
        for m in range(6):
            for n in range(3):
                rows = range(kg * G, min((kg + 1) * G, 11))
                clipped = any(sum(((int(x[m, k]) >> i) & 1) * ((int(w[n, k]) >> j) & 1)
                                  for k in rows) > limit for i in range(Ab) for j in range(Wb))
                assert bool(mask[kg, m, n]) == (not clipped), (kg, m, n)


# -- the trainer -----------------------------------------------------------------------------

QUICK = TrainOptions(epochs=1, qat_epochs=1, train_subset=96, test_subset=24,
                     test_vectors=8, sparsity=0.5, scale_calibration=32, readout_finetune=0)


def test_the_trainer_starts_from_the_sequential_fit():
    """`hcim` (ternary, G = 2) with no fine-tuning: the exported scale factors are
    `sequential_scale_fit` of the exported network on the first 32 training images,
    recomputed here, and the package's logits are the golden model's."""
    from mars.sw.train.data import load_dataset
    from mars.sw.train.quant import input_codes

    config = PRESETS["hcim"]
    result = train(config, QUICK, None, progress=False, log=lambda line: None)
    data = load_dataset("digits")
    codes = input_codes(torch.from_numpy(data.x_train[:32]), config.act_bits)
    refit = sequential_scale_fit(result.network,
                                 codes.permute(0, 2, 3, 1).numpy().astype(np.uint8))
    for got, expected in zip(result.network.layers, refit.layers):
        assert np.array_equal(got.scales, expected.scales), got.name
    assert result.start_accuracy is None              # no fine-tuning asked for


def test_clipped_ste_changes_the_gradient_not_the_value():
    """A QLayer with the clipped estimator computes the same accumulators as with the
    plain one; its weight gradient differs (the 2-bit ADC clips some K-groups of 16
    rows, not all)."""
    from mars.sw.train.models import digits_cnn, parse_model
    from mars.sw.train.quant import QNetwork

    config = PRESETS["adc3"].replace(readout_mode="saturating", readout_bits=2)
    outputs, grads = [], []
    for ste in ("plain", "clipped"):
        torch.manual_seed(2)
        model = digits_cnn(width=4)
        model.eval()
        qnet = QNetwork(parse_model(model, (1, 8, 8)), config)
        images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
        qnet.calibrate(images)
        qnet.quantised = True
        for layer in qnet.layers.values():
            layer.ste = ste
        qnet.train()
        out = qnet(images)
        out.sum().backward()
        outputs.append(out.detach())
        grads.append(qnet.layers["conv1"].weight.grad.clone())
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(grads[0], grads[1])
    assert grads[1].abs().sum() > 0


@pytest.mark.parametrize("args, words", [
    (["--readout-finetune", "-1"], "--readout-finetune must be at least 0"),
    (["--scale-calibration", "0"], "--scale-calibration must be at least 1"),
    (["--readout-lr", "0"], "readout_lr must be a positive finite number, not 0.0"),
    (["--readout-lr", "inf"], "readout_lr must be a positive finite number, not inf"),
    (["--qat-lr", "inf"], "qat_lr must be a positive finite number, not inf"),
    (["--lr", "nan"], "lr must be a positive finite number, not nan"),
])
def test_readout_options_are_checked(args, words, capsys, tmp_path):
    from mars.sw.cli import main

    rc = main(["train", "--out", str(tmp_path / "pkg"), "--epochs", "0", "--qat-epochs", "0",
               "--train-subset", "8", "--test-subset", "4", *args])
    assert rc == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()
