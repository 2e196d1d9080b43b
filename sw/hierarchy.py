"""Where a synthesised design's logic goes: resources per instance path.

Yosys flattens the design before mapping, but the cells it maps keep their instance path
in their names (``block.unit0.decoder1.lanes.<signal>_LUT4_Z``: the out-of-context
wrapper's ``block``, then Amaranth's submodule names).  `hierarchy` groups the cells of a
JSON netlist (``write_json``) by the first `depth` components of that path and counts the
resources of `mars.sw.synth.resources` in each group, so that a report can say which
block takes the LUTs (docs/synthesis.md, "The whole default top").  Cells whose names
carry no path (Yosys's ``$abc$...`` temporaries) are counted under ``(unnamed)``.
`reset_fanout` counts, the same way, the ECP5 flip-flops on one reset (LSR) net: how far
the run reset reaches (docs/synthesis.md, "The run reset").
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

__all__ = ["UNNAMED", "hierarchy", "hierarchy_lines", "instance_path", "reset_fanout",
           "reset_lines"]

#: Group of the cells whose names carry no instance path.
UNNAMED = "(unnamed)"


def instance_path(cell_name: str, depth: int) -> str:
    """The first `depth` instance names of a flattened cell's name, joined by dots.

    A cell named ``a.b.c.sig[3]_LUT4_Z`` lies in instance ``a.b.c``: the last component is
    the signal the cell was made for, not an instance.  Names without a dot, and Yosys
    temporaries (``$...``), give `UNNAMED`.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    name = cell_name.lstrip("\\")
    if name.startswith("$") or "." not in name:
        return UNNAMED
    parts = name.split(".")[:-1]           # the last part is the signal's name
    return ".".join(parts[:depth])


def hierarchy(netlist: Path | str | dict, family: str, depth: int = 3,
              top: str | None = None) -> dict[str, dict[str, int]]:
    """Resources of each instance path of a flattened Yosys JSON netlist.

    Parameters
    ----------
    netlist : path or dict
        A Yosys ``write_json`` netlist (file or parsed) of a flattened design.
    family : str
        ``"ecp5"`` or ``"ice40"``: the cell categories of `mars.sw.synth.resources`.
    depth : int
        Instance names kept (``block.unit0.writer`` is depth 3).
    top : str, optional
        The module to read; the one Yosys marked ``top`` if None.

    Returns
    -------
    dict
        Instance path -> the counts of `resources` (``luts``, ``lut4``, ``carry``, ``ff``,
        ``bram``, ``lutram``, ``dsp``), sorted by decreasing ``luts``.  The counts over all
        paths add up to the whole design's.

    Raises
    ------
    ValueError
        If the netlist is not a Yosys JSON netlist, `top` is None and it does not mark
        exactly one top (or `top` is not one of its modules), or `depth` < 1.
    """
    from mars.sw.synth import resources        # late: mars.sw.synth imports this module

    module = _top_module(netlist, top)
    cells: dict[str, Counter] = defaultdict(Counter)
    for name, cell in module["cells"].items():
        if cell["type"] != "$scopeinfo":
            cells[instance_path(name, depth)][cell["type"]] += 1
    counts = {path: resources(family, dict(types)) for path, types in cells.items()}
    return dict(sorted(counts.items(), key=lambda item: (-item[1]["luts"], item[0])))


def _top_module(netlist: Path | str | dict, top: str | None) -> dict:
    """The module `top` of a Yosys JSON netlist, or the one it marks as the top."""
    doc = netlist if isinstance(netlist, dict) else json.loads(Path(netlist).read_text())
    modules = doc.get("modules") if isinstance(doc, dict) else None
    if not isinstance(modules, dict):
        raise ValueError("not a Yosys JSON netlist (no 'modules' object)")
    if top is None:                # the module Yosys marked as the top (not the cell library)
        tops = [name for name, module in modules.items()
                if int(str(module.get("attributes", {}).get("top", "0")), 2)]
        if len(tops) != 1:
            raise ValueError(f"the netlist has {len(tops)} top modules: name the top")
        top = tops[0]
    elif top not in modules:
        raise ValueError(f"the netlist has no module {top!r}")
    return modules[top]


def reset_fanout(netlist: Path | str | dict, depth: int = 3, top: str | None = None,
                 net: str | None = None) -> tuple[str, dict[str, tuple[int, int]]]:
    """ECP5 flip-flops (``TRELLIS_FF``) on one LSR (set/reset) net, per instance path.

    Parameters
    ----------
    netlist, depth, top
        As for `hierarchy`.
    net : str, optional
        A net name of the netlist (e.g. ``rst``); None: the LSR net that reaches the most
        flip-flops (a constant LSR, no reset, is never chosen).

    Returns
    -------
    net : str
        The net counted (the shortest of its names that is not a Yosys temporary).
    counts : dict
        Instance path -> (flip-flops whose LSR is the net, all flip-flops), sorted by
        decreasing first count.

    Raises
    ------
    ValueError
        As `hierarchy`; also if `net` is not a net of the netlist or no flip-flop has an
        LSR net.
    """
    module = _top_module(netlist, top)
    names: dict = {}
    for name, entry in module.get("netnames", {}).items():
        for bit in entry["bits"]:
            old = names.get(bit)
            if old is None or (old.startswith("$"), len(old)) > (name.startswith("$"),
                                                                  len(name)):
                names[bit] = name
    flops = [(cell_name, cell["connections"].get("LSR", ["0"])[0])
             for cell_name, cell in module["cells"].items() if cell["type"] == "TRELLIS_FF"]
    if net is None:
        nets = Counter(bit for _, bit in flops if not isinstance(bit, str))
        if not nets:
            raise ValueError("no flip-flop has a reset (LSR) net")
        bit = nets.most_common(1)[0][0]
    else:
        entry = module.get("netnames", {}).get(net)
        if entry is None:
            raise ValueError(f"the netlist has no net {net!r}")
        bit = entry["bits"][0]
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cell_name, lsr in flops:
        row = counts[instance_path(cell_name, depth)]
        row[0] += lsr == bit
        row[1] += 1
    rows = sorted(((path, (on, total)) for path, (on, total) in counts.items()),
                  key=lambda item: (-item[1][0], item[0]))
    return names.get(bit, str(bit)), dict(rows)


