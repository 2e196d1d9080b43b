"""The contract as machine-readable JSON (``contract.json``, written by ``mars verilog``).

Everything a program in any language needs to drive the accelerator built from a
configuration, generated from the same objects the RTL is generated from, so that it
cannot drift from the hardware (the way Gemmini writes its C header from the configuration
that generated the RTL):

* ``host``: the host word's layout, the regions, the control registers (write and read
  offsets), the status bits and the read latency;
* ``memories``: every memory the host reaches, with its region, scope (how many copies and
  how ``unit``/``domain`` select one), depth, word width, signedness, direction and, where
  its words have fields, the name of their layout;
* ``layouts``: every word layout (field name, bit offset, width, signedness, nested
  structs and arrays with their lengths);
* ``config``: the configuration (`MarsConfig.to_dict`) and its content hash;
* ``content_hash``: SHA-256 of the canonical JSON of everything above.

The text is deterministic: the same configuration gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json

from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data

from mars.config import MarsConfig

from .decoder import (
    descriptor_layout,
    error_layout,
    index_write_layout,
    ktable_layout,
    ktable_write_layout,
    payload_layout,
)
from .host import READ_LATENCY, ControlRead, ControlWrite, HostFormat, HostMemory, Region, Status
from .program import UnitFormat, instruction_layout, load_layout, param_layout

__all__ = ["CONTRACT_SCHEMA", "CONTRACT_VERSION", "layout_json", "contract_json",
           "contract_text"]

CONTRACT_SCHEMA = "mars-contract"
CONTRACT_VERSION = 1

#: Layout name in the JSON -> the function that builds it from a configuration.
_LAYOUTS = {
    "host": lambda config: HostFormat(config).layout(),
    "instruction": instruction_layout,
    "param": param_layout,
    "load": load_layout,
    "ktable": ktable_layout,
    "descriptor": descriptor_layout,
    "payload": payload_layout,
    "decoder_error": lambda config: error_layout(),
    "index_write": index_write_layout,
    "ktable_write": ktable_write_layout,
}
_MEMORY_LAYOUTS = {HostMemory.LOADER: "load", HostMemory.KTABLE: "ktable"}
#: Memories whose words are pieces of a wider layout (`mars.contract.program.split_word`).
_SPLIT_LAYOUTS = {HostMemory.PROGRAM: "instruction", HostMemory.PARAMS: "param"}


def layout_json(shape) -> dict:
    """A shape as JSON: ``{"kind": "int", "width", "signed"}``, ``{"kind": "struct",
    "width", "fields": [{"name", "offset", ...shape}]}`` (LSB first) or ``{"kind":
    "array", "width", "length", "stride", "element": ...}``.  Offsets and widths in bits."""
    if isinstance(shape, data.StructLayout):
        fields = [{"name": name, "offset": field.offset, **layout_json(field.shape)}
                  for name, field in shape]
        return {"kind": "struct", "width": shape.size, "fields": fields}
    if isinstance(shape, data.ArrayLayout):
        element = layout_json(shape.elem_shape)
        return {"kind": "array", "width": shape.size, "length": shape.length,
                "stride": element["width"], "element": element}
    if isinstance(shape, ShapeCastable) and not isinstance(shape, data.Layout):
        shape = shape.as_shape()
    if isinstance(shape, data.Layout):
        raise TypeError(f"unsupported layout {shape!r}")
    cast = Shape.cast(shape)
    return {"kind": "int", "width": cast.width, "signed": cast.signed}


def contract_json(config: MarsConfig) -> dict:
    """The contract of the accelerator built from `config`, as a JSON-ready dict."""
    host = HostFormat(config)
    doc = {
        "schema": CONTRACT_SCHEMA,
        "schema_version": CONTRACT_VERSION,
        "config": config.to_dict(),
        "config_hash": config.content_hash,
        "host": {
            "word": "host",
            "read_width": host.data_bits,
            "read_latency": READ_LATENCY,
            "regions": {region.name.lower(): int(region) for region in Region},
            "control_write": {reg.name.lower(): int(reg) for reg in ControlWrite},
            "control_read": {reg.name.lower(): int(reg) for reg in ControlRead},
            "status_bits": {flag.name.lower(): int(flag).bit_length() - 1 for flag in Status},
        },
        "memories": [{
            "name": memory.value,
            "region": memory.region.name.lower(),
            "scope": memory.scope.value,
            "copies": memory.scope.count(config),
            "depth": memory.depth(config),
            "width": memory.width(config),
            "signed": memory.signed,
            "host_writes": memory.host_writes,
            "host_reads": memory.host_reads,
            "layout": _MEMORY_LAYOUTS.get(memory),
            **({"split": {"layout": _SPLIT_LAYOUTS[memory],
                          "words": _split_words(memory, config)}}
               if memory in _SPLIT_LAYOUTS else {}),
        } for memory in HostMemory],
        "layouts": {name: layout_json(build(config)) for name, build in _LAYOUTS.items()},
    }
    doc["content_hash"] = hashlib.sha256(_canonical(doc).encode()).hexdigest()
    return doc


def _split_words(memory: HostMemory, config: MarsConfig) -> int:
    """Stored words per instruction or parameter word (least significant first)."""
    fmt = UnitFormat(config)
    return fmt.insn_chunks if memory is HostMemory.PROGRAM else fmt.param_chunks


def contract_text(config: MarsConfig) -> str:
    """``contract.json``: `contract_json` as indented text, byte-identical across runs."""
    return json.dumps(contract_json(config), indent=2) + "\n"


def _canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
