"""What identifies a model package and how its tensors are stored (docs/model-package.md).

Shared by the reader (`mars.sw.package.reader`) and the writer
(`mars.sw.package.writer`): the manifest's format name and version, the error both raise,
and the NumPy dtypes of the tensor files.
"""

from __future__ import annotations

import io

import numpy as np

from mars.errors import MarsError

__all__ = ["PACKAGE_FORMAT", "PACKAGE_VERSION", "PackageError", "weight_dtype", "acc_dtype",
           "act_dtype", "parse_npy"]

PACKAGE_FORMAT = "mars-model-package"
#: Bumped whenever the manifest or a file of the package changes meaning.
PACKAGE_VERSION = 1


class PackageError(MarsError, ValueError):
    """A model package that is missing, malformed or inconsistent; the message names the
    file or node."""


def weight_dtype(weight_bits: int) -> str:
    """NumPy dtype of weight codes in a package: int8 up to 8 bits, else int16."""
    return "|i1" if weight_bits <= 8 else "<i2"


def acc_dtype(acc_bits: int) -> str:
    """NumPy dtype of biases and logits: int32 up to 32-bit accumulators, else int64."""
    return "<i4" if acc_bits <= 32 else "<i8"


def act_dtype(act_bits: int) -> str:
    """NumPy dtype of activations (test inputs): uint8 up to 8 bits, else uint16."""
    return "|u1" if act_bits <= 8 else "<u2"


def parse_npy(data: bytes) -> np.ndarray:
    """The array in the bytes of a ``.npy`` file (no pickles); `ValueError` saying why not.

    NumPy's header parser raises whatever its tokenizer or `ast.literal_eval` meets in a
    damaged header (``TokenError``, ``SyntaxError``, ``MemoryError``, ``EOFError``, ...);
    every one of them means "not a .npy array", so all are turned into `ValueError`.
    An ``.npz`` archive is refused too.
    """
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:                # noqa: BLE001 - any failure of the parser
        raise ValueError(f"{type(error).__name__}: {error}" if str(error)
                         else type(error).__name__) from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError("an .npz archive of arrays, not one .npy array")
    return array
