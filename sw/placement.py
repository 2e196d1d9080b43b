"""Where nextpnr placed each instance: the spread of its cells over the die.

Why: the whole default top's clock is set by routing, not logic (docs/synthesis.md, "The
writer's S0, and where a unit's cells lie"): a path of 2 LUTs can take 15 ns when its
cells lie 40 tiles apart.  Whether a unit stays in its region, and how far each of its
blocks reaches, is what decides the next step, and only the placed netlist says it.

`spread` reads the netlist nextpnr writes with ``--write`` (``mars synth --pnr
--keep-routed`` keeps it as ``<block>_<family>.routed.json``): every placed cell carries
a ``NEXTPNR_BEL`` attribute ``X<x>/Y<y>/<bel>``, in tile coordinates.  Cells are grouped
by instance path (`mars.sw.hierarchy.instance_path`: ``block.unit0.writer`` at depth 3),
and each group's X and Y are summarised by their 10th, 50th and 90th percentiles; the
10-90 % width is the distance across which most of an instance's nets run.

    python -m mars.sw.hierarchy build/synth/default/mars_top_ecp5.routed.json --placement
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mars.sw.hierarchy import UNNAMED, _top_module, instance_path

__all__ = ["spread", "spread_lines"]

_BEL = re.compile(r"^X(\d+)/Y(\d+)/")


def spread(placed: Path | str | dict, depth: int = 3,
           top: str | None = None) -> dict[str, dict[str, Any]]:
    """Tile coordinates of each instance path's placed cells.

    Parameters
    ----------
    placed : path or dict
        A netlist nextpnr wrote with ``--write`` (after placement or routing).
    depth : int
        Instance names kept (``block.unit0.writer`` is depth 3); also every shorter
        prefix is summarised (``block.unit0``), so a unit and its blocks both appear.
    top : str, optional
        The module to read; the one marked ``top`` if None.

    Returns
    -------
    dict
        Instance path -> ``cells`` (placed cells, every kind: logic, flip-flops, block
        RAM, multipliers, I/O) and ``x``, ``y``: the 10th, 50th and 90th percentiles of
        their tile coordinates; sorted by path.  Cells without an instance path count
        under `UNNAMED` only.

    Raises
    ------
    ValueError
        If the netlist is not a JSON netlist with a top module, `depth` < 1, or no cell
        carries a ``NEXTPNR_BEL`` attribute (not a placed netlist).
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    module = _top_module(placed, top)
    where: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for name, cell in module["cells"].items():
        bel = _BEL.match(str(cell.get("attributes", {}).get("NEXTPNR_BEL", "")))
        if not bel:
            continue
        xy = (int(bel[1]), int(bel[2]))
        path = instance_path(name, depth)
        if path == UNNAMED:
            where[path].append(xy)
            continue
        parts = path.split(".")
        for k in range(1, len(parts) + 1):
            where[".".join(parts[:k])].append(xy)
    if not where:
        raise ValueError("no cell carries a NEXTPNR_BEL attribute: not a placed netlist")
    result = {}
    for path in sorted(where):
        xy = np.asarray(where[path])
        q = np.percentile(xy, [10, 50, 90], axis=0)
        result[path] = {"cells": len(xy), "x": [float(v) for v in q[:, 0]],
                        "y": [float(v) for v in q[:, 1]]}
    return result


def spread_lines(counts: dict[str, dict[str, Any]], min_cells: int = 1) -> list[str]:
    """A Markdown table of `spread`: per instance its cells, the X and Y percentiles
    (10 / 50 / 90) and the 10-90 % widths; instances under `min_cells` left out."""
    lines = ["| instance | cells | X 10 / 50 / 90 | Y 10 / 50 / 90 | width X x Y (tiles) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for path, row in counts.items():
        if row["cells"] < min_cells:
            continue
        x, y = row["x"], row["y"]
        lines.append(f"| {path} | {row['cells']} | {x[0]:.0f} / {x[1]:.0f} / {x[2]:.0f} "
                     f"| {y[0]:.0f} / {y[1]:.0f} / {y[2]:.0f} "
                     f"| {x[2] - x[0]:.0f} x {y[2] - y[0]:.0f} |")
    return lines