def reset_lines(net: str, counts: dict[str, tuple[int, int]], limit: int = 12) -> list[str]:
    """A Markdown table of `reset_fanout`'s counts: the `limit` paths with the most
    flip-flops on the net, one row for the rest, and the total."""
    lines = [f"| instance | FF on `{net}` | FF |", "| --- | ---: | ---: |"]
    items = list(counts.items())
    for path, (on, total) in items[:limit]:
        lines.append(f"| `{path}` | {on} | {total} |")
    rest = items[limit:]
    if rest:
        lines.append(f"| {len(rest)} others | {sum(on for _, (on, _) in rest)} "
                     f"| {sum(total for _, (_, total) in rest)} |")
    lines.append(f"| total | {sum(on for on, _ in counts.values())} "
                 f"| {sum(total for _, total in counts.values())} |")
    return lines


def hierarchy_lines(counts: dict[str, dict[str, Any]], limit: int = 12) -> list[str]:
    """A Markdown table of the `limit` largest paths of `hierarchy` (LUT4 eq., share, FF,
    carry cells, BRAM, DSP), and one row for the rest."""
    total = sum(row["luts"] for row in counts.values()) or 1
    lines = ["| instance | LUT4 eq. | share | FF | carry | BRAM | DSP |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    items = list(counts.items())
    for path, row in items[:limit]:
        lines.append(f"| `{path}` | {row['luts']} | {100 * row['luts'] / total:.1f} % "
                     f"| {row['ff']} | {row['carry']} | {row['bram']} | {row['dsp']} |")
    rest = items[limit:]
    if rest:
        luts = sum(row["luts"] for _, row in rest)
        lines.append(f"| {len(rest)} others | {luts} | {100 * luts / total:.1f} % "
                     f"| {sum(r['ff'] for _, r in rest)} | {sum(r['carry'] for _, r in rest)} "
                     f"| {sum(r['bram'] for _, r in rest)} | {sum(r['dsp'] for _, r in rest)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m mars.sw.hierarchy NETLIST.json [--family F] [--depth N] [--limit N]``:
    the table of `hierarchy_lines` for a netlist `mars synth --pnr` wrote (with ``--lsr``:
    `reset_lines`, the ECP5 flip-flops on a reset net, ``--net`` or the busiest; with
    ``--placement``, of a routed netlist ``--keep-routed`` kept:
    `mars.sw.placement.spread_lines`, instances of ``--min-cells`` or more)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mars.sw.hierarchy",
                                     description=main.__doc__.split("\n")[1].strip())
    parser.add_argument("netlist", type=Path)
    parser.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--limit", type=int, default=12, help="rows before 'others'")
    parser.add_argument("--top", help="the module to read (default: the one marked top)")
    parser.add_argument("--lsr", action="store_true",
                        help="ECP5 flip-flops on a reset (LSR) net instead of resources")
    parser.add_argument("--net", help="with --lsr: the net (default: the busiest LSR net)")
    parser.add_argument("--placement", action="store_true",
                        help="where each instance's cells lie, from a routed netlist "
                             "(mars synth --pnr --keep-routed)")
    parser.add_argument("--min-cells", type=int, default=50,
                        help="with --placement: leave out instances with fewer cells")
    args = parser.parse_args(argv)
    if not args.netlist.is_file():
        parser.error(f"no netlist at {args.netlist}")
    if args.depth < 1:
        parser.error(f"--depth must be at least 1, not {args.depth}")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, not {args.limit}")
    try:
        if args.placement:
            from mars.sw.placement import spread, spread_lines

            print("\n".join(spread_lines(spread(args.netlist, args.depth, args.top),
                                          args.min_cells)))
            return 0
        if args.lsr:
            net, fanout = reset_fanout(args.netlist, args.depth, args.top, args.net)
        else:
            counts = hierarchy(args.netlist, args.family, args.depth, args.top)
    except (ValueError, OSError, TypeError, KeyError) as error:   # JSON errors are ValueErrors
        parser.error(f"{args.netlist}: {error}")
    if args.lsr:
        print("\n".join(reset_lines(net, fanout, args.limit)))
    else:
        print("\n".join(hierarchy_lines(counts, args.limit)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
