"""Requantisation parameters: a positive ratio r as an integer multiplier and shift,
``r ~ M / 2^S`` (shared by the fake-quantised forward pass and the export, so that both
use the same integers)."""

from __future__ import annotations

import numpy as np

from mars.errors import MarsError
from mars.config import MarsConfig
from mars.sw.golden.network import shift_range

__all__ = ["ExportError", "requant_parameters"]


class ExportError(MarsError, ValueError):
    """A trained network the configuration cannot hold; the message names the layer."""


def requant_parameters(ratio, config: MarsConfig, where: str = "", *, strict: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel integer (M, S) with ``M / 2^S ~ ratio``, as int64 arrays.

    S is the largest shift in `shift_range` (1 .. acc_bits + requant_mult_bits - 1) for
    which ``M = floor(ratio * 2^S + 1/2)`` stays below 2^requant_mult_bits; that keeps the
    most precision (M >= 2^(requant_mult_bits - 1) unless S is at its top).  A ratio too
    small for any shift gets M = 0 at the largest S.  A ratio too large for S = 1 raises
    `ExportError` (with `strict`) or saturates M (during training).
    """
    lo, hi = shift_range(config)
    mmax = (1 << config.requant_mult_bits) - 1
    r = np.asarray(ratio, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(r) & (r > 0)):
        bad = r[~(np.isfinite(r) & (r > 0))][0]
        raise ExportError(f"{where}: requantisation ratio {bad!r} is not a positive number")

    def mult(shift):
        return np.floor(np.ldexp(r, shift) + 0.5)

    with np.errstate(divide="ignore", over="ignore"):
        shift = np.clip(np.floor(np.log2(mmax / r)), lo, hi).astype(np.int64)
    for _ in range(4):             # log2 may be off by one either way: settle exactly
        down = (shift > lo) & (mult(shift) > mmax)
        shift = shift - down
        up = (shift < hi) & (mult(shift + 1) <= mmax)
        shift = shift + up
        if not down.any() and not up.any():
            break
    m = mult(shift)
    if np.any(m > mmax):
        if strict:
            big = float(r[m > mmax][0])
            raise ExportError(
                f"{where}: requantisation ratio {big:.6g} needs a multiplier above "
                f"2^{config.requant_mult_bits} - 1 even at shift {lo}; the output step is "
                f"too small for requant_mult_bits={config.requant_mult_bits}")
        m = np.minimum(m, mmax)
    return m.astype(np.int64), shift
