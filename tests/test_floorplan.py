"""The hard-block floorplan (mars.sw.floorplan) on drawn netlists and the part's site list."""

from __future__ import annotations

import itertools
import random

import pytest

from mars.sw.floorplan import (CELL_SITES, FloorplanError, Site, floorplan, group_of_cell,
                               load_sites, regions, unit_of_cell, unit_owners)


def test_unit_of_cell_reads_the_instance_path():
    assert unit_of_cell("block.unit2.macro.storage0.0.0") == 2
    assert unit_of_cell("\\mars.unit13.writer.$53[9]_MULT18X18D_P9") == 13
    assert unit_of_cell("block.act_read4.0.0") is None
    assert unit_of_cell("unit3") is None                 # a signal named so, not an instance
    assert unit_of_cell("block.units.x") is None
    assert group_of_cell("block.unit2.macro.storage0.0.0") == "block.unit2.macro"
    assert group_of_cell("block.unit0.decoder3.lanes.$215[9]_MULT18X18D_P9") == \
        "block.unit0.decoder3"
    assert group_of_cell("block.act_read5.0.1") == "block.act_read5"     # a top-level copy
    assert group_of_cell("block.unit1.mem.0.0") == "block.unit1.mem"


def test_the_ecp5_85f_sites_are_its_block_rams_and_multipliers():
    sites = load_sites("LFE5U-85F")
    assert sorted(sites) == ["EBR", "MULT18"]
    ebr, mult = sites["EBR"], sites["MULT18"]
    assert len(ebr) == len({s.name for s in ebr}) == 208    # the part's DP16KD count
    assert len(mult) == len({s.name for s in mult}) == 156  # and its MULT18X18D count
    assert sorted({s.y for s in ebr}) == [22, 46, 70, 82]
    assert sorted({s.y for s in mult}) == [10, 34, 58]
    assert all(Site.parse(s.name) == s for s in ebr + mult)


def test_an_unknown_part_is_refused():
    with pytest.raises(FloorplanError, match="no hard-block site list for LFE5U-25F"):
        load_sites("LFE5U-25F")


@pytest.mark.parametrize("units", [1, 2, 3, 4, 5, 8, 9])
def test_regions_tile_the_die_once(units):
    boxes = regions(units, 127, 96)
    assert len(boxes) == units
    # Every tile of the die lies in at most one box, and the boxes are near square.
    for x, y in itertools.product(range(0, 127, 3), range(0, 96, 3)):
        inside = [b for b in boxes if b[0] <= x < b[2] and b[1] <= y < b[3]]
        assert len(inside) <= 1
    for x0, y0, x1, y1 in boxes:
        assert x1 > x0 and y1 > y0


def _netlist(cells: dict[str, dict]) -> dict:
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells}}}


def _cell(kind: str, **ports: list[int]) -> dict:
    return {"type": kind, "connections": ports, "attributes": {}}


def test_owners_follow_the_unit_a_top_level_memory_talks_to():
    cells = {
        # Unit 1's gather registers read copy A; unit 0's read copy B.
        "block.unit1.gather.r_LUT4_Z": _cell("LUT4", A=[10], Z=[11]),
        "block.unit1.gather.q_TRELLIS_FF_Q": _cell("TRELLIS_FF", DI=[12], Q=[13]),
        "block.unit0.gather.r_LUT4_Z": _cell("LUT4", A=[20], Z=[21]),
        # Both copies share the write bus (nets 1, 2), driven from unit 0 and the top.
        "block.unit0.writer.w_TRELLIS_FF_Q": _cell("TRELLIS_FF", Q=[1]),
        "block.wbus_TRELLIS_FF_Q": _cell("TRELLIS_FF", Q=[2]),
        "block.copy_a.0.0": _cell("DP16KD", ADA0=[1], DIA0=[2], ADB0=[11], DOB0=[12]),
        "block.copy_a.0.1": _cell("DP16KD", ADA0=[1], DIA0=[2], ADB0=[11], DOB0=[30]),
        "block.copy_b.0.0": _cell("DP16KD", ADA0=[1], DIA0=[2], ADB0=[21]),
        # Shared: its nets hold top-level cells only (and one unit cell, too few).
        "block.weights.0.0": _cell("DP16KD", ADB0=[40], DOB0=[41]),
        "block.loader_TRELLIS_FF_Q": _cell("TRELLIS_FF", Q=[40]),
        "block.loader_LUT4_Z": _cell("LUT4", A=[41], Z=[42]),
        "block.loader_LUT4_Z_1": _cell("LUT4", A=[41], Z=[43]),
        "block.loader_LUT4_Z_2": _cell("LUT4", A=[41], Z=[44]),
        "block.unit0.loadport_LUT4_Z": _cell("LUT4", A=[40], Z=[45]),
        "block.unit3.macro.storage.0.0": _cell("DP16KD"),
    }
    owners = unit_owners(_netlist(cells)["modules"]["top"], CELL_SITES)
    assert owners == {"block.copy_a.0.0": 1, "block.copy_a.0.1": 1, "block.copy_b.0.0": 0,
                      "block.weights.0.0": None, "block.unit3.macro.storage.0.0": 3}


