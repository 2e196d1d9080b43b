"""What identifies a model package and how its tensors are stored (docs/model-package.md).

Shared by the reader (`mars.sw.package.reader`) and the writer
(`mars.sw.package.writer`): the manifest's format name and version, the error both raise,
and the NumPy dtypes of the tensor files.
"""

from __future__ import annotations

from mars.errors import MarsError

__all__ = ["PACKAGE_FORMAT", "PACKAGE_VERSION", "PackageError", "weight_dtype", "acc_dtype",
           "act_dtype"]

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
