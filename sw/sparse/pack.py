"""Packing a layer's kept groups into macro rows, and unpacking them exactly.

Layout (docs/sparse-format.md): output blocks are taken D = ``wordline_domains`` at a time
as a *block set* (blocks ``b*D .. b*D+D-1``, the last set padded with empty blocks).  Block
``b*D + d`` goes to word-line domain d of the macro, i.e. to macro channels
``d*cpg .. d*cpg+cpg-1``.  With S_b the most groups any block of set b keeps, the set
takes S_b row slots (S_b*G rows): rows ``s*G + g`` carry, in domain d, lane g of the s-th
kept group of block ``b*D + d`` (zero when that block keeps fewer than s+1 groups).
A row word is built like `mars.sw.golden.pack_row`: channel n of the macro in columns
``n*Wb .. n*Wb+Wb-1``, two's complement.  Sets follow each other (set-major), so set b
starts at row slot ``sum(S_0..S_{b-1})``.  Stored groups beyond the macro's R/G slots are
legal (the top reloads from the core weight SRAM); `PackedLayer.set_steps` exposes them.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mars.config import MarsConfig
from mars.sw.layer import LayerGeometry, flatten_conv_weight

from .groups import GroupMap, group_counts, group_view, groups_of
from mars.contract.decoder import descriptor, ktable_words
from .index import check_index_code, index_bits

__all__ = ["PackedLayer", "pack_layer", "unpack_layer", "rows_to_words", "words_to_rows"]


def _as_weight_matrix(weights, geometry: LayerGeometry, config: MarsConfig) -> np.ndarray:
    matrix = np.asarray(weights)
    if matrix.ndim == 4:
        matrix = flatten_conv_weight(matrix)
    if matrix.shape != (geometry.cout, geometry.k):
        raise ValueError(f"weights of this layer have shape (Cout, K) = "
                         f"{(geometry.cout, geometry.k)}, got {matrix.shape}")
    if matrix.dtype.kind not in "iu":
        raise ValueError(f"packed weights must be integers, got dtype {matrix.dtype}")
    matrix = matrix.astype(np.int64)
    lo, hi = config.weight_min, config.weight_max
    if matrix.size and (matrix.min() < lo or matrix.max() > hi):
        bad = matrix[(matrix < lo) | (matrix > hi)].flat[0]
        raise ValueError(f"weights must lie in [{lo}, {hi}] (Wb={config.weight_bits}), "
                         f"found {bad}")
    return matrix


def rows_to_words(rows: np.ndarray, config: MarsConfig) -> list[int]:
    """C-bit words of macro rows (rows, C/Wb), each built like `pack_row`."""
    rows = np.asarray(rows, dtype=np.int64)
    Wb, C = config.weight_bits, config.cols
    if rows.shape[1:] != (config.channels_per_macro,):
        raise ValueError(f"macro rows hold {config.channels_per_macro} weights, "
                         f"got shape {rows.shape}")
    bits = ((rows[:, :, None] >> np.arange(Wb)) & 1).astype(np.uint8).reshape(len(rows), C)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def words_to_rows(words, config: MarsConfig) -> np.ndarray:
    """Inverse of `rows_to_words`: the signed weights (rows, C/Wb) of C-bit row words."""
    Wb, C = config.weight_bits, config.cols
    n_bytes = -(-C // 8)
    words = [int(w) for w in words]
    for r, word in enumerate(words):
        if not 0 <= word < 1 << C:
            raise ValueError(f"row word {r} ({word:#x}) does not fit the macro's {C} columns")
    raw = np.frombuffer(b"".join(w.to_bytes(n_bytes, "little") for w in words),
                        dtype=np.uint8).reshape(len(words), n_bytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :C].astype(np.int64)
    codes = (bits.reshape(len(words), config.channels_per_macro, Wb) << np.arange(Wb)).sum(axis=2)
    return np.where(codes >> (Wb - 1), codes - (1 << Wb), codes)


def _set_steps(codes: tuple[np.ndarray, ...], domains: int) -> tuple[int, ...]:
    n_sets = -(-len(codes) // domains)
    return tuple(max(len(c) for c in codes[b * domains:(b + 1) * domains])
                 for b in range(n_sets))


@dataclasses.dataclass(frozen=True, eq=False)
class PackedLayer:
    """A layer's weights in the compressed format: index codes plus macro row words.

    Build it with `pack_layer`; `unpack` returns the weight matrix exactly.

    Members
    -------
    geometry, config
        The layer and the accelerator configuration.
    index_codes : tuple of int arrays
        One per output block: its kept K-groups, increasing.
    rows : tuple of int
        Macro row words (C bits), all block sets one after the other.
    set_steps : tuple of int
        S_b, the row slots (stored-group ordinals) of each block set.
    """

    geometry: LayerGeometry
    config: MarsConfig
    index_codes: tuple[np.ndarray, ...]
    rows: tuple[int, ...]
    set_steps: tuple[int, ...]

    # -- shape of the format ----------------------------------------------------------------

    @property
    def n_blocks(self) -> int:
        return len(self.index_codes)

    @property
    def n_kgroups(self) -> int:
        return -(-self.geometry.k // self.config.rows_per_step)

    @property
    def domains(self) -> int:
        return self.config.wordline_domains

    @property
    def n_sets(self) -> int:
        return len(self.set_steps)

    @functools.cached_property
    def set_slot_start(self) -> tuple[int, ...]:
        """First row slot of each block set (its rows start at ``slot * G``)."""
        return tuple(int(x) for x in np.cumsum((0,) + self.set_steps[:-1]))

    def block_location(self, block: int) -> tuple[int, int]:
        """(block set, word-line domain) of output block `block`."""
        if not 0 <= block < self.n_blocks:
            raise IndexError(f"output block {block} out of range [0, {self.n_blocks})")
        return divmod(block, self.domains)

    # -- statistics -------------------------------------------------------------------------

    @functools.cached_property
    def group_map(self) -> GroupMap:
        kept = np.zeros((self.n_blocks, self.n_kgroups), dtype=bool)
        for cb, code in enumerate(self.index_codes):
            kept[cb, code] = True
        return GroupMap(self.geometry.cout, self.geometry.k, self.config, kept)

    @property
    def sparsity(self) -> float:
        """Group sparsity: fraction of the layer's groups that are pruned."""
        return self.group_map.sparsity

    @property
    def stored_groups(self) -> int:
        """Kept groups over all blocks (the compute steps of one output pixel)."""
        return sum(len(code) for code in self.index_codes)

    @property
    def stored_slots(self) -> int:
        """Row slots the packed rows occupy (kept groups plus zero fill of short blocks)."""
        return sum(self.set_steps)

    @property
    def group_bits(self) -> int:
        """Weight bits in one group, channels_per_group * G * Wb."""
        cfg = self.config
        return cfg.channels_per_group * cfg.rows_per_step * cfg.weight_bits

    @property
    def stored_weight_bits(self) -> int:
        """Weight bits of the kept groups: the denominator of the index overhead."""
        return self.stored_groups * self.group_bits

    def index_bits(self, encoding: str) -> int:
        """Bits of every block's index code in `encoding` (see `mars.sw.sparse.index`)."""
        return sum(index_bits(code, self.n_kgroups, encoding) for code in self.index_codes)

    # -- back to weights --------------------------------------------------------------------

    def unpack(self) -> np.ndarray:
        """The (Cout, K) weight matrix, rebuilt from `rows` and `index_codes` only."""
        return unpack_layer(self.rows, self.index_codes, self.geometry, self.config)

    # -- what the hardware loads ------------------------------------------------------------

    def index_memory(self, domain: int) -> list[int]:
        """Index-memory words of word-line domain `domain`, one per row slot: entry
        ``set_slot_start[b] + s`` is the s-th kept K-group of block ``b*D + domain``
        (0 where that block keeps fewer groups; the descriptor's count says how many)."""
        if not 0 <= domain < self.domains:
            raise IndexError(f"domain {domain} out of range [0, {self.domains})")
        words = [0] * self.stored_slots
        for b, start in enumerate(self.set_slot_start):
            cb = b * self.domains + domain
            if cb < self.n_blocks:
                words[start:start + len(self.index_codes[cb])] = self.index_codes[cb].tolist()
        return words

    def ktable(self) -> list[int]:
        """The layer's k-table words (`mars.contract.decoder.ktable_words`)."""
        return ktable_words(self.geometry, self.config)

    def descriptor(self, block: int, *, act_base: int = 0, ktable_base: int = 0,
                   slot_offset: int = 0) -> dict[str, int]:
        """Decoder descriptor of output block `block`, with the index memory and the row
        slots of `index_memory` / `rows` placed at `slot_offset`."""
        b, _ = self.block_location(block)
        start = slot_offset + self.set_slot_start[b]
        return descriptor(self.geometry, self.config, count=len(self.index_codes[block]),
                          steps=self.set_steps[b], act_base=act_base,
                          ktable_base=ktable_base, index_start=start, slot_base=start)

    def weight_image(self):
        """The row words as a ``weights`` `MemoryImage`."""
        from .image import MemoryImage
        return MemoryImage.build("weights", self.rows, self.config)

    def index_image(self, domain: int):
        """`index_memory` of `domain` as an ``index`` `MemoryImage`."""
        from .image import MemoryImage
        return MemoryImage.build("index", self.index_memory(domain), self.config)

    def ktable_image(self):
        """`ktable` as a ``ktable`` `MemoryImage`."""
        from .image import MemoryImage
        return MemoryImage.build("ktable", self.ktable(), self.config)


