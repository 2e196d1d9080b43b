"""Geometry of one conv or linear layer as the accelerator sees it: a matrix product.

A layer is ``acc[o] = sum_k W[o, k] * A[k]`` with K = kh*kw*Cin rows, flattened with Cin
fastest, then kw, then kh (docs/model-package.md), and N = Cout columns.  A linear layer
is a 1x1 convolution of a 1x1 image with Cin = in_features.  Activations live in the
buffers in HWC order (channel fastest): element (y, x, c) of an H x W x C map is at
``(y*W + x)*C + c``.

`LayerGeometry` and `LayerKind` are defined in `mars.contract.layer` (re-exported here);
this module adds the weight reshapes between PyTorch's and the accelerator's order.
"""

from __future__ import annotations

import numpy as np

# The geometry is part of the hardware/software contract; it lives in `mars.contract`.
from mars.contract.layer import LayerGeometry, LayerKind

__all__ = ["LayerKind", "LayerGeometry", "flatten_conv_weight", "unflatten_conv_weight"]


def flatten_conv_weight(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight (Cout, Cin, kh, kw) -> matrix (Cout, K), Cin fastest."""
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"a conv weight has 4 axes (Cout, Cin, kh, kw), got {weight.shape}")
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def unflatten_conv_weight(matrix: np.ndarray, geometry: LayerGeometry) -> np.ndarray:
    """Inverse of `flatten_conv_weight` for `geometry`."""
    g = geometry
    return np.asarray(matrix).reshape(g.cout, g.kh, g.kw, g.cin).transpose(0, 3, 1, 2)
