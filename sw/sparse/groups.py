"""Sparsity groups of a layer's weight matrix: what the macro can skip.

A layer's weights are the integer matrix ``W`` of shape (N = Cout, K), K flattened as in
`mars.sw.layer` (Cin fastest, then kw, then kh).  The matrix is cut into

* K-groups of G = ``rows_per_step`` consecutive K-rows: group ``kg`` holds rows
  ``kg*G .. kg*G+G-1``; there are ceil(K/G) of them, the last padded with zero rows;
* output blocks of ``channels_per_group`` consecutive output channels (the channels that
  share word lines: a partition or the whole macro); block ``cb`` holds channels
  ``cb*cpg .. cb*cpg+cpg-1``; there are ceil(N/cpg) of them, the last padded with zero
  channels.

Group (cb, kg) is ``W[cb*cpg:(cb+1)*cpg, kg*G:(kg+1)*G]``.  It is *pruned* when all its
weights are zero: a pruned group is neither stored in a macro nor computed.  Everything
here works on any numeric dtype (the trainer scores float weights with `group_view`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from mars.config import MarsConfig

__all__ = ["Group", "GroupMap", "group_counts", "group_view", "groups_of", "iter_groups",
           "expand_group_mask"]


def group_counts(n: int, k: int, config: MarsConfig) -> tuple[int, int]:
    """(output blocks, K-groups) of an N x K weight matrix: ceil(N/cpg), ceil(K/G)."""
    for name, value in (("N", n), ("K", k)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    cpg, G = config.channels_per_group, config.rows_per_step
    return -(-int(n) // cpg), -(-int(k) // G)


def _as_matrix(weights) -> np.ndarray:
    matrix = np.asarray(weights)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"a weight matrix has shape (N=Cout, K) with N, K >= 1, "
                         f"got {matrix.shape}")
    if matrix.dtype.kind not in "iubf":
        raise ValueError(f"weights must be numbers, got dtype {matrix.dtype}")
    return matrix


def group_view(weights, config: MarsConfig) -> np.ndarray:
    """The weights rearranged by group, zero-padded: shape (blocks, K-groups, cpg, G).

    ``view[cb, kg, j, g] == W[cb*cpg + j, kg*G + g]`` where that exists, else 0.
    The result is a new array of the input's dtype.
    """
    matrix = _as_matrix(weights)
    n, k = matrix.shape
    n_blocks, n_kgroups = group_counts(n, k, config)
    cpg, G = config.channels_per_group, config.rows_per_step
    padded = np.zeros((n_blocks * cpg, n_kgroups * G), dtype=matrix.dtype)
    padded[:n, :k] = matrix
    return padded.reshape(n_blocks, cpg, n_kgroups, G).transpose(0, 2, 1, 3).copy()


def expand_group_mask(kept, n: int, k: int, config: MarsConfig) -> np.ndarray:
    """Element mask (N, K) of a group mask (blocks, K-groups): True where the group is kept.

    Multiplying a weight matrix by it prunes exactly the groups that `kept` drops.
    """
    n_blocks, n_kgroups = group_counts(n, k, config)
    kept = np.asarray(kept, dtype=bool)
    if kept.shape != (n_blocks, n_kgroups):
        raise ValueError(f"a group mask of an {n} x {k} matrix has shape "
                         f"{(n_blocks, n_kgroups)}, got {kept.shape}")
    cpg, G = config.channels_per_group, config.rows_per_step
    return np.repeat(np.repeat(kept, cpg, axis=0), G, axis=1)[:n, :k]


@dataclasses.dataclass(frozen=True)
class Group:
    """One sparsity group: output block `block`, K-group `kgroup`, its (cpg, G) weights."""

    block: int
    kgroup: int
    weights: np.ndarray

    @property
    def pruned(self) -> bool:
        return not np.any(self.weights)


@dataclasses.dataclass(frozen=True, eq=False)
class GroupMap:
    """Which groups of an N x K weight matrix are kept (hold a nonzero weight).

    Build it with `groups_of`.  ``kept[cb, kg]`` is True when group (cb, kg) is stored.
    """

    n: int
    k: int
    config: MarsConfig
    kept: np.ndarray

    def __post_init__(self) -> None:
        shape = group_counts(self.n, self.k, self.config)
        kept = np.asarray(self.kept, dtype=bool)
        if kept.shape != shape:
            raise ValueError(f"kept must have shape {shape} for an {self.n} x {self.k} "
                             f"matrix, got {kept.shape}")
        kept = kept.copy()
        kept.setflags(write=False)
        object.__setattr__(self, "kept", kept)

    @property
    def n_blocks(self) -> int:
        """Output blocks, ceil(N / channels_per_group)."""
        return self.kept.shape[0]

    @property
    def n_kgroups(self) -> int:
        """K-groups, ceil(K / G)."""
        return self.kept.shape[1]

    @property
    def pruned(self) -> np.ndarray:
        """Mask of the all-zero (skipped) groups, shape (blocks, K-groups)."""
        return ~self.kept

    @property
    def total(self) -> int:
        return self.kept.size

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    @property
    def n_pruned(self) -> int:
        return self.total - self.n_kept

    @property
    def sparsity(self) -> float:
        """Group sparsity: the fraction of groups that are pruned."""
        return self.n_pruned / self.total

    def kept_per_block(self) -> np.ndarray:
        """Kept groups of each output block, shape (blocks,)."""
        return self.kept.sum(axis=1)

    def kept_kgroups(self, block: int) -> np.ndarray:
        """The index code of output block `block`: its kept K-groups, increasing."""
        if not 0 <= block < self.n_blocks:
            raise IndexError(f"output block {block} out of range [0, {self.n_blocks})")
        return np.flatnonzero(self.kept[block])

    def index_codes(self) -> tuple[np.ndarray, ...]:
        """`kept_kgroups` of every output block, in block order."""
        return tuple(self.kept_kgroups(cb) for cb in range(self.n_blocks))

    def element_mask(self) -> np.ndarray:
        """(N, K) mask, True on the weights of kept groups (see `expand_group_mask`)."""
        return expand_group_mask(self.kept, self.n, self.k, self.config)


def groups_of(weights, config: MarsConfig) -> GroupMap:
    """The group map of weight matrix `weights` (N, K): a group is kept iff it has a
    nonzero weight."""
    matrix = _as_matrix(weights)
    view = group_view(matrix, config)
    return GroupMap(matrix.shape[0], matrix.shape[1], config, np.any(view != 0, axis=(2, 3)))


def iter_groups(weights, config: MarsConfig) -> Iterator[Group]:
    """Every group of `weights`, block-major then K-group order, zero-padded."""
    view = group_view(weights, config)
    for cb in range(view.shape[0]):
        for kg in range(view.shape[1]):
            yield Group(cb, kg, view[cb, kg])

