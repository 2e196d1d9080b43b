"""Residual adds on the accelerator (docs/architecture.md, "Residual adds"): the mapper's
activation regions against the network graph (no map overwritten while it is still to be
read; every add finds both inputs), its refusals, and small residual networks on the RTL in
Amaranth's simulator, bit-exact with the golden model and cycle-exact with the cycle model,
with every shortcut read in its unit's slot."""

from __future__ import annotations

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import READ_MARGIN, network_cycles, read_margins
from mars.sw.golden.network import FlattenNode, IntegerNetwork, PoolNode
from mars.sw.layer import LayerGeometry, LayerKind
from mars.sw.mapper import MappingError, map_network
from mars.tb.networks import (
    RESIDUAL_NETWORKS,
    cifar_resnet_config,
    random_inputs,
    random_layer,
    residual_config,
    resnet_cifar,
    stable_seed,
)
from mars.tb.pysim_host import run_on_pysim

TINY = PRESETS["tiny"]
TWO_UNITS = TINY.replace(name="tiny-two-units", macros_per_core=2, act_buffer_words=256)


def _network(config, name):
    seed = stable_seed("residual", config.name, name)
    build, sparsity = RESIDUAL_NETWORKS[name]
    return build(config, np.random.default_rng(seed), sparsity), seed


def _replay(network, mapping) -> None:
    """Walk the mapping's layers in order with the graph's own view of which value each
    reads: every read finds the value it needs in the region (or the result memory) the
    walk names, and a write replaces what was there."""
    alias = {"input": "input"}
    for node in network.nodes:
        alias[node.name] = (alias[node.inputs[0]] if isinstance(node, FlattenNode)
                            else node.name)
    holds = {("act", 0): "input"}
    producer = {}
    for plan in mapping.layers:
        name = (plan.pool or (plan.residual.add if plan.residual else plan.node)).name
        producer[name] = plan
    for plan in mapping.layers:
        walks = [w for p in plan.phases for w in mapping.phases[p].walks]
        want = alias.get(plan.node.inputs[0], plan.node.inputs[0])
        for walk in walks:
            assert holds.get(("act", walk.word["in_bank"])) == want, \
                f"{plan.name} reads region {walk.word['in_bank']}, which no longer holds {want}"
        if plan.residual is not None:
            add = plan.residual.add
            other = add.inputs[1 - plan.residual.index]
            other = alias.get(other, other)
            assert plan.node.name == add.inputs[plan.residual.index]
            adding = [w for w in walks if w.word["add"]]
            assert adding, f"{add.name}: no walk adds the shortcut"
            for walk in adding:
                key = ("res", 0) if walk.word["sc_res"] else ("act", walk.word["sc_bank"])
                assert holds.get(key) == other, f"{add.name}: shortcut {other} not in {key}"
        out = (plan.pool or (plan.residual.add if plan.residual else plan.node)).name
        alias[out] = out
        final = [w for w in walks if not (w.word["acc_out"] and not plan.out.result)]
        keys = {("res", 0) if w.word["acc_out"] else ("act", w.word["out_bank"])
                for w in final}
        assert len(keys) == 1
        if len(final) < len(walks):         # K-splitting: partial sums in the result memory
            holds[("res", 0)] = f"partial sums of {plan.name}"
        holds[keys.pop()] = out
    # The units' read copies have no collision logic (no_rw_check, mars.hw.top): no phase
    # gathers from a region one of its walks writes (the in-place add reads its shortcut
    # through the shortcut port: tests/test_mapper.py, the same rule on plain networks).
    for i, phase in enumerate(mapping.phases):
        read = {w.word["in_bank"] for w in phase.walks}
        written = {w.word["out_bank"] for w in phase.walks if not w.word["acc_out"]}
        assert not read & written, f"phase {i} gathers from region(s) {read & written}"
    # ... and the copies hold a phase's words before the next phase gathers (S4 of the
    # write stage, READ_MARGIN cycles after the offer; tests/test_mapper.py too).
    for skip_loads in (False, True):      # later inferences: shorter LOAD states
        margins = read_margins(network_cycles(mapping, skip_loads=skip_loads))
        assert min(margins, default=READ_MARGIN) >= READ_MARGIN, margins


@pytest.mark.parametrize("preset", ["tiny", "default", "adc3", "wide8"])
@pytest.mark.parametrize("name", sorted(RESIDUAL_NETWORKS))
def test_regions_hold_every_map_until_its_last_reader(preset, name):
    network, seed = _network(residual_config(PRESETS[preset]), name)
    try:
        mapping = map_network(network)
    except MappingError as error:
        pytest.skip(f"{name} does not map on {preset}: {error}")
    _replay(network, mapping)


