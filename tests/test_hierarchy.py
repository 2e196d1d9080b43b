"""Tests of `mars.sw.hierarchy`: resources per instance path of a flattened netlist.

Netlists here are written by hand with counts drawn at random (seeded); the expectation is
a direct count of the drawn cells per path, and the whole design's `resources`.
"""

from __future__ import annotations

import json
import random

import pytest

from mars.sw.hierarchy import (
    UNNAMED,
    hierarchy,
    hierarchy_lines,
    instance_path,
    main,
    reset_fanout,
    reset_lines,
)
from mars.sw.synth import resources

TOP = {"top": "00000000000000000000000000000001"}


def test_instance_path_drops_the_signal_name():
    assert instance_path("block.unit0.writer.q[3]_LUT4_Z", 3) == "block.unit0.writer"
    assert instance_path("block.unit0.writer.q[3]_LUT4_Z", 2) == "block.unit0"
    assert instance_path("block.unit0.q_TRELLIS_FF_Q", 3) == "block.unit0"
    assert instance_path("\\block.x", 2) == "block"
    assert instance_path("$abc$123$auto_456", 3) == UNNAMED
    assert instance_path("lonely", 3) == UNNAMED
    with pytest.raises(ValueError, match="depth"):
        instance_path("a.b", 0)


