"""Binary/ternary (HCiM) readouts on the whole top, fast: the mapper's column scale factor
codes in the parameter words against `LayerNode.scales` (decoded bit by bit from the
documented layout, docs/macro.md), the parameter word of the other readouts unchanged, and
the `tiny`-sized top in Amaranth's simulator bit-exact with the golden model and
cycle-exact with the cycle model on a ternary and a binary configuration.  The Verilator
and Icarus runs are tb/test_top_hcim.py."""

from __future__ import annotations

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.contract import HostMemory, Status, UnitFormat, param_layout
from mars.contract.program import join_words
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.golden.network import run_network
from mars.sw.mapper import MappingError, map_network
from mars.tb.networks import NETWORKS, random_inputs, stable_seed
from mars.tb.pysim_host import run_on_pysim
from mars.tb.scales import with_random_scales

TINY = PRESETS["tiny"]
TERNARY = TINY.replace(name="tiny-tern", readout_mode=ReadoutMode.TERNARY,
                       readout_threshold=2)
BINARY2 = TINY.replace(name="tiny-bin2", readout_mode=ReadoutMode.BINARY,
                       act_bits_per_cycle=2, scale_frac_bits=3)
DEFAULT_TERNARY = PRESETS["default"].replace(name="default-tern",
                                             readout_mode=ReadoutMode.TERNARY)


def scaled_network(config, name, seed):
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = with_random_scales(build(config, rng, sparsity), rng)
    return network, random_inputs(network, rng, 2)


def signed_field(word: int, lsb: int, bits: int) -> int:
    value = (word >> lsb) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value


@pytest.mark.parametrize("config", [TERNARY, BINARY2, DEFAULT_TERNARY], ids=lambda c: c.name)
@pytest.mark.parametrize("name", ["cnn", "odd"])
def test_parameter_words_hold_the_block_sets_scale_factors(config, name):
    seed = stable_seed("hcim-map", config.name, name) % 1000
    network, _ = scaled_network(config, name, seed)
    mapping = map_network(network)
    fmt, N, Wb = UnitFormat(config), config.channels_per_macro, config.weight_bits
    # channel n's fields, LSB first: bias, mult, shift, then Wb scale codes
    per_channel = config.acc_bits + config.requant_mult_bits + fmt.shift_bits
    per_channel += Wb * config.scale_bits
    assert fmt.param_bits == N * per_channel == param_layout(config).size
    scale_lsb = config.acc_bits + config.requant_mult_bits + fmt.shift_bits
    checked = 0
    for plan in mapping.layers:
        node = plan.node
        for walk in (w for i in plan.phases for w in mapping.phases[i].walks):
            stored = mapping.memories[(HostMemory.PARAMS, walk.unit, 0)]
            at = walk.word["param_addr"]
            word = join_words(stored[at:at + fmt.param_chunks])
            for n in range(N):
                ch = walk.block_set * N + n
                got = [signed_field(word, n * per_channel + scale_lsb + j * config.scale_bits,
                                    config.scale_bits) for j in range(Wb)]
                want = node.scales[ch].tolist() if ch < node.geometry.cout else [0] * Wb
                assert got == want, f"seed {seed}: layer {node.name}, channel {ch}"
                bias = signed_field(word, n * per_channel, config.acc_bits)
                assert bias == (int(node.bias[ch]) if ch < node.geometry.cout else 0)
                checked += 1
    assert checked >= sum(p.node.geometry.cout for p in mapping.layers)


@pytest.mark.parametrize("config", [TINY, PRESETS["default"], PRESETS["adc3"]],
                         ids=lambda c: c.name)
def test_other_readouts_keep_the_parameter_word(config):
    """No scale field, and the word's width is bias + M + S per channel as before."""
    fmt = UnitFormat(config)
    n = config.channels_per_macro
    assert fmt.param_bits == n * (config.acc_bits + config.requant_mult_bits + fmt.shift_bits)
    assert "scale" not in param_layout(config).elem_shape.members


def test_layer_without_scale_factors_is_refused_by_name():
    build, sparsity = NETWORKS["mlp"]
    network = build(TERNARY, np.random.default_rng(0), sparsity)    # no scales
    with pytest.raises(MappingError, match="layer 'fc1'.*scale factors"):
        map_network(network)


@pytest.mark.parametrize("config", [TERNARY, BINARY2], ids=lambda c: c.name)
def test_top_in_pysim_bit_exact_and_cycle_exact(config):
    seed = stable_seed("hcim-pysim", config.name) % 1000
    network, inputs = scaled_network(config, "mlp", seed)
    mapping = map_network(network)
    answers = run_on_pysim(mapping, inputs, 20_000)
    expected = run_accelerator(network, inputs)
    # the scaled readout really is in play (not the exact product's numbers), and the
    # hidden layer's activations with it (the two inputs' logits differ)
    assert expected.tolist() != run_network(network, inputs).tolist()
    assert expected[0].tolist() != expected[1].tolist(), f"seed {seed}: vacuous network"
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    assert [a.outputs.value for a in answers] == expected.tolist(), f"seed {seed}"
    assert [a.phase_cycles.value for a in answers] == [first, later], f"seed {seed}"
    assert all(a.status.value == Status.DONE for a in answers)


def test_faulty_ternary_image_in_pysim_equals_the_faulty_golden_model():
    """Stuck cells (`mars run --faults`) on a ternary top: the RTL runs the faulty weight
    image with the column scale factors exactly as the golden model does."""
    from mars.sw.faults import FaultMap, FaultModel, inject_faults, run_mapping
    seed = stable_seed("hcim-faults") % 1000
    network, inputs = scaled_network(TERNARY, "odd", seed)
    clean = map_network(network)
    mapping = inject_faults(clean, FaultMap.draw(FaultModel(0.05, seed), TERNARY))
    answers = run_on_pysim(mapping, inputs, 50_000)
    expected = run_mapping(mapping, inputs).reshape(len(inputs), -1)
    assert expected.tolist() != run_accelerator(network, inputs).reshape(
        len(inputs), -1).tolist(), "the faults change nothing: the test would be vacuous"
    assert [a.outputs.value for a in answers] == expected.tolist(), f"seed {seed}"


def test_block_ram_budget_of_the_scale_factors():
    """Only the parameter memory grows, by the scale bits of each word; the ternary
    default top still fits the ECP5 part with a fifth to spare."""
    from mars.sw.budget import PART_LIMITS, estimate
    exact, scaled = PRESETS["default"], DEFAULT_TERNARY
    rows = {cfg.name: {r["name"]: r for r in estimate(cfg, "ecp5")} for cfg in (exact, scaled)}
    extra = exact.channels_per_macro * exact.weight_bits * exact.scale_bits
    words = -(-(UnitFormat(exact).param_bits + extra) // 36)
    assert rows[scaled.name]["unit parameters"]["depth"] == exact.param_words * words
    for name, row in rows[exact.name].items():
        if name != "unit parameters":
            assert rows[scaled.name][name]["bram"] == row["bram"], name
    used = sum(r["bram"] for r in rows[scaled.name].values())
    assert used <= 0.8 * PART_LIMITS["ecp5"]["bram"]
