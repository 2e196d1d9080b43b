"""Stuck-at cell faults in the macros' SRAM arrays: drawn, injected through the weight image,
and computed with by the golden model (docs/faults.md).

A *fault map* says which physical cells of which macro are stuck, and at which value: cell
(unit u, row r, column c) of macro unit u's R x C array.  It is drawn from (rate, seed,
configuration) by `FaultMap.draw`.  Faults belong to physical cells, not to logical weights:
when the mapper gives the same block set to two units (bands of output rows), the two
copies of a weight sit in two macros and may be faulty in one and not in the other.

Faults reach the accelerator through the weight image.  The loader copies ``count`` rows of
its core's weight SRAM to macro rows ``dst ..`` of a unit (`mars.sw.mapper.Load`);
`inject_faults` gives every load its own copy of the rows in the weight SRAM with the
unit's stuck cells at rows ``dst ..`` applied (`FaultMap.apply`, the one function that turns
stored words into faulty words) and points the loader program at it.  A stuck cell reads
its stuck value whatever is written to it, and every macro row is written by a load before
a step reads it, so writing the stuck value is the same as the stuck cell.

The golden model reads the same faulty image: `macro_weights` follows the loader program
phase by phase (which weight-SRAM rows each macro row holds), decodes the rows a walk
computes with into that walk's integer weights (`walk_weights`, through
`mars.sw.sparse.words_to_rows`), and `run_mapping` computes every layer band by band with
the weights of the unit that computes it.  Rows a step does not use (zero fill of a short
block, K-rows past K, channels past Cout) are fed zero activations by the decoder, so a
stuck cell there changes nothing, in the RTL or here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from mars.config import MarsConfig
from mars.contract.host import HostMemory
from mars.contract.program import Op, load_layout
from mars.errors import MarsError
from mars.sw.golden.accel import accelerator_product
from mars.sw.golden.network import IntegerNetwork, LayerNode, run_network
from mars.sw.mapper import Mapping, MappingError, Walk, loader_segments, map_network
from mars.sw.sparse import words_to_rows

__all__ = ["FaultError", "FaultModel", "FaultMap", "inject_faults", "macro_weights",
           "walk_weights", "run_mapping", "fault_sweep"]


class FaultError(MarsError, ValueError):
    """A fault rate, seed or map that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class FaultModel:
    """Stuck-at faults: each cell of every macro is stuck with probability ``rate``,
    independently; a stuck cell is stuck at 1 with probability ``stuck_at_one`` (else 0).

    Raises
    ------
    FaultError
        For a rate or ``stuck_at_one`` outside [0, 1] (or not a number), a negative seed.
    """

    rate: float
    seed: int = 0
    stuck_at_one: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rate", "stuck_at_one"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                option = "--faults" if name == "rate" else "stuck_at_one"
                raise FaultError(f"fault {name} ({option}) must lie in [0, 1], not {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise FaultError(f"fault seed (--fault-seed) must be an integer >= 0, "
                             f"not {self.seed}")


