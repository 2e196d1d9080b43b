"""The host driver on the RTL: a corrupted index code raises the accelerator's error flag,
and both transports (the native Verilator harness, the cocotb bench on Icarus) report it as
`AcceleratorError` from the top's real status."""

import numpy as np
import pytest

from mars.config import PRESETS
from mars.contract import HostMemory
from mars.sw.golden.cycles import network_cycles
from mars.sw.host import AcceleratorError, AcceleratorTimeout
from mars.sw.mapper import map_network
from mars.sw.simulate import simulate
from mars.tb.networks import NETWORKS, random_inputs
from mars.tb.sim import SIMULATORS

SEED = 1


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_error_flag_reaches_the_driver(simulator):
    build, sparsity = NETWORKS["cnn"]
    rng = np.random.default_rng(SEED)
    network = build(PRESETS["tiny"], rng, sparsity)
    inputs = random_inputs(network, rng, 1)
    mapping = map_network(network)
    budget = 2 * sum(p.cycles for p in network_cycles(mapping)) + 1000
    # Each block's kept K-groups must be listed in increasing order; reversed, the decoder
    # raises its index_order error (and its unit stalls).
    key = (HostMemory.INDEX, 0, 0)
    mapping.memories[key] = mapping.memories[key][::-1]
    with pytest.raises(AcceleratorError, match="error flag.*status busy[+]error") as info:
        simulate(mapping, inputs, simulator, budget=budget)
    assert not isinstance(info.value, AcceleratorTimeout), f"seed {SEED}"
