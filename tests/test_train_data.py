"""Data sets (`mars.sw.train.data`): the bundled digits with a fixed split, and the readers of
CIFAR-10 python batches and MNIST idx files, fed with files written here."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from mars.sw.train.data import (DataError, load_cifar10, load_dataset, load_digits, load_mnist,
                                split_indices)


def test_digits_split_is_fixed_stratified_and_disjoint():
    data = load_digits()
    again = load_digits()
    assert data.fingerprint() == again.fingerprint()
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    assert data.pixel_max == 16
    # raw pixels come back exactly (the images are p / 16)
    raw = data.x_test * 16
    assert np.array_equal(raw, np.round(raw))
    # about 20 % of every class is in the test split
    for label in range(10):
        n_test = int((data.y_test == label).sum())
        n_all = n_test + int((data.y_train == label).sum())
        assert n_test == round(0.2 * n_all)


def test_split_indices():
    labels = np.array([0, 1] * 10 + [2] * 5)
    train, test = split_indices(labels, 0.2, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(25))
    assert len(test) == 2 + 2 + 1
    assert np.array_equal(test, split_indices(labels, 0.2, seed=3)[1])
    assert not np.array_equal(test, split_indices(labels, 0.2, seed=4)[1])


def write_cifar(folder, n=4, labels=None):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": list(labels if labels is not None else rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_cifar10_reader(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_cifar10(folder)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    batch = pickle.loads((folder / "test_batch").read_bytes())
    # channel planes as stored: the first 1024 bytes are the red plane
    assert np.array_equal(data.x_test[0, 0].flatten() * 255,
                          batch[b"data"][0, :1024].astype(np.float32))
    assert data.y_test.tolist() == list(batch[b"labels"])
    assert load_dataset("cifar10", folder).fingerprint() == data.fingerprint()


def test_cifar10_errors(tmp_path):
    with pytest.raises(DataError, match="give its folder with --data-path"):
        load_cifar10(None)
    with pytest.raises(DataError, match="is not a folder"):
        load_cifar10(tmp_path / "missing")
    folder = write_cifar(tmp_path / "c")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3' is missing"):
        load_cifar10(folder)
    folder = write_cifar(tmp_path / "d")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch' is not a readable pickle"):
        load_cifar10(folder)
    folder = write_cifar(tmp_path / "e", labels=[0, 1, 2, 10])
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_cifar10(folder)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, compress=False, n_train=6, n_test=3):
    rng = np.random.default_rng(1)
    folder.mkdir(exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return folder, arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader(tmp_path, compress):
    folder, arrays = write_mnist(tmp_path / "mnist", compress)
    data = load_mnist(folder)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (3, 1, 28, 28)
    assert np.array_equal(np.round(data.x_test[:, 0] * 255), arrays["t10k-images-idx3-ubyte"])
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_mnist_errors(tmp_path):
    folder, _ = write_mnist(tmp_path / "a")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="'t10k-labels-idx1-ubyte' .* is missing"):
        load_mnist(folder)
    folder, _ = write_mnist(tmp_path / "b")
    data = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(DataError, match="header promises 4704 bytes"):
        load_mnist(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + data[4:])
    with pytest.raises(DataError, match="bad magic number"):
        load_mnist(folder)
    folder, _ = write_mnist(tmp_path / "c")
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(DataError, match="MNIST train files disagree"):
        load_mnist(folder)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="takes no --data-path"):
        load_dataset("digits", tmp_path)
