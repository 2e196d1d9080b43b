"""Golden model of one SRAM-CIM macro compute step, exactly as docs/macro.md defines it.

One compute step switches on G word lines (one row slot) and applies G unsigned Ab-bit
activations bit-serially.  For activation bit i and weight bit j of output channel n::

    p[i, j, n] = popcount_g(x_bit_i[g] AND w_bit_j[g, n])
    q[i, j, n] = readout(p[i, j, n])               # exact, or saturating ADC
    y[n]       = sum_i sum_j 2**i * s_j * 2**j * q[i, j, n],  s_j = -1 if j == Wb-1 else +1

The ADC-less readouts (``binary``, ``ternary``; HCiM, arXiv 2403.13577) replace the ADC
with a comparator, ``c[i, j, n] = [p[i, j, n] >= T]`` (T = ``readout_threshold``), and the
shift-add's column weight ``s_j * 2**j`` with a trained per-column scale factor code
``a[n, j]`` (signed, ``scale_bits`` wide, ``scale_frac_bits`` fraction bits)::

    binary:  q[i, j, n] = c[i, j, n]             in {0, 1}
    ternary: q[i, j, n] = s_j * c[i, j, n]       in {-1, 0, +1}
    y[n]     = sum_i sum_j 2**i * a[n, j] * q[i, j, n]      (units of 2**-scale_frac_bits)

A zero q adds nothing (the digital unit skips it); a layer's product is the sum of its
steps' ``y`` shifted right by ``scale_frac_bits`` (floor), see `mars.sw.golden.accel`.

Everything is vectorised over leading batch axes so that whole layers (and later whole
networks) run through the same code the RTL is checked against.

Storage layout of one macro row (C bits): the weight of output channel n occupies
columns n*Wb .. n*Wb+Wb-1, bit j of its two's-complement code in column n*Wb+j.
"""

from __future__ import annotations

import numpy as np

from mars.config import MarsConfig, ReadoutMode

__all__ = ["popcounts", "readout", "column_signs", "check_scales", "scaled_shift_add",
           "macro_step", "macro_compute", "pack_row", "unpack_row"]


def _check_range(name: str, array: np.ndarray, lo: int, hi: int) -> None:
    if array.size and (array.min() < lo or array.max() > hi):
        bad = array[(array < lo) | (array > hi)].flat[0]
        raise ValueError(f"{name} must lie in [{lo}, {hi}], found {bad}")


def _as_int_array(name: str, values) -> np.ndarray:
    """`values` as int64, refusing anything that is not integral (no silent truncation)."""
    array = np.asarray(values)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _bits(values: np.ndarray, width: int) -> np.ndarray:
    """Bits of two's-complement `values` along a new last axis, LSB first (int64 0/1)."""
    return (values[..., None] >> np.arange(width, dtype=np.int64)) & 1


def popcounts(x: np.ndarray, w: np.ndarray, config: MarsConfig) -> np.ndarray:
    """Column popcounts of one compute step.

    Parameters
    ----------
    x : array of shape (..., G)
        Unsigned activations in [0, 2**Ab - 1].
    w : array of shape (..., G, N)
        Signed weights in [-2**(Wb-1), 2**(Wb-1) - 1]; broadcast against `x`.

    Returns
    -------
    array of shape (..., Ab, Wb, N)
        ``p[..., i, j, n]``, the number of active rows whose input bit i and weight bit j
        are both one.
    """
    x = _as_int_array("activations", x)
    w = _as_int_array("weights", w)
    G = config.rows_per_step
    if x.ndim < 1 or w.ndim < 2 or x.shape[-1] != G or w.shape[-2] != G:
        raise ValueError(
            f"a compute step takes G={G} rows: got activations {x.shape}, weights {w.shape}")
    _check_range("activations", x, 0, config.act_max)
    _check_range("weights", w, config.weight_min, config.weight_max)
    x_bits = _bits(x, config.act_bits)        # (..., G, Ab)
    w_bits = _bits(w, config.weight_bits)     # (..., G, N, Wb)
    return np.einsum("...gi,...gnj->...ijn", x_bits, w_bits)


def readout(p: np.ndarray, config: MarsConfig) -> np.ndarray:
    """The per-column readout (ADC or comparator) of popcounts `p`: the popcount (exact),
    the popcount clipped at ``2**readout_bits - 1`` (saturating), or the comparator bit
    ``[p >= readout_threshold]`` (binary, ternary; the ternary sign is the column's,
    applied with the scale factor in `scaled_shift_add`).  Zero maps to zero in every
    mode."""
    if config.readout_mode is ReadoutMode.EXACT:
        return p
    if config.readout_mode is ReadoutMode.SATURATING:
        return np.minimum(p, 2 ** config.readout_bits - 1)
    if config.scaled_readout:
        return (p >= config.readout_threshold).astype(np.int64)
    raise NotImplementedError(f"readout mode {config.readout_mode.value!r}")


def column_signs(config: MarsConfig) -> np.ndarray:
    """Sign each bit column's comparator bit takes, (Wb,): ``s_j`` for ternary (-1 on the
    sign column), +1 for binary."""
    j = np.arange(config.weight_bits)
    if config.readout_mode is ReadoutMode.TERNARY:
        return np.where(j == config.weight_bits - 1, -1, 1).astype(np.int64)
    return np.ones(config.weight_bits, dtype=np.int64)