def test_floorplan_pins_each_unit_in_its_region_on_distinct_sites():
    rng = random.Random(7)
    cells = {}
    for unit in range(4):
        for k in range(rng.randrange(10, 30)):
            cells[f"block.unit{unit}.mem{k}.0.0"] = _cell(rng.choice(["DP16KD", "PDPW16KD"]))
        cells[f"block.unit{unit}.writer.$5[9]_MULT18X18D_P9"] = _cell("MULT18X18D")
    cells["block.weights0.0.0"] = _cell("DP16KD")
    netlist = _netlist(cells)
    result = floorplan(netlist)
    pinned = result["pinned"]
    top = netlist["modules"]["top"]["cells"]
    boxes = result["regions"]
    assert result["units"] == 4 and len(boxes) == 4
    assert len(set(pinned.values())) == len(pinned)              # one cell a site
    owned = [n for n in cells if "unit" in n]
    assert sorted(pinned) == sorted(owned)
    assert result["pinned_by_kind"] == {"EBR": len(owned) - 4, "MULT18": 4}
    sites = {s.name: s for kind in load_sites().values() for s in kind}
    for name, bel in pinned.items():
        assert top[name]["attributes"]["BEL"] == bel
        x0, y0, x1, y1 = boxes[unit_of_cell(name)]
        assert x0 <= sites[bel].x < x1 and y0 <= sites[bel].y < y1   # its own region
    assert result["free"] == ["block.weights0.0.0"]               # shared: the placer's
    assert all(sites[pinned[n]].kind == ("MULT18" if "MULT" in n else "EBR") for n in pinned)
    assert "BEL" not in top["block.weights0.0.0"]["attributes"]
    # Equal inputs give equal plans.
    assert floorplan(_netlist({n: _cell(c["type"]) for n, c in cells.items()}))["pinned"] == pinned


def test_each_block_s_hard_blocks_lie_side_by_side():
    """A unit like the default one (a macro's four storage memories, four decoders with two
    memories and a multiplier each, a sequencer's two memories, the writer's eight
    multipliers) and the top's activation copies kept for it: every block's block RAMs sit
    in one row of sites with no other block's between them, and each decoder's multiplier
    lies above or below its memories (within a site pitch in x)."""
    cells = {f"block.unit0.macro.storage{k}.0.0": _cell("DP16KD") for k in range(4)}
    for d in range(4):
        cells[f"block.unit0.decoder{d}.index_mem.0.0"] = _cell("DP16KD")
        cells[f"block.unit0.decoder{d}.ktable_mem.0.0"] = _cell("DP16KD")
        cells[f"block.unit0.decoder{d}.lanes.$215[9]_MULT18X18D_P9"] = _cell("MULT18X18D")
    cells["block.unit0.sequencer.prog_mem.0.0"] = _cell("DP16KD")
    cells["block.unit0.sequencer.params.0.0"] = _cell("DP16KD")
    for k in range(8):
        cells[f"block.unit0.writer.${k}[9]_MULT18X18D_P9"] = _cell("MULT18X18D")
    for k in range(1, 4):                                  # units 1-3: one memory each
        cells[f"block.unit{k}.macro.storage0.0.0"] = _cell("DP16KD")
    pinned = floorplan(_netlist(cells))["pinned"]
    sites = {s.name: s for kind in load_sites().values() for s in kind}
    groups = {}
    for name, bel in pinned.items():
        if name.startswith("block.unit0.") and "MULT" not in name:
            groups.setdefault(group_of_cell(name), []).append(sites[bel])
    assert set(groups) == {"block.unit0.macro", "block.unit0.sequencer",
                           *(f"block.unit0.decoder{d}" for d in range(4))}
    for group, where in groups.items():
        assert len({s.y for s in where}) == 1, group               # one row
        lo, hi = min(s.x for s in where), max(s.x for s in where)
        between = [other for other, w in groups.items() if other != group
                   for s in w if s.y == where[0].y and lo < s.x < hi]
        assert not between, (group, between)                       # nothing in between
    rows = {}
    for site in load_sites()["EBR"]:
        rows.setdefault(site.y, set()).add(site.x)
    pitch = max(b - a for xs in rows.values() for a, b in zip(sorted(xs), sorted(xs)[1:]))
    for d in range(4):
        mult = sites[pinned[f"block.unit0.decoder{d}.lanes.$215[9]_MULT18X18D_P9"]]
        mean = sum(s.x for s in groups[f"block.unit0.decoder{d}"]) / 2
        assert abs(mult.x - mean) <= pitch, d