@dataclasses.dataclass(frozen=True, eq=False)
class FaultMap:
    """Stuck cells of every macro unit: ``stuck`` and ``value`` are bool arrays of shape
    (macros, R, C); cell (u, r, c) is bit c of macro row r of unit u (column c holds bit
    ``c % Wb`` of channel ``c // Wb``, docs/macro.md).  ``value`` is the stuck value where
    ``stuck`` is set (ignored elsewhere)."""

    config: MarsConfig
    stuck: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.config.macros, self.config.rows, self.config.cols)
        for name in ("stuck", "value"):
            array = getattr(self, name)
            if array.shape != shape or array.dtype != bool:
                raise FaultError(f"fault map {name} must be a bool array of shape {shape} "
                                 f"(macros, rows, cols), got {array.dtype} {array.shape}")

    @classmethod
    def draw(cls, model: FaultModel, config: MarsConfig) -> FaultMap:
        """The fault map of `model` on `config`'s macros.

        Unit u's cells come from their own generator, seeded with ``(seed, u)``: one
        uniform draw per cell decides whether it is stuck (``< rate``), a second its value
        (``< stuck_at_one``).  So a map depends on the seed and the macro geometry only, and
        with one seed the stuck cells at a lower rate are a subset of those at a higher
        rate (a sweep over rates is nested).
        """
        shape = (config.rows, config.cols)
        stuck, value = [], []
        for unit in range(config.macros):
            rng = np.random.default_rng([int(model.seed), unit])
            stuck.append(rng.random(shape) < model.rate)
            value.append(rng.random(shape) < model.stuck_at_one)
        return cls(config, np.array(stuck), np.array(value))

    @property
    def count(self) -> int:
        """Stuck cells over all macros."""
        return int(self.stuck.sum())

    def _row_masks(self, unit: int, rows: range) -> tuple[list[int], list[int]]:
        """Per row: the C-bit mask of stuck cells and the mask of cells stuck at 1."""
        stuck = self.stuck[unit, rows.start:rows.stop]
        ones = stuck & self.value[unit, rows.start:rows.stop]

        def to_ints(bits: np.ndarray) -> list[int]:
            packed = np.packbits(bits, axis=1, bitorder="little")
            return [int.from_bytes(row.tobytes(), "little") for row in packed]

        return to_ints(stuck), to_ints(ones)

    def apply(self, unit: int, first_row: int, words: Sequence[int]) -> list[int]:
        """The words macro rows ``first_row ..`` of `unit` read after `words` are written
        to them: stuck cells replaced by their stuck value, the other bits unchanged.

        This is the one function that makes faulty words; the simulators load its output
        and the golden model decodes it.

        Raises
        ------
        FaultError
            If the rows leave the macro (``first_row + len(words) > R``) or the unit does
            not exist.
        """
        if not 0 <= unit < self.config.macros:
            raise FaultError(f"unit {unit} out of range [0, {self.config.macros})")
        rows = range(first_row, first_row + len(words))
        if first_row < 0 or rows.stop > self.config.rows:
            raise FaultError(f"macro rows {rows.start}..{rows.stop - 1} leave the macro "
                             f"({self.config.rows} rows)")
        stuck, ones = self._row_masks(unit, rows)
        return [(int(w) & ~mask) | one for w, mask, one in zip(words, stuck, ones)]


# -- the faulty image ------------------------------------------------------------------------

def _loader_programs(config: MarsConfig, phases) -> dict[int, list[int]]:
    """Loader program words per core for `phases` (the loads of each of the mapper's
    `loader_segments`, then a SYNC), the format `mars.sw.mapper` emits (checked against
    the mapper's own words)."""
    layout = load_layout(config)
    programs: dict[int, list[int]] = {core: [] for core in range(config.cores)}
    for segment in loader_segments(config, phases):
        for ld in segment:
            core, j = divmod(ld.unit, config.macros_per_core)
            programs[core].append(layout.const({
                "op": int(Op.LOAD), "unit": j, "src": ld.src, "dst": ld.dst,
                "count": ld.count}).as_bits())
        for core in range(config.cores):
            programs[core].append(layout.const({"op": int(Op.SYNC)}).as_bits())
    return programs


