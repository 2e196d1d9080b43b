"""CIM-aware group pruning (and unstructured pruning for comparison).

A sparsity group is the unit the macro can skip (docs/sparse-format.md, "Groups"): G
consecutive K-rows times the output channels that share those word lines.  For a layer's
(N, K) weight matrix (K in `flatten_conv_weight` order), with ``G = config.rows_per_step``
and ``cpg = config.channels_per_group``::

    group (cb, kg) = W[cb*cpg : (cb+1)*cpg, kg*G : (kg+1)*G]
    cb in 0 .. ceil(N/cpg) - 1,   kg in 0 .. ceil(K/G) - 1    (last ones padded)

A group's score is the L2 norm of its folded float weights; the lowest-scoring groups are
pruned (all their weights set to zero and kept there) on the gradual schedule of Zhu &
Gupta ("To prune, or not to prune", 2017): the sparsity at step t is
``s_f * (1 - (1 - (t - t0) / (t1 - t0))^3)`` between steps t0 and t1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

__all__ = ["group_shape", "group_scores", "group_keep", "expand_groups", "group_listing",
           "agp_sparsity", "prune_count", "Pruner", "LayerSparsity", "zero_groups", "SCOPES"]


def group_shape(n: int, k: int, rows_per_step: int, channels_per_group: int) -> tuple[int, int]:
    """(output blocks, K-groups) of an (n, k) matrix."""
    return math.ceil(n / channels_per_group), math.ceil(k / rows_per_step)


def _padded(matrix: torch.Tensor, G: int, cpg: int) -> torch.Tensor:
    """(blocks, cpg, kgroups, G) view of `matrix` padded with zeros."""
    n, k = matrix.shape
    blocks, kgroups = group_shape(n, k, G, cpg)
    padded = matrix.new_zeros(blocks * cpg, kgroups * G)
    padded[:n, :k] = matrix
    return padded.reshape(blocks, cpg, kgroups, G)


def group_scores(matrix: torch.Tensor, G: int, cpg: int) -> torch.Tensor:
    """L2 norm of every group, shape (blocks, kgroups)."""
    return _padded(matrix.detach().float(), G, cpg).pow(2).sum(dim=(1, 3)).sqrt()


def group_sizes(n: int, k: int, G: int, cpg: int) -> torch.Tensor:
    """Real (unpadded) weights in every group, shape (blocks, kgroups)."""
    return _padded(torch.ones(n, k), G, cpg).sum(dim=(1, 3))


def expand_groups(keep: torch.Tensor, n: int, k: int, G: int, cpg: int) -> torch.Tensor:
    """(blocks, kgroups) group mask -> (n, k) element mask."""
    blocks, kgroups = keep.shape
    full = keep[:, None, :, None].expand(blocks, cpg, kgroups, G).reshape(blocks * cpg,
                                                                           kgroups * G)
    return full[:n, :k].to(torch.float32)


def zero_groups(matrix: np.ndarray, G: int, cpg: int) -> np.ndarray:
    """Boolean (blocks, kgroups): which groups of an integer matrix are all zero."""
    scores = group_scores(torch.from_numpy(np.abs(matrix).astype(np.float32)), G, cpg)
    return (scores == 0).numpy()


def group_listing(n: int, k: int, G: int, cpg: int) -> list[tuple[int, int, slice, slice]]:
    """Every group as (cb, kg, output-channel slice, K slice), cb-major."""
    blocks, kgroups = group_shape(n, k, G, cpg)
    return [(cb, kg, slice(cb * cpg, min(n, (cb + 1) * cpg)), slice(kg * G, min(k, (kg + 1) * G)))
            for cb in range(blocks) for kg in range(kgroups)]


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the `count` lowest scores; ties broken by flat index (stable)."""
    flat = scores.flatten()
    order = torch.sort(flat, stable=True).indices
    pruned = torch.zeros_like(flat, dtype=torch.bool)
    pruned[order[:count]] = True
    return pruned.reshape(scores.shape)


def prune_count(units: int, sparsity: float) -> int:
    """Units to prune for `sparsity`: ``round(sparsity * units)``, but never all of them
    (a layer or block keeps at least one)."""
    return min(round(sparsity * units), units - 1)