def test_cifar_resnets_map():
    """ResNet8 and ResNet20 (CIFAR-10 shapes, 50 % group sparsity) map with buffers sized
    for 32x32x16 maps and 16x16x32 shortcut accumulators; every read finds its map.
    ResNet8 needs two regions (its pooled last add has a conv shortcut); ResNet20's last
    block is an identity block with the global pool after its add: a third region."""
    config = cifar_resnet_config()
    for depth in (8, 20):
        network = resnet_cifar(config, np.random.default_rng(depth), 0.5, depth=depth,
                               size=32, width=16)
        mapping = map_network(network)
        _replay(network, mapping)
        regions = {w.word["out_bank"] for p in mapping.phases for w in p.walks}
        assert regions == ({0, 1} if depth == 8 else {0, 1, 2})


def test_resnet18_maps_with_k_splitting():
    """The CIFAR ResNet18 (64 .. 512 channels) at 50 % group sparsity: its 3x3 layers'
    block sets keep more groups than a macro's row slots; without residual adds (and so
    without the partial-sum path) the mapper refuses, with them it splits the groups over
    several walks (K-splitting) and every read finds its map."""
    config = residual_config(PRESETS["default"]).replace(
        result_words=32768, act_buffer_words=65536, weight_sram_rows=262144, param_words=256,
        program_words=1024, max_phases=512)
    full = resnet_cifar(config, np.random.default_rng(18), 0.5, size=32, width=64,
                        stages=4, blocks=2)
    mapping = map_network(full)
    _replay(full, mapping)
    assert any(w.word["psum"] for p in mapping.phases for w in p.walks)
    plain = config.replace(residual_adds=False)
    layer = random_layer(np.random.default_rng(1), plain, "wide", "input",
                         LayerGeometry(LayerKind.CONV, 4, 4, 128, 16, 3, 3, 1, 1), "acc", 0.5)
    single = IntegerNetwork(plain, (4, 4, 128), (layer,), "wide")
    with pytest.raises(MappingError, match="a macro holds 64 row slots.*residual_adds"):
        map_network(single)
    mapping = map_network(IntegerNetwork(config, (4, 4, 128), (layer,), "wide"))
    assert max(w.word["psum"] for p in mapping.phases for w in p.walks) == 1


def test_refusals_name_the_field():
    network, _ = _network(TINY.replace(name="plain", act_regions=3,
                                       result_words=128, weight_sram_rows=1024), "resnet")
    with pytest.raises(MappingError, match="residual_adds"):
        map_network(network)
    config = residual_config(TINY).replace(act_regions=2)
    network, _ = _network(config, "resnet-pool")
    with pytest.raises(MappingError, match="set act_regions to at least 3"):
        map_network(network)
    network, _ = _network(residual_config(TINY).replace(result_words=16), "resnet")
    with pytest.raises(MappingError, match="result_words"):
        map_network(network)


# Two units of the default macro with 16 row slots: 4 write lanes, 2 lane groups a word.
FOUR_LANES = PRESETS["default"].replace(name="four-lanes", cores=1, macros_per_core=2,
                                        act_buffer_words=1024, rows=128)


@pytest.mark.parametrize("base,name", [
    (TWO_UNITS, "resnet"), (FOUR_LANES, "ksplit-wide"),
    # a writer without S2 .. S4 (K = 2 + 1: the next value 1 mod U): the shortcut data
    # used in S1's cycle, the offer delayed back onto the unit's slots
    (TWO_UNITS.replace(name="two-units-k2", writer_stages=2), "resnet")],
    ids=["two-units-conv-shortcut", "four-lanes-k-splitting", "two-units-writer-stages-2"])
def test_residual_network_on_the_rtl(base, name):
    """Bit-exact and cycle-exact in Amaranth's simulator; on two units, every shortcut read
    and every offered word comes from the unit whose slot it is (docs/banking.md)."""
    config = residual_config(base)
    network, seed = _network(config, name)
    rng = np.random.default_rng(seed + 1)
    inputs = random_inputs(network, rng, 1)
    mapping = map_network(network)
    events = []

    def monitor(ctx, top, cycle):
        for u, unit in enumerate(top.units):
            if ctx.get(unit.sc_read.act_en) or ctx.get(unit.sc_read.res_en):
                events.append((cycle + 1, u))       # the read is for the next cycle's slot
            if ctx.get(unit.act_entry.valid) or ctx.get(unit.res_entry.valid):
                events.append((cycle, u))

    [answer] = run_on_pysim(mapping, inputs, 200_000, monitor=monitor)
    assert answer.outputs.value == run_accelerator(network, inputs)[0].tolist(), \
        f"seed {seed}"
    assert answer.phase_cycles.value == [p.cycles for p in network_cycles(mapping)], \
        f"seed {seed}"
    assert any(mapping.layers[i].residual for i in range(len(mapping.layers)))
    assert name != "ksplit-wide" or any(w.word["psum"] and w.word["add"]
                                        for p in mapping.phases for w in p.walks)
    wrong = [(t, u) for t, u in events if t % config.macros != u]
    assert not wrong, f"seed {seed}: accesses outside their slot {wrong[:5]}"


