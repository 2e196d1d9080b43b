"""Map an integer network onto the accelerator: programs and memory contents.

Given an `IntegerNetwork` (a model package, docs/model-package.md) and the configuration,
`map_network` decides where everything goes (docs/architecture.md, "How work is split"):

* Conv and linear layers run on the macro units; a max pool right after a layer is fused
  into that layer's writer (non-overlapping windows only); a flatten is free (maps are HWC
  in memory, which is the order the linear layer reads); a residual add right after the
  layer that computes one of its inputs as raw accumulators is fused into that layer's
  writer (``residual_adds`` configurations; docs/architecture.md, "Residual adds").
  Anything else is refused with a message naming the node.
* Each map sits at element 0 of an activation region (``act_regions``, two by default),
  given by liveness (`_places`): a chain alternates between regions 0 and 1 (layer i
  reads i % 2, writes (i + 1) % 2), a residual block's shortcut stays in its region until
  its add.  The image goes into region 0; the last layer's raw accumulators, and a conv
  shortcut's until its add, go to the result memory.
  Maps are dense HWC; the memories hold words of G activations and L accumulators
  (docs/banking.md): `Mapping.input_words` packs an image, the results are read back one
  element an address.
* Work split: a layer's block sets (D output blocks, one macro's worth of channels) are
  the units of output-channel parallelism; when a layer has fewer block sets than macro
  units, bands of output rows give the remaining units work (pixel parallelism).  Work
  items go to the least-loaded unit (longest first).
* A *phase* is one LOAD (the loaders copy the macro rows the phase needs from the core
  weight SRAMs) and one WALK.  A layer whose block sets do not all fit in the macros at
  once takes several phases, reloading in between.  A block set keeping more groups than
  a macro's row slots is split into parts (K-splitting, ``residual_adds`` configurations):
  walks on one unit whose partial sums meet in the result memory.
* With ``hide_loads`` the loaders copy a phase's rows during the previous phase's walks
  where those walks leave their row slots alone (`Load.hidden`, `loader_segments`): the
  rounds are moved to free slots and, where it pays, made half as big (docs/architecture.md,
  "Hidden reloads").

The mapping runs in four named stages, each a function from dataclasses to dataclasses:

1. **plan** (`_plan_layer`): check a (layer, fused pool) pair against the buffers, pack its
   weights and share its work items (block set, row band) out to the units (`LayerWork`);
2. **schedule** (`_schedule`): decide whether every weight stays resident and place each
   unit's block sets in row slots, round by round (`LayerSchedule` of `Placement`s);
3. **allocate** (`_Allocator`): give every block set its weight-SRAM rows, index entries,
   k-table words and parameter word, and build the phases' `Load`s and `Walk`s;
4. **emit** (`_emit`): check every memory's depth and encode the programs and memory
   images (`Mapping.memories`).

The result, a `Mapping`, holds every memory's words, the per-phase schedule the cycle model
uses, and the reason for every refusal is a `MappingError`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.decoder import DecoderFormat, DecoderLimitError, descriptor
from mars.contract.host import HostMemory
from mars.contract.program import (
    Op,
    UnitFormat,
    instruction_layout,
    load_layout,
    param_layout,
    split_word,
)
from mars.errors import MarsError
from mars.sw.golden.network import AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.layer import LayerKind
from mars.sw.sparse import PackedLayer, pack_layer

__all__ = ["MappingError", "Walk", "Load", "Phase", "LayerPlan", "Mapping", "map_network",
           "loader_segments"]

class MappingError(MarsError, ValueError):
    """The network does not fit this accelerator; the message names the node and limit."""


@dataclasses.dataclass(frozen=True)
class Walk:
    """One block set of one layer over a band of output rows, on one macro unit.

    ``steps`` is the number of payloads per output pixel (the set's most kept groups, at
    least 1), ``n_valid`` the channels of the set that exist, ``word`` the program word
    (fields of `mars.contract.program.instruction_layout`).
    """

    unit: int
    block_set: int
    row0: int
    rows: int
    out_w: int
    steps: int
    n_valid: int
    word: dict
    first: int = 0          # the block set's first step this walk computes (K-splitting)

    @property
    def pixels(self) -> int:
        """Output pixels the walk computes (before pooling): rows x out_w."""
        return self.rows * self.out_w


@dataclasses.dataclass(frozen=True)
class Load:
    """``count`` macro rows from weight-SRAM row ``src`` of the unit's core to macro row
    ``dst`` of the unit.  ``hidden``: the load runs while the previous phase's walks
    compute (``hide_loads``; its rows are in row slots those walks do not read), not
    before its own phase's walks."""

    unit: int
    src: int
    dst: int
    count: int
    hidden: bool = False


@dataclasses.dataclass
class Phase:
    """One LOAD and one WALK: the loads every core loader runs, then every unit's walks.
    ``loads`` are every row the walks need loaded; those marked `Load.hidden` run during
    the previous phase's WALK (``hide_loads``), the others in this phase's LOAD part."""

    layer: int
    loads: list[Load]
    walks: list[Walk]


@dataclasses.dataclass
class LayerPlan:
    """What the mapper decided for one conv/linear layer: its packed weights, its output
    shape after the fused pool and the indices of its phases in `Mapping.phases`."""

    name: str
    index: int
    node: LayerNode
    pool: PoolNode | None
    packed: PackedLayer
    out_shape: tuple[int, int, int]
    phases: list[int]
    residual: Residual | None = None    # the residual add fused into the writer
    src: Place | None = None            # where the input map is
    out: Place | None = None            # where the outputs go
    shortcut: Place | None = None       # where the add's shortcut is


@dataclasses.dataclass
class Mapping:
    """A network mapped onto a configuration.

    ``memories`` maps (`HostMemory`, unit or core, domain) to its words: ``PROGRAM``,
    ``PARAMS``, ``INDEX`` and ``KTABLE`` per macro unit (index and k-table per word-line
    domain), ``WEIGHTS`` and ``LOADER`` per core.  ``resident``: all weights fit in the
    macros at once; they are loaded in the first phase and a later inference may skip
    every load (the top's ``skip_loads``).
    """

    config: MarsConfig
    network: IntegerNetwork
    layers: list[LayerPlan]
    phases: list[Phase]
    memories: dict[tuple[HostMemory, int, int], list]
    output_shape: tuple[int, int, int]
    resident: bool = False

    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def n_outputs(self) -> int:
        """Raw accumulators of one inference: result-memory elements 0 .. n_outputs - 1
        (HWC), which the host reads one element an address (docs/banking.md)."""
        h, w, c = self.output_shape
        return h * w * c

    def input_words(self, image) -> list[int]:
        """The activation words the host writes from word 0 (half 0) for one input map
        (HWC, values in [0, 2^act_bits - 1]): G activations a word
        (`mars.contract.banking.Banking.input_words`; the host driver's `write_input`).

        Raises
        ------
        ValueError
            If the map exceeds a half or holds values outside the activation range.
        """
        return Banking(self.config).input_words(image)


