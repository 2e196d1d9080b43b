"""Invariants of the mapper (`mars.sw.mapper.map_network`) on several networks and presets.

Each check reads the mapping as the hardware would (memory images, program words, the
fields of each WALK) and compares it with an expectation computed without the mapper: the
weights' kept groups (`mars.sw.sparse.groups_of`), the HWC layout of each output map, the
depth of each memory in the configuration.
"""

import functools
from collections import Counter, defaultdict

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract.decoder import DecoderFormat, descriptor
from mars.contract.host import HostMemory
from mars.contract.program import (
    CONTROL_WORD_BITS,
    Op,
    UnitFormat,
    instruction_layout,
    join_words,
    load_layout,
    param_layout,
)
from mars.sw.golden.cycles import READ_MARGIN, network_cycles, read_margins
from mars.sw.mapper import MappingError, map_network
from mars.sw.sparse import groups_of
from mars.tb.networks import NETWORKS, stable_seed

# Presets, plus small macros that force several rounds per layer or reloads.
CONFIGS = [PRESETS[name] for name in ("tiny", "default", "adc3", "wide8")] + [
    PRESETS["tiny"].replace(name="tiny-r16", rows=16),
    PRESETS["tiny"].replace(name="tiny-r32x2", rows=32, macros_per_core=2),
    PRESETS["default"].replace(name="small-4x", rows=32, cols=16, partitions=2,
                               rows_per_step=4, macros_per_core=1),
    # reloads hidden behind the walks (rounds of half the row slots where they pay)
    PRESETS["tiny"].replace(name="tiny-r32-hide", rows=32, hide_loads=True),
    PRESETS["tiny"].replace(name="tiny-r32x2-hide", rows=32, macros_per_core=2,
                            hide_loads=True),
    # rounds of many sizes on 32 row slots, most pairs fitting together (program_words:
    # its loader programs take two SYNCs a phase)
    PRESETS["ice40"].replace(name="ice40-hide", hide_loads=True, program_words=64),
]


@functools.lru_cache(maxsize=None)
def mapped(config, name):
    """The mapping of network `name` on `config` and its seed; None if a block set does
    not fit the macro (the dense networks on the smallest macros)."""
    seed = stable_seed(config.name, name)
    build, sparsity = NETWORKS[name]
    network = build(config, np.random.default_rng(seed), sparsity)
    try:
        return map_network(network), seed
    except MappingError as error:
        # Refusals are fine here (tested elsewhere); the invariants are about mappings.
        if "row slots" not in str(error):
            raise
        return None, seed


CASES = [(cfg, name) for cfg in CONFIGS for name in sorted(NETWORKS)
         if mapped(cfg, name)[0] is not None]


@pytest.fixture(params=CASES, ids=[f"{c.name}-{n}" for c, n in CASES])
def case(request):
    config, name = request.param
    mapping, seed = mapped(config, name)
    return mapping, f"network {name!r} on {config.name}, seed {seed}"


def memory(mapping, name, index, domain=0):
    """The image of memory `name` (a `HostMemory` value) of unit or core `index`."""
    return mapping.memories[(HostMemory(name), index, domain)]


def joined(mapping, name, index):
    """The program or parameter words of a unit, each joined from its stored words."""
    fmt = UnitFormat(mapping.config)
    k = fmt.insn_chunks if name == "program" else fmt.param_chunks
    words = memory(mapping, name, index)
    assert len(words) % k == 0
    return [join_words(words[i:i + k]) for i in range(0, len(words), k)]


def test_mapping_covers_a_multi_round_layer():
    """The configurations above reach the mapper's harder paths (not vacuous)."""
    mappings = [mapped(config, name)[0] for config, name in CASES]
    assert len(CASES) >= 25
    assert any(len(plan.phases) > 1 for m in mappings for plan in m.layers)
    assert any(not m.resident for m in mappings)
    assert any(ld.hidden for m in mappings for phase in m.phases for ld in phase.loads)