@pytest.mark.parametrize("depth", [8, 20])
def test_resnet_builder_is_the_trainers_topology(depth):
    """`resnet_cifar` (random integer weights) has the graph the trainer's ResNet parses
    into (`mars.sw.train.models`): the same operations, inputs, outputs and shapes in the
    same order, so the residual tests run the trainer's ResNet8/ResNet20."""
    pytest.importorskip("torch")
    from mars.sw.train.models import parse_model
    from mars.sw.train.models import resnet_cifar as float_resnet

    parsed = parse_model(float_resnet((3, 8, 8), 10, depth, width=4), (3, 8, 8))
    built = resnet_cifar(residual_config(TINY), np.random.default_rng(0), 0.5, depth=depth,
                         size=8, width=4)
    assert len(parsed) == len(built.nodes)
    pos = {"input": -1}
    pos.update({n.name: i for i, n in enumerate(parsed)})
    pos_b = {"input": -1}
    pos_b.update({n.name: i for i, n in enumerate(built.nodes)})
    for mine, theirs in zip(built.nodes, parsed):
        assert mine.op == theirs.op, (mine.name, theirs.name)
        assert [pos_b[i] for i in mine.inputs] == [pos[i] for i in theirs.inputs], mine.name
        if theirs.geometry is not None:
            assert mine.geometry == theirs.geometry, mine.name
            assert mine.output == theirs.output, mine.name


def test_k_splitting_refusals():
    """A split layer's partial sums must fit the result memory, and a pooled split layer
    needs a channel count that is a multiple of the writer's lanes."""
    config = residual_config(PRESETS["default"])           # 4 write lanes, 64 row slots
    rng = np.random.default_rng(5)
    wide = random_layer(rng, config, "wide", "input",
                        LayerGeometry(LayerKind.CONV, 4, 4, 128, 6, 3, 3, 1, 1), "act", 0.0)
    pool = PoolNode("p", ("wide",), (4, 4, 6), 2, 2, 0)
    flat = FlattenNode("f", ("p",), (2, 2, 6))
    fc = random_layer(rng, config, "fc", "f", LayerGeometry.linear(24, 3), "acc", 0.0)
    network = IntegerNetwork(config, (4, 4, 128), (wide, pool, flat, fc), "fc")
    with pytest.raises(MappingError, match="multiple of the writer's 4 lanes"):
        map_network(network)
    small = config.replace(result_words=64)
    layer = random_layer(rng, small, "wide", "input",
                         LayerGeometry(LayerKind.CONV, 4, 4, 128, 8, 3, 3, 1, 1), "act", 0.0)
    flat = FlattenNode("f", ("wide",), (4, 4, 8))
    fc = random_layer(rng, small, "fc", "f", LayerGeometry.linear(128, 3), "acc", 0.0)
    with pytest.raises(MappingError, match="partial sums .* exceed the result memory"):
        map_network(IntegerNetwork(small, (4, 4, 128), (layer, flat, fc), "fc"))


def test_weights_from_the_images_of_split_layers():
    """The fault model's golden run (`mars.sw.faults.run_mapping`: the weights taken from
    the mapping's weight images through its loads, part by part for a split block set)
    equals the golden model on the K-split network and ResNet8."""
    from mars.sw.faults import run_mapping

    config = residual_config(TINY)
    for name in ("ksplit", "resnet8"):
        network, seed = _network(config, name)
        inputs = random_inputs(network, np.random.default_rng(seed), 2)
        mapping = map_network(network)
        assert name != "ksplit" or any(w.first for p in mapping.phases for w in p.walks)
        np.testing.assert_array_equal(run_mapping(mapping, inputs),
                                      run_accelerator(network, inputs), err_msg=name)


def test_scaled_readouts_are_not_split():
    """A binary readout's accumulator floors the whole scaled sum once, so the mapper
    refuses to split its block sets (the parts' floors would not add up)."""
    from mars.config import ReadoutMode

    config = residual_config(TINY).replace(readout_mode=ReadoutMode.BINARY)
    rng = np.random.default_rng(2)
    layer = random_layer(rng, config, "wide", "input",
                         LayerGeometry(LayerKind.CONV, 4, 4, 32, 4, 3, 3, 1, 1), "acc", 0.0)
    with pytest.raises(MappingError, match="binary readout's scaled sums cannot be split"):
        map_network(IntegerNetwork(config, (4, 4, 32), (layer,), "wide"))
