"""A readout-aware package on the RTL: the logits a package stores for a saturating-ADC
configuration (adc3) are the ones the accelerator's RTL computes, bit for bit."""

import numpy as np
import pytest

from mars.config import PRESETS


@pytest.mark.sim
def test_adc3_package_logits_are_the_rtls(tmp_path):
    pytest.importorskip("torch")
    from mars.sw.golden.network import run_network
    from mars.sw.package import load_package
    from mars.sw.run import run_network_on
    from mars.sw.train.trainer import TrainOptions, train

    out = tmp_path / "adc3"
    # whole-macro groups and 8 row slots: prune per block, hard enough to fit the macros
    train(PRESETS["adc3"], TrainOptions(epochs=2, qat_epochs=1, train_subset=256,
                                        sparsity=0.75, scope="block",
                                        test_subset=16, test_vectors=16),
          out, progress=False, log=lambda line: None)
    package = load_package(out)
    inputs = package.test_inputs[:3]
    rtl = run_network_on(package.network, inputs, "verilator")
    np.testing.assert_array_equal(rtl.logits, package.test_logits[:3])
    # the readout saturates on these images: an exact readout would give other logits
    assert not np.array_equal(run_network(package.network, inputs), rtl.logits)