def test_every_kept_group_is_computed_once_per_output_pixel(case):
    """Each output block's index code (in the unit's index memory, per domain) is its
    weights' kept groups, and the walks of its block set cover every output row once."""
    mapping, where = case
    cfg = mapping.config
    D = cfg.wordline_domains
    for plan in mapping.layers:
        node, g = plan.node, plan.node.geometry
        kept = groups_of(node.weight, cfg).kept          # (blocks, K-groups)
        rows = defaultdict(Counter)                      # block set -> output row -> walks
        for phase in (mapping.phases[i] for i in plan.phases):
            for walk in phase.walks:
                word = walk.word
                for y in range(walk.row0, walk.row0 + walk.rows):
                    rows[walk.block_set][y] += 1
                for d in range(D):
                    cb = walk.block_set * D + d
                    code = np.flatnonzero(kept[cb]).tolist() if cb < len(kept) else []
                    start = word["index_start"][d]
                    index = memory(mapping, "index", walk.unit, d)
                    assert word["count"][d] == len(code), where
                    assert index[start:start + len(code)] == code, f"{where}, block {cb}"
                assert walk.steps == max([1] + [len(np.flatnonzero(k)) for k in
                                                kept[walk.block_set * D:
                                                     (walk.block_set + 1) * D]]), where
        n_sets = -(-len(kept) // D)
        assert sorted(rows) == list(range(n_sets)), where
        for b, counter in rows.items():
            assert counter == Counter(range(g.out_h)), f"{where}, layer {plan.name}, set {b}"


def test_bands_move_the_window_origin(case):
    """A walk over output rows row0.. starts its window row0 strides down and walks
    `rows` rows; everything else is the whole layer's descriptor."""
    mapping, where = case
    cfg = mapping.config
    for plan in mapping.layers:
        for phase in (mapping.phases[i] for i in plan.phases):
            for walk in phase.walks:
                desc = walk.word["desc"]
                whole = descriptor(plan.node.geometry, cfg, count=0, steps=walk.steps,
                                   ktable_base=desc["ktable_base"],
                                   index_start=desc["index_start"],
                                   slot_base=desc["slot_base"])
                expect = dict(whole, by0=whole["by0"] + walk.row0 * whole["step_y"],
                              out_h=walk.rows)
                assert desc == expect, where


def written_addresses(walk, cout):
    """Activation (or result) addresses the walk's writer writes, from its word: pooled
    pixel (py, px) and channel j go to out_base + py*row_pitch + px*pitch + j."""
    w = walk.word
    return [w["out_base"] + py * w["out_row_pitch"] + px * w["out_pitch"] + j
            for py in range(w["pool_h"]) for px in range(w["pool_w"])
            for j in range(w["n_valid"])]


def test_no_two_writers_share_an_address_and_each_map_is_written_once(case):
    mapping, where = case
    for plan in mapping.layers:
        out_h, out_w, cout = plan.out_shape
        total = Counter()
        for phase in (mapping.phases[i] for i in plan.phases):
            writers = defaultdict(set)
            for walk in phase.walks:
                for addr in written_addresses(walk, cout):
                    writers[addr].add(walk.unit)
                total.update(set(written_addresses(walk, cout)))
            shared = {a: u for a, u in writers.items() if len(u) > 1}
            assert not shared, f"{where}, layer {plan.name}: {len(shared)} shared addresses"
        # HWC map: every (y, x, c) exactly once over the layer's walks.
        assert total == Counter(range(out_h * out_w * cout)), f"{where}, layer {plan.name}"


def test_no_phase_reads_a_region_it_writes(case):
    """The gathers of a phase read only regions no walk of that phase writes: the units'
    read copies of the activation memory are then never read and written at one address
    in one cycle, which lets Yosys leave out their collision logic (``no_rw_check`` in
    mars.hw.top).  An in-place add reads its shortcut through the shortcut port, not
    the gathers, so it is allowed to write the region that port reads."""
    mapping, where = case
    regions = 0
    for i, phase in enumerate(mapping.phases):
        read = {walk.word["in_bank"] for walk in phase.walks}
        written = {walk.word["out_bank"] for walk in phase.walks if not walk.word["acc_out"]}
        regions += len(read) + len(written)
        assert not read & written, f"{where}, phase {i}: region(s) {read & written}"
    assert regions, where


def test_every_copy_holds_a_word_before_the_next_phase_reads_it(case):
    """The write stage writes the units' read copies of the activation memory
    READ_MARGIN cycles after a word's offer (mars.hw.writer.act_write_stage, S4); the
    next phase's gathers must not read earlier.  Phases are separated by the controller
    (WALK, LOAD, WALK), not by an interlock, so the cycle model measures the gap."""
    mapping, where = case
    for skip_loads in (False, True):      # later inferences: shorter LOAD states
        margins = read_margins(network_cycles(mapping, skip_loads=skip_loads))
        assert len(margins) == len(mapping.phases) - 1, where
        assert min(margins, default=READ_MARGIN) >= READ_MARGIN, f"{where}: {margins}"


def test_each_walk_finds_its_block_sets_rows_in_its_macro(case):
    """Replay the LOADs (weight SRAM -> macro rows) phase by phase: when a walk runs, the
    row slots it names hold its block set's packed rows.  A hidden load (``hide_loads``)
    runs during the previous phase's walks, so it is replayed after them, and none of
    them reads a row it writes."""
    mapping, where = case
    cfg = mapping.config
    G = cfg.rows_per_step
    sram = {core: memory(mapping, "weights", core) for core in range(cfg.cores)}
    macro = defaultdict(dict)                     # unit -> macro row -> word

    def replay(load):
        core = load.unit // cfg.macros_per_core
        assert load.dst + load.count <= cfg.rows, where
        for i in range(load.count):
            macro[load.unit][load.dst + i] = sram[core][load.src + i]

    for p, phase in enumerate(mapping.phases):
        for load in phase.loads:
            assert not load.hidden or (cfg.hide_loads and p > 0), where
            if not load.hidden:
                replay(load)
        plan = mapping.layers[phase.layer]
        packed = plan.packed
        for walk in phase.walks:
            b, base = walk.block_set, walk.word["desc"]["slot_base"]
            first = packed.set_slot_start[b] * G
            expected = list(packed.rows[first:first + packed.set_steps[b] * G])
            found = [macro[walk.unit].get(base * G + i) for i in range(len(expected))]
            assert found == expected, f"{where}, layer {plan.name}, set {b}"
        # the next phase's hidden loads, during these walks: rows no walk here reads
        ahead = mapping.phases[p + 1].loads if p + 1 < len(mapping.phases) else []
        for load in (ld for ld in ahead if ld.hidden):
            written = set(range(load.dst, load.dst + load.count))
            for walk in phase.walks:
                base, steps = walk.word["desc"]["slot_base"], walk.word["desc"]["steps"]
                read = set(range(base * G, (base + steps) * G))
                assert walk.unit != load.unit or not written & read, \
                    f"{where}, phase {p}: a hidden load writes rows a walk reads"
            replay(load)
    if mapping.resident:
        assert all(not phase.loads for phase in mapping.phases[1:]), where


def test_rounds_that_fit_together_hide_their_loads(case):
    """``hide_loads``: a unit's round whose row slots and those of its round in the phase
    before fit the macro together (R/G) lands in slots that round does not read, so
    every one of its loads is hidden (docs/architecture.md, "Hidden reloads")."""
    mapping, where = case
    cfg = mapping.config
    if not cfg.hide_loads or mapping.resident:
        return

    def extents(phase):
        read = defaultdict(set)
        for walk in phase.walks:
            base, steps = walk.word["desc"]["slot_base"], walk.word["desc"]["steps"]
            read[walk.unit].update(range(base, base + steps))
        return {u: max(s) - min(s) + 1 for u, s in read.items()}

    for p in range(1, len(mapping.phases)):
        before, now = extents(mapping.phases[p - 1]), extents(mapping.phases[p])
        for load in mapping.phases[p].loads:
            u = load.unit
            if before.get(u, 0) + now[u] <= cfg.row_slots:
                assert load.hidden, f"{where}, phase {p}, unit {u}: {load}"


def ops(words, layout):
    field = layout["op"]
    mask = (1 << field.shape.width) - 1
    return [(word >> field.offset) & mask for word in words]


def test_programs_end_every_phase_in_a_sync(case):
    mapping, where = case
    cfg = mapping.config
    sync = int(Op.SYNC)
    for u in range(cfg.macros):
        program = ops(joined(mapping, "program", u), instruction_layout(cfg))
        walks = [sum(w.unit == u for w in phase.walks) for phase in mapping.phases]
        expected = [sync]
        for count in walks:
            expected += [int(Op.WALK)] * count + [sync]
        assert program == expected, f"{where}, unit {u}"
    for core in range(cfg.cores):
        program = ops(memory(mapping, "loader", core), load_layout(cfg))
        expected = []
        # per phase its LOAD part's loads and a SYNC; with hide_loads then the next
        # phase's hidden loads (run during this phase's walks) and a SYNC
        for p, phase in enumerate(mapping.phases):
            count = sum(ld.unit // cfg.macros_per_core == core and not ld.hidden
                        for ld in phase.loads)
            expected += [int(Op.LOAD)] * count + [sync]
            if cfg.hide_loads:
                after = mapping.phases[p + 1].loads if p + 1 < len(mapping.phases) else []
                count = sum(ld.unit // cfg.macros_per_core == core and ld.hidden
                            for ld in after)
                expected += [int(Op.LOAD)] * count + [sync]
        assert program == expected, f"{where}, core {core}"


def test_memory_images_fit_their_depths_and_widths(case):
    mapping, where = case
    cfg = mapping.config
    dfmt = DecoderFormat(cfg)
    fmt = UnitFormat(cfg)
    limits = {
        "program": (cfg.program_words * fmt.insn_chunks, CONTROL_WORD_BITS),
        "params": (cfg.param_words * fmt.param_chunks, CONTROL_WORD_BITS),
        "index": (dfmt.index_depth, dfmt.kgroup_bits),
        "ktable": (dfmt.max_kgroups, dfmt.ktable_bits),
        "weights": (cfg.weight_sram_rows, cfg.cols),
        "loader": (cfg.program_words, load_layout(cfg).size),
    }
    for name, (depth, width) in limits.items():
        count = cfg.cores if name in ("weights", "loader") else cfg.macros
        domains = cfg.wordline_domains if name in ("index", "ktable") else 1
        for i in range(count):
            for d in range(domains):
                words = memory(mapping, name, i, d)
                assert len(words) <= depth, f"{where}: {name} {i}/{d}"
                assert all(0 <= int(w) < 1 << width for w in words), f"{where}: {name}"
    assert mapping.n_phases <= cfg.max_phases
    for u in range(cfg.macros):
        assert all(w < 1 << instruction_layout(cfg).size for w in joined(mapping, "program", u))
        assert all(w < 1 << param_layout(cfg).size for w in joined(mapping, "params", u))


def test_refusals_name_the_configuration_field():
    tiny = PRESETS["tiny"]
    build, sparsity = NETWORKS["cnn"]
    for changes, field in [({"program_words": 8}, "program_words"),
                           ({"act_buffer_words": 64}, "act_buffer_words")]:
        cfg = tiny.replace(name="small", **changes)
        network = build(cfg, np.random.default_rng(0), sparsity)
        with pytest.raises(MappingError, match=field):
            map_network(network)


def test_a_loader_program_too_long_with_hide_loads_names_it():
    """``hide_loads`` puts two SYNCs a phase in each loader program: a network whose
    loader program fits without it can be refused with it, and the message names both
    remedies (``program_words``, or ``hide_loads`` off), not only the first."""
    build, sparsity = NETWORKS["dense"]
    seed = stable_seed("ice40", "dense")
    plain = PRESETS["ice40"]
    hide = plain.replace(name="ice40-hide", hide_loads=True)
    mapping = map_network(build(plain, np.random.default_rng(seed), sparsity))
    syncs = len(mapping.phases)                # one a phase and core; hide_loads: two
    words = len(memory(mapping, "loader", 0))
    assert words <= plain.program_words < words + syncs, f"seed {seed}"
    with pytest.raises(MappingError) as info:
        map_network(build(hide, np.random.default_rng(seed), sparsity))
    message = str(info.value)
    assert "loader program (core 0" in message and "program_words" in message, message
    assert "hide_loads" in message and "\n" not in message, message