def group_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep mask pruning the `prune_count` lowest-scoring groups."""
    return ~_lowest(scores, prune_count(scores.numel(), sparsity))


def agp_sparsity(step: int, start: int, end: int, final: float) -> float:
    """Zhu & Gupta's cubic schedule from 0 at `start` to `final` at `end` (steps)."""
    if step <= start:
        return 0.0
    if step >= end or end <= start:
        return final
    progress = (step - start) / (end - start)
    return final * (1.0 - (1.0 - progress) ** 3)


@dataclasses.dataclass
class LayerSparsity:
    """Per-layer sparsity figures for the summary and the manifest."""

    name: str
    prunable: bool
    groups: int
    pruned_groups: int       # groups the mask removed
    zero_groups: int         # groups whose integer weights are all zero (>= pruned)
    weights: int
    zero_weights: int

    @property
    def stored_groups(self) -> int:
        return self.groups - self.zero_groups

    @property
    def group_sparsity(self) -> float:
        return self.zero_groups / self.groups

    @property
    def weight_sparsity(self) -> float:
        return self.zero_weights / self.weights


SCOPES = ("layer", "block", "global")


class Pruner:
    """Applies a pruning schedule to the `QLayer`\\ s of a `QNetwork`.

    Parameters
    ----------
    layers : list of QLayer
        Every layer; those in `exempt` stay dense.
    structure : str
        ``"group"`` (CIM-aware groups) or ``"unstructured"`` (single weights).
    scope : str
        ``"layer"``: each prunable layer reaches `sparsity`; ``"block"``: so does each
        output block of each layer (the same number of kept groups in every block, so the
        word-line domains that share row slots have no zero fill; groups only);
        ``"global"``: the fraction over all prunable layers does, scores normalised by
        each layer's RMS weight (groups by their RMS) so that layers of different scale
        compare.
    """

    def __init__(self, layers, *, G: int, cpg: int, sparsity: float, structure: str = "group",
                 scope: str = "layer", exempt: tuple[str, ...] = ()) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must lie in [0, 1), not {sparsity}")
        if structure not in ("group", "unstructured"):
            raise ValueError(f"structure must be 'group' or 'unstructured', not {structure!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if scope == "block" and structure != "group":
            raise ValueError("scope 'block' needs group pruning")
        self.layers = [layer for layer in layers if layer.node_name not in exempt]
        self.G, self.cpg = G, cpg
        self.sparsity, self.structure, self.scope = sparsity, structure, scope

    def _units(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and sizes of the pruning units of `layer` (groups or weights)."""
        matrix = layer.matrix(layer.folded()[0]).detach()
        if self.structure == "unstructured":
            return matrix.abs(), torch.ones_like(matrix)
        n, k = matrix.shape
        return group_scores(matrix, self.G, self.cpg), group_sizes(n, k, self.G, self.cpg)

    def _apply(self, layer, keep: torch.Tensor) -> None:
        if self.structure == "group":
            n, k = layer.weight.shape[0], layer.matrix(layer.weight).shape[1]
            keep = expand_groups(keep, n, k, self.G, self.cpg)
        mask = layer.from_matrix(keep.to(torch.float32))
        with torch.no_grad():
            layer.mask.copy_(mask * layer.mask)
            layer.weight.mul_(layer.mask)

    @torch.no_grad()
    def step(self, sparsity: float) -> None:
        """Prune every prunable layer to `sparsity` (never un-prunes)."""
        if sparsity <= 0 or not self.layers:
            return
        units = [self._units(layer) for layer in self.layers]
        if self.scope == "layer":
            for layer, (scores, _) in zip(self.layers, units):
                self._apply(layer, group_keep(scores, sparsity))
            return
        if self.scope == "block":
            for layer, (scores, _) in zip(self.layers, units):
                keep = torch.stack([group_keep(row, sparsity) for row in scores])
                self._apply(layer, keep)
            return
        normalised = []
        for scores, sizes in units:
            rms = scores.pow(2).sum().div(sizes.sum()).sqrt().clamp_min(1e-30)
            normalised.append(scores / sizes.sqrt() / rms)
        flat = torch.cat([s.flatten() for s in normalised])
        pruned = _lowest(flat, prune_count(flat.numel(), sparsity))
        offset = 0
        for layer, scores in zip(self.layers, normalised):
            count = scores.numel()
            self._apply(layer, ~pruned[offset:offset + count].reshape(scores.shape))
            offset += count
