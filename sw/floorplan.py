"""Floorplanning a multi-unit top: each macro unit's block RAMs and multipliers pinned to
sites in its own region of the die.

Why: the default top places at 50 MHz because nextpnr's placers spread a unit over the
whole ECP5-85F (docs/synthesis.md, "The whole default top"): a unit's block RAMs sit in
four rows across the chip, and its logic follows them.  nextpnr confines cells to regions
only through its Python API (``--pre-place``), which the YoWASP builds leave out, but every
placer honours the generic ``BEL`` cell attribute (nextpnr docs/constraints.md, "Absolute
placement constraints").  Pinning the hard blocks, the anchors a unit's logic gathers
around, to a compact region per unit keeps each unit together without touching the LUTs.

`floorplan` reads a Yosys JSON netlist, finds the unit of each hard-block cell (from the
instance path ``...unit<k>....`` in its name, else from the cells it shares nets with),
splits the die into one rectangle per unit and writes ``BEL`` attributes: each unit's
cells on the free sites of its rectangle nearest the rectangle's centre, one block at a
time, so that a block's cells (a macro's storage, a decoder's memories and multiplier)
lie side by side.  Cells that
belong to no unit (loaders, weight SRAMs, controller, host) are left to the placer.

The site lists of a part (`SITES`) were read off nextpnr itself: a design that fills every
site of a type, placed, its ``NEXTPNR_BEL`` attributes collected (`measure_sites`).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from mars.errors import MarsError

__all__ = ["CELL_SITES", "FloorplanError", "Site", "floorplan", "floorplan_file",
           "group_of_cell", "load_sites", "measure_sites", "regions", "summary",
           "unit_of_cell", "unit_owners"]


class FloorplanError(MarsError, ValueError):
    """The netlist cannot be floorplanned: no site list for the part, or more hard blocks
    of one kind than the part has sites."""


#: Which site kind each hard-block cell type occupies (nextpnr-ecp5 bel names end in it).
CELL_SITES: dict[str, str] = {"DP16KD": "EBR", "PDPW16KD": "EBR", "MULT18X18D": "MULT18"}

_UNIT = re.compile(r"^unit(\d+)$")
#: Nets wider than this (clock, reset, run enables) say nothing about where a cell belongs.
_LOCAL_FANOUT = 64


@dataclass(frozen=True, order=True)
class Site:
    """One bel: its nextpnr name (``X<x>/Y<y>/<kind><n>``) and tile coordinates."""

    x: int
    y: int
    name: str

    @classmethod
    def parse(cls, name: str) -> "Site":
        match = re.fullmatch(r"X(\d+)/Y(\d+)/\w+", name)
        if not match:
            raise FloorplanError(f"not a nextpnr bel name: {name!r}")
        return cls(int(match[1]), int(match[2]), name)

    @property
    def kind(self) -> str:
        return re.sub(r"_?\d+$", "", self.name.rsplit("/", 1)[1])


def load_sites(part: str = "LFE5U-85F") -> dict[str, list[Site]]:
    """The hard-block sites of `part` by kind (``EBR``, ``MULT18``), from the package data
    ``floorplan_sites.json``.

    Raises
    ------
    FloorplanError
        If the part has no site list.
    """
    data = json.loads(importlib_resources.files("mars.sw").joinpath(
        "floorplan_sites.json").read_text())
    if part not in data["parts"]:
        raise FloorplanError(f"no hard-block site list for {part} (known: "
                             f"{', '.join(sorted(data['parts']))})")
    sites: dict[str, list[Site]] = defaultdict(list)
    for name in data["parts"][part]:
        site = Site.parse(name)
        sites[site.kind].append(site)
    return dict(sites)


def unit_of_cell(name: str) -> int | None:
    """The macro unit a flattened cell lies in (``block.unit2.macro.x_LUT4_Z`` -> 2), from
    its instance path; None outside every unit."""
    for part in name.lstrip("\\").split(".")[:-1]:
        match = _UNIT.match(part)
        if match:
            return int(match[1])
    return None


def _memory_of(name: str) -> str:
    """The memory a block-RAM cell was cut from: Yosys names the pieces of memory ``m``
    ``m.<i>.<j>``; other cells are their own group."""
    return re.sub(r"(\.\d+)+$", "", name.lstrip("\\"))


def unit_owners(module: Mapping[str, Any], cell_types: Iterable[str]) -> dict[str, int | None]:
    """The unit of each cell of the given types in a flattened Yosys JSON module.

    A cell inside a unit's instance path belongs to it.  Another (e.g. a per-unit copy of
    the activation memory, instantiated in the top) belongs, with the other pieces of its
    memory, to the unit whose cells it talks to: counted over the nets of at most 64
    loads that touch no other hard-block memory (a write bus shared by every copy says
    nothing), the unit must hold more than half of the unit-owned cells on them and those
    at least a quarter of all the cells on them.  Otherwise (loaders, weight SRAMs, the
    result memory, the controller) it belongs to none.

    Returns
    -------
    dict
        Cell name -> unit index or None, for every cell whose type is in `cell_types`.
    """
    types = set(cell_types)
    cells = module["cells"]
    owners: dict[str, int | None] = {name: unit_of_cell(name) for name, cell in cells.items()
                                     if cell["type"] in types}
    outside = {name for name, owner in owners.items() if owner is None}
    if not outside:
        return owners
    on_net: dict[int, set[str]] = defaultdict(set)
    for name, cell in cells.items():
        for bits in cell.get("connections", {}).values():
            for bit in bits:
                if isinstance(bit, int):
                    on_net[bit].add(name)
    votes: dict[str, Counter] = defaultdict(Counter)
    for names in on_net.values():
        memories = {_memory_of(name) for name in names if name in outside}
        if len(memories) != 1 or len(names) > _LOCAL_FANOUT:
            continue
        memory = memories.pop()
        votes[memory].update(unit_of_cell(name) for name in names if name not in outside)
    for name in outside:
        tally = votes.get(_memory_of(name), Counter())
        units = Counter({unit: n for unit, n in tally.items() if unit is not None})
        if units:
            unit, count = units.most_common(1)[0]
            in_units = sum(units.values())
            if count * 2 > in_units and in_units * 4 >= sum(tally.values()):
                owners[name] = unit
    return owners


def regions(units: int, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """One rectangle ``(x0, y0, x1, y1)`` per unit (tile coordinates, x1/y1 exclusive): the
    die split into a grid of ``rows x cols`` >= `units` near-square cells, filled row by
    row; unit k gets cell k."""
    if units < 1:
        raise ValueError(f"units must be at least 1, not {units}")
    rows = max(1, math.isqrt(units))
    cols = math.ceil(units / rows)
    rows = math.ceil(units / cols)
    out = []
    for k in range(units):
        r, c = divmod(k, cols)
        out.append((c * width / cols, r * height / rows, (c + 1) * width / cols,
                    (r + 1) * height / rows))
    return out


def _inside(site: Site, box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= site.x < x1 and y0 <= site.y < y1


def group_of_cell(name: str) -> str:
    """The block a hard-block cell belongs to, for keeping its cells together: the
    instance path down to the unit's child (``block.unit1.decoder0.index_mem.0.0`` ->
    ``block.unit1.decoder0``), or for a cell outside every unit the memory it was cut
    from (``block.act_read5.0.1`` -> ``block.act_read5``)."""
    parts = name.lstrip("\\").split(".")
    for k, part in enumerate(parts[:-1]):
        if _UNIT.match(part):
            return ".".join(parts[:k + 2]) if k + 2 < len(parts) else _memory_of(name)
    return _memory_of(name)


def _assign(cells: Sequence[str], owners: Mapping[str, int | None], sites: Sequence[Site],
            boxes: Sequence[tuple[float, float, float, float]], kind: str,
            placed: Mapping[str, list[Site]]) -> dict[str, str]:
    """Each unit's cells of one site kind onto free sites of its box (then the nearest
    outside it), one block at a time (`group_of_cell`): the unit's own blocks before the
    top's copies kept for it (the activation memory's), the largest first, from the
    free site nearest the block's sites of the kinds already assigned (`placed`, group ->
    sites; the box's centre for a block that has none), each further cell on the free
    site nearest the block's sites so far.  Cells sorted by name, so equal inputs give
    equal plans.

    Assigning cell by cell in order of distance from the centre (sessions 10 to 15) put
    one block's cells on alternate sides of it: the default top's macro storage 39 tiles
    apart, and the macro's logic between them (issue 9, docs/synthesis.md)."""
    owned = [name for name in cells if owners.get(name) is not None]
    if len(owned) > len(sites):
        raise FloorplanError(f"{len(owned)} unit cells need {kind} sites, the part has "
                             f"{len(sites)}")
    free = set(sites)
    plan: dict[str, str] = {}
    by_unit: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in sorted(owned):
        by_unit[owners[name]][group_of_cell(name)].append(name)
    for unit in sorted(by_unit):
        box = boxes[unit % len(boxes)]
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        groups = by_unit[unit]
        # the unit's own blocks nearest the centre, the top's per-unit copies around them
        for group in sorted(groups, key=lambda g: (unit_of_cell(groups[g][0]) is None,
                                                   -len(groups[g]), g)):
            near = list(placed.get(group, []))
            for name in groups[group]:
                cx, cy = (centre if not near else
                          (sum(s.x for s in near) / len(near), sum(s.y for s in near) / len(near)))
                site = min(free, key=lambda s: (not _inside(s, box),
                                                abs(s.x - cx) + abs(s.y - cy), s))
                plan[name] = site.name
                free.discard(site)
                near.append(site)
    return plan


