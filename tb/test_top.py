"""Whole networks on the accelerator top, on Verilator and Icarus: every output equal to the
golden model, every phase's cycle count equal to the cycle model's."""

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.tb.accel import assert_exact_on_rtl
from mars.tb.networks import NETWORKS, random_inputs, stable_seed
from mars.tb.sim import SIMULATORS

TINY = PRESETS["tiny"]
# The tiny top with a 2-bit ADC: popcounts of 4 rows clip at 3.
TINY_SAT = TINY.replace(name="tiny-sat", readout_bits=2, readout_mode=ReadoutMode.SATURATING)


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config", [TINY, TINY_SAT], ids=lambda c: c.name)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_bit_exact_and_cycles(simulator, config, name):
    seed = stable_seed(name) % 1000
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    assert_exact_on_rtl(network, random_inputs(network, rng, 2), simulator,
                        f"network {name!r} on {config.name}, seed {seed}")


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
    assert_exact_on_rtl(network, random_inputs(network, rng, 2), simulator,
                        f"network {name!r} on {config.name}, seed {seed}")


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ["cnn", "ksplit"])
def test_hidden_loads_bit_exact_and_cycles(simulator, name):
    """Reloads hidden behind the walks (``hide_loads``): the loaders copy the next phase's
    rows into row slots the walks do not read while they compute.  `cnn` reloads every
    layer on the tiny top; `ksplit` (with residual adds) splits its layers' block sets
    into parts over several rounds of half the row slots each.  Bit-exact (a hidden load
    that overwrote a row in use would change the outputs) and cycle-exact."""
    from mars.sw.mapper import map_network
    from mars.tb.networks import RESIDUAL_NETWORKS, residual_config

    if name == "ksplit":
        config = residual_config(TINY).replace(name="tiny-res-hide", hide_loads=True,
                                               max_phases=32)
        build, sparsity = RESIDUAL_NETWORKS[name]
    else:
        config = TINY.replace(name="tiny-hide", hide_loads=True)
        build, sparsity = NETWORKS[name]
    seed = stable_seed("hide", name) % 1000
    rng = np.random.default_rng(seed)
    network = build(config, rng, sparsity)
    mapping = map_network(network)
    where = f"network {name!r} on {config.name}, seed {seed}"
    assert any(ld.hidden for phase in mapping.phases for ld in phase.loads), where
    assert_exact_on_rtl(network, random_inputs(network, rng, 2), simulator, where)
