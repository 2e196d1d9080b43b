"""Golden model of the sparse-weight decoder: the address stream of one output block.

For one output block of a layer the decoder walks the output pixels in row-major order
(oy, then ox) and, for each pixel, the block's kept K-groups in index-code order, emitting
one payload per kept group:

* ``slot``: the row slot of the stored group, ``slot_base + s`` for the s-th kept group;
* ``kgroup``: its K-group ``kg``;
* ``addrs[g]``, ``pad[g]``: for lane g (K-row ``k = kg*G + g``) the activation-buffer
  address ``(act_base + offset) mod act_buffer_words`` of the input that K-row multiplies
  at this pixel, with `LayerGeometry.im2col` giving the HWC offset; ``pad[g]`` is set (and
  the address is 0) when that input is zero padding or ``k >= K``;
* ``first``/``last``: first/last payload of the pixel; ``walk_first``/``walk_last``:
  first/last payload of the whole walk.

With ``steps`` larger than the number of kept groups, each pixel is followed by fillers
(``filler`` set, K-group 0, every lane padding) up to ``steps`` payloads, which keeps the
decoders of one block set in step.  The model is written from the layer geometry alone,
independently of the k-table arithmetic the RTL uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mars.config import MarsConfig
from mars.sw.layer import LayerGeometry

__all__ = ["DecoderTrace", "decoder_walk"]


@dataclasses.dataclass(frozen=True, eq=False)
class DecoderTrace:
    """A decoder's payload stream, one row per payload (arrays of equal length)."""

    slot: np.ndarray
    kgroup: np.ndarray
    addrs: np.ndarray       # (n, G)
    pad: np.ndarray         # (n, G) bool
    first: np.ndarray
    last: np.ndarray
    walk_first: np.ndarray
    walk_last: np.ndarray
    filler: np.ndarray

    def __len__(self) -> int:
        return len(self.slot)

    def pad_masks(self) -> np.ndarray:
        """``pad`` as integers, bit g = lane g (the RTL's ``pad`` field)."""
        weights = 1 << np.arange(self.pad.shape[1], dtype=np.int64)
        return (self.pad.astype(np.int64) * weights).sum(axis=1)

    def payloads(self) -> list[dict]:
        """One dict per payload with the RTL's field names (``pad`` as a bit mask)."""
        masks = self.pad_masks().tolist()
        return [
            {"slot": int(self.slot[i]), "kgroup": int(self.kgroup[i]),
             "addrs": [int(a) for a in self.addrs[i]], "pad": masks[i],
             "first": int(self.first[i]), "last": int(self.last[i]),
             "walk_first": int(self.walk_first[i]), "walk_last": int(self.walk_last[i]),
             "filler": int(self.filler[i])}
            for i in range(len(self))
        ]


def decoder_walk(geometry: LayerGeometry, kept, config: MarsConfig, *,
                 steps: int | None = None, act_base: int = 0,
                 slot_base: int = 0) -> DecoderTrace:
    """The payloads the decoder emits for one output block.

    Parameters
    ----------
    geometry : LayerGeometry
        The layer.
    kept : sequence of int
        The block's index code: its kept K-groups, strictly increasing, < ceil(K/G).
    config : MarsConfig
        Supplies G and the buffer size.
    steps : int, optional
        Payloads per pixel (default: the number of kept groups); must be at least that.
    act_base : int
        Buffer address of input element (0, 0, 0).
    slot_base : int
        Row slot of the first kept group.

    Raises
    ------
    ValueError
        For an index code out of range or not strictly increasing, or bad `steps`.
    """
    G, words = config.rows_per_step, config.act_buffer_words
    n_kgroups = -(-geometry.k // G)
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    if kept.size and (kept.min() < 0 or kept.max() >= n_kgroups):
        raise ValueError(f"index code entries must lie in [0, {n_kgroups}), got "
                         f"{kept.tolist()}")
    if np.any(np.diff(kept) <= 0):
        raise ValueError(f"index code must be strictly increasing, got {kept.tolist()}")
    count = len(kept)
    steps = count if steps is None else steps
    if steps < count:
        raise ValueError(f"steps ({steps}) must be at least the kept groups ({count})")
    if not 0 <= act_base < words:
        raise ValueError(f"act_base ({act_base}) must lie in [0, {words})")

    k = kept[:, None] * G + np.arange(G)                 # (count, G) K-rows
    beyond = k >= geometry.k
    pixels = [(oy, ox) for oy in range(geometry.out_h) for ox in range(geometry.out_w)]
    n = len(pixels) * steps
    addrs = np.zeros((len(pixels), steps, G), dtype=np.int64)
    pad = np.ones((len(pixels), steps, G), dtype=bool)
    for p, (oy, ox) in enumerate(pixels):
        offset, padding = geometry.im2col(oy, ox, np.minimum(k, geometry.k - 1))
        lane_pad = padding | beyond
        pad[p, :count] = lane_pad
        addrs[p, :count] = np.where(lane_pad, 0, (act_base + offset) % words)
    s = np.tile(np.arange(steps), len(pixels))
    kgroup = np.zeros((len(pixels), steps), dtype=np.int64)
    kgroup[:, :count] = kept
    index = np.arange(n)
    return DecoderTrace(
        slot=slot_base + s, kgroup=kgroup.reshape(n), addrs=addrs.reshape(n, G),
        pad=pad.reshape(n, G), first=s == 0, last=s == steps - 1,
        walk_first=index == 0, walk_last=index == n - 1, filler=s >= count)