def floorplan(netlist: dict, *, part: str = "LFE5U-85F", width: int = 127,
              height: int = 96, top: str | None = None) -> dict[str, Any]:
    """Pin every unit's hard blocks to its region: writes ``BEL`` attributes into `netlist`.

    Parameters
    ----------
    netlist : dict
        A flattened Yosys ``write_json`` netlist; changed in place.
    part : str
        The part whose sites to use (`load_sites`).
    width, height : int
        The die's tile grid (LFE5U-85F: 127 x 96, nextpnr's bel grid).
    top : str, optional
        The module to floorplan; the one marked ``top`` if None.

    Returns
    -------
    dict
        ``units`` (how many), ``regions`` (one ``[x0, y0, x1, y1]`` per unit), ``pinned``
        (cell name -> bel name) and ``free`` (hard-block cells left to the placer: in no
        unit, or of a type without a site list), with counts per site kind in
        ``pinned_by_kind``.

    Raises
    ------
    FloorplanError
        If the part has no site list or a kind's unit cells outnumber its sites.
    """
    from mars.sw.hierarchy import _top_module

    module = _top_module(netlist, top)
    sites = load_sites(part)
    owners = unit_owners(module, CELL_SITES)
    units = 1 + max((u for u in owners.values() if u is not None), default=-1)
    if units == 0:
        return {"units": 0, "regions": [], "pinned": {}, "pinned_by_kind": {},
                "free": sorted(owners)}
    boxes = regions(units, width, height)
    plan: dict[str, str] = {}
    by_kind: dict[str, list[str]] = defaultdict(list)
    for name, cell in module["cells"].items():
        if cell["type"] in CELL_SITES:
            by_kind[CELL_SITES[cell["type"]]].append(name)
    free = [name for name, owner in owners.items() if owner is None]
    pinned_by_kind = {}
    placed: dict[str, list[Site]] = defaultdict(list)    # group -> its pinned sites
    every = {site.name: site for kind_sites in sites.values() for site in kind_sites}
    for kind, cells in sorted(by_kind.items()):          # EBR, then MULT18 beside them
        if kind not in sites:
            free += [name for name in cells if owners[name] is not None]
            continue
        kind_plan = _assign(cells, owners, sites[kind], boxes, kind, placed)
        pinned_by_kind[kind] = len(kind_plan)
        plan.update(kind_plan)
        for name, bel in kind_plan.items():
            placed[group_of_cell(name)].append(every[bel])
    for name, bel in plan.items():
        module["cells"][name].setdefault("attributes", {})["BEL"] = bel
    return {"units": units, "regions": [list(box) for box in boxes], "pinned": plan,
            "pinned_by_kind": pinned_by_kind, "free": sorted(free)}