def check_scales(scales, n_channels: int, config: MarsConfig) -> np.ndarray:
    """Column scale factor codes as int64 (N, Wb), range-checked (``scale_bits`` signed)."""
    if scales is None:
        raise ValueError(f"a {config.readout_mode.value} readout needs column scale factors")
    scales = _as_int_array("scale factors", scales)
    if scales.shape != (n_channels, config.weight_bits):
        raise ValueError(f"scale factors must have shape {(n_channels, config.weight_bits)}, "
                         f"got {scales.shape}")
    top = 1 << (config.scale_bits - 1)
    _check_range("scale factors", scales, -top, top - 1)
    return scales


def scaled_shift_add(c: np.ndarray, scales: np.ndarray, config: MarsConfig) -> np.ndarray:
    """``sum_i sum_j 2**i * a[n, j] * s_j * c[..., i, j, n]`` for comparator bits `c`
    (..., Ab, Wb, N) and scale codes `scales` (N, Wb): shape (..., N), int64."""
    i_weight = 1 << np.arange(config.act_bits, dtype=np.int64)
    signed = scales.T * column_signs(config)[:, None]                   # (Wb, N)
    return np.einsum("...ijn,i,jn->...n", c, i_weight, signed)


def _shift_add_weights(config: MarsConfig) -> np.ndarray:
    """``2**i * s_j * 2**j`` for every (input bit i, weight bit j), shape (Ab, Wb)."""
    i = np.arange(config.act_bits, dtype=np.int64)[:, None]
    j = np.arange(config.weight_bits, dtype=np.int64)[None, :]
    sign = np.where(j == config.weight_bits - 1, -1, 1)
    return sign * (1 << (i + j))


def macro_step(x: np.ndarray, w: np.ndarray, config: MarsConfig,
               scales: np.ndarray | None = None) -> np.ndarray:
    """Partial sums of one compute step, shape (..., N), int64.

    With an exact readout this equals ``x @ w``; with a saturating readout it is what
    the hardware computes, popcount clipping included.  Binary/ternary readouts need the
    column scale factor codes `scales` (N, Wb) and return the scaled sum in units of
    ``2**-scale_frac_bits`` (not yet shifted).
    """
    q = readout(popcounts(x, w, config), config)
    if config.scaled_readout:
        return scaled_shift_add(q, check_scales(scales, q.shape[-1], config), config)
    return np.einsum("...ijn,ij->...n", q, _shift_add_weights(config))


def macro_compute(weights: np.ndarray, slots: np.ndarray, acts: np.ndarray,
                  config: MarsConfig, scales: np.ndarray | None = None) -> np.ndarray:
    """What the whole macro returns for compute requests, shape (..., C/Wb).

    Parameters
    ----------
    weights : array of shape (R, C/Wb)
        The macro's contents: row r holds one weight per output channel.
    slots : int array of shape (..., D)
        Row slot switched on in each word-line domain.
    acts : int array of shape (..., D, G)
        Activations of each domain's G rows.

    scales : int array of shape (C/Wb, Wb), optional
        Binary/ternary readouts: each channel's column scale factor codes.

    Channel n belongs to domain ``n // (C/Wb/D)``, whose slot and activations give it.
    """
    D, G = config.wordline_domains, config.rows_per_step
    weights = _as_int_array("weights", weights)
    slots = _as_int_array("slots", slots)
    if weights.shape != (config.rows, config.channels_per_macro):
        raise ValueError(f"macro weights must have shape {(config.rows, config.channels_per_macro)}"
                         f", got {weights.shape}")
    if slots.shape[-1:] != (D,):
        raise ValueError(f"slots must end in the D={D} word-line domains, got {slots.shape}")
    _check_range("slots", slots, 0, config.row_slots - 1)
    per_slot = weights.reshape(config.row_slots, G, D, -1)            # (R/G, G, D, N/D)
    chosen = per_slot[slots, :, np.arange(D), :]                       # (..., D, G, N/D)
    if config.scaled_readout:
        scales = check_scales(scales, config.channels_per_macro, config).reshape(
            D, -1, config.weight_bits)                                 # (D, N/D, Wb)
        q = readout(popcounts(acts, chosen, config), config)          # (..., D, Ab, Wb, N/D)
        i_weight = 1 << np.arange(config.act_bits, dtype=np.int64)
        signed = scales * column_signs(config)                         # (D, N/D, Wb)
        psums = np.einsum("...dijn,i,dnj->...dn", q, i_weight, signed)
        return psums.reshape(*psums.shape[:-2], config.channels_per_macro)
    psums = macro_step(acts, chosen, config)                           # (..., D, N/D)
    return psums.reshape(*psums.shape[:-2], config.channels_per_macro)


def pack_row(weights: np.ndarray, config: MarsConfig) -> int:
    """The C-bit word of one macro row holding `weights` (one per output channel)."""
    weights = _as_int_array("weights", weights)
    n_channels = config.channels_per_macro
    if weights.shape != (n_channels,):
        raise ValueError(f"a macro row holds {n_channels} weights, got shape {weights.shape}")
    _check_range("weights", weights, config.weight_min, config.weight_max)
    mask = (1 << config.weight_bits) - 1
    word = 0
    for n, value in enumerate(weights.tolist()):
        word |= (value & mask) << (n * config.weight_bits)
    return word


def unpack_row(word: int, config: MarsConfig) -> np.ndarray:
    """Inverse of `pack_row`: the signed weights stored in a C-bit row word."""
    if not 0 <= word < 1 << config.cols:
        raise ValueError(f"a macro row word has {config.cols} bits, got {word:#x}")
    Wb = config.weight_bits
    codes = [(word >> (n * Wb)) & ((1 << Wb) - 1) for n in range(config.channels_per_macro)]
    return np.array([c - (1 << Wb) if c >> (Wb - 1) else c for c in codes], dtype=np.int64)
