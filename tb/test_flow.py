"""The main job end to end: the default digits network, trained with CIM-aware pruning, on
the RTL of the default top (Verilator through the native harness, Icarus through cocotb):
bit-exact with the golden model, cycle counts equal to the cycle model's."""

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.run import flow, run_network_on


@pytest.fixture(scope="module")
def digits_package(tmp_path_factory):
    pytest.importorskip("torch")
    from mars.sw.train.trainer import TrainOptions, train

    out = tmp_path_factory.mktemp("digits") / "package"
    # A short training run: the hardware check needs a real pruned network, not accuracy.
    train(PRESETS["default"], TrainOptions(epochs=4, qat_epochs=4, scope="block",
                                           test_vectors=16), out, progress=False)
    return out


@pytest.mark.sim
def test_flow_on_verilator(digits_package, tmp_path):
    report = flow(package=digits_package, out=tmp_path, simulator="verilator", count=16,
                  say=lambda line: None)
    assert report["bit_exact"] and report["cycle_model_exact"]
    assert report["weights_resident"]
    # The RTL's predictions on these inputs are the package's integer reference's.
    outputs = np.load(tmp_path / "rtl_outputs.npz")
    assert outputs["logits"].shape == (16, 10)
    assert (tmp_path / "report.json").is_file()


@pytest.mark.sim
def test_default_network_on_icarus(digits_package):
    from mars.sw.package import load_package

    package = load_package(digits_package)
    inputs = package.test_inputs[:1]
    rtl = run_network_on(package.network, inputs, "icarus")
    golden = run_network_on(package.network, inputs, "golden", rtl.mapping)
    np.testing.assert_array_equal(rtl.logits, golden.logits)
    np.testing.assert_array_equal(rtl.logits, package.test_logits[:1])
    np.testing.assert_array_equal(rtl.phase_cycles, golden.phase_cycles)