def inject_faults(mapping: Mapping, faults: FaultMap) -> Mapping:
    """`mapping` with its weight images and loader programs changed so that every macro
    holds the words `faults` implies.

    Each load gets its own rows in its core's weight SRAM (one copy per (unit, source rows,
    macro rows): the same block set loaded into two units becomes two copies, each with its
    own macro's stuck cells) and the loader program points at them.  Programs, tables and
    cycle counts are otherwise unchanged.

    Raises
    ------
    FaultError
        If the copies do not fit a core's weight SRAM (``weight_sram_rows``), or `faults`
        was drawn for another macro geometry.
    """
    cfg = mapping.config
    if faults.stuck.shape != (cfg.macros, cfg.rows, cfg.cols):
        raise FaultError(f"the fault map is for {faults.stuck.shape} (macros, rows, cols), "
                         f"the configuration has {(cfg.macros, cfg.rows, cfg.cols)}")
    rebuilt = _loader_programs(cfg, mapping.phases)
    if any(rebuilt[core] != mapping.memories[(HostMemory.LOADER, core, 0)]
           for core in range(cfg.cores)):
        raise RuntimeError("the mapper's loader programs are not the ones mars.sw.faults "
                           "rebuilds: update _loader_programs")
    sources = {core: mapping.memories[(HostMemory.WEIGHTS, core, 0)]
               for core in range(cfg.cores)}
    images: dict[int, list[int]] = {core: [] for core in range(cfg.cores)}
    copies: dict[tuple[int, int, int, int], int] = {}
    phases = []
    for phase in mapping.phases:
        loads = []
        for ld in phase.loads:
            core = ld.unit // cfg.macros_per_core
            key = (ld.unit, ld.src, ld.dst, ld.count)
            if key not in copies:
                copies[key] = len(images[core])
                words = sources[core][ld.src:ld.src + ld.count]
                images[core].extend(faults.apply(ld.unit, ld.dst, words))
            loads.append(dataclasses.replace(ld, src=copies[key]))
        phases.append(dataclasses.replace(phase, loads=loads))
    for core, words in images.items():
        if len(words) > cfg.weight_sram_rows:
            raise FaultError(
                f"with faults every macro loads its own copy of its rows: core {core} needs "
                f"{len(words)} weight-SRAM rows, the configuration has {cfg.weight_sram_rows} "
                f"(raise weight_sram_rows in the configuration)")
    memories = dict(mapping.memories)
    for core, program in _loader_programs(cfg, phases).items():
        memories[(HostMemory.WEIGHTS, core, 0)] = images[core]
        memories[(HostMemory.LOADER, core, 0)] = program
    return dataclasses.replace(mapping, phases=phases, memories=memories)


# -- the golden model on an image ------------------------------------------------------------

def macro_weights(mapping: Mapping) -> list[list[tuple[Walk, list[int]]]]:
    """For every phase, its walks with the macro row words each computes with.

    Follows the loader programs over the phases (a macro row keeps what the last load
    wrote to it, across phases) and reads, for a walk of block set b placed at row slot
    ``slot_base``, macro rows ``slot_base*G .. (slot_base + S_b)*G - 1`` of its unit (S_b:
    the set's stored row slots, `PackedLayer.set_steps`).

    Raises
    ------
    MappingError
        If a walk reads a macro row that no load has written.
    """
    cfg = mapping.config
    G = cfg.rows_per_step
    sram = {core: mapping.memories[(HostMemory.WEIGHTS, core, 0)] for core in range(cfg.cores)}
    macro: list[list[int | None]] = [[None] * cfg.rows for _ in range(cfg.macros)]
    plans = {plan.index: plan for plan in mapping.layers}
    out = []
    for phase in mapping.phases:
        for ld in phase.loads:
            core = ld.unit // cfg.macros_per_core
            macro[ld.unit][ld.dst:ld.dst + ld.count] = sram[core][ld.src:ld.src + ld.count]
        walks = []
        for walk in phase.walks:
            plan = plans[phase.layer]
            first = walk.word["desc"]["slot_base"] * G
            # the walk's part of the set's kept groups (all of them unless K-split)
            steps = min(walk.steps, plan.packed.set_steps[walk.block_set] - walk.first)
            words = macro[walk.unit][first:first + max(0, steps) * G]
            if any(word is None for word in words):
                raise MappingError(f"layer {plan.name!r}: unit {walk.unit} computes block set "
                                   f"{walk.block_set} with macro rows no load has written")
            walks.append((walk, words))
        out.append(walks)
    return out


