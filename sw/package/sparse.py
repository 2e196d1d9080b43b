"""The sparse-format part of a model package: group maps, packed weights, index memories,
k-tables, as memory images.

Everything comes from `mars.sw.sparse` (docs/sparse-format.md); nothing is re-implemented
here.  `build` returns the extra files (relative path -> bytes) and, per layer node, the
manifest fields that reference them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from mars.errors import MarsError
from mars.sw.golden.network import IntegerNetwork
from mars.sw.sparse import ENCODINGS, DecoderLimitError, pack_layer

from .writer import npy_bytes, tensor_ref

__all__ = ["build", "SparseExportError"]


class SparseExportError(MarsError, ValueError):
    """A layer the sparse format or the decoder of this configuration cannot hold."""


def _image_ref(rel: str, data: bytes, words: int) -> dict[str, Any]:
    return {"file": rel, "words": int(words), "sha256": hashlib.sha256(data).hexdigest()}


def build(network: IntegerNetwork) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Sparse-format files of `network` and the ``sparse`` manifest field of each layer."""
    config = network.config
    files: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    for layer in network.layers:
        base = f"sparse/{layer.name}"
        try:
            packed = pack_layer(layer.weight, layer.geometry, config)
            ktable = packed.ktable_image()
        except DecoderLimitError as error:
            raise SparseExportError(f"layer {layer.name!r}: {error}") from None
        if not np.array_equal(packed.unpack(), layer.weight):
            raise RuntimeError(f"internal error: layer {layer.name!r} does not unpack to its "
                               f"weights")
        kept = packed.group_map.kept
        kept_bytes = npy_bytes(kept.astype(bool))
        files[f"{base}.kept.npy"] = kept_bytes
        entry: dict[str, Any] = {
            "kept": tensor_ref(f"{base}.kept.npy", kept_bytes, "|b1", kept.shape),
            "stored_groups": packed.stored_groups,
            "set_steps": [int(s) for s in packed.set_steps],
            "stored_slots": packed.stored_slots,
            "index_bits": {enc: packed.index_bits(enc) for enc in ENCODINGS},
        }
        images = [("weights_image", f"{base}.weights.hex", packed.weight_image())]
        images += [(f"index_image_{d}", f"{base}.index{d}.hex", packed.index_image(d))
                   for d in range(config.wordline_domains)]
        images.append(("ktable_image", f"{base}.ktable.hex", ktable))
        index_refs = []
        for key, rel, image in images:
            data = image.to_hex().encode()
            files[rel] = data
            ref = _image_ref(rel, data, len(image))
            if key.startswith("index_image_"):
                index_refs.append(ref)
            else:
                entry[key] = ref
        entry["index_images"] = index_refs
        entries[layer.name] = {"sparse": entry}
    return files, entries
