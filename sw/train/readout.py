"""The macro's readout in PyTorch: a layer's product computed as the accelerator computes it.

`readout_product` is the PyTorch twin of `mars.sw.golden.accel.macro_product`: the K-rows
of the (N, K) weight matrix are cut into K-groups of G rows (K-row ``kg*G + g`` is lane g
of K-group kg, the last group padded with zero rows, as the decoder feeds them); for every
K-group, activation bit i and weight bit j the column popcount
``p = sum_g x_bit_i[g] * w_bit_j[g, n]`` goes through the configured readout
(`mars.sw.golden.macro.readout`) and the results are shift-added,
``sum_kg sum_i sum_j 2^i * s_j * 2^j * readout(p)`` with ``s_j = -1`` for the sign bit.

Everything is batched: one ``bmm`` over the K-groups of (bit planes of every patch) x
(bit columns of every output channel).  Popcounts are at most G, exact in float32; the
shift-add is done in float64 (exact below 2^53).  No gradient flows through the popcounts
and the readout: the trainer adds the result to the exact product with a straight-through
estimator (`readout_ste`).  Binary/ternary readouts: the comparator bits are scaled by the
column scale factor codes, through which a gradient does flow (they are trained).
"""

from __future__ import annotations

import torch

from mars.config import MarsConfig, ReadoutMode

__all__ = ["is_exact", "column_signs", "readout_product", "readout_ste",
           "accelerator_patches", "clip_limit", "clipped_product", "numpy_product"]


def is_exact(config: MarsConfig) -> bool:
    """True if the readout returns every popcount unchanged (the product is ``x @ W.T``)."""
    return config.readout_mode is ReadoutMode.EXACT


def _readout(p: torch.Tensor, config: MarsConfig) -> torch.Tensor:
    """`mars.sw.golden.macro.readout` on float tensors of popcounts (may work in place)."""
    if config.readout_mode is ReadoutMode.EXACT:
        return p
    if config.readout_mode is ReadoutMode.SATURATING:
        return p.clamp_max_(float(2 ** config.readout_bits - 1))
    if config.scaled_readout:
        return (p >= config.readout_threshold).to(p.dtype)      # the comparator bit
    raise NotImplementedError(f"readout mode {config.readout_mode.value!r}")


def clip_limit(config: MarsConfig) -> float:
    """The largest popcount the readout passes on unchanged: ``2^readout_bits - 1`` for a
    saturating ADC, the threshold T for a comparator (it cannot tell T from more; at
    T = 1 it is exact on 0 and 1), infinite for the exact readout."""
    if config.readout_mode is ReadoutMode.EXACT:
        return float("inf")
    if config.readout_mode is ReadoutMode.SATURATING:
        return float(2 ** config.readout_bits - 1)
    return float(config.readout_threshold)


def _shift_add(config: MarsConfig) -> torch.Tensor:
    """``2^i * s_j * 2^j`` for (activation bit i, weight bit j), float64 (Ab, Wb)."""
    i = torch.arange(config.act_bits, dtype=torch.float64)[:, None]
    j = torch.arange(config.weight_bits, dtype=torch.float64)[None, :]
    sign = torch.where(j == config.weight_bits - 1, -1.0, 1.0)
    return sign * torch.pow(2.0, i + j)


def column_signs(config: MarsConfig) -> torch.Tensor:
    """`mars.sw.golden.macro.column_signs` as a float64 tensor (Wb,)."""
    j = torch.arange(config.weight_bits)
    if config.readout_mode is ReadoutMode.TERNARY:
        return torch.where(j == config.weight_bits - 1, -1.0, 1.0).to(torch.float64)
    return torch.ones(config.weight_bits, dtype=torch.float64)


