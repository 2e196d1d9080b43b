"""The trainer's QAT cache (`train(..., qat_cache=...)`): a run that loads the float and
QAT phases another readout of the same geometry saved gives what the run without the
cache gives (the independent expectation: the uncached run itself)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mars.config import PRESETS
from mars.sw.train.trainer import TrainOptions, train

QUICK = TrainOptions(epochs=1, qat_epochs=1, train_subset=96, test_subset=24,
                     test_vectors=8, sparsity=0.5, scale_calibration=32, readout_finetune=1,
                     seed=3)


def _same(a, b) -> None:
    for x, y in zip(a.network.layers, b.network.layers):
        for field in ("weight", "bias", "multiplier", "shift", "scales"):
            u, v = getattr(x, field, None), getattr(y, field, None)
            assert (u is None) == (v is None), (x.name, field)
            if u is not None:
                assert np.array_equal(np.asarray(u), np.asarray(v)), (x.name, field, QUICK.seed)
    assert a.start_accuracy == b.start_accuracy
    assert a.integer_accuracy == b.integer_accuracy
    assert a.float_accuracy == b.float_accuracy


def test_a_cached_qat_of_another_readout_gives_the_same_run(tmp_path):
    quiet = dict(progress=False, log=lambda line: None)
    ternary = PRESETS["hcim"]
    exact = ternary.replace(name="exact", readout_mode="exact", readout_bits=2)
    reference = train(ternary, QUICK, None, **quiet)
    # the exact readout's run saves the float and QAT phases, the ternary run loads them
    train(exact, QUICK, None, qat_cache=tmp_path, **quiet)
    saved = list(tmp_path.glob("qat-*.pt"))
    assert len(saved) == 1
    cached = train(ternary, QUICK, None, qat_cache=tmp_path, **quiet)
    assert list(tmp_path.glob("qat-*.pt")) == saved
    _same(reference, cached)
    # another seed is another QAT network: a second file
    train(exact, dataclasses.replace(QUICK, seed=4), None, qat_cache=tmp_path, **quiet)
    assert len(list(tmp_path.glob("qat-*.pt"))) == 2


def test_scale_factors_get_their_own_learning_rate():
    """`_fit(..., scale_lr=...)`: Adam's first step moves every parameter by its learning
    rate times the sign of its gradient (m / sqrt(v) = g / |g|), so after one step the
    column scale factors moved by `scale_lr` and the other parameters by `lr`."""
    import torch
    from torch import nn

    from mars.sw.train.trainer import _fit

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.column_scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.linear(x) * self.column_scale

    torch.manual_seed(5)
    model = Toy()
    x = torch.randn(8, 4)
    y = torch.arange(8) % 3
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, scale_lr = 1e-3, 5e-2
    # batch 8 of 8 images, 1 epoch: one step at the cosine's start (factor 1)
    _fit(model, x, y, epochs=1, lr=lr, weight_decay=0.0, batch_size=8,
         generator=torch.Generator().manual_seed(5), phase="t", show=False,
         scale_lr=scale_lr)
    for name, p in model.named_parameters():
        moved = (p.detach() - before[name]).abs()
        expected = scale_lr if name == "column_scale" else lr
        assert torch.allclose(moved, torch.full_like(moved, expected), rtol=1e-3), name
