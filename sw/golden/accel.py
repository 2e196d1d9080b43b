"""What the accelerator computes for a network: the integer network golden model with the
matrix product done the way the macros do it.

With an exact readout this is `run_network` with the exact product.  With any other readout
every K-group (G K-rows, K-row ``kg*G + g`` on lane g, as the decoder feeds them) is one
macro step whose column popcounts go through the readout, so the product is the sum over
K-groups of `macro_step` (pruned groups hold only zeros and add nothing, stored or not:
every readout maps a zero popcount to zero).
"""

from __future__ import annotations

import numpy as np

from mars.config import MarsConfig, ReadoutMode

from .macro import _shift_add_weights, check_scales, column_signs, readout
from .network import IntegerNetwork, LayerNode, exact_product, run_network

__all__ = ["macro_product", "accelerator_product", "run_accelerator"]


def macro_product(patches: np.ndarray, weight: np.ndarray, layer: LayerNode | None,
                  config: MarsConfig, chunk: int = 2048) -> np.ndarray:
    """``patches @ W.T`` computed as macro steps of G K-rows each (any readout mode).

    Equal to ``sum_kg macro_step(patches[..., kg*G:(kg+1)*G], W.T[kg*G:(kg+1)*G])`` (the
    last K-group padded with zero rows), the K-row order the decoder feeds the macro:
    K-row ``kg*G + g`` is lane g of K-group kg.  The column popcounts of all K-groups are
    computed at once as products of 0/1 bit planes (float64 matrix products, exact for
    these counts) and go through `readout`; `chunk` patches at a time bound the memory.

    Binary/ternary readouts scale each comparator bit by the layer's column scale factor
    codes (``layer.scales``, (N, Wb)) and shift the layer's sum right by
    ``scale_frac_bits`` (floor) once, after the last K-group.

    Parameters
    ----------
    patches : int array of shape (..., K)
        Activations in [0, 2^Ab - 1].
    weight : int array of shape (N, K)
        Weights in [-2^(Wb-1), 2^(Wb-1) - 1].

    Returns
    -------
    int64 array of shape (..., N)
    """
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    patches = np.asarray(patches, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    n, k = weight.shape
    if patches.shape[-1] != k:
        raise ValueError(f"patches have K={patches.shape[-1]}, the weight {weight.shape}")
    lead = patches.shape[:-1]
    k_groups = -(-k // G)
    pad = k_groups * G - k
    x = np.pad(patches.reshape(-1, k), [(0, 0), (0, pad)])
    w = np.pad(weight, [(0, 0), (0, pad)])
    # bit column j of output channel n, per K-group: (KG, G, Wb*N), index j*N + n
    w_bits = (w[None] >> np.arange(Wb)[:, None, None]) & 1            # (Wb, N, KG*G)
    w_bits = w_bits.reshape(Wb * n, k_groups, G).transpose(1, 2, 0).astype(np.float64)
    coeff = _shift_add_weights(config)                                  # (Ab, Wb)
    scaled = config.scaled_readout
    if scaled:
        # binary/ternary: 2^i * s_j * a[n, j] per comparator bit (docs/macro.md)
        scales = check_scales(getattr(layer, "scales", None), n, config)
        i_weight = 1 << np.arange(Ab, dtype=np.int64)
        signed = scales.T * column_signs(config)[:, None]               # (Wb, N)
    out = np.empty((x.shape[0], n), dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        m = xc.shape[0]
        x_bits = (xc[None] >> np.arange(Ab)[:, None, None]) & 1         # (Ab, m, KG*G)
        x_bits = x_bits.reshape(Ab * m, k_groups, G).transpose(1, 0, 2).astype(np.float64)
        p = np.rint(np.matmul(x_bits, w_bits)).astype(np.int64)         # (KG, Ab*m, Wb*N)
        q = readout(p, config).sum(axis=0).reshape(Ab, m, Wb, n)
        if scaled:
            out[start:start + m] = np.einsum("imjn,i,jn->mn", q, i_weight, signed)
        else:
            out[start:start + m] = np.einsum("imjn,ij->mn", q, coeff)
    if scaled:
        out >>= config.scale_frac_bits          # once per layer, floor
    return out.reshape(*lead, n)


def accelerator_product(config: MarsConfig):
    """The product the accelerator's macros compute for `config`."""
    if config.readout_mode is ReadoutMode.EXACT:
        return exact_product          # the same numbers, much faster
    return macro_product


def run_accelerator(network: IntegerNetwork, inputs: np.ndarray, **kwargs):
    """`run_network` with the accelerator's product (see `run_network` for arguments)."""
    return run_network(network, inputs, product=accelerator_product(network.config),
                       **kwargs)
