"""Quantisation-aware training with BN folding, CIM-aware group pruning, model export.

``train(config, TrainOptions(...), out)`` is what ``mars train`` runs (docs/training.md);
the package it writes is specified in docs/model-package.md.  PyTorch is imported only when
one of these names is first used, so that ``mars --help`` stays fast.
"""

from __future__ import annotations

import importlib

__all__ = ["train", "TrainOptions", "TrainResult", "TrainingError", "load_dataset",
           "DataError", "ModelError", "ExportError", "build_model", "parse_model", "Residual"]

_HOMES = {
    "train": "trainer", "TrainOptions": "trainer", "TrainResult": "trainer",
    "TrainingError": "trainer", "load_dataset": "data", "DataError": "data",
    "ModelError": "models", "build_model": "models", "parse_model": "models",
    "Residual": "models", "ExportError": "requant",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
