"""Tests of the hardware/software contract (`mars.contract`) and its JSON form.

The JSON layouts are checked against the Amaranth layouts by packing: for every leaf field
named in the JSON, a word with only that field set (to all ones) must have exactly the bits
``offset .. offset+width-1`` set, as Amaranth's own ``const`` packs it.
"""

from __future__ import annotations

import json

import pytest
from amaranth.lib import data

from mars.config import PRESETS
from mars.contract import (
    ControlRead,
    ControlWrite,
    HostFormat,
    HostMemory,
    Region,
    Scope,
    Status,
    contract_json,
    contract_text,
    layout_json,
)
from mars.contract.export import _LAYOUTS

CONFIGS = [PRESETS["tiny"], PRESETS["default"]]


def leaves(doc: dict, path=(), base: int = 0):
    """(path, absolute offset, width, signed) of every integer field of a JSON layout."""
    if doc["kind"] == "int":
        yield path, base, doc["width"], doc["signed"]
    elif doc["kind"] == "struct":
        for field in doc["fields"]:
            yield from leaves(field, path + (field["name"],), base + field["offset"])
    else:
        for i in range(doc["length"]):
            yield from leaves(doc["element"], path + (i,), base + i * doc["stride"])


def nested_value(layout, path, value):
    """A value for ``layout.const`` with the field at `path` set to `value`, others 0."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(layout, data.ArrayLayout):
        out = [0 if not isinstance(layout.elem_shape, data.Layout) else {}
               for _ in range(layout.length)]
        out[head] = nested_value(layout.elem_shape, rest, value)
        return out
    return {head: nested_value(layout[head].shape, rest, value)}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("name", sorted(_LAYOUTS))
def test_json_layout_matches_amaranth_packing(config, name):
    layout = _LAYOUTS[name](config)
    doc = contract_json(config)["layouts"][name]
    assert doc["width"] == layout.size
    covered = 0
    for path, offset, width, signed in leaves(doc):
        ones = -1 if signed else (1 << width) - 1
        bits = layout.const(nested_value(layout, path, ones)).as_bits()
        assert bits == ((1 << width) - 1) << offset, (name, path)
        assert not covered & bits, f"{name}: field {path} overlaps another"
        covered |= bits
    assert covered == (1 << layout.size) - 1, f"{name}: bits no field covers"


def test_layout_json_of_scalars_and_nesting():
    layout = data.StructLayout({"a": 3, "b": range(-4, 4),
                                "c": data.ArrayLayout(data.StructLayout({"x": 2}), 3)})
    doc = layout_json(layout)
    assert doc == {"kind": "struct", "width": 12, "fields": [
        {"name": "a", "offset": 0, "kind": "int", "width": 3, "signed": False},
        {"name": "b", "offset": 3, "kind": "int", "width": 3, "signed": True},
        {"name": "c", "offset": 6, "kind": "array", "width": 6, "length": 3, "stride": 2,
         "element": {"kind": "struct", "width": 2, "fields": [
             {"name": "x", "offset": 0, "kind": "int", "width": 2, "signed": False}]}}]}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_contract_json_round_trip_and_determinism(config):
    text = contract_text(config)
    doc = json.loads(text)
    assert doc == contract_json(config)
    assert json.dumps(doc, indent=2) + "\n" == text
    assert contract_text(config) == text                     # byte-identical again
    assert doc["config"] == config.to_dict()
    assert doc["config_hash"] == config.content_hash


def test_content_hash_changes_with_the_hardware():
    tiny = PRESETS["tiny"]
    a = contract_json(tiny)
    renamed = contract_json(tiny.replace(name="other"))
    wider = contract_json(tiny.replace(act_buffer_words=4096))
    assert len(a["content_hash"]) == 64
    # the name is part of the configuration text, so part of the hash
    assert renamed["content_hash"] != a["content_hash"]
    assert wider["content_hash"] != a["content_hash"]
    assert wider["layouts"]["host"] != a["layouts"]["host"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_memories_in_json_are_the_enum(config):
    doc = contract_json(config)
    assert [m["name"] for m in doc["memories"]] == [m.value for m in HostMemory]
    for entry, memory in zip(doc["memories"], HostMemory):
        assert doc["host"]["regions"][entry["region"]] == int(memory.region)
        assert entry["depth"] == memory.depth(config)
        assert entry["width"] == memory.width(config)
        if entry["layout"] is not None:
            assert doc["layouts"][entry["layout"]]["width"] == entry["width"]
    # independent expectations from the configuration
    by_name = {m["name"]: m for m in doc["memories"]}
    assert by_name["weights"]["copies"] == config.cores
    assert by_name["program"]["copies"] == config.macros
    assert by_name["index"]["copies"] == config.macros * config.wordline_domains
    # words of G activations (mars.contract.banking), both ping-pong halves
    assert by_name["act"]["depth"] == 2 * config.act_buffer_words // config.rows_per_step
    assert by_name["act"]["width"] == config.rows_per_step * config.act_bits
    assert by_name["result"]["signed"] and not by_name["result"]["host_writes"]
    assert doc["host"]["status_bits"] == {"busy": 0, "done": 1, "error": 2}


def test_every_region_but_control_is_one_memory():
    assert {m.region for m in HostMemory} == set(Region) - {Region.CONTROL}
    assert len({m.region for m in HostMemory}) == len(HostMemory)
    assert {m.scope for m in HostMemory} == set(Scope)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_host_word_reaches_every_memory(config):
    fmt = HostFormat(config)
    for memory in HostMemory:
        assert memory.depth(config) <= 1 << fmt.offset_bits
        assert memory.width(config) <= fmt.data_bits
    assert max(config.macros, config.cores) <= 1 << fmt.unit_bits
    assert config.wordline_domains <= 1 << fmt.domain_bits
    assert len(Region) <= 1 << 4
    assert max(max(ControlWrite), max(ControlRead)) < 1 << fmt.offset_bits
    assert Status.BUSY | Status.DONE | Status.ERROR == 0b111