def readout_product(patches: torch.Tensor, weight: torch.Tensor, config: MarsConfig,
                    chunk: int = 8192, scales: torch.Tensor | None = None,
                    clip_mask: bool = False):
    """The accelerator's ``patches @ weight.T`` under the configured readout.

    Parameters
    ----------
    patches : tensor of shape (..., K)
        Integer-valued activations in [0, 2^Ab - 1] (any float or integer dtype), K in the
        accelerator's K order (`accelerator_patches`).
    weight : tensor of shape (N, K)
        Integer-valued weights in [-2^(Wb-1), 2^(Wb-1) - 1], the layer's matrix.
    chunk : int
        Patches handled at once (bounds memory; the result does not depend on it).
    scales : tensor of shape (N, Wb), optional
        Binary/ternary readouts: the column scale factor codes (integer-valued; may carry
        a gradient, which flows to them).  The result is the scaled sum shifted right by
        ``scale_frac_bits``, floor, as `mars.sw.golden.accel.macro_product`; without
        `scales` it is the sum before scaling, ``sum_kg sum_i 2^i c`` per (patch, bit
        column j, channel n), shape (..., Wb, N).

    clip_mask : bool
        Also return, per K-group, patch and channel, whether none of the group's Ab x Wb
        popcounts exceeds `clip_limit` (the readout passed the group's partial sum on
        unchanged, for a saturating ADC), bool (KG, M, N) with M the patches flattened.

    Returns
    -------
    tensor of shape (..., N), float64 holding integers (and the mask if `clip_mask`)
    """
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    scaled = config.scaled_readout
    lead = patches.shape[:-1]
    k = patches.shape[-1]
    n = weight.shape[0]
    if weight.shape[1] != k:
        raise ValueError(f"patches have K={k}, the weight {tuple(weight.shape)}")
    kg = -(-k // G)
    pad = kg * G - k
    with torch.no_grad():
        x = patches.reshape(-1, k).to(torch.int64)
        w = weight.to(torch.int64)
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
            w = torch.nn.functional.pad(w, (0, pad))
        # weight bit columns: (KG, G, Wb*N), bit j of the two's-complement code
        w_bits = (w[None] >> torch.arange(Wb)[:, None, None]) & 1       # (Wb, N, KG*G)
        w_bits = w_bits.reshape(Wb * n, kg, G).permute(1, 2, 0).to(torch.float32)
        coeff = _shift_add(config)
        i_weight = torch.pow(2.0, torch.arange(Ab, dtype=torch.float64))
        i_shift = torch.arange(Ab)[:, None, None]
        out, masks = [], []
        limit = clip_limit(config)
        if G == 2:
            # two rows: p = a0 + a1 (a_g the bit products), so with r(0) = 0
            # r(p) = r(1) (a0 + a1) + (r(2) - 2 r(1)) a0 a1, and the sum over K-groups is
            # two plain products: all K-rows, and the ANDs of each K-group's two rows
            r1, r2 = (float(v) for v in _readout(torch.tensor([1.0, 2.0]), config))
            w_flat = w_bits.reshape(kg * G, Wb * n)                         # (K, Wb*N)
            w_pair = w_bits[:, 0] * w_bits[:, 1]                            # (KG, Wb*N)
        for start in range(0, x.shape[0], chunk):
            xc = x[start:start + chunk]
            m = xc.shape[0]
            x_bits = (xc[None] >> i_shift) & 1                          # (Ab, m, KG*G)
            if G == 2:
                xf = x_bits.reshape(Ab * m, kg * G).to(torch.float32)
                x_pair = xf[:, 0::2] * xf[:, 1::2]                          # (Ab*m, KG)
                q = r1 * (xf @ w_flat).to(torch.float64) \
                    + (r2 - 2 * r1) * (x_pair @ w_pair).to(torch.float64)
                if clip_mask:
                    if limit >= 2:
                        masks.append(torch.ones((kg, m, n), dtype=torch.bool))
                    else:       # a popcount of 2 somewhere in the group: both ANDs set
                        xa = x_pair.reshape(Ab, m, kg).amax(dim=0).T > 0    # (KG, m)
                        wa = w_pair.reshape(kg, Wb, n).amax(dim=1) > 0       # (KG, N)
                        masks.append(~(xa[:, :, None] & wa[:, None, :]))
                q = q.reshape(Ab, m, Wb, n)
                if scaled:
                    out.append(torch.einsum("imjn,i->mjn", q, i_weight))
                else:
                    out.append(torch.einsum("imjn,ij->mn", q, coeff))
                continue
            x_bits = x_bits.reshape(Ab * m, kg, G).transpose(0, 1).to(torch.float32)
            p = torch.bmm(x_bits, w_bits)                               # (KG, Ab*m, Wb*N)
            if clip_mask:
                masks.append(~(p > limit).reshape(kg, Ab, m, Wb, n).any(dim=3).any(dim=1))
            q = _readout(p, config).sum(dim=0).to(torch.float64)        # (Ab*m, Wb*N)
            q = q.reshape(Ab, m, Wb, n)
            if scaled:
                out.append(torch.einsum("imjn,i->mjn", q, i_weight))
            else:
                out.append(torch.einsum("imjn,ij->mn", q, coeff))
        shape = (0, Wb, n) if scaled else (0, n)
        result = torch.cat(out) if out else torch.zeros(shape, dtype=torch.float64)
        mask = torch.cat(masks, dim=1) if masks else torch.ones((kg, 0, n), dtype=torch.bool)
    if not scaled or scales is None:
        result = result.reshape(*lead, n) if not scaled else result.reshape(*lead, Wb, n)
        return (result, mask) if clip_mask else result
    signed = scales.to(torch.float64).T * column_signs(config)[:, None]   # (Wb, N)
    total = (result * signed).sum(dim=1)
    frac = float(2 ** config.scale_frac_bits)
    shifted = total / frac
    result = (shifted + (torch.floor(shifted) - shifted).detach()).reshape(*lead, n)
    return (result, mask) if clip_mask else result


def clipped_product(patches: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                    rows_per_step: int) -> torch.Tensor:
    """``sum_kg mask[kg] * (patches_kg @ weight_kg.T)``: the exact product with the
    K-groups the readout clipped left out (differentiable in `patches` and `weight`).

    The clipped straight-through estimator uses its gradient: a K-group whose partial
    sum the readout changed (a popcount above `clip_limit`) passes no gradient to its
    activations and weights, the others pass the exact product's.

    Parameters
    ----------
    patches : tensor (M, K)
    weight : tensor (N, K)
    mask : bool tensor (KG, M, N), KG = ceil(K / rows_per_step) (`readout_product`)

    Returns
    -------
    tensor (M, N), the dtype of `patches`
    """
    G = rows_per_step
    m, k = patches.shape
    n = weight.shape[0]
    kg = -(-k // G)
    pad = kg * G - k
    if pad:
        patches = torch.nn.functional.pad(patches, (0, pad))
        weight = torch.nn.functional.pad(weight, (0, pad))
    xg = patches.reshape(m, kg, G).transpose(0, 1)                       # (KG, M, G)
    wg = weight.reshape(n, kg, G).permute(1, 2, 0).to(patches.dtype)     # (KG, G, N)
    return (torch.bmm(xg, wg) * mask.to(patches.dtype)).sum(dim=0)


def accelerator_patches(codes: torch.Tensor, kind_conv: bool, kernel: int, stride: int,
                        pad: int, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Im2col of NCHW activation codes in the accelerator's K order.

    Convolutions: (B, C, H, W) -> (B, L, K) with K ordered (kernel row, kernel column,
    channel), channel fastest, padding reads 0 (`mars.sw.golden.network.im2col`).  Linear
    layers: (B, K_torch) -> (B, K) with the columns permuted by `perm` (the HWC order of
    a flattened map), or unchanged.
    """
    if not kind_conv:
        return codes if perm is None else codes[:, perm]
    b, c = codes.shape[:2]
    cols = torch.nn.functional.unfold(codes, kernel, padding=pad, stride=stride)
    # unfold orders K as (channel, kernel row, kernel column): make the channel fastest
    cols = cols.reshape(b, c, kernel * kernel, -1).permute(0, 3, 2, 1)
    return cols.reshape(b, cols.shape[1], kernel * kernel * c)


def readout_ste(exact: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:
    """`hardware` in the forward pass; in the backward pass the gradient of `exact` (to
    the weights and inputs, straight through the readout) plus that of `hardware` (to the
    column scale factors of a binary/ternary readout, if any)."""
    return hardware.to(exact.dtype) + (exact - exact.detach())


def numpy_product(patches, weight, layer, config: MarsConfig):
    """`readout_product` as a `mars.sw.golden.network.run_network` product: NumPy int64
    arrays in and out, the layer's scale factor codes (binary/ternary) applied.  Equal to
    `mars.sw.golden.accel.macro_product` (tests/test_train_readout.py) and, for two rows
    per step, much faster; the trainer's internal estimates use it, the package's logits
    come from the golden model."""
    import numpy as np

    scales = getattr(layer, "scales", None) if config.scaled_readout else None
    with torch.no_grad():
        out = readout_product(torch.from_numpy(np.asarray(patches, dtype=np.int64)),
                              torch.from_numpy(np.asarray(weight, dtype=np.int64)), config,
                              scales=None if scales is None else torch.from_numpy(scales))
    return out.numpy().astype(np.int64)
