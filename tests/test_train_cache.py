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