def summary(plan: Mapping[str, Any]) -> dict[str, Any]:
    """What a report keeps of a `floorplan` result: ``units``, ``regions``,
    ``pinned_by_kind`` and the number of hard-block cells left ``free``."""
    return {"units": plan["units"], "regions": plan["regions"],
            "pinned_by_kind": plan["pinned_by_kind"], "free": len(plan["free"])}


def floorplan_file(netlist: Path, out: Path, **options: Any) -> dict[str, Any]:
    """`floorplan` a netlist file into `out` (written whole or not at all: a temporary
    name, then renamed); returns its `summary`.

    Raises
    ------
    FloorplanError
        As `floorplan`; also if `netlist` is not a Yosys JSON netlist.
    """
    from mars.sw.files import replace_file

    try:
        doc = json.loads(Path(netlist).read_text())
        plan = floorplan(doc, **options)
    except (ValueError, KeyError) as error:      # json's errors are ValueErrors
        if isinstance(error, FloorplanError):
            raise
        raise FloorplanError(f"cannot floorplan {netlist}: {error}") from None
    replace_file(Path(out), json.dumps(doc))
    return summary(plan)


def measure_sites(placed: Path | str | dict, cell_types: Iterable[str] = CELL_SITES) -> list[str]:
    """The bels a placed netlist (nextpnr ``--write``) put its cells of `cell_types` on,
    sorted: run on a design that fills every site of a kind, the part's site list."""
    from mars.sw.hierarchy import _top_module

    netlist = placed if isinstance(placed, dict) else json.loads(Path(placed).read_text())
    module = _top_module(netlist, None)
    types = set(cell_types)
    return sorted(cell["attributes"]["NEXTPNR_BEL"] for cell in module["cells"].values()
                  if cell["type"] in types and "NEXTPNR_BEL" in cell.get("attributes", {}))