def test_a_region_short_of_sites_spills_to_the_nearest_free_ones():
    cells = {f"block.unit0.m{k}.0.0": _cell("DP16KD") for k in range(60)}
    cells["block.unit1.m.0.0"] = _cell("DP16KD")
    pinned = floorplan(_netlist(cells))["pinned"]
    assert len(pinned) == 61 and len(set(pinned.values())) == 61


def test_more_unit_block_rams_than_the_part_has_are_refused():
    cells = {f"block.unit{k % 4}.m{k}.0.0": _cell("DP16KD") for k in range(209)}
    with pytest.raises(FloorplanError, match="209 unit cells need EBR sites, the part has 208"):
        floorplan(_netlist(cells))


def test_a_netlist_without_units_is_left_alone():
    netlist = _netlist({"block.m.0.0": _cell("DP16KD")})
    result = floorplan(netlist)
    assert result["units"] == 0 and result["pinned"] == {}
    assert "BEL" not in netlist["modules"]["top"]["cells"]["block.m.0.0"]["attributes"]


_RECORDING_NEXTPNR = """\
import json, shutil, sys
argv = sys.argv[1:]
shutil.copy(argv[argv.index("--json") + 1], "seen.json")
report = argv[argv.index("--report") + 1]
json.dump({"fmax": {"clk": {"achieved": 120.0, "constraint": 100.0}},
           "utilization": {"DP16KD": {"used": 3, "available": 208}}}, open(report, "w"))
open(argv[argv.index("--log") + 1], "w").write("Info: done\\n")
"""


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_place_and_route_hands_nextpnr_the_floorplanned_netlist(family, tmp_path, monkeypatch):
    """With ``floorplan`` the ECP5 nextpnr reads a copy of the netlist with the unit's
    block RAMs pinned (the original is left as it was); iCE40 has no site list and reads
    the netlist unchanged."""
    import json
    import shlex
    import sys

    from mars.sw.pnr import place_and_route

    tool = tmp_path / "nextpnr.py"
    tool.write_text(_RECORDING_NEXTPNR)
    monkeypatch.setenv(f"NEXTPNR_{family.upper()}", shlex.join([sys.executable, str(tool)]))
    cells = {"block.unit0.m.0.0": _cell("DP16KD"), "block.unit1.m.0.0": _cell("DP16KD"),
             "block.weights.0.0": _cell("DP16KD")}
    original = json.dumps(_netlist(cells))
    (tmp_path / "n.json").write_text(original)
    result = place_and_route(tmp_path, "top", family, "n.json", floorplan=True)
    seen = json.loads((tmp_path / "seen.json").read_text())["modules"]["top"]["cells"]
    assert (tmp_path / "n.json").read_text() == original
    bels = {name: cell["attributes"].get("BEL") for name, cell in seen.items()}
    if family == "ecp5":
        assert result["floorplan"] == {"units": 2,
                                       "regions": [list(b) for b in regions(2, 127, 96)],
                                       "pinned_by_kind": {"EBR": 2}, "free": 1}
        assert bels["block.weights.0.0"] is None
        assert bels["block.unit0.m.0.0"] != bels["block.unit1.m.0.0"]
        assert all(bels[f"block.unit{u}.m.0.0"] in {s.name for s in load_sites()["EBR"]}
                   for u in (0, 1))
    else:
        assert result["floorplan"] is None and set(bels.values()) == {None}