def walk_weights(words: Sequence[int], packed, block_set: int, first: int = 0) -> np.ndarray:
    """The integer weights (n_valid, K) a walk of `block_set` computes with, from the macro
    row words it reads (S_b*G words, `macro_weights`) and the layer's index codes.

    Row ``s*G + g`` holds, in word-line domain d, lane g of the s-th kept K-group of block
    ``b*D + d`` (docs/sparse-format.md); only rows of kept groups and K-rows below K are
    computed with (the rest are fed zero activations), so the rest read as 0 here.
    Pruned groups are 0.  A walk of a K-split block set (`first`: its first slot of the
    set) holds only its part of the kept groups; the others read as 0.
    """
    cfg, geometry = packed.config, packed.geometry
    D, G, cpg, N = cfg.wordline_domains, cfg.rows_per_step, cfg.channels_per_group, \
        cfg.channels_per_macro
    k = geometry.k
    n_valid = min(N, geometry.cout - block_set * N)
    weight = np.zeros((N, -(-k // G) * G), dtype=np.int64)
    if len(words):
        rows = words_to_rows(words, cfg)                    # (S_b*G, N)
        for d in range(D):
            cb = block_set * D + d
            if cb >= packed.n_blocks:
                continue
            for s, kg in enumerate(packed.index_codes[cb][first:first + len(words) // G]):
                weight[d * cpg:(d + 1) * cpg, kg * G:(kg + 1) * G] = \
                    rows[s * G:(s + 1) * G, d * cpg:(d + 1) * cpg].T
    return weight[:n_valid, :k]


def _banded_product(mapping: Mapping):
    """A `run_network` product that computes each layer band by band, block set by block
    set, with the weights of the unit that computes it (`walk_weights`)."""
    cfg = mapping.config
    base = accelerator_product(cfg)
    N = cfg.channels_per_macro
    parts: dict[str, list[tuple[int, int, slice, np.ndarray]]] = {}
    plans = {plan.index: plan for plan in mapping.layers}
    for phase, walks in zip(mapping.phases, macro_weights(mapping)):
        plan = plans[phase.layer]
        for walk, words in walks:
            weight = walk_weights(words, plan.packed, walk.block_set, walk.first)
            channels = slice(walk.block_set * N, walk.block_set * N + len(weight))
            parts.setdefault(plan.name, []).append((walk.row0, walk.rows, channels, weight))

    def product(patches: np.ndarray, weight: np.ndarray, layer: LayerNode,
                config: MarsConfig) -> np.ndarray:
        out = np.zeros(patches.shape[:-1] + (weight.shape[0],), dtype=np.int64)
        covered = np.zeros(out.shape[1:], dtype=bool)
        for row0, rows, channels, w in parts[layer.name]:
            sub = layer if layer.scales is None else dataclasses.replace(
                layer, scales=layer.scales[channels])
            band = slice(row0, row0 + rows)
            # the parts of a K-split block set add up (their partial sums meet in the
            # result memory); an unsplit one is computed once
            out[:, band, :, channels] += base(patches[:, band], w, sub, config)
            covered[band, :, channels] = True
        if not covered.all():
            raise MappingError(f"layer {layer.name!r}: the walks do not cover every output")
        return out

    return product


def run_mapping(mapping: Mapping, inputs: np.ndarray, **kwargs) -> np.ndarray:
    """Golden logits (B, classes) of the accelerator running `mapping` on `inputs`
    (B, H, W, C): the weights come from the mapping's weight images through its loader
    programs (`macro_weights`), so a faulty image (`inject_faults`) gives the faulty
    network's logits.  For an unchanged mapping this equals
    `mars.sw.golden.accel.run_accelerator`.  Other arguments go to `run_network`."""
    return run_network(mapping.network, inputs, product=_banded_product(mapping), **kwargs)


# -- sweeps ----------------------------------------------------------------------------------

def fault_sweep(network: IntegerNetwork, inputs: np.ndarray, labels: np.ndarray,
                rates: Iterable[float], seeds: Iterable[int], *,
                stuck_at_one: float = 0.5) -> list[dict]:
    """Accuracy of `network` on the golden model against the fault rate.

    Returns one dict per (rate, seed): ``rate``, ``seed``, ``stuck_cells`` (over the macros),
    ``accuracy`` (fraction of `inputs` whose prediction is its label) and ``flipped``
    (fraction whose prediction differs from the fault-free one).  A zero rate is the
    fault-free network (the seed does not matter).
    """
    mapping = map_network(network)
    clean = run_mapping(mapping, inputs).argmax(axis=1)
    labels = np.asarray(labels)
    results = []
    for rate in rates:
        for seed in seeds:
            model = FaultModel(float(rate), int(seed), stuck_at_one)
            faults = FaultMap.draw(model, network.config)
            predicted = run_mapping(inject_faults(mapping, faults), inputs).argmax(axis=1)
            results.append({"rate": float(rate), "seed": int(seed),
                            "stuck_cells": faults.count,
                            "accuracy": float((predicted == labels).mean()),
                            "flipped": float((predicted != clean).mean())})
    return results

