"""Data sets for the trainer: scikit-learn's bundled digits, CIFAR-10 and MNIST from disk.

Nothing is ever fetched: the digits ship inside scikit-learn, CIFAR-10 (the "python
version" pickle batches) and MNIST (idx files, optionally gzipped) are read from a folder
the user already has.  Every loader returns a `Dataset` of float32 images in [0, 1], laid
out (N, C, H, W) as PyTorch expects, and int64 labels; the first layer quantises them to
Ab-bit unsigned integers (see docs/model-package.md, "Input").
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

from mars.errors import MarsError

__all__ = ["DataError", "Dataset", "DATASETS", "load_dataset", "load_digits", "load_cifar10",
           "load_mnist", "split_indices", "DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION"]

#: The digits have no official test split: a fixed stratified split, independent of the
#: training seed, so that every run and every package reports on the same 360 images.
DIGITS_SPLIT_SEED = 20240
DIGITS_TEST_FRACTION = 0.2


class DataError(MarsError, ValueError):
    """A data path that is missing or whose files are malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A training and a test split of one data set (arrays are not copied)."""

    name: str
    x_train: np.ndarray      # (N, C, H, W) float32 in [0, 1]
    y_train: np.ndarray      # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    pixel_max: int           # raw pixel maximum the images were divided by (16 or 255)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` training and `test` test images (None keeps all)."""
        return dataclasses.replace(
            self, x_train=self.x_train[:train], y_train=self.y_train[:train],
            x_test=self.x_test[:test], y_test=self.y_test[:test])

    def fingerprint(self) -> str:
        """SHA-256 of the raw arrays of both splits: identifies the exact data trained on."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            array = np.ascontiguousarray(array)
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


def split_indices(labels: np.ndarray, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stratified split: train and test indices, each sorted ascending.

    For each class (in increasing label order) its indices are permuted with
    ``np.random.default_rng(seed + label)`` and the first ``round(n * test_fraction)``
    go to the test split.
    """
    labels = np.asarray(labels)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng(seed + int(label)).permutation(len(members))
        test.append(members[order[:round(len(members) * test_fraction)]])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, pixel values 0..16)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32)[:, None, :, :] / np.float32(16)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = split_indices(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset("digits", images[train_idx], labels[train_idx], images[test_idx],
                   labels[test_idx], classes=10, pixel_max=16)


def _require_dir(path: Path | str | None, what: str) -> Path:
    if path is None:
        raise DataError(f"the {what} data set is read from disk: give its folder with "
                        f"--data-path (nothing is downloaded)")
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} data path {str(path)!r} is not a folder")
    return path


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with file.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch {str(file)!r} is missing") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(f"CIFAR-10 batch {str(file)!r} is not a readable pickle: "
                        f"{error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"CIFAR-10 batch {str(file)!r} has no b'data' and b'labels' entries")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch {str(file)!r}: expected uint8 data (n, 3072) and n "
                        f"labels, found {data.dtype} {data.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 batch {str(file)!r}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(path: Path | str | None) -> Dataset:
    """CIFAR-10 from the folder of the "python version" (``cifar-10-batches-py``).

    Reads ``data_batch_1`` .. ``data_batch_5`` (training) and ``test_batch`` (test), the
    official split.  Images are stored CHW (channel planes), as the batches hold them.
    """
    folder = _require_dir(path, "CIFAR-10")
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    scale = np.float32(255)
    return Dataset("cifar10", x_train.astype(np.float32) / scale, y_train,
                   x_test.astype(np.float32) / scale, y_test, classes=10, pixel_max=255)


_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(file: Path) -> np.ndarray:
    """An idx file (uint8 payload) as a NumPy array; ``.gz`` files are decompressed."""
    try:
        raw = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"MNIST file {str(file)!r} is missing") from None
    except (OSError, EOFError) as error:
        raise DataError(f"MNIST file {str(file)!r} cannot be read: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"MNIST file {str(file)!r} is not an idx file of unsigned bytes "
                        f"(bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"MNIST file {str(file)!r} is truncated in its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise DataError(f"MNIST file {str(file)!r}: header promises {count} bytes of data "
                        f"{shape}, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_mnist(folder: Path, stem: str) -> Path:
    for name in (stem, stem.replace("-idx", ".idx"), stem + ".gz",
                 stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"MNIST file {stem!r} (or {stem}.gz) is missing in {str(folder)!r}")


def load_mnist(path: Path | str | None) -> Dataset:
    """MNIST from a folder with the four idx files (plain or ``.gz``), official split."""
    folder = _require_dir(path, "MNIST")
    arrays = {key: read_idx(_find_mnist(folder, stem)) for key, stem in _MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"MNIST {split} files disagree: images {x.shape}, labels {y.shape}")
        if y.size and y.max() > 9:
            raise DataError(f"MNIST {split} labels outside 0..9")
    scale = np.float32(255)
    return Dataset("mnist", arrays["x_train"][:, None].astype(np.float32) / scale,
                   arrays["y_train"].astype(np.int64),
                   arrays["x_test"][:, None].astype(np.float32) / scale,
                   arrays["y_test"].astype(np.int64), classes=10, pixel_max=255)


DATASETS = ("digits", "cifar10", "mnist")


def load_dataset(name: str, path: Path | str | None = None) -> Dataset:
    """The named data set (`DATASETS`); CIFAR-10 and MNIST need their folder `path`."""
    if name == "digits":
        if path is not None:
            raise DataError("the digits data set ships with scikit-learn: it takes no "
                            "--data-path")
        return load_digits()
    if name == "cifar10":
        return load_cifar10(path)
    if name == "mnist":
        return load_mnist(path)
    raise DataError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})")
