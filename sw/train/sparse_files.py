"""The sparse-format part of a model package: packed weights, index codes, memory images.

All of it comes from `mars.sw.sparse` (the sparse-format issue); nothing is re-implemented
here.  `build` returns the extra files (relative path -> bytes) and, per layer node, the
manifest fields that reference them.
"""

from __future__ import annotations

from typing import Any

from mars.sw.golden.network import IntegerNetwork

__all__ = ["build"]


def build(network: IntegerNetwork) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Sparse-format files of `network` and the manifest fields of each layer node.

    TODO(sparse-format): call mars.sw.sparse's packer / index encoder / memory-image
    writer here once its API is published (docs/sparse-format.md).  Until then the
    package holds the dense integer tensors only.
    """
    return {}, {}
