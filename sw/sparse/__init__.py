"""CIM-aware sparse weight format: groups, index codes, packing and memory images.

The API in brief (details in docs/sparse-format.md)::

    gm = groups_of(W, config)                 # GroupMap: .kept (blocks, K-groups), .sparsity
    packed = pack_layer(W, geometry, config)  # PackedLayer: .index_codes, .rows, .unpack()
    packed.weight_image().write("w.hex")      # MemoryImage, $readmemh text or .bin
    MemoryImage.read("w.hex", config, "weights")
    encode_index(code, n_kgroups, "delta3")   # index encodings measured in bench/
    descriptor(geometry, config, count=...)   # what the decoder RTL is started with
"""

from .groups import (
    Group,
    GroupMap,
    expand_group_mask,
    group_counts,
    group_view,
    groups_of,
    iter_groups,
)
from mars.contract.decoder import (  # the decoder format, re-exported
    DecoderFormat,
    DecoderLimitError,
    descriptor,
    descriptor_fields,
    ktable_fields,
    ktable_words,
    payload_fields,
)
from .image import IMAGE_VERSION, KINDS, ImageError, MemoryImage, image_width
from .index import (
    ENCODINGS,
    Bits,
    IndexCodeError,
    check_index_code,
    decode_index,
    encode_index,
    entropy_bits,
    index_bits,
)
from .pack import PackedLayer, pack_layer, rows_to_words, unpack_layer, words_to_rows

__all__ = [
    "Group", "GroupMap", "expand_group_mask", "group_counts", "group_view", "groups_of",
    "iter_groups",
    "DecoderFormat", "DecoderLimitError", "descriptor", "descriptor_fields", "ktable_fields",
    "ktable_words", "payload_fields",
    "IMAGE_VERSION", "KINDS", "ImageError", "MemoryImage", "image_width",
    "ENCODINGS", "Bits", "IndexCodeError", "check_index_code", "decode_index", "encode_index",
    "entropy_bits", "index_bits",
    "PackedLayer", "pack_layer", "rows_to_words", "unpack_layer", "words_to_rows",
]
