"""Column scale factors of a binary/ternary (HCiM) readout by sequential least squares.

A comparator readout keeps one bit per column popcount; a digital unit multiplies it by a
per-column scale factor (docs/macro.md).  For a layer whose integer weights are given, the
scale factors that make the read-out product closest to the exact one are a linear
least-squares fit: per output channel n, the Wb column factors ``a[n, j]`` minimise

    sum_m (exact[m, n] - sum_j a[n, j] * s_j * Q[m, j, n])^2

over the calibration patches m, with ``Q[m, j, n] = sum_kg sum_i 2^i c[kg][i][j][n]`` the
comparator bits summed over the K-groups and activation bit planes and ``s_j`` the column
sign (-1 on the sign column of a ternary readout, else +1).  The fit is done **layer by
layer** (`sequential_scale_fit`): each layer's patches are its inputs as the accelerator
computes them, through the previous layers with their fitted (fixed-point) factors, so
that every layer corrects the error its inputs already carry.

This is the trainer's start for the scale factors of a binary/ternary readout
(`mars.sw.train.trainer`: after QAT with the exact product, before the readout-aware
fine-tune) and what bench/hcim_calibration.py runs on a package.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mars.config import MarsConfig
from mars.sw.golden.network import (IntegerNetwork, LayerNode, _run_node, exact_product,
                                    im2col)

from .readout import column_signs, numpy_product, readout_product

__all__ = ["column_counts", "least_squares_scales", "scale_codes", "sequential_scale_fit"]


def column_counts(patches: np.ndarray, weight: np.ndarray, config: MarsConfig) -> np.ndarray:
    """The signed comparator counts ``s_j * Q[m, j, n]`` of every bit column.

    Parameters
    ----------
    patches : int array (M, K)
        Activation codes in [0, 2^Ab - 1], K in the accelerator's order.
    weight : int array (N, K)
        Weight codes.
    config : MarsConfig
        A binary or ternary readout (G, threshold, column signs).

    Returns
    -------
    float64 array (M, Wb, N)
    """
    counts = readout_product(torch.from_numpy(np.asarray(patches, dtype=np.int64)),
                             torch.from_numpy(np.asarray(weight, dtype=np.int64)), config)
    return (counts * column_signs(config)[None, :, None]).numpy()


def least_squares_scales(counts: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per channel, the Wb factors that best map the counts onto the exact product.

    Parameters
    ----------
    counts : float array (M, Wb, N)
        Signed comparator counts (`column_counts`).
    exact : float array (M, N)
        The exact products.

    Returns
    -------
    float64 array (N, Wb), in product units (a column that never fires gets 0: numpy's
    minimum-norm solution).
    """
    counts = np.asarray(counts, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    return np.stack([np.linalg.lstsq(counts[:, :, n], exact[:, n], rcond=None)[0]
                     for n in range(exact.shape[1])]) if exact.shape[1] else \
        np.zeros((0, counts.shape[1]))


def scale_codes(factors: np.ndarray, config: MarsConfig) -> np.ndarray:
    """Fixed-point codes of scale factors (product units): ``round(a * 2^F)`` half up (or
    floor, ``scale_rounding``), clamped to ``scale_bits`` signed; int64, same shape."""
    value = np.asarray(factors, dtype=np.float64) * float(1 << config.scale_frac_bits)
    rounded = np.floor(value) if config.scale_rounding == "floor" else np.floor(value + 0.5)
    top = 1 << (config.scale_bits - 1)
    return np.clip(rounded, -top, top - 1).astype(np.int64)


def sequential_scale_fit(network: IntegerNetwork, inputs: np.ndarray,
                         config: MarsConfig | None = None) -> IntegerNetwork:
    """`network` with every layer's column scale factors fitted by least squares, layer by
    layer, on `inputs` propagated through the already fitted layers.

    Parameters
    ----------
    network : IntegerNetwork
        Integer weights, biases and requantisation (kept as they are).
    inputs : uint array (B, H, W, C)
        Calibration images as activation codes, HWC.
    config : MarsConfig, optional
        The binary/ternary configuration to fit for (default: the network's own); the
        returned network carries it.

    Returns
    -------
    IntegerNetwork with ``scales`` (N, Wb) int64 codes on every layer.
    """
    config = network.config if config is None else config
    if not config.scaled_readout:
        raise ValueError(f"configuration {config.name!r} has a "
                         f"{config.readout_mode.value} readout: no scale factors to fit")
    values = {"input": np.asarray(inputs).astype(np.int64)}
    nodes = []
    for node in network.nodes:
        if isinstance(node, LayerNode):
            x = values[node.inputs[0]]
            g = node.geometry
            patches = im2col(x.reshape(len(x), g.in_h, g.in_w, g.cin), g).reshape(-1, g.k)
            exact = exact_product(patches, node.weight, node, config)
            fit = least_squares_scales(column_counts(patches, node.weight, config), exact)
            node = dataclasses.replace(node, scales=scale_codes(fit, config))
        nodes.append(node)
        values[node.name] = _run_node(node, values, config, numpy_product)
    return dataclasses.replace(network, config=config, nodes=tuple(nodes))
