"""Training end to end on small runs, the model package and its integer inference.

Independent expectations: the PyTorch fake-quantised model's predictions, the integer
network evaluated with PyTorch operators in PyTorch layouts, a per-K-group product through
the macro golden model, the labels themselves, and a second run for determinism.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mars.config import PRESETS
from mars.sw.golden import macro_step
from mars.sw.golden.network import run_network
from mars.sw.package import PackageError, load_package
from mars.sw.train.data import Dataset
from mars.sw.train.export import ExportError, torch_integer_forward
from mars.sw.train.models import resnet_cifar
from mars.sw.package import write_folder_atomically
from mars.sw.train.quant import input_codes
from mars.sw.train.trainer import TrainingError, TrainOptions, predict, train

CONFIG = PRESETS["default"]
QUICK = TrainOptions(epochs=8, qat_epochs=4, train_subset=600, test_subset=120, sparsity=0.5)


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "digits"
    lines = []
    result = train(CONFIG, QUICK, out, progress=False, log=lines.append)
    return result, out, "\n".join(lines)


def test_package_round_trip(trained):
    result, out, _ = trained
    package = load_package(out)
    net = package.network
    assert net.config == CONFIG
    assert [n.name for n in net.nodes] == ["conv0", "conv1", "pool0", "conv2", "pool1",
                                           "flatten0", "fc0"]
    for layer, exported in zip(net.layers, result.network.layers):
        assert np.array_equal(layer.weight, exported.weight)
        assert np.array_equal(layer.bias, exported.bias)
    logits = run_network(net, package.test_inputs)
    assert np.array_equal(logits, package.test_logits)
    assert package.test_inputs.shape == (120, 8, 8, 1)
    # the accuracy the package reports is the integer model's, over the test split
    integer_accuracy = float(np.mean(logits.argmax(axis=1) == package.test_labels))
    assert package.accuracy == pytest.approx(integer_accuracy, abs=1e-12)
    assert result.integer_accuracy == package.accuracy
    assert package.manifest["accuracy"]["test_images"] == 120
    assert package.accuracy > 0.8                       # it learned something


def test_integer_predictions_equal_the_pytorch_quantised_model(trained):
    result, out, _ = trained
    package = load_package(out)
    data_x = torch.from_numpy(package.test_inputs).permute(0, 3, 1, 2).float() / CONFIG.act_max
    # images round-trip through the input quantisation
    assert torch.equal(input_codes(data_x, CONFIG.act_bits),
                       torch.from_numpy(package.test_inputs).permute(0, 3, 1, 2).float())
    fake_quant = predict(result.qnet, data_x).numpy()
    integer = run_network(package.network, package.test_inputs).argmax(axis=1)
    assert np.array_equal(fake_quant, integer)
    assert result.agreement == 1.0
    # and the same integers through PyTorch operators in PyTorch's layouts: equal logits
    codes = input_codes(data_x, CONFIG.act_bits)
    assert np.array_equal(torch_integer_forward(result.qnet, package.network, codes).numpy(),
                          package.test_logits)


def test_manifest_contents(trained):
    result, out, log = trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "mars-model-package" and manifest["format_version"] == 1
    assert manifest["config"]["content_hash"] == CONFIG.content_hash
    assert manifest["dataset"]["name"] == "digits"
    assert manifest["input"]["layout"] == "HWC" and manifest["input"]["bits"] == 4
    layers = [n for n in manifest["nodes"] if n["op"] in ("conv", "linear")]
    assert layers[0]["sparsity"]["prunable"] is False
    assert layers[0]["sparsity"]["group_sparsity"] == 0.0
    for node in layers[1:]:
        sp = node["sparsity"]
        assert sp["pruned_groups"] == round(0.5 * sp["groups"])
        assert sp["zero_groups"] >= sp["pruned_groups"]
        assert node["sparse"]["stored_groups"] == sp["stored_groups"]
        assert len(node["sparse"]["index_images"]) == CONFIG.wordline_domains
    assert layers[-1]["columns_permuted_from_chw"] == [2, 2, 32]
    assert "multiplier" not in layers[-1] and layers[-1]["output"] == "acc"
    # every file of the folder is referenced by the manifest (or is it / config.json)
    referenced = {"manifest.json", "config.json"}

    def collect(value):
        if isinstance(value, dict):
            if "file" in value:
                referenced.add(value["file"])
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)
    collect(manifest)
    assert referenced == set(tree(out))
    # the summary table
    assert "conv1" in log and "(dense)" in log and "integer" in log


def macro_product(patches, weight, layer, config):
    """The layer's product as the macro computes it: one `macro_step` per K-group."""
    G = config.rows_per_step
    k = weight.shape[1]
    pad = -k % G
    x = np.pad(patches, [(0, 0)] * (patches.ndim - 1) + [(0, pad)])
    w = np.pad(weight.T, [(0, pad), (0, 0)])
    total = 0
    for kg in range(x.shape[-1] // G):
        total = total + macro_step(x[..., kg * G:(kg + 1) * G], w[kg * G:(kg + 1) * G], config)
    return total


def test_product_is_swappable_for_the_macro_model(trained):
    _, out, _ = trained
    package = load_package(out)
    logits = run_network(package.network, package.test_inputs[:16], product=macro_product)
    assert np.array_equal(logits, package.test_logits[:16])


def test_same_seed_gives_a_byte_identical_package(trained, tmp_path):
    _, out, _ = trained
    again = tmp_path / "again"
    train(CONFIG, QUICK, again, progress=False, log=lambda line: None)
    assert tree(again) == tree(out)
    other = tmp_path / "other"
    train(CONFIG, TrainOptions(**{**QUICK.__dict__, "seed": 1}), other, progress=False,
          log=lambda line: None)
    assert tree(other)["tensors/conv1.weight.npy"] != tree(out)["tensors/conv1.weight.npy"]


# -- bad packages ---------------------------------------------------------------------------

def copy_package(src, dst):
    for rel, data in tree(src).items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
    return dst


def rewrite_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_damaged_packages_are_rejected(trained, tmp_path):
    _, out, _ = trained
    bad = copy_package(out, tmp_path / "a")
    data = bytearray((bad / "tensors/conv1.weight.npy").read_bytes())
    data[-1] ^= 1
    (bad / "tensors/conv1.weight.npy").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="conv1' weight.*does not match its sha256"):
        load_package(bad)

    bad = copy_package(out, tmp_path / "b")
    (bad / "tests/logits.npy").unlink()
    with pytest.raises(PackageError, match="'tests/logits.npy' is missing"):
        load_package(bad)

    bad = copy_package(out, tmp_path / "c")
    rewrite_manifest(bad, lambda m: m["nodes"][1]["geometry"].update(cin=7))
    with pytest.raises(PackageError, match="node 'conv1'"):
        load_package(bad)

    bad = copy_package(out, tmp_path / "d")
    rewrite_manifest(bad, lambda m: m.update(format_version=99))
    with pytest.raises(PackageError, match="format_version 99 is not supported"):
        load_package(bad)

    bad = copy_package(out, tmp_path / "e")
    (bad / "config.json").write_text(CONFIG.replace(rows=128).to_json())
    with pytest.raises(PackageError, match="manifest names another configuration"):
        load_package(bad)

    with pytest.raises(PackageError, match="no manifest.json"):
        load_package(tmp_path / "nothing")