# -- stage 0: the steps (layers with what is fused into them) and their memory ----------------

@dataclasses.dataclass(frozen=True)
class Residual:
    """A residual add fused into the writer of the layer computing its input ``index``
    (that layer's raw accumulators); the other input, the *shortcut*, is read from the
    activation region or the result memory where it was stored (docs/architecture.md,
    "Residual adds")."""

    add: AddNode
    index: int                  # the add input the layer computes (0 or 1)
    shortcut: str               # the value (node name) of the other input


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a value lives: activation region ``region``, or the result memory from
    element 0 (``result``: raw accumulators, a conv shortcut's or the logits)."""

    region: int = 0
    result: bool = False


def _chain(network: IntegerNetwork) -> list[tuple[LayerNode, PoolNode | None,
                                                  Residual | None, str]]:
    """The network as steps (layer, fused pool, fused residual add, input value), in
    execution order, checking that the hardware can run it.  A value is named by the node
    that produces it; a flatten is an alias of its input."""
    alias = {"input": "input"}
    kinds = {"input": "act"}                  # value -> "act" or "acc"
    steps = []
    nodes = list(network.nodes)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        _check_node(node, alias)
        if isinstance(node, FlattenNode):
            alias[node.name] = alias[node.inputs[0]]
            i += 1
            continue
        src = alias[node.inputs[0]]
        if kinds[src] != "act":
            raise MappingError(f"node {node.name!r}: its input {node.inputs[0]!r} is raw "
                               f"accumulators; only a residual add may read them")
        residual, i = _fused_add(network, nodes, i, alias, kinds)
        pool = None
        last_name = residual.add.name if residual else node.name
        if i + 1 < len(nodes) and isinstance(nodes[i + 1], PoolNode) \
                and tuple(nodes[i + 1].inputs) == (last_name,):
            pool = nodes[i + 1]
            if node.output != "act" and residual is None:
                raise MappingError(f"node {pool.name!r}: pooling raw accumulators")
            _check_fused_pool(node, pool, network.config)
            i += 1
        out = (pool or (residual.add if residual else node)).name
        alias[out] = out
        kinds[out] = "act" if residual or node.output == "act" else "acc"
        steps.append((node, pool, residual, src))
        i += 1
    if alias.get(network.output) != (steps[-1][1] or steps[-1][0]).name if steps else True:
        raise MappingError(f"the network's output {network.output!r} is not the last "
                           f"layer's output")
    last = steps[-1]
    if last[0].output != "acc" or last[2] is not None or last[1] is not None:
        raise MappingError("the last layer must output raw accumulators (logits)")
    return steps


def _check_node(node, alias: dict) -> None:
    """`node` reads known values and is an operation the accelerator runs."""
    if isinstance(node, AddNode):
        raise MappingError(f"node {node.name!r}: a residual add must directly follow the "
                           f"layer that computes one of its inputs as raw accumulators "
                           f"(output \"acc\"), into whose writer it is fused")
    if isinstance(node, PoolNode):
        raise MappingError(f"node {node.name!r}: a max pool must follow a conv layer "
                           f"with requantised outputs (or a residual add) to be fused "
                           f"into it")
    if not isinstance(node, (LayerNode, FlattenNode)):
        raise MappingError(f"node {node.name!r}: unsupported operation {node.op!r}")
    if len(node.inputs) != 1 or node.inputs[0] not in alias:
        raise MappingError(f"node {node.name!r}: reads {list(node.inputs)}, which no "
                           f"earlier step computes")


def _fused_add(network: IntegerNetwork, nodes: list, i: int, alias: dict,
               kinds: dict) -> tuple[Residual | None, int]:
    """The residual add right after layer ``nodes[i]`` that reads its accumulators, if
    any, and the index of the last node consumed."""
    node = nodes[i]
    if i + 1 >= len(nodes) or not isinstance(nodes[i + 1], AddNode) \
            or node.name not in nodes[i + 1].inputs:
        return None, i
    add = nodes[i + 1]
    if not network.config.residual_adds:
        raise MappingError(f"node {add.name!r}: residual adds need a configuration with "
                           f"residual_adds set (docs/architecture.md, \"Residual adds\")")
    if node.output != "acc":
        raise MappingError(f"node {add.name!r}: the layer {node.name!r} fused with the "
                           f"add must output raw accumulators")
    index = list(add.inputs).index(node.name)
    other = add.inputs[1 - index]
    if len(add.inputs) != 2 or other == node.name or other not in alias:
        raise MappingError(f"node {add.name!r}: its shortcut {other!r} is not computed "
                           f"by an earlier step")
    return Residual(add, index, alias[other]), i + 1


def _check_fused_pool(node: LayerNode, pool: PoolNode, cfg: MarsConfig) -> None:
    most = (1 << UnitFormat(cfg).pool_bits) - 1
    if pool.stride != pool.kernel or pool.pad != 0 or not 1 <= pool.kernel <= most:
        raise MappingError(
            f"node {pool.name!r}: only non-overlapping pools (kernel = stride <= {most}, "
            f"no padding) are fused; got kernel {pool.kernel}, stride {pool.stride}, "
            f"pad {pool.pad}")


def _places(cfg: MarsConfig, steps: list) -> tuple[list[Place], list[Place | None],
                                                  list[bool]]:
    """Where each step writes its output and finds its shortcut (docs/banking.md,
    "Regions").

    Activation maps get regions by liveness: a map stays in its region until its last
    reader (a layer's input or an add's shortcut) has run; a step writes the lowest
    region that holds no map still to be read during or after it, except that an
    unpooled residual add may write over its own shortcut when no later step reads it
    (each element is read by the lane that then writes it).  The input is in region 0.
    Raw accumulators of a conv shortcut go to the result memory from element 0, one
    map at a time; the logits too, at the end.  Also returns, per step, whether the
    result memory holds an earlier step's map still to be read (a split layer's partial
    sums need it).
    """
    outs = [(pool or (res.add if res else node)).name for node, pool, res, _ in steps]
    last_use: dict[str, int] = {}
    for k, (_, _, res, src) in enumerate(steps):
        last_use[src] = k
        if res:
            last_use[res.shortcut] = k
    region = {"input": 0}
    result_holder = None
    out_places, sc_places, result_busy = [], [], []
    for k, (node, pool, res, src) in enumerate(steps):
        result_busy.append(result_holder is not None
                           and last_use.get(result_holder, -1) >= k)
        if res:
            sc = res.shortcut
            sc_places.append(Place(result=True) if sc == result_holder
                             else Place(region[sc]))
        else:
            sc_places.append(None)
        if k == len(steps) - 1 or (node.output == "acc" and res is None):
            if result_holder is not None and last_use.get(result_holder, -1) >= k \
                    and k < len(steps) - 1:
                raise MappingError(f"layer {node.name!r}: its raw accumulators need the "
                                   f"result memory, which still holds those of "
                                   f"{result_holder!r}")
            result_holder = outs[k]
            out_places.append(Place(result=True))
            continue
        busy = {region[v] for v in region if last_use.get(v, -1) >= k}
        if res and pool is None and not sc_places[-1].result and res.shortcut != src \
                and last_use[res.shortcut] == k:
            busy.discard(region[res.shortcut])       # in place over its own shortcut
        free = [r for r in range(cfg.act_regions) if r not in busy]
        if not free:
            raise MappingError(f"layer {node.name!r}: its output needs a free activation "
                               f"region; {len(busy)} maps are still to be read: set "
                               f"act_regions to at least {len(busy) + 1} (it is "
                               f"{cfg.act_regions})")
        region[outs[k]] = free[0]
        out_places.append(Place(free[0]))
    return out_places, sc_places, result_busy


def _producer(chain: list, value: str) -> int:
    """The step that computes `value`."""
    for k, (node, pool, res, _) in enumerate(chain):
        if (pool or (res.add if res else node)).name == value:
            return k
    raise KeyError(value)


def _shapes(network: IntegerNetwork) -> dict[str, tuple[int, int, int]]:
    """(H, W, C) of every node's output (flattens: their vector)."""
    shapes = {"input": tuple(network.input_shape)}
    for node in network.nodes:
        if isinstance(node, LayerNode):
            g = node.geometry
            shapes[node.name] = (g.out_h, g.out_w, g.cout)
        elif isinstance(node, PoolNode):
            shapes[node.name] = node.out_shape
        elif isinstance(node, FlattenNode):
            h, w, c = node.in_shape
            shapes[node.name] = (1, 1, h * w * c)
        elif isinstance(node, AddNode):
            shapes[node.name] = shapes.get(node.inputs[0])
    return shapes


# -- stage 1: plan (pack each layer, share its work out) -------------------------------------

@dataclasses.dataclass(frozen=True)
class Band:
    """Output rows ``row0 .. row0 + rows - 1`` of a layer (before pooling)."""

    row0: int
    rows: int


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One block set of a layer over one band of output rows; ``part`` numbers the part
    of the block set's kept groups when it is split over several walks (K-splitting)."""

    block_set: int
    band: Band
    part: int = 0


@dataclasses.dataclass(frozen=True)
class LayerWork:
    """The plan of one layer: packed weights, output shape and each unit's work items.

    ``steps[b]`` is block set b's payloads per pixel (its most kept groups, at least 1);
    ``owner[u]`` lists the work items of unit u in the order they were assigned;
    ``row_slots`` is the most row slots a round of the layer fills on a unit (R/G, or half
    of it with ``hide_loads`` where smaller rounds hide the reloads; a block set that
    keeps more groups is split into parts of at most that many).
    """

    index: int
    node: LayerNode
    pool: PoolNode | None
    packed: PackedLayer
    last: bool
    out_h: int          # after the fused pool
    out_w: int
    steps: tuple[int, ...]
    owner: tuple[tuple[WorkItem, ...], ...]
    residual: Residual | None = None
    src: Place = Place()            # the input map's region
    out: Place = Place()            # where the outputs go
    shortcut: Place | None = None   # where the fused add's shortcut is

    @property
    def raw(self) -> bool:
        """The outputs are raw accumulators (the logits, or a conv shortcut's)."""
        return self.out.result

    @property
    def pool_k(self) -> int:
        return self.pool.kernel if self.pool else 1

    def sets_of(self, unit: int) -> set[int]:
        """The block sets unit `unit` computes (for some band)."""
        return {item.block_set for item in self.owner[unit]}

    def parts(self, b: int, cfg: MarsConfig) -> list[tuple[int, int]]:
        """(first step, steps) of each part of block set `b`: one part when its kept
        groups fit a macro's row slots, else balanced parts of at most R/G steps each
        (K-splitting, docs/architecture.md); ``row_slots`` is the layer's round size
        (R/G, or half of it when the mapper splits rounds to hide reloads)."""
        return _parts(self.steps[b], self.row_slots or cfg.row_slots)

    @property
    def split(self) -> bool:
        return any(len(_parts(s, self.row_slots)) > 1 for s in self.steps)

    row_slots: int = 0


def _parts(steps: int, row_slots: int) -> list[tuple[int, int]]:
    n = -(-steps // max(1, row_slots)) if row_slots else 1
    edges = [round(i * steps / n) for i in range(n + 1)]
    return [(a, b - a) for a, b in zip(edges, edges[1:])]


def _bands(out_h: int, pool_k: int, parts: int) -> list[Band]:
    """Split output rows into at most `parts` bands, each starting on a pool window."""
    windows = -(-out_h // pool_k)
    parts = max(1, min(parts, windows))
    edges = [round(i * windows / parts) * pool_k for i in range(parts + 1)]
    edges[-1] = out_h
    return [Band(a, b - a) for a, b in zip(edges, edges[1:]) if b > a]


def _check_buffers(cfg: MarsConfig, node: LayerNode, pool_k: int, raw: bool) -> None:
    """The layer's input and (pooled) output fit their buffers and the decoder."""
    g = node.geometry
    if g.in_size > cfg.act_buffer_words:
        raise MappingError(f"layer {node.name!r}: its input ({g.in_h}x{g.in_w}x{g.cin}) "
                           f"exceeds an activation buffer ({cfg.act_buffer_words} words, "
                           f"act_buffer_words)")
    try:
        DecoderFormat(cfg).check_layer(g)
    except DecoderLimitError as error:
        raise MappingError(f"layer {node.name!r}: {error} (raise act_buffer_words in the "
                           f"configuration)") from None
    out_h, out_w = g.out_h // pool_k, g.out_w // pool_k
    out_size = out_h * out_w * g.cout
    if raw and out_size > cfg.result_words:
        raise MappingError(f"layer {node.name!r}: {out_size} outputs exceed the result "
                           f"memory ({cfg.result_words} words, result_words)")
    if not raw and out_size > cfg.act_buffer_words:
        raise MappingError(f"layer {node.name!r}: its output ({out_h}x{out_w}x{g.cout}) "
                           f"exceeds an activation buffer ({cfg.act_buffer_words} words, "
                           f"act_buffer_words)")


def _assign(items: list[WorkItem], steps: tuple[int, ...], out_w: int,
            units: int) -> tuple[tuple[WorkItem, ...], ...]:
    """Longest first (steps x pixels), each to the least-loaded unit (lowest on ties)."""
    load = [0] * units
    owner: list[list[WorkItem]] = [[] for _ in range(units)]
    for item in sorted(items, key=lambda it: -(steps[it.block_set] * it.band.rows)):
        u = min(range(units), key=lambda x: (load[x], x))
        owner[u].append(item)
        load[u] += steps[item.block_set] * item.band.rows * out_w
    return tuple(tuple(work) for work in owner)


def _plan_layer(cfg: MarsConfig, index: int, node: LayerNode, pool: PoolNode | None,
                last: bool, residual: Residual | None = None, src: Place = Place(),
                out: Place = Place(), shortcut: Place | None = None,
                shapes: dict | None = None, *, result_free: bool = True,
                cap: int | None = None) -> LayerWork:
    """Stage 1 for one layer: check it, pack it, share its work items out.

    ``cap``: the row slots a round may fill (default: R/G, or with ``hide_loads`` half of
    them when `_estimate` says the smaller rounds, whose reloads hide behind the walks,
    are faster); ``result_free``: the result memory holds nothing still to be read (a
    K-split layer's partial sums need it)."""
    g = node.geometry
    pool_k = pool.kernel if pool else 1
    _check_buffers(cfg, node, pool_k, out.result)
    if residual is not None:
        _check_residual(cfg, node, pool, residual, (shapes or {}).get(residual.shortcut))
    try:
        packed = pack_layer(node.weight, g, cfg)
    except ValueError as error:             # weights the sparse format cannot hold
        raise MappingError(f"layer {node.name!r}: {error}") from None
    steps = tuple(max(1, s) for s in packed.set_steps)
    for b, s in enumerate(steps):
        if s > cfg.row_slots and cfg.scaled_readout:
            # the accumulator floors the whole scaled sum once (hw/accumulator.py): the
            # parts' floors would not add up to it
            raise MappingError(
                f"layer {node.name!r}: block set {b} keeps {s} groups per output block, "
                f"a macro holds {cfg.row_slots} row slots (R/G); prune more or use more "
                f"rows (a {cfg.readout_mode.value} readout's scaled sums cannot be split "
                f"over several walks)")
        if s > cfg.row_slots and not cfg.residual_adds:
            raise MappingError(
                f"layer {node.name!r}: block set {b} keeps {s} groups per output block, "
                f"a macro holds {cfg.row_slots} row slots (R/G); prune more, use more "
                f"rows, or set residual_adds (its partial-sum path splits the groups "
                f"over several walks)")
    # Bands of output rows only when there are fewer block sets than units.
    n_sets, units = packed.n_sets, cfg.macros
    bands_per_set = max(1, units // n_sets) if n_sets < units else 1
    items = [WorkItem(b, band) for b in range(n_sets)
             for band in _bands(g.out_h, pool_k, bands_per_set)]
    owner = _assign(items, steps, g.out_w, units)

    def share(slots: int) -> LayerWork:
        # K-splitting: every part of a (block set, band) on the same unit, in order, so
        # that each part's partial sums are written before the next part reads them.
        parts = tuple(tuple(WorkItem(it.block_set, it.band, j)
                            for it in work
                            for j in range(len(_parts(steps[it.block_set], slots))))
                      for work in owner)
        return LayerWork(index, node, pool, packed, last, g.out_h // pool_k,
                         g.out_w // pool_k, steps, parts, residual, src, out, shortcut,
                         slots)

    work = share(cap or cfg.row_slots)
    if work.split:
        _check_split(cfg, work)
        if not result_free and not (work.shortcut and work.shortcut.result):
            raise MappingError(
                f"layer {node.name!r}: its partial sums (K-splitting) need the result "
                f"memory, which holds raw accumulators still to be read")
    half = cfg.row_slots // 2
    if cap is None and cfg.hide_loads and half >= 1:
        small = share(half)
        splits_more = small.split and not work.split
        if small.split and (cfg.scaled_readout or not cfg.residual_adds
                            or (splits_more and not result_free)):
            return work
        try:
            if small.split:
                _check_split(cfg, small)
        except MappingError:
            return work
        if _estimate(cfg, small, hidden=True) < _estimate(cfg, work, hidden=False):
            return small
    return work


#: Cycles a walk costs besides its steps (fetch, decoder, macro and writer pipelines), and
#: a phase besides its longest walk (controller and SYNCs): `_estimate`'s round figures.
_WALK_FIXED, _PHASE_FIXED = 30, 8


def _estimate(cfg: MarsConfig, work: LayerWork, *, hidden: bool) -> int:
    """Roughly the cycles of `work`'s phases when its rounds are packed as `_schedule`
    packs them (``work.row_slots`` a round): serial (each round loads, then walks) or
    ``hidden`` (each round's load runs with the previous round's walks, the first one
    alone).  A choice between two round sizes, not the cycle model: a walk costs its
    steps x pixels x Ab/b (or its writes' slot waits, whichever is longer) plus
    `_WALK_FIXED`, a round its longest unit's walks and its busiest core's rows."""
    G, cps, U = cfg.rows_per_step, cfg.cycles_per_step, cfg.macros
    groups = -(-cfg.channels_per_macro // UnitFormat(cfg).write_lanes)
    walk: dict[int, list[int]] = defaultdict(list)       # round -> per unit
    load: dict[int, list[int]] = defaultdict(list)       # round -> per core
    g = work.node.geometry
    for u, items in enumerate(work.owner):
        round_no, used, placed = 0, 0, set()
        for item in items:
            parts = work.parts(item.block_set, cfg)
            need = parts[item.part][1]
            key = (item.block_set, item.part)
            if key not in placed:
                if used + need > work.row_slots:
                    round_no, used, placed = round_no + 1, 0, set()
                placed.add(key)
                used += need
                rows = load[round_no] or [0] * cfg.cores
                rows[u // cfg.macros_per_core] += need * G + 3
                load[round_no] = rows
            slotted = len(parts) > 1 or work.raw
            per_pixel = max(need * cps, groups * U if slotted else 0)
            cycles = walk[round_no] or [0] * U
            cycles[u] += _WALK_FIXED + item.band.rows * g.out_w * per_pixel
            walk[round_no] = cycles
    rounds = range(max(walk, default=-1) + 1)
    w = [max(walk[r], default=0) + _PHASE_FIXED for r in rounds]
    ld = [max(load[r], default=0) for r in rounds] + [0]
    if not hidden:
        return sum(w) + sum(ld)
    return ld[0] + sum(max(w[r], ld[r + 1]) for r in rounds)


def _check_split(cfg: MarsConfig, work: LayerWork) -> None:
    """A split layer's partial sums fit the result memory (unpooled, from element 0),
    and its fused add's shortcut is not there too (one result read a lane group)."""
    g, name = work.node.geometry, work.node.name
    if g.out_h * g.out_w * g.cout > cfg.result_words:
        raise MappingError(
            f"layer {name!r}: its partial sums ({g.out_h}x{g.out_w}x{g.cout}, K-splitting: "
            f"a block set keeps more groups than the {cfg.row_slots} row slots) exceed the "
            f"result memory ({cfg.result_words} words, result_words)")
    lanes = UnitFormat(cfg).write_lanes
    if work.pool is not None and g.cout % lanes:
        raise MappingError(
            f"layer {name!r}: its groups are split over several walks (K-splitting) and "
            f"it is pooled: its channel count ({g.cout}) must be a multiple of the "
            f"writer's {lanes} lanes (the partial sums are read a lane group at a time)")
    if work.shortcut is not None and work.shortcut.result:
        raise MappingError(
            f"layer {name!r}: its groups are split over several walks (K-splitting) and "
            f"its add's shortcut is raw accumulators: both would need the result memory's "
            f"one read port (prune it to {cfg.row_slots} groups per block)")


def _check_residual(cfg: MarsConfig, node: LayerNode, pool: PoolNode | None,
                    residual: Residual, shape: tuple | None) -> None:
    """The shortcut has the layer's output shape, and its lane groups line up with the
    output's (one shortcut read per lane group, mars.hw.writer)."""
    g, add = node.geometry, residual.add
    if shape is not None and tuple(shape) != (g.out_h, g.out_w, g.cout):
        raise MappingError(f"node {add.name!r}: its inputs have shapes "
                           f"{g.out_h}x{g.out_w}x{g.cout} and {'x'.join(map(str, shape))}")
    if np.shape(add.multiplier) != (2, g.cout) or np.shape(add.shift) != (2, g.cout):
        raise MappingError(f"node {add.name!r}: multiplier and shift must have shape "
                           f"(2, {g.cout})")
    lanes = UnitFormat(cfg).write_lanes
    if pool is not None and g.cout % lanes:
        raise MappingError(
            f"node {pool.name!r}: a pool after a residual add needs a channel count that "
            f"is a multiple of the writer's {lanes} lanes (the add has {g.cout})")


# -- stage 2: schedule (residency, row slots, rounds) ----------------------------------------

@dataclasses.dataclass(frozen=True)
class Placement:
    """A work item placed in a unit's macro: its block set's rows start at row slot
    ``slot_base`` (G macro rows a slot)."""

    item: WorkItem
    slot_base: int


@dataclasses.dataclass(frozen=True)
class LayerSchedule:
    """The rounds (phases) of one layer: ``rounds[r][unit]`` lists the unit's placements
    in round r; units without work in a round are absent."""

    rounds: tuple[dict[int, list[Placement]], ...]


def _is_resident(works: list[LayerWork], cfg: MarsConfig) -> bool:
    """Every unit's block sets of every layer fit its macro at once."""
    need = [0] * cfg.macros
    for work in works:
        for u in range(cfg.macros):
            need[u] += sum(work.steps[b] for b in work.sets_of(u))
    return max(need) <= cfg.row_slots


def _schedule(works: list[LayerWork], cfg: MarsConfig) -> tuple[bool, list[LayerSchedule]]:
    """Stage 2: weight-stationary if everything fits (all rows loaded in the first phase
    and kept, `Mapping.resident`); otherwise each layer loads its own rows, in as many
    rounds as its block sets need (each at most ``work.row_slots`` row slots a unit).

    With ``hide_loads`` a round's placements are moved, flush with an end of the macro,
    to where they overlap the fewest slots the unit's walks read in the phase before
    (none, when the two rounds fit the macro together), so that their loads can run
    during those walks (`_Allocator` marks them `Load.hidden`)."""
    resident = _is_resident(works, cfg)
    used_by_unit = [0] * cfg.macros          # row slots filled (carried over if resident)
    schedules = []
    for work in works:
        rounds: list[dict[int, list[Placement]]] = []
        for u in range(cfg.macros):
            round_no, used = 0, used_by_unit[u] if resident else 0
            placed: dict[tuple, int] = {}        # (block set, part) -> slot base
            for item in work.owner[u]:
                key = (item.block_set, item.part)
                need = work.parts(item.block_set, cfg)[item.part][1]
                if key not in placed:
                    if used + need > work.row_slots:
                        round_no, used, placed = round_no + 1, 0, {}
                    placed[key] = used
                    used += need
                while len(rounds) <= round_no:
                    rounds.append({})
                rounds[round_no].setdefault(u, []).append(Placement(item, placed[key]))
            used_by_unit[u] = used
        schedules.append(LayerSchedule(tuple(rounds)))
    if cfg.hide_loads and not resident:
        schedules = _shift_rounds(works, schedules, cfg)
    return resident, schedules


def _round_slots(placements: list[Placement], work: LayerWork, cfg: MarsConfig,
                 shift: int = 0) -> set[int]:
    """The row slots a unit's placements of one round read."""
    slots: set[int] = set()
    for place in placements:
        need = work.parts(place.item.block_set, cfg)[place.item.part][1]
        slots.update(range(shift + place.slot_base, shift + place.slot_base + need))
    return slots


def _shift_rounds(works: list[LayerWork], schedules: list[LayerSchedule],
                  cfg: MarsConfig) -> list[LayerSchedule]:
    """Move each unit's round (as a whole) to the offset where it reads the fewest row
    slots the unit's previous phase read, flush with an end of the macro (`_schedule`,
    ``hide_loads``): each round then lies at one end, the next at the other, and two
    consecutive rounds that fit the macro together read disjoint slots."""
    previous: dict[int, set[int]] = {}      # unit -> slots its walks read in the last phase
    out = []
    for work, schedule in zip(works, schedules):
        rounds = []
        for rnd in schedule.rounds:
            moved, now = {}, {}
            for u, placements in rnd.items():
                slots = _round_slots(placements, work, cfg)
                size = max(slots) + 1 if slots else 0
                before = previous.get(u, set())
                top = cfg.row_slots - size
                # Fewest shared slots; then flush with an end of the macro (the top end
                # first; the bottom with nothing before), so that the free slots stay in
                # one run and the next round, if the two fit together, finds them: the
                # lowest free offset after a round at 0 would split them in two.
                shift = min(range(top + 1),
                            key=lambda o: (len({s + o for s in slots} & before),
                                           o not in (0, top), -o if before else o))
                moved[u] = [dataclasses.replace(p, slot_base=p.slot_base + shift)
                            for p in placements]
                now[u] = {s + shift for s in slots}
            previous = now
            rounds.append(moved)
        out.append(LayerSchedule(tuple(rounds)))
    return out


# -- stage 3: allocate (memory addresses, loads, walks) --------------------------------------

@dataclasses.dataclass(frozen=True)
class WalkAddresses:
    """Where a walk's tables start: index entry, k-table word, parameter word."""

    index_start: int
    ktable_base: int
    param_addr: int


class _Allocator:
    """Stage 3: fills the per-unit and per-core memories in order of first use and builds
    each phase's loads and walks.  Each table is allocated once per (layer, block set,
    unit or core) and shared by every band that needs it."""

    def __init__(self, cfg: MarsConfig, resident: bool) -> None:
        self.cfg, self.resident = cfg, resident
        self.index_mem: dict[tuple[int, int], list[int]] = defaultdict(list)  # (unit, domain)
        self.ktable_mem: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.params: dict[int, list] = defaultdict(list)        # unit -> parameter words
        self.sram: dict[int, list[int]] = defaultdict(list)     # core -> weight rows
        self._sram_row: dict[tuple[int, int, int], int] = {}    # (layer, set, core)
        self._ktable: dict[tuple[int, int], int] = {}           # (layer, unit)
        self._index: dict[tuple[int, int, int], int] = {}       # (layer, set, unit)
        self._param: dict[tuple[int, int, int], int] = {}       # (layer, set, unit)
        self.phases: list[Phase] = []

    def layer(self, work: LayerWork, schedule: LayerSchedule) -> LayerPlan:
        """Allocate one layer's tables and append its phases."""
        g = work.node.geometry
        plan = LayerPlan(work.node.name, work.index, work.node, work.pool, work.packed,
                         (work.out_h, work.out_w, g.cout), [], work.residual, work.src,
                         work.out, work.shortcut)
        kt_words = work.packed.ktable()
        for rnd in schedule.rounds:
            phase = Phase(work.index, [], [])
            plan.phases.append(len(self.phases))
            self.phases.append(phase)
            for u, placements in sorted(rnd.items()):
                self._unit_round(work, kt_words, u, placements, phase)
        return plan

    def _unit_round(self, work: LayerWork, kt_words: list[int], u: int,
                    placements: list[Placement], phase: Phase) -> None:
        li, packed, G = work.index, work.packed, self.cfg.rows_per_step
        core = u // self.cfg.macros_per_core
        if (li, u) not in self._ktable:
            self._ktable[(li, u)] = len(self.ktable_mem[(u, 0)])
            for d in range(self.cfg.wordline_domains):
                self.ktable_mem[(u, d)].extend(kt_words)
        loaded: set[tuple] = set()
        for place in placements:
            b, part = place.item.block_set, place.item.part
            parts = work.parts(b, self.cfg)
            first, steps = parts[part]
            src = self._weights(work, b, core)
            if (b, part) not in loaded and packed.set_steps[b]:
                loaded.add((b, part))
                target = self.phases[0] if self.resident else phase
                count = min(steps, packed.set_steps[b] - first) if len(parts) > 1 \
                    else packed.set_steps[b]
                hidden = target is phase and self._hides(u, place.slot_base, count)
                target.loads.append(Load(u, src + first * G, place.slot_base * G, count * G,
                                         hidden))
            addresses = WalkAddresses(self._index_entries(work, b, u) + first,
                                      self._ktable[(li, u)],
                                      self._param_word(work, b, u, part, len(parts)))
            phase.walks.append(_walk(self.cfg, work, u, place, addresses))

    def _hides(self, u: int, slot: int, count: int) -> bool:
        """With ``hide_loads``: the rows of `count` slots from `slot` of unit `u`, loaded
        for the newest phase, may be loaded while the phase before it walks (no walk of
        `u` in that phase reads those slots)."""
        if not self.cfg.hide_loads or len(self.phases) < 2:
            return False
        for walk in self.phases[-2].walks:
            base = walk.word["desc"]["slot_base"]
            if walk.unit == u and base < slot + count and slot < base + walk.steps:
                return False
        return True

    def _weights(self, work: LayerWork, b: int, core: int) -> int:
        """Weight-SRAM row of block set `b`'s stored rows in `core`."""
        key = (work.index, b, core)
        if key not in self._sram_row:
            G, packed = self.cfg.rows_per_step, work.packed
            self._sram_row[key] = len(self.sram[core])
            first = packed.set_slot_start[b] * G
            self.sram[core].extend(packed.rows[first:first + packed.set_steps[b] * G])
        return self._sram_row[key]

    def _index_entries(self, work: LayerWork, b: int, u: int) -> int:
        """Index-memory start of block set `b` in unit `u` (every domain, padded to the
        set's steps with K-group 0: fillers are never read past the block's count)."""
        key = (work.index, b, u)
        if key not in self._index:
            packed, D = work.packed, self.cfg.wordline_domains
            self._index[key] = len(self.index_mem[(u, 0)])
            for d in range(D):
                cb = b * D + d
                code = packed.index_codes[cb].tolist() if cb < packed.n_blocks else []
                self.index_mem[(u, d)].extend(code + [0] * (work.steps[b] - len(code)))
        return self._index[key]

    def _param_word(self, work: LayerWork, b: int, u: int, part: int = 0,
                    parts: int = 1) -> int:
        """The parameter word of block set `b`; a split set has three kinds: its first
        part (the bias, raw partial sums), middle parts (no bias, raw) and its last part
        (no bias, the layer's requantisation or add)."""
        kind = 0 if parts == 1 else ("first" if part == 0 else
                                     "last" if part == parts - 1 else "middle")
        key = (work.index, b, u, kind)
        if key not in self._param:
            self._param[key] = len(self.params[u])
            word = _residual_params(work, b, self.cfg)
            if kind in ("first", "middle"):
                word = [{**lane, "mult": 0, "shift": 0, "sc_mult": 0, "sc_shift": 0}
                        for lane in word]
            if kind in ("middle", "last"):
                word = [{**lane, "bias": 0} for lane in word]
            self.params[u].append(word)
        return self._param[key]


def _residual_params(work: LayerWork, b: int, cfg: MarsConfig) -> list[dict]:
    """The parameter word of block set `b` of `work`: `_param_word`, with a fused residual
    add's M and S of the layer's input in place of the layer's (whose outputs are raw
    accumulators) and the shortcut's M and S (``sc_mult``, ``sc_shift``)."""
    node, res, n = work.node, work.residual, cfg.channels_per_macro
    if res is None:
        return _param_word(node, b, n, work.raw, cfg)
    mult = np.asarray(res.add.multiplier, dtype=np.int64)
    shift = np.asarray(res.add.shift, dtype=np.int64)
    body = dataclasses.replace(node, multiplier=mult[res.index], shift=shift[res.index])
    word = _param_word(body, b, n, False, cfg)
    for j, lane in enumerate(word):
        ch = b * n + j
        inside = ch < node.geometry.cout
        lane["sc_mult"] = int(mult[1 - res.index][ch]) if inside else 0
        lane["sc_shift"] = int(shift[1 - res.index][ch]) if inside else 0
    return word


def _param_word(node: LayerNode, block_set: int, n: int, raw: bool,
                cfg: MarsConfig | None = None) -> list[dict]:
    """Bias, M, S of the macro channels of `block_set` (zeros past Cout); with a
    binary/ternary readout (`cfg.scaled_readout`) also each channel's column scale factor
    codes ``node.scales[ch]`` (Wb codes; zeros past Cout), the macro's `scales`."""
    scales = _layer_scales(node, cfg) if cfg is not None and cfg.scaled_readout else None
    out = []
    for j in range(n):
        ch = block_set * n + j
        if ch < node.geometry.cout:
            word = {"bias": int(node.bias[ch]),
                    "mult": 0 if raw else int(node.multiplier[ch]),
                    "shift": 0 if raw else int(node.shift[ch])}
        else:
            word = {"bias": 0, "mult": 0, "shift": 0}
        if scales is not None:
            word["scale"] = ([int(a) for a in scales[ch]] if ch < node.geometry.cout
                             else [0] * cfg.weight_bits)
        out.append(word)
    return out


def _layer_scales(node: LayerNode, cfg: MarsConfig) -> np.ndarray:
    """The layer's column scale factor codes (Cout, Wb), checked; a `MappingError` naming
    the layer if they are missing or out of the ``scale_bits`` range."""
    from mars.sw.golden.macro import check_scales
    try:
        return check_scales(node.scales, node.geometry.cout, cfg)
    except ValueError as error:
        raise MappingError(f"layer {node.name!r}: {error}") from None


def _walk(cfg: MarsConfig, work: LayerWork, unit: int, place: Placement,
          at: WalkAddresses) -> Walk:
    """The WALK word of one placement: descriptor, index counts, banks, output addressing."""
    g, packed = work.node.geometry, work.packed
    D, N = cfg.wordline_domains, cfg.channels_per_macro
    b, row0, rows = place.item.block_set, place.item.band.row0, place.item.band.rows
    parts = work.parts(b, cfg)
    first, steps = parts[place.item.part]
    final = place.item.part == len(parts) - 1      # the last (or only) part
    pool_k = work.pool_k if final else 1
    counts = [min(steps, max(0, len(packed.index_codes[b * D + d]) - first))
              if b * D + d < packed.n_blocks else 0 for d in range(D)]
    try:
        desc = descriptor(g, cfg, count=0, steps=steps, act_base=0,
                          ktable_base=at.ktable_base, index_start=at.index_start,
                          slot_base=place.slot_base)
    except DecoderLimitError as error:
        raise MappingError(
            f"layer {work.node.name!r}: {error} (the decoder's memories grow with "
            f"weight_sram_rows (index, row slots) and act_buffer_words (k-table): raise "
            f"them in the configuration)") from None
    # A band of output rows: move the window origin down and walk fewer rows.
    desc["by0"] += row0 * desc["step_y"]
    desc["out_h"] = rows
    n_valid = min(N, g.cout - b * N)
    pool_h = (min(row0 + rows, work.out_h * pool_k) - row0) // pool_k if rows else 0
    word = {
        "op": 0, "desc": desc,
        "index_start": [at.index_start] * D, "count": counts,
        "in_bank": work.src.region, "out_bank": work.out.region, "acc_out": int(work.raw),
        # the stored-word address of the parameter word's first piece
        "param_addr": at.param_addr * UnitFormat(cfg).param_chunks, "n_valid": n_valid,
        "pool_k": pool_k, "pool_w": work.out_w, "pool_h": max(0, pool_h),
        "out_base": (row0 // pool_k) * work.out_w * g.cout + b * N,
        "out_pitch": g.cout, "out_row_pitch": work.out_w * g.cout,
    }
    if not final:
        # a part of a split block set: raw partial sums, unpooled, to the result memory
        word.update({"acc_out": 1, "pool_w": g.out_w, "pool_h": rows,
                     "out_base": row0 * g.out_w * g.cout + b * N,
                     "out_row_pitch": g.out_w * g.cout})
    if g.kind is LayerKind.LINEAR:
        word["pool_w"], word["pool_h"] = 1, 1
    if cfg.residual_adds:
        sc = work.shortcut if final else None
        psum = place.item.part > 0
        word.update({"add": int(sc is not None), "psum": int(psum),
                     "sc_res": int(bool(sc and sc.result)),
                     "sc_bank": sc.region if sc else 0,
                     "sc_base": row0 * g.out_w * g.cout + b * N if sc or psum else 0,
                     "sc_pitch": g.cout if sc or psum else 0})
    return Walk(unit, b, row0, rows, g.out_w, steps, n_valid, word, first)


# -- stage 4: emit (depth checks, programs, memory images) -----------------------------------

def _pow2_at_least(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _check_depth(what: str, used: int, depth: int, field: str, per_word: int = 1,
                 other: str = "") -> None:
    """`used` words of `what` fit `depth`, else a `MappingError` naming `field` and the
    smallest power of two that fits (`per_word` field units per word: G for the
    decoder's tables, whose depth is the field divided by G); `other`: another remedy,
    appended to the message."""
    if used > depth:
        raise MappingError(
            f"the network needs {used} words of {what}; the configuration has {depth}: "
            f"set {field} to at least {_pow2_at_least(used * per_word)} "
            f"(it is {depth * per_word}){other}")


def _check_tables(cfg: MarsConfig, alloc: _Allocator) -> None:
    dfmt, G = DecoderFormat(cfg), cfg.rows_per_step
    for (u, _), words in alloc.index_mem.items():
        _check_depth(f"index memory (unit {u})", len(words), dfmt.index_depth,
                     "weight_sram_rows", G)
    for (u, _), words in alloc.ktable_mem.items():
        _check_depth(f"k-table (unit {u})", len(words), dfmt.max_kgroups,
                     "act_buffer_words", G)
    for core, words in alloc.sram.items():
        _check_depth(f"weight SRAM (core {core})", len(words), cfg.weight_sram_rows,
                     "weight_sram_rows")
    for u, words in alloc.params.items():
        _check_depth(f"parameter memory (unit {u})", len(words), cfg.param_words,
                     "param_words")
    _check_depth("phase cycle counters", len(alloc.phases), cfg.max_phases, "max_phases")


def loader_segments(cfg: MarsConfig, phases: list[Phase]) -> list[list[Load]]:
    """The loads of each loader-program segment, in order, every segment ending in a SYNC:
    per phase its LOAD part's loads; with ``hide_loads`` then also the loads that run
    during its walks (the next phase's `Load.hidden` ones; hw/controller.py)."""
    segments = []
    for p, phase in enumerate(phases):
        segments.append([ld for ld in phase.loads if not ld.hidden])
        if cfg.hide_loads:
            after = phases[p + 1].loads if p + 1 < len(phases) else []
            segments.append([ld for ld in after if ld.hidden])
    return segments


def _programs(cfg: MarsConfig, phases: list[Phase], sync: dict,
              load_op: int) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
    """Unit programs (SYNC, then each phase's walks and a SYNC) and loader programs (the
    loads of each of `loader_segments` and a SYNC), as field dicts."""
    programs = {u: [sync] for u in range(cfg.macros)}
    loader_programs: dict[int, list[dict]] = {core: [] for core in range(cfg.cores)}
    for phase in phases:
        for walk in phase.walks:
            programs[walk.unit].append(walk.word)
        for u in range(cfg.macros):
            programs[u].append(sync)
    for segment in loader_segments(cfg, phases):
        for ld in segment:
            core, j = divmod(ld.unit, cfg.macros_per_core)
            loader_programs[core].append({"op": load_op, "unit": j, "src": ld.src,
                                          "dst": ld.dst, "count": ld.count})
        for core in range(cfg.cores):
            loader_programs[core].append(sync)
    for u, words in programs.items():
        _check_depth(f"program memory (unit {u})", len(words), cfg.program_words,
                     "program_words")
    # hide_loads: a second SYNC a phase in every loader program (`loader_segments`)
    other = (f", or hide_loads to false ({len(phases)} of them are its second SYNC a "
             f"phase)" if cfg.hide_loads else "")
    for core, words in loader_programs.items():
        _check_depth(f"loader program (core {core})", len(words), cfg.program_words,
                     "program_words", other=other)
    return programs, loader_programs


def _emit(cfg: MarsConfig, alloc: _Allocator) -> dict[tuple[HostMemory, int, int], list]:
    """Stage 4: check every depth, then encode every memory's words."""
    _check_tables(cfg, alloc)
    programs, loader_programs = _programs(cfg, alloc.phases, {"op": int(Op.SYNC)},
                                          int(Op.LOAD))
    insn, pl, ll = instruction_layout(cfg), param_layout(cfg), load_layout(cfg)
    fmt = UnitFormat(cfg)
    memories: dict[tuple[HostMemory, int, int], list] = {}
    for u in range(cfg.macros):
        # Instructions and parameter words are stored as narrow words, least significant
        # first (mars.contract.program.split_word).
        memories[(HostMemory.PROGRAM, u, 0)] = [
            part for w in programs[u] for part in split_word(insn.const(w).as_bits(),
                                                             fmt.insn_chunks)]
        memories[(HostMemory.PARAMS, u, 0)] = [
            part for w in alloc.params[u] for part in split_word(pl.const(w).as_bits(),
                                                                 fmt.param_chunks)]
        for d in range(cfg.wordline_domains):
            memories[(HostMemory.INDEX, u, d)] = list(alloc.index_mem[(u, d)])
            memories[(HostMemory.KTABLE, u, d)] = list(alloc.ktable_mem[(u, d)])
    for core in range(cfg.cores):
        memories[(HostMemory.WEIGHTS, core, 0)] = list(alloc.sram[core])
        memories[(HostMemory.LOADER, core, 0)] = [ll.const(w).as_bits()
                                                   for w in loader_programs[core]]
    return memories


# -- the whole mapping -----------------------------------------------------------------------

def map_network(network: IntegerNetwork, config: MarsConfig | None = None) -> Mapping:
    """Programs and memory contents that run `network` on the accelerator.

    Parameters
    ----------
    network : IntegerNetwork
        A chain of conv/linear layers (fused pools, free flattens); the last one outputs
        raw accumulators.
    config : MarsConfig, optional
        The configuration to map onto; it must be the network's (default: the network's).

    Raises
    ------
    MappingError
        If the network does not fit the configuration: the message names the node or the
        memory, and the configuration field to raise.
    """
    cfg = config or network.config
    if cfg.content_hash != network.config.content_hash:
        raise MappingError(
            f"the network was built for configuration {network.config.short_hash} "
            f"({network.config.name}), not {cfg.short_hash} ({cfg.name})")
    chain = _chain(network)
    h, w, c = network.input_shape
    if h * w * c > cfg.act_buffer_words:
        raise MappingError(f"the input map ({h}x{w}x{c}) exceeds an activation buffer "
                           f"({cfg.act_buffer_words} words, act_buffer_words)")
    outs, shortcuts, result_busy = _places(cfg, chain)
    shapes = _shapes(network)
    def plan(cap: int | None) -> list[LayerWork]:
        return [_plan_layer(cfg, i, node, pool, i == len(chain) - 1, res,
                            Place(0) if src == "input" else outs[_producer(chain, src)],
                            outs[i], shortcuts[i], shapes, result_free=not result_busy[i],
                            cap=cap)
                for i, (node, pool, res, src) in enumerate(chain)]

    def build(works: list[LayerWork]) -> Mapping:
        resident, schedules = _schedule(works, cfg)
        alloc = _Allocator(cfg, resident)
        plans = [alloc.layer(work, schedule) for work, schedule in zip(works, schedules)]
        memories = _emit(cfg, alloc)
        return Mapping(cfg, network, plans, alloc.phases, memories, plans[-1].out_shape,
                       resident)

    works = plan(None)
    if not any(w.row_slots != cfg.row_slots for w in works):
        return build(works)
    # Smaller rounds (hide_loads) where they pay: unless the weights are resident anyway
    # (loaded once, nothing to hide) or the extra phases, walks and parts exceed a memory;
    # then the rounds of R/G slots (whose reloads still hide where the slots allow).
    if not _is_resident(works, cfg):
        try:
            return build(works)
        except MappingError:
            pass
    return build(plan(cfg.row_slots))
