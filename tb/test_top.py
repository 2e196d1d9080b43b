"""Whole networks on the accelerator top, on Verilator and Icarus: every output equal to the
golden model, every phase's cycle count equal to the cycle model's."""

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.mapper import map_network
from mars.tb.accel import simulate
from mars.tb.networks import NETWORKS, random_inputs, stable_seed
from mars.tb.sim import SIMULATORS

TINY = PRESETS["tiny"]
# The tiny top with a 2-bit ADC: popcounts of 4 rows clip at 3.
TINY_SAT = TINY.replace(name="tiny-sat", readout_bits=2, readout_mode=ReadoutMode.SATURATING)


def run_case(config, name, simulator, seed):
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    inputs = random_inputs(network, rng, 2)
    mapping = map_network(network)
    expected = run_accelerator(network, inputs)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    stats = simulate(mapping, inputs, simulator, budget=2 * sum(first) + 1000)
    return expected, [first] + [later] * (len(inputs) - 1), stats


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config", [TINY, TINY_SAT], ids=lambda c: c.name)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_bit_exact_and_cycles(simulator, config, name):
    seed = stable_seed(name) % 1000
    expected, model, stats = run_case(config, name, simulator, seed=seed)
    where = f"network {name!r} on {config.name}, seed {seed}"
    assert stats["error"] == 0, where
    np.testing.assert_array_equal(stats["outputs"], expected, err_msg=where)
    assert stats["phase_cycles"] == model, where


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ["resnet", "resnet8", "resnet20", "ksplit"])
def test_residual_network_bit_exact_and_cycles(simulator, name):
    """Residual adds fused into the writers (identity and 1x1 conv shortcuts, stride 2,
    a global pool after the last add; resnet8 and resnet20: the topology of the trainer's
    ResNets on 8x8 inputs, widths 4, 8, 16) on the tiny top with residual adds:
    bit-exact and cycle-exact.  ResNet20 needs deeper program, parameter, index and
    cycle-counter memories (38 phases) and three activation regions."""
    from mars.tb.networks import RESIDUAL_NETWORKS, residual_config

    config, seed = residual_config(TINY), stable_seed("residual", name) % 1000
    if name == "resnet20":
        config = config.replace(name="tiny-res20", weight_sram_rows=4096, param_words=64,
                                program_words=128, max_phases=64)
    build, sparsity = RESIDUAL_NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    inputs = random_inputs(network, rng, 2)
    mapping = map_network(network)
    expected = run_accelerator(network, inputs)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    stats = simulate(mapping, inputs, simulator, budget=2 * sum(first) + 1000)
    where = f"network {name!r} on {config.name}, seed {seed}"
    assert stats["error"] == 0, where
    np.testing.assert_array_equal(stats["outputs"], expected, err_msg=where)
    assert stats["phase_cycles"] == [first] + [later] * (len(inputs) - 1), where
