"""Random column scale factor codes for the binary/ternary (HCiM) readouts' tests.

The suite's random networks (`mars.tb.networks`) carry no scale factors; a binary or
ternary configuration needs one code per output channel and weight bit column
(`LayerNode.scales`, (N, Wb), signed ``scale_bits``).  The codes drawn here mimic what
the trainer produces: about the column's shift-add weight ``s_j * 2**j`` in units of
``2**-scale_frac_bits`` (negative on the sign column for binary, whose comparator bit
carries no sign; positive for ternary, whose sign the hardware applies), times
``G / readout_threshold`` and a random factor, with a few codes of the other sign and the
range's extremes mixed in.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mars.config import MarsConfig, ReadoutMode
from mars.sw.golden.network import IntegerNetwork, LayerNode

__all__ = ["random_scales", "with_random_scales"]


def random_scales(rng: np.random.Generator, config: MarsConfig, channels: int) -> np.ndarray:
    """Codes (channels, Wb) int64 within ``scale_bits`` signed."""
    Wb, f = config.weight_bits, config.scale_frac_bits
    top = 1 << (config.scale_bits - 1)
    j = np.arange(Wb)
    sign = np.ones(Wb, dtype=np.int64)
    if config.readout_mode is ReadoutMode.BINARY:
        sign[-1] = -1
    # A comparator bit is one less often than a popcount is nonzero: the gain G / T keeps
    # the layers' sums about as spread as the exact product's (the random networks'
    # requantisation is set for those), so activations are neither all zero nor clipped.
    gain = config.rows_per_step / config.readout_threshold
    codes = np.rint(sign * 2.0 ** (j + f) * gain * rng.uniform(0.5, 1.5, size=(channels, Wb)))
    codes = np.where(rng.random((channels, Wb)) < 0.05, -codes, codes)  # the other sign
    extremes = rng.random((channels, Wb))
    codes = np.where(extremes < 0.01, -top, np.where(extremes > 0.99, top - 1, codes))
    return np.clip(codes, -top, top - 1).astype(np.int64)


def with_random_scales(network: IntegerNetwork, rng: np.random.Generator) -> IntegerNetwork:
    """`network` with random column scale factor codes on every layer (for a configuration
    with ``scaled_readout``; any other configuration returns `network` unchanged)."""
    if not network.config.scaled_readout:
        return network
    nodes = tuple(
        dataclasses.replace(node, scales=random_scales(rng, network.config,
                                                      node.geometry.cout))
        if isinstance(node, LayerNode) else node for node in network.nodes)
    return dataclasses.replace(network, nodes=nodes)