def pack_layer(weights, geometry: LayerGeometry, config: MarsConfig) -> PackedLayer:
    """Compress a layer's integer weights: index codes plus macro row words.

    Parameters
    ----------
    weights : int array (Cout, K), or (Cout, Cin, kh, kw) as PyTorch stores a conv
        Signed weights in [weight_min, weight_max]; all-zero groups are dropped.
    geometry : LayerGeometry
        The layer (its K and Cout must match the weights).
    config : MarsConfig
        The accelerator (G, channels per group, word-line domains, Wb, C).

    Raises
    ------
    ValueError
        For a shape that does not match the layer, non-integer or out-of-range weights.
    """
    matrix = _as_weight_matrix(weights, geometry, config)
    group_map = groups_of(matrix, config)
    codes = group_map.index_codes()
    for code in codes:
        code.setflags(write=False)
    D, G = config.wordline_domains, config.rows_per_step
    cpg = config.channels_per_group
    view = group_view(matrix, config)                   # (blocks, kgroups, cpg, G)
    steps = _set_steps(codes, D)
    rows = np.zeros((sum(steps) * G, config.channels_per_macro), dtype=np.int64)
    slot = 0
    for b, n_steps in enumerate(steps):
        for d in range(D):
            cb = b * D + d
            if cb >= len(codes) or not len(codes[cb]):
                continue
            chosen = view[cb, codes[cb]]                # (kept, cpg, G)
            block_rows = chosen.transpose(0, 2, 1).reshape(-1, cpg)
            rows[slot * G:slot * G + len(block_rows), d * cpg:(d + 1) * cpg] = block_rows
        slot += n_steps
    return PackedLayer(geometry, config, codes, tuple(rows_to_words(rows, config)), steps)