def _netlist(rng: random.Random):
    """A netlist with random cells under a few paths; returns it and the drawn counts."""
    paths = ["block.u0.dec.lanes", "block.u0.dec", "block.u1.writer", "block", "$abc"]
    kinds = ["LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "MULT18X18D", "PFUMX"]
    cells, drawn = {}, []
    for i in range(400):
        path, kind = rng.choice(paths), rng.choice(kinds)
        name = f"{path}$n{i}" if path == "$abc" else f"{path}.sig{i}_{kind}_Z"
        cells[name] = {"type": kind}
        drawn.append((path, kind))
    cells["block"] = {"type": "$scopeinfo"}
    doc = {"modules": {"top_ooc": {"attributes": TOP, "cells": cells},
                       "LUT4": {"attributes": {}, "cells": {}}}}
    return doc, drawn


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_counts_per_path_are_the_drawn_cells(depth):
    rng = random.Random(5 + depth)
    doc, drawn = _netlist(rng)
    counts = hierarchy(doc, "ecp5", depth)
    expect: dict[str, dict[str, int]] = {}
    for path, kind in drawn:
        key = UNNAMED if path == "$abc" else ".".join(path.split(".")[:depth])
        expect.setdefault(key, {}).setdefault(kind, 0)
        expect[key][kind] += 1
    assert counts == {key: resources("ecp5", kinds) for key, kinds in expect.items()}
    whole: dict[str, int] = {}
    for _, kind in drawn:
        whole[kind] = whole.get(kind, 0) + 1
    for key, total in resources("ecp5", whole).items():
        assert sum(row[key] for row in counts.values()) == total
    luts = [row["luts"] for row in counts.values()]
    assert luts == sorted(luts, reverse=True)


def test_the_top_must_be_marked():
    doc, _ = _netlist(random.Random(1))
    doc["modules"]["top_ooc"]["attributes"] = {}
    with pytest.raises(ValueError, match="0 top modules"):
        hierarchy(doc, "ecp5")
    assert hierarchy(doc, "ecp5", 1, top="top_ooc")


def test_table_and_command(tmp_path, capsys):
    doc, _ = _netlist(random.Random(3))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    counts = hierarchy(doc, "ecp5", 4)
    lines = hierarchy_lines(counts, limit=2)
    assert len(counts) == 5         # four named paths and the unnamed cells
    assert len(lines) == 2 + 2 + 1 and lines[-1].startswith("| 3 others |")
    assert main([str(path), "--depth", "4", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "missing.json")])
    assert stop.value.code == 2


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", "not a Yosys JSON netlist"),
    ("{not json", "Expecting property name"),
    ('{"cells": {}}', "not a Yosys JSON netlist"),
    ('{"modules": {}}', "0 top modules"),
])
def test_command_refuses_what_is_not_a_netlist_in_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SystemExit) as stop:
        main([str(path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_command_checks_limit_and_top(tmp_path, capsys):
    doc, _ = _netlist(random.Random(4))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    for args, words in ((["--limit", "0"], "--limit must be at least 1"),
                        (["--top", "nope"], "no module 'nope'")):
        with pytest.raises(SystemExit) as stop:
            main([str(path), *args])
        assert stop.value.code == 2 and words in capsys.readouterr().err
    doc["modules"]["top_ooc"]["attributes"] = {}
    path.write_text(json.dumps(doc))
    assert main([str(path), "--top", "top_ooc"]) == 0


def _flops(rng: random.Random):
    """Flip-flops under a few paths, each with a drawn LSR: net bit 7 (``rst``, also named
    ``$auto$7``), bit 9 (``restart``), or the constant "0"; returns the netlist and the
    drawn (path, bit) pairs.  Bit 7 is drawn most often."""
    paths = ["block.u0.seq", "block.u0.writer", "block.u1", "shift_in"]
    cells, drawn = {}, []
    for i in range(300):
        path, bit = rng.choice(paths), rng.choice([7, 7, 7, 9, "0"])
        name = f"{path}.q{i}_TRELLIS_FF_Q" if "." in path else f"{path}[{i}]_TRELLIS_FF_Q"
        cells[name] = {"type": "TRELLIS_FF", "connections": {"LSR": [bit], "Q": [100 + i]}}
        drawn.append((path, bit))
    cells["block.u0.x_LUT4_Z"] = {"type": "LUT4", "connections": {"Z": [7]}}
    netnames = {"$auto$7": {"bits": [7]}, "rst": {"bits": [7]}, "restart": {"bits": [9]}}
    doc = {"modules": {"top_ooc": {"attributes": TOP, "cells": cells, "netnames": netnames}}}
    return doc, drawn


@pytest.mark.parametrize("net", [None, "rst", "restart"])
def test_reset_fanout_counts_the_drawn_flip_flops(net):
    doc, drawn = _flops(random.Random(8))
    name, counts = reset_fanout(doc, 2, net=net)
    bit = {None: 7, "rst": 7, "restart": 9}[net]
    assert name == {7: "rst", 9: "restart"}[bit]
    expect: dict[str, list[int]] = {}
    for path, lsr in drawn:
        key = ".".join(path.split(".")[:2]) if "." in path else UNNAMED
        row = expect.setdefault(key, [0, 0])
        row[0] += lsr == bit
        row[1] += 1
    assert counts == {key: tuple(row) for key, row in expect.items()}
    on = [c[0] for c in counts.values()]
    assert on == sorted(on, reverse=True)
    lines = reset_lines(name, counts, limit=1)
    assert lines[-1] == (f"| total | {sum(lsr == bit for _, lsr in drawn)} | {len(drawn)} |")


def test_reset_fanout_refuses_an_unknown_net_and_the_command_prints_it(tmp_path, capsys):
    doc, _ = _flops(random.Random(2))
    with pytest.raises(ValueError, match="no net 'nope'"):
        reset_fanout(doc, net="nope")
    for cell in doc["modules"]["top_ooc"]["cells"].values():
        cell.get("connections", {})["LSR"] = ["0"]
    with pytest.raises(ValueError, match="no flip-flop has a reset"):
        reset_fanout(doc)
    doc, _ = _flops(random.Random(2))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    assert main([str(path), "--lsr", "--depth", "2", "--limit", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == reset_lines(*reset_fanout(doc, 2), 3)
    with pytest.raises(SystemExit) as stop:
        main([str(path), "--lsr", "--net", "nope"])
    assert stop.value.code == 2 and "no net 'nope'" in capsys.readouterr().err
