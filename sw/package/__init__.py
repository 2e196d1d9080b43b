"""The model package: the folder a trained network travels in (docs/model-package.md).

`load_package` (`mars.sw.package.reader`) reads and checks one; `build_package_files` and
`write_folder_atomically` (`mars.sw.package.writer`) write one, with the sparse-format
files of `mars.sw.package.sparse`.  The integer network it holds and its arithmetic live in
`mars.sw.golden.network`.
"""

from .format import (PACKAGE_FORMAT, PACKAGE_VERSION, PackageError, acc_dtype, act_dtype,
                     parse_npy, weight_dtype)
from .reader import ModelPackage, load_package
from .writer import build_package_files, npy_bytes, tensor_ref, write_folder_atomically

__all__ = ["PACKAGE_FORMAT", "PACKAGE_VERSION", "PackageError", "ModelPackage",
           "load_package", "build_package_files", "write_folder_atomically", "npy_bytes",
           "tensor_ref", "weight_dtype", "acc_dtype", "act_dtype", "parse_npy"]