def unpack_layer(rows, index_codes, geometry: LayerGeometry, config: MarsConfig) -> np.ndarray:
    """The (Cout, K) weight matrix of packed `rows` and `index_codes` (see `pack_layer`).

    Raises
    ------
    ValueError
        If the codes or rows do not match the layer: wrong number of codes, an index out
        of range or not increasing, the wrong number of rows, a word wider than C bits, or
        a nonzero weight where the format holds zeros (fill, padded channels or K-rows).
    """
    n_blocks, n_kgroups = group_counts(geometry.cout, geometry.k, config)
    if len(index_codes) != n_blocks:
        raise ValueError(f"a layer with Cout={geometry.cout} has {n_blocks} output blocks "
                         f"of {config.channels_per_group} channels, got {len(index_codes)} "
                         f"index codes")
    codes = []
    for cb, code in enumerate(index_codes):
        try:
            codes.append(check_index_code(code, n_kgroups))
        except ValueError as error:
            raise ValueError(f"index code of output block {cb}: {error}") from None
    D, G, cpg = config.wordline_domains, config.rows_per_step, config.channels_per_group
    steps = _set_steps(tuple(codes), D)
    rows = list(rows)
    if len(rows) != sum(steps) * G:
        raise ValueError(f"the index codes need {sum(steps) * G} macro rows "
                         f"({sum(steps)} row slots of G={G}), got {len(rows)}")
    weights = words_to_rows(rows, config)               # (rows, C/Wb)
    view = np.zeros((n_blocks, n_kgroups, cpg, G), dtype=np.int64)
    used = np.zeros(weights.shape, dtype=bool)
    slot = 0
    for b, n_steps in enumerate(steps):
        for d in range(D):
            cb = b * D + d
            if cb >= n_blocks or not len(codes[cb]):
                continue
            span = slice(slot * G, (slot + len(codes[cb])) * G)
            block_rows = weights[span, d * cpg:(d + 1) * cpg]
            view[cb, codes[cb]] = block_rows.reshape(-1, G, cpg).transpose(0, 2, 1)
            used[span, d * cpg:(d + 1) * cpg] = True
        slot += n_steps
    if np.any(weights[~used]):
        r = int(np.argwhere(weights * ~used)[0][0])
        raise ValueError(f"macro row {r} holds a nonzero weight in a domain whose block "
                         f"stores no group there: the rows do not match the index codes")
    padded = view.transpose(0, 2, 1, 3).reshape(n_blocks * cpg, n_kgroups * G)
    if np.any(padded[geometry.cout:]) or np.any(padded[:, geometry.k:]):
        raise ValueError("nonzero weights in the padding past Cout or past K: the rows do "
                         "not match the layer")
    return padded[:geometry.cout, :geometry.k]
