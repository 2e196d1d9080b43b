"""What the accelerator computes for a network: the integer network golden model with the
matrix product done the way the macros do it.

With an exact readout this is the trainer's integer reference (`run_network` with the
exact product).  With a saturating readout every K-group (G K-rows) is one macro step
whose column popcounts clip at the ADC's range, so the product is the sum over K-groups of
`macro_step` (pruned groups hold only zeros and add nothing, stored or not).
"""

from __future__ import annotations

import numpy as np

from mars.config import MarsConfig, ReadoutMode

from .macro import macro_step
from .network import IntegerNetwork, LayerNode, exact_product, run_network

__all__ = ["macro_product", "accelerator_product", "run_accelerator"]


def macro_product(patches: np.ndarray, weight: np.ndarray, layer: LayerNode,
                  config: MarsConfig) -> np.ndarray:
    """``patches @ W.T`` computed as macro steps of G K-rows each (any readout mode)."""
    G = config.rows_per_step
    k = weight.shape[1]
    k_groups = -(-k // G)
    pad = k_groups * G - k
    x = np.pad(patches, [(0, 0)] * (patches.ndim - 1) + [(0, pad)])
    w = np.pad(weight, [(0, 0), (0, pad)])
    x = x.reshape(*x.shape[:-1], k_groups, G)                 # (..., KG, G)
    w = w.reshape(w.shape[0], k_groups, G).transpose(1, 2, 0)  # (KG, G, N)
    return macro_step(x, w, config).sum(axis=-2)


def accelerator_product(config: MarsConfig):
    """The product the accelerator's macros compute for `config`."""
    if config.readout_mode is ReadoutMode.EXACT:
        return exact_product          # the same numbers, much faster
    return macro_product


def run_accelerator(network: IntegerNetwork, inputs: np.ndarray, **kwargs):
    """`run_network` with the accelerator's product (see `run_network` for arguments)."""
    return run_network(network, inputs, product=accelerator_product(network.config),
                       **kwargs)
