"""``mars train`` on the command line: a short run end to end and its error messages."""

from __future__ import annotations

import numpy as np
import pytest

from mars.sw.cli import main
from mars.sw.golden.network import run_network
from mars.sw.package import load_package

SHORT = ["--epochs", "2", "--qat-epochs", "1", "--train-subset", "256", "--test-subset", "64",
         "--no-progress"]


def test_train_writes_a_package_and_a_summary(tmp_path, capsys):
    out = tmp_path / "pkg"
    rc = main(["train", "--config", "tiny", "--out", str(out), "--sparsity", "75%",
               "--weight-bits", "4", "--act-bits", "4", "--seed", "3", *SHORT])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    package = load_package(out)
    assert package.network.config.name == "tiny"
    assert package.manifest["sparsity"]["target"] == 0.75
    assert package.manifest["training"]["seed"] == 3
    assert np.array_equal(run_network(package.network, package.test_inputs),
                          package.test_logits)
    for text in ("layer", "conv1", "stored", "float", "integer", str(out)):
        assert text in captured.out
    assert f"integer {100 * package.accuracy:.2f} %" in captured.out


def test_train_overrides_bits_in_the_packaged_config(tmp_path, capsys):
    out = tmp_path / "pkg8"
    rc = main(["train", "--out", str(out), "--weight-bits", "8", "--act-bits", "8",
               "--keep-last-dense", "--distill", "0", *SHORT])
    assert rc == 0, capsys.readouterr().err
    package = load_package(out)
    assert (package.network.config.weight_bits, package.network.config.act_bits) == (8, 8)
    assert package.test_inputs.max() > 15                  # 8-bit input codes
    assert package.manifest["sparsity"]["last_layer_dense"] is True
    assert package.manifest["training"]["distill"] == 0.0
    first, *middle, last = [n for n in package.manifest["nodes"] if "sparsity" in n]
    assert not first["sparsity"]["prunable"] and not last["sparsity"]["prunable"]
    assert all(n["sparsity"]["prunable"] and n["sparsity"]["pruned_groups"] for n in middle)


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "give its folder with --data-path"),
    (["--dataset", "cifar10", "--data-path", "/nonexistent/cifar"], "is not a folder"),
    (["--model", "lenet"], "unknown model 'lenet'"),
    (["--weight-bits", "3"], "weight_bits (Wb=3) must divide"),
])
def test_train_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "pkg"
    rc = main(["train", "--out", str(out), *SHORT, *argv])
    captured = capsys.readouterr()
    assert rc == 2
    assert message in captured.err
    assert captured.err.startswith("mars: error:")
    assert not out.exists()


def test_train_rejects_an_unsupported_user_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def net(image_shape, classes):\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(),\n"
        "                         nn.Flatten(), nn.Linear(4 * 36, classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["train", "--out", str(tmp_path / "pkg"), "--model", "my_models:net", *SHORT])
    captured = capsys.readouterr()
    assert rc == 2
    assert "layer '2' (Dropout) is not supported" in captured.err
    assert not (tmp_path / "pkg").exists()


def test_sparsity_argument_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--sparsity", "1.5"])
    assert "must lie in [0, 1)" in capsys.readouterr().err


def test_cifar10_resnet_end_to_end_and_a_config_that_cannot_hold_it(tmp_path, capsys):
    """CIFAR-10 batches written here; resnet8 does not fit the default preset's activation
    buffers, nor a configuration without residual adds (both stopped before training),
    and runs on a configuration with larger buffers and residual adds."""
    import pickle

    from mars.config import PRESETS

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(8, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 8).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    args = ["train", "--dataset", "cifar10", "--data-path", str(folder), "--epochs", "1",
            "--qat-epochs", "1", "--train-subset", "16", "--test-subset", "4", "--no-progress"]
    rc = main([*args, "--out", str(tmp_path / "no")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "layer '3.body.0' (conv1): the input map (32x32x16 = 16384 activations) does not " \
           "fit an activation buffer of" in captured.err
    assert "float:" not in captured.out                  # stopped before training
    big = tmp_path / "big.json"
    big.write_text(PRESETS["default"].replace(name="big", act_buffer_words=16384).to_json())
    rc = main([*args, "--config", str(big), "--out", str(tmp_path / "no-adds")])
    captured = capsys.readouterr()
    assert rc == 2 and "float:" not in captured.out      # stopped before training
    assert "is a residual add: configuration big has residual_adds off" in captured.err
    big.write_text(PRESETS["default"].replace(name="big", act_buffer_words=16384,
                                              residual_adds=True).to_json())
    rc = main([*args, "--config", str(big), "--out", str(tmp_path / "pkg")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    package = load_package(tmp_path / "pkg")
    assert package.manifest["model"]["name"] == "resnet8"
    assert [n.op for n in package.network.nodes].count("add") == 3
    assert package.test_inputs.shape == (4, 32, 32, 3)
    assert np.array_equal(run_network(package.network, package.test_inputs),
                          package.test_logits)


@pytest.mark.parametrize("option, value, message", [
    ("--act-bits", "0", "--act-bits must be at least 1, not 0"),
    ("--weight-bits", "0", "--weight-bits must be at least 2, not 0"),
    ("--weight-bits", "1", "--weight-bits must be at least 2, not 1"),
    ("--epochs", "-1", "--epochs must be at least 0, not -1"),
    ("--qat-epochs", "-2", "--qat-epochs must be at least 0, not -2"),
    ("--batch-size", "0", "--batch-size must be at least 1, not 0"),
    ("--threads", "0", "--threads must be at least 1, not 0"),
    ("--seed", "-1", "--seed must be at least 0, not -1"),
    ("--seed", str(2 ** 64), f"--seed must be at most {2 ** 63 - 1}, not {2 ** 64}"),
    ("--train-subset", "0", "--train-subset must be at least 2, not 0"),
    ("--train-subset", "-5", "--train-subset must be at least 2, not -5"),
    ("--test-subset", "0", "--test-subset must be at least 1, not 0"),
    ("--test-vectors", "-1", "--test-vectors must be at least 0, not -1"),
])
def test_integer_options_out_of_range_are_one_line(tmp_path, capsys, option, value, message):
    # 0 is a value, not "option not given": it must never fall back to the configuration's.
    out = tmp_path / "pkg"
    rc = main(["train", "--out", str(out), *SHORT, option, value])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"mars: error: {message}\n"
    assert not out.exists()


def test_every_integer_option_is_range_checked():
    from mars.sw.cli import build_parser
    from mars.sw.train.command import _INT_OPTIONS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    int_options = {action.dest for action in train._actions if action.type is int}
    assert int_options == {attribute for attribute, *_ in _INT_OPTIONS}
