"""Binary and ternary (HCiM, ADC-less) readouts on the whole accelerator top, on Verilator
and Icarus: the suite's random networks with random column scale factor codes, every
output equal to the golden model (`run_accelerator`: comparator, scale-and-add, one floor
shift per layer, then the bias), every phase's cycle count equal to the cycle model's; and
``mars run --backend verilator`` on a binary/ternary model package."""

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.sw.cli import main
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import network_cycles
from mars.sw.mapper import map_network
from mars.sw.package import build_package_files, sparse, write_folder_atomically
from mars.tb.accel import assert_exact_on_rtl
from mars.tb.networks import NETWORKS, random_inputs, stable_seed
from mars.tb.scales import with_random_scales
from mars.tb.sim import SIMULATORS

TINY = PRESETS["tiny"]
# Ternary comparator at 2 of the 4 rows; binary with 2 activation bits per macro cycle.
TERNARY = TINY.replace(name="tiny-tern", readout_mode=ReadoutMode.TERNARY,
                       readout_threshold=2)
BINARY2 = TINY.replace(name="tiny-bin2", readout_mode=ReadoutMode.BINARY,
                       act_bits_per_cycle=2, scale_frac_bits=3)
# A few networks each (the exact and saturating readouts run all of them, tb/test_top.py).
CASES = [(TERNARY, "cnn"), (TERNARY, "odd"), (BINARY2, "odd"), (BINARY2, "dense")]


def scaled_network(config, name, seed):
    build, sparsity = NETWORKS[name]
    rng = np.random.default_rng(seed)
    network = with_random_scales(build(config, rng, sparsity), rng)
    return network, random_inputs(network, rng, 2)


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("config, name", CASES, ids=[f"{c.name}-{n}" for c, n in CASES])
def test_scaled_readout_network_bit_exact_and_cycles(simulator, config, name):
    seed = stable_seed("hcim", config.name, name) % 1000
    network, inputs = scaled_network(config, name, seed)
    expected = run_accelerator(network, inputs)
    assert expected[0].tolist() != expected[1].tolist(), f"seed {seed}: vacuous network"
    assert_exact_on_rtl(network, inputs, simulator,
                        f"network {name!r} on {config.name}, seed {seed}")


@pytest.mark.sim
def test_mars_run_verilator_on_a_ternary_package(tmp_path, capsys):
    network, inputs = scaled_network(TERNARY, "mlp", 3)
    logits = run_accelerator(network, inputs).reshape(len(inputs), -1)
    extra, node_extra = sparse.build(network)
    files = build_package_files(
        network, node_info={}, header={"input": {"shape": list(network.input_shape)}},
        test_inputs=inputs, test_labels=np.zeros(len(inputs), dtype=np.int32),
        test_logits=logits, extra_files=extra, node_extra=node_extra)
    write_folder_atomically(tmp_path / "pkg", files)
    out = tmp_path / "y.npz"
    assert main(["run", "--package", str(tmp_path / "pkg"), "--backend", "verilator",
                 "--out", str(out)]) == 0
    result = np.load(out)
    np.testing.assert_array_equal(result["logits"], logits)
    mapping = map_network(network)
    first = [p.cycles for p in network_cycles(mapping)]
    assert result["phase_cycles"][0].tolist() == first