def test_sparse_files_must_agree_with_the_weights(trained, tmp_path):
    """A consistent edit of a dense weight (new sha256) is caught by the packed image."""
    import hashlib
    import io

    _, out, _ = trained
    bad = copy_package(out, tmp_path / "s")
    path = bad / "tensors/conv2.weight.npy"
    weight = np.load(path)
    row, col = np.argwhere(weight != 0)[0]
    weight[row, col] = -weight[row, col] if weight[row, col] != -7 else 6
    buffer = io.BytesIO()
    np.save(buffer, weight)
    path.write_bytes(buffer.getvalue())

    def fix(manifest):
        node = next(n for n in manifest["nodes"] if n["name"] == "conv2")
        node["weight"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    rewrite_manifest(bad, fix)
    with pytest.raises(PackageError, match="conv2.*does not unpack to the weights"):
        load_package(bad)


def test_writing_is_all_or_nothing(tmp_path):
    out = tmp_path / "pkg"

    def boom():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder_atomically(out, {"a.npy": b"1", "sub/b.npy": boom})
    assert list(tmp_path.iterdir()) == []                  # no package, no staging folder
    manifest = json.dumps({"format": "mars-model-package"}).encode()
    write_folder_atomically(out, {"manifest.json": manifest, "x": b"old"})
    with pytest.raises(RuntimeError):
        write_folder_atomically(out, {"manifest.json": manifest, "y": boom})
    assert tree(out) == {"manifest.json": manifest, "x": b"old"}   # the old one is intact
    write_folder_atomically(out, {"manifest.json": manifest, "y": b"new"})
    assert tree(out) == {"manifest.json": manifest, "y": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(PackageError, match="exists and is not a model package"):
        write_folder_atomically(precious, {"manifest.json": manifest})
    assert (precious / "notes.txt").read_text() == "mine"


# -- training failures leave nothing --------------------------------------------------------

def test_nan_loss_stops_training_without_a_package(tmp_path):
    options = TrainOptions(epochs=2, qat_epochs=0, train_subset=128, test_subset=32, lr=1e30)
    with pytest.raises(TrainingError, match="float: the loss became (nan|inf)"):
        train(CONFIG, options, tmp_path / "pkg", progress=False, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_accumulator_overflow_is_an_error_naming_the_layer(tmp_path):
    config = CONFIG.replace(acc_bits=13)
    options = TrainOptions(epochs=1, qat_epochs=1, train_subset=128, test_subset=32)
    with pytest.raises(ExportError, match=r"layer '3' \(conv1\): accumulators can reach"):
        train(config, options, tmp_path / "pkg", progress=False, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


# -- residual network on synthetic data -----------------------------------------------------

def test_residual_network_exports_its_adds(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(96, 3, 8, 8)).astype(np.float32) / np.float32(255)
    y = (x[:, 0].mean(axis=(1, 2)) > x[:, 1].mean(axis=(1, 2))).astype(np.int64)
    data = Dataset("synthetic", x[:64], y[:64], x[64:], y[64:], classes=2, pixel_max=255)
    torch.manual_seed(0)
    model = resnet_cifar((3, 8, 8), 2, depth=8, width=4)
    options = TrainOptions(epochs=1, qat_epochs=2, batch_size=32, sparsity=0.5,
                           prune_first=True)
    config = CONFIG.replace(name=f"{CONFIG.name}-res", residual_adds=True)
    result = train(config, options, tmp_path / "res", model=model, data=data, progress=False,
                   log=lambda line: None)
    package = load_package(tmp_path / "res")
    adds = [n for n in package.network.nodes if n.op == "add"]
    assert len(adds) == 3
    assert all(a.multiplier.shape == (2, n) for a, n in zip(adds, (4, 8, 16)))
    assert np.array_equal(run_network(package.network, package.test_inputs),
                          package.test_logits)
    codes = torch.from_numpy(package.test_inputs).permute(0, 3, 1, 2).float()
    assert np.array_equal(torch_integer_forward(result.qnet, package.network, codes).numpy(),
                          package.test_logits)
    assert package.manifest["sparsity"]["first_layer_dense"] is False
    assert np.array_equal(docs_sketch()(str(tmp_path / "res"), package.test_inputs),
                          package.test_logits)


# -- the specification ----------------------------------------------------------------------

def docs_sketch():
    """The reimplementation printed in docs/model-package.md, executed as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "model-package.md").read_text()
    code = text.split("### A reimplementation in a few lines")[1].split("```python")[1]
    namespace: dict = {}
    exec(code.split("```")[0], namespace)
    return namespace["run"]


def test_the_specification_sketch_reproduces_the_logits(trained, tmp_path):
    _, out, _ = trained
    package = load_package(out)
    assert np.array_equal(docs_sketch()(str(out), package.test_inputs), package.test_logits)
