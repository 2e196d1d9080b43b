"""Map an integer network onto the accelerator: programs and memory contents.

Given an `IntegerNetwork` (a model package, docs/model-package.md) and the configuration,
`map_network` decides where everything goes (docs/architecture.md, "Mapping"):

* Conv and linear layers run on the macro units; a max pool right after a layer is fused
  into that layer's writer (non-overlapping windows only); a flatten is free (maps are HWC
  in memory, which is the order the linear layer reads).  Anything else is refused with
  a message naming the node.
* Layer i reads activation bank i % 2 and writes bank (i+1) % 2, each map at address 0;
  the image goes into bank 0; the last layer's raw accumulators go to the result memory.
* Work split: a layer's block sets (D output blocks, one macro's worth of channels) are
  the units of output-channel parallelism; when a layer has fewer block sets than macro
  units, bands of output rows give the remaining units work (pixel parallelism).  Work
  items go to the least-loaded unit (longest first).
* A *phase* is one LOAD (the loaders copy the macro rows the phase needs from the core
  weight SRAMs) and one WALK.  A layer whose block sets do not all fit in the macros at
  once takes several phases, reloading in between.

The result, a `Mapping`, holds every memory's words (`Mapping.memories`), the per-phase
schedule the cycle model uses, and the reason for every refusal is a `MappingError`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict


from mars.errors import MarsError
from mars.config import MarsConfig
from mars.contract.decoder import DecoderFormat, DecoderLimitError, descriptor
from mars.contract.host import HostMemory
from mars.contract.program import Op, instruction_layout, load_layout, param_layout
from mars.sw.golden.network import (
    AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode,
)
from mars.sw.layer import LayerKind
from mars.sw.sparse import pack_layer

__all__ = ["MappingError", "Walk", "Load", "Phase", "LayerPlan", "Mapping", "map_network"]


class MappingError(MarsError, ValueError):
    """The network does not fit this accelerator; the message names the node and limit."""


@dataclasses.dataclass(frozen=True)
class Walk:
    """One block set of one layer over a band of output rows, on one macro unit."""

    unit: int
    block_set: int
    row0: int
    rows: int
    out_w: int
    steps: int           # payloads per pixel (the set's most kept groups, at least 1)
    n_valid: int         # channels of the set that exist
    word: dict           # the program word (fields of contract.program.instruction_layout)

    @property
    def pixels(self) -> int:
        return self.rows * self.out_w


@dataclasses.dataclass(frozen=True)
class Load:
    """``count`` macro rows from weight-SRAM row ``src`` of the unit's core to macro row
    ``dst`` of the unit."""

    unit: int
    src: int
    dst: int
    count: int


@dataclasses.dataclass
class Phase:
    layer: int
    loads: list[Load]
    walks: list[Walk]


@dataclasses.dataclass
class LayerPlan:
    """What the mapper decided for one conv/linear layer."""

    name: str
    index: int
    node: LayerNode
    pool: PoolNode | None
    packed: object          # mars.sw.sparse.PackedLayer
    out_shape: tuple[int, int, int]      # after the fused pool
    phases: list[int]


@dataclasses.dataclass
class Mapping:
    config: MarsConfig
    network: IntegerNetwork
    layers: list[LayerPlan]
    phases: list[Phase]
    memories: dict[tuple[HostMemory, int, int], list]   # (memory, unit, domain) -> words
    output_shape: tuple[int, int, int]
    #: All weights fit in the macros at once: they are loaded in the first phase and a
    #: later inference may skip every load (the top's ``skip_loads``).
    resident: bool = False

    @property
    def n_phases(self) -> int:
        return len(self.phases)


def _chain(network: IntegerNetwork) -> list[tuple[LayerNode, PoolNode | None]]:
    """The network as (layer, fused pool) pairs, checking that the hardware can run it."""
    chain: list[tuple[LayerNode, PoolNode | None]] = []
    previous = "input"
    nodes = list(network.nodes)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if isinstance(node, AddNode):
            raise MappingError(f"node {node.name!r}: residual adds are not supported by the "
                               f"accelerator yet (the golden model runs them)")
        if tuple(node.inputs) != (previous,):
            raise MappingError(f"node {node.name!r}: the accelerator runs a chain of layers; "
                               f"this node reads {list(node.inputs)}, not {previous!r}")
        if isinstance(node, FlattenNode):
            previous = node.name
            i += 1
            continue
        if isinstance(node, PoolNode):
            raise MappingError(f"node {node.name!r}: a max pool must follow a conv layer "
                               f"with requantised outputs to be fused into it")
        if not isinstance(node, LayerNode):
            raise MappingError(f"node {node.name!r}: unsupported operation {node.op!r}")
        pool = None
        if i + 1 < len(nodes) and isinstance(nodes[i + 1], PoolNode):
            pool = nodes[i + 1]
            if node.output != "act":
                raise MappingError(f"node {pool.name!r}: pooling raw accumulators")
            if pool.stride != pool.kernel or pool.pad != 0 or not 1 <= pool.kernel <= 7:
                raise MappingError(
                    f"node {pool.name!r}: only non-overlapping pools (kernel = stride <= 7, "
                    f"no padding) are fused; got kernel {pool.kernel}, stride {pool.stride}, "
                    f"pad {pool.pad}")
            i += 1
        chain.append((node, pool))
        previous = (pool or node).name
        i += 1
    if previous != network.output:
        raise MappingError(f"the network's output {network.output!r} is not the end of the "
                           f"layer chain ({previous!r})")
    if not chain or chain[-1][0].output != "acc":
        raise MappingError("the last layer must output raw accumulators (logits)")
    for node, _ in chain[:-1]:
        if node.output != "act":
            raise MappingError(f"node {node.name!r}: only the last layer may output raw "
                               f"accumulators")
    return chain


def _bands(out_h: int, pool_k: int, parts: int) -> list[tuple[int, int]]:
    """Split output rows into at most `parts` bands, each starting on a pool window."""
    windows = -(-out_h // pool_k)
    parts = max(1, min(parts, windows))
    edges = [round(i * windows / parts) * pool_k for i in range(parts + 1)]
    edges[-1] = out_h
    return [(a, b - a) for a, b in zip(edges, edges[1:]) if b > a]


def map_network(network: IntegerNetwork, config: MarsConfig | None = None) -> Mapping:
    """Programs and memory contents that run `network` on the accelerator."""
    cfg = config or network.config
    if cfg.content_hash != network.config.content_hash:
        raise MappingError(
            f"the network was built for configuration {network.config.short_hash} "
            f"({network.config.name}), not {cfg.short_hash} ({cfg.name})")

    chain = _chain(network)
    G, D, N = cfg.rows_per_step, cfg.wordline_domains, cfg.channels_per_macro
    units = cfg.macros
    dfmt = DecoderFormat(cfg)
    slots_per_macro = cfg.row_slots

    h, w, c = network.input_shape
    if h * w * c > cfg.act_buffer_words:
        raise MappingError(f"the input map ({h}x{w}x{c}) exceeds an activation buffer "
                           f"({cfg.act_buffer_words} words)")

    phases: list[Phase] = []
    plans: list[LayerPlan] = []
    # Per-unit/domain memory fill (index, k-table), per-unit params and programs,
    # per-core weight SRAM.
    index_mem = defaultdict(list)          # (unit, domain) -> words
    ktable_mem = defaultdict(list)
    params = defaultdict(list)             # unit -> param words (dicts)
    sram = defaultdict(list)               # core -> row words
    sram_of_set: dict[tuple[int, int, int], int] = {}   # (layer, set, core) -> src row
    unit_ktable: dict[tuple[int, int], int] = {}        # (layer, unit) -> ktable base
    unit_index: dict[tuple[int, int, int], int] = {}    # (layer, set, unit) -> index start
    unit_param: dict[tuple[int, int, int], int] = {}    # (layer, set, unit) -> param addr

    # -- first pass: pack every layer and share its work out -----------------------------
    layers = []
    for li, (node, pool) in enumerate(chain):
        g = node.geometry
        last = li == len(chain) - 1
        if g.in_size > cfg.act_buffer_words:
            raise MappingError(f"layer {node.name!r}: its input ({g.in_h}x{g.in_w}x{g.cin}) "
                               f"exceeds an activation buffer ({cfg.act_buffer_words} words)")
        try:
            dfmt.check_layer(g)
        except DecoderLimitError as error:
            raise MappingError(f"layer {node.name!r}: {error}") from None
        packed = pack_layer(node.weight, g, cfg)
        pool_k = pool.kernel if pool else 1
        out_h, out_w = g.out_h // pool_k, g.out_w // pool_k
        out_size = out_h * out_w * g.cout
        if last and out_size > cfg.result_words:
            raise MappingError(f"layer {node.name!r}: {out_size} outputs exceed the result "
                               f"memory ({cfg.result_words} words)")
        if not last and out_size > cfg.act_buffer_words:
            raise MappingError(f"layer {node.name!r}: its output ({out_h}x{out_w}x{g.cout}) "
                               f"exceeds an activation buffer ({cfg.act_buffer_words} words)")
        steps = [max(1, s) for s in packed.set_steps]
        for b, s in enumerate(steps):
            if s > slots_per_macro:
                raise MappingError(
                    f"layer {node.name!r}: block set {b} keeps {s} groups per output block, "
                    f"a macro holds {slots_per_macro} row slots (R/G); prune more or use "
                    f"more rows")

        # Work items: (set, band); bands when there are fewer sets than units.
        n_sets = packed.n_sets
        bands_per_set = max(1, units // n_sets) if n_sets < units else 1
        items = [(b, band) for b in range(n_sets)
                 for band in _bands(g.out_h, pool_k, bands_per_set)]
        load = [0] * units
        owner: list[list[tuple[int, tuple[int, int]]]] = [[] for _ in range(units)]
        for b, band in sorted(items, key=lambda it: -(steps[it[0]] * it[1][1])):
            u = min(range(units), key=lambda x: (load[x], x))
            owner[u].append((b, band))
            load[u] += steps[b] * band[1] * g.out_w

        layers.append((li, node, pool, g, last, packed, pool_k, out_h, out_w, steps, owner))

    # Weight-stationary if every unit's block sets of every layer fit its macro at once:
    # all rows are loaded in the first phase and stay (`Mapping.resident`); otherwise each
    # layer loads its own, in as many phases as its sets need.
    need = [0] * units
    for *_, steps, owner in layers:
        for u in range(units):
            need[u] += sum(steps[b] for b in {b for b, _ in owner[u]})
    resident = max(need) <= slots_per_macro
    resident_used = [0] * units

    for li, node, pool, g, last, packed, pool_k, out_h, out_w, steps, owner in layers:
        # Phases: every unit's sets must fit its macro; otherwise split into rounds.
        rounds: list[dict[int, list]] = []
        for u in range(units):
            round_no, used = 0, resident_used[u] if resident else 0
            placed: dict[int, int] = {}                       # set -> slot base this round
            for b, band in owner[u]:
                if b not in placed:
                    if used + steps[b] > slots_per_macro:
                        round_no, used, placed = round_no + 1, 0, {}
                    placed[b] = used
                    used += steps[b]
                while len(rounds) <= round_no:
                    rounds.append({})
                rounds[round_no].setdefault(u, []).append((b, band, placed[b]))
            resident_used[u] = used

        # Per-layer tables: k-table per unit (all domains), index codes per set, params.
        plan = LayerPlan(node.name, li, node, pool, packed, (out_h, out_w, g.cout), [])
        plans.append(plan)
        kt_words = packed.ktable()
        for rnd in rounds:
            phase = Phase(li, [], [])
            plan.phases.append(len(phases))
            phases.append(phase)
            for u, work in sorted(rnd.items()):
                core = u // cfg.macros_per_core
                if (li, u) not in unit_ktable:
                    unit_ktable[(li, u)] = len(ktable_mem[(u, 0)])
                    for d in range(D):
                        ktable_mem[(u, d)].extend(kt_words)
                loaded: set[int] = set()
                for b, (row0, rows), slot_base in work:
                    key = (li, b, core)
                    if key not in sram_of_set:
                        sram_of_set[key] = len(sram[core])
                        first = packed.set_slot_start[b] * G
                        sram[core].extend(packed.rows[first:first + packed.set_steps[b] * G])
                    if b not in loaded and packed.set_steps[b]:
                        loaded.add(b)
                        (phases[0] if resident else phase).loads.append(Load(
                            u, sram_of_set[key], slot_base * G, packed.set_steps[b] * G))
                    if (li, b, u) not in unit_index:
                        unit_index[(li, b, u)] = len(index_mem[(u, 0)])
                        for d in range(D):
                            cb = b * D + d
                            code = (packed.index_codes[cb].tolist()
                                    if cb < packed.n_blocks else [])
                            index_mem[(u, d)].extend(code + [0] * (steps[b] - len(code)))
                    if (li, b, u) not in unit_param:
                        unit_param[(li, b, u)] = len(params[u])
                        params[u].append(_param_word(node, b, N, last))
                    phase.walks.append(_walk(
                        cfg, node, packed, u, b, row0, rows, steps[b], slot_base,
                        unit_index[(li, b, u)], unit_ktable[(li, u)],
                        unit_param[(li, b, u)], pool_k, (out_h, out_w), li, last))

    # -- limits of the memories ------------------------------------------------------------
    def check(name: str, used: int, depth: int) -> None:
        if used > depth:
            raise MappingError(f"the network needs {used} words of {name}; the configuration "
                               f"has {depth} (raise it in the configuration)")
    for (u, d), words in index_mem.items():
        check(f"index memory (unit {u})", len(words), dfmt.index_depth)
    for (u, d), words in ktable_mem.items():
        check(f"k-table (unit {u})", len(words), dfmt.max_kgroups)
    for core, words in sram.items():
        check(f"weight SRAM (core {core})", len(words), cfg.weight_sram_rows)
    for u, words in params.items():
        check(f"parameter memory (unit {u})", len(words), cfg.param_words)
    check("phases (layer cycle counters, max_layers)", len(phases), cfg.max_layers)

    # -- programs ----------------------------------------------------------------------------
    insn = instruction_layout(cfg)
    sync = {"op": int(Op.SYNC)}
    programs = {u: [sync] for u in range(units)}
    loader_programs = {core: [] for core in range(cfg.cores)}
    for phase in phases:
        for walk in phase.walks:
            programs[walk.unit].append(walk.word)
        for u in range(units):
            programs[u].append(sync)
        for ld in phase.loads:
            core, j = divmod(ld.unit, cfg.macros_per_core)
            loader_programs[core].append({"op": int(Op.LOAD), "unit": j, "src": ld.src,
                                          "dst": ld.dst, "count": ld.count})
        for core in range(cfg.cores):
            loader_programs[core].append(sync)
    for u, words in programs.items():
        check(f"program memory (unit {u})", len(words), cfg.program_words)
    for core, words in loader_programs.items():
        check(f"loader program (core {core})", len(words), cfg.program_words)

    pl, ll = param_layout(cfg), load_layout(cfg)
    memories: dict[tuple[HostMemory, int, int], list] = {}
    for u in range(units):
        memories[(HostMemory.PROGRAM, u, 0)] = [insn.const(w).as_bits() for w in programs[u]]
        memories[(HostMemory.PARAMS, u, 0)] = [pl.const(w).as_bits() for w in params[u]]
        for d in range(D):
            memories[(HostMemory.INDEX, u, d)] = list(index_mem[(u, d)])
            memories[(HostMemory.KTABLE, u, d)] = list(ktable_mem[(u, d)])
    for core in range(cfg.cores):
        memories[(HostMemory.WEIGHTS, core, 0)] = list(sram[core])
        memories[(HostMemory.LOADER, core, 0)] = [ll.const(w).as_bits()
                                                   for w in loader_programs[core]]
    return Mapping(cfg, network, plans, phases, memories, plans[-1].out_shape, resident)


def _param_word(node: LayerNode, block_set: int, n: int, raw: bool) -> list[dict]:
    """Bias, M, S of the macro channels of `block_set` (zeros past Cout)."""
    out = []
    for j in range(n):
        ch = block_set * n + j
        if ch < node.geometry.cout:
            out.append({"bias": int(node.bias[ch]),
                        "mult": 0 if raw else int(node.multiplier[ch]),
                        "shift": 0 if raw else int(node.shift[ch])})
        else:
            out.append({"bias": 0, "mult": 0, "shift": 0})
    return out


def _walk(cfg: MarsConfig, node: LayerNode, packed, unit: int, block_set: int, row0: int,
          rows: int, steps: int, slot_base: int, index_start: int, ktable_base: int,
          param_addr: int, pool_k: int, pooled: tuple[int, int], layer: int,
          last: bool) -> Walk:
    g = node.geometry
    D, N = cfg.wordline_domains, cfg.channels_per_macro
    counts = []
    for d in range(D):
        cb = block_set * D + d
        counts.append(len(packed.index_codes[cb]) if cb < packed.n_blocks else 0)
    desc = descriptor(g, cfg, count=0, steps=steps, act_base=0, ktable_base=ktable_base,
                      index_start=index_start, slot_base=slot_base)
    # A band of output rows: move the window origin down and walk fewer rows.
    desc["by0"] += row0 * desc["step_y"]
    desc["out_h"] = rows
    out_h, out_w = pooled
    n_valid = min(N, g.cout - block_set * N)
    pool_h = (min(row0 + rows, out_h * pool_k) - row0) // pool_k if rows else 0
    word = {
        "op": 0, "desc": desc,
        "index_start": [index_start] * D, "count": counts,
        "in_bank": layer % 2, "out_bank": (layer + 1) % 2, "acc_out": int(last),
        "param_addr": param_addr, "n_valid": n_valid,
        "pool_k": pool_k, "pool_w": out_w, "pool_h": max(0, pool_h),
        "out_base": (row0 // pool_k) * out_w * g.cout + block_set * N,
        "out_pitch": g.cout, "out_row_pitch": out_w * g.cout,
    }
    if g.kind is LayerKind.LINEAR:
        word["pool_w"], word["pool_h"] = 1, 1
    return Walk(unit, block_set, row0, rows, g.out_w, steps, n_valid, word)
