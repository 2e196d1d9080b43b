"""The ``mars`` command line.

Each subcommand is a thin front end over a library function, so everything it does is
also reachable from Python (and from the nox sessions).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import NoReturn

from mars.config import PRESETS, load_config
from mars.errors import MarsError
from mars.sw.congestion import add_route_patience_argument
from mars.sw.pnr import PLACERS, ROUTERS

__all__ = ["main"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: appended only when the help does not already say
    it, and never for a default of None or False (those help texts say what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "(default:" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are the one line every mars error is: ``mars: error:
    <subcommand>: <message>``, exit status 2 (argparse's own prints the usage first).
    Subcommand parsers are made of the same class (``add_subparsers`` takes the parent's)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]         # "run", "board run"; "" at the top
        text = f"{command}: {message}" if command else message
        self.exit(2, f"mars: error: {' '.join(text.split())}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # Unrecognized arguments are found by the top parser: name the subcommand anyway.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = [getattr(parsed, dest, None) for dest in ("command", "board_command")]
            command = " ".join(word for word in words if isinstance(word, str))
            self.error(f"{command + ': ' if command else ''}unrecognized arguments: "
                       f"{' '.join(extras)}")
        return parsed


def _config_arg(parser: argparse.ArgumentParser, *, package: str | None = None) -> None:
    """``--config`` means the same in every command: the configuration to use.  A command
    that reads a model package takes the package's unless told otherwise (`package` says
    what the default is) and refuses a configuration the package was not built for."""
    presets = ", ".join(sorted(PRESETS))
    if package:
        parser.add_argument(
            "--config", metavar="PRESET_OR_JSON",
            help=f"the configuration to use: a preset ({presets}) or a configuration JSON "
                 f"file; a package must have been built for it (default: {package})")
    else:
        parser.add_argument(
            "--config", default="default", metavar="PRESET_OR_JSON",
            help=f"the configuration to use: a preset ({presets}) or a configuration JSON "
                 f"file (default: %(default)s)")


def _cmd_verilog(args: argparse.Namespace) -> int:
    from mars.sw.emit import emit_verilog

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("build") / "verilog" / config.name
    start = time.perf_counter()
    with _writing(out):
        written = emit_verilog(config, out, report=lambda line: print(f"  {line}"))
    print(f"wrote {len(written)} files to {out} (config {config.name}, "
          f"hash {config.short_hash}) in {time.perf_counter() - start:.2f} s")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sys.stdout.write(config.to_json())
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from mars.sw.synth import run_synth

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("build") / "synth" / config.name
    with _writing(out):
        # flush: the long steps' progress lines must show up at once in a piped log (nox, CI)
        report = run_synth(config, out, families=args.family,
                           progress=lambda line: print(line, flush=True), blocks=args.block,
                           pnr=args.pnr, freq_mhz=args.freq, seed=args.seed,
                           placer=args.placer, router=args.router,
                           floorplan=args.floorplan, keep_routed=args.keep_routed,
                           slow_nets=args.slow_nets, route_patience=args.route_patience,
                           heatmap=args.router2_heatmap, tmg_ripup=args.tmg_ripup)
    print(f"wrote {report}")
    return 0


class _Default:
    """An option's default value, told apart from the same value given on the command line
    (`_given_options` unwraps it): a train option that has no effect is refused only when
    the user gave it."""

    def __init__(self, value) -> None:
        self.value = value

    def __str__(self) -> str:                   # the help text's "(default: ...)"
        return str(self.value)


#: ``mars train`` options whose effect depends on the readout, the epochs or the sparsity:
#: their defaults are wrapped in `_Default` so that `_unused_train_option` sees what was
#: given.  (The flags default to False and --readout-finetune to None: given is not that.)
_TRAIN_DEFAULTS_SEEN = ("lr", "qat_lr", "readout_lr", "distill", "ste", "scale_calibration",
                        "structure", "scope")


def _given_options(args: argparse.Namespace) -> set[str]:
    """The `_TRAIN_DEFAULTS_SEEN` destinations the user gave; unwraps the others' defaults."""
    given = set()
    for dest in _TRAIN_DEFAULTS_SEEN:
        value = getattr(args, dest)
        if isinstance(value, _Default):
            setattr(args, dest, value.value)
        else:
            given.add(dest)
    given |= {dest for dest in ("readout_aware", "prune_first", "keep_last_dense")
              if getattr(args, dest)}
    if args.readout_finetune is not None:
        given.add("readout_finetune")
    return given


def _unused_train_option(args: argparse.Namespace, given: set[str], config) -> str | None:
    """The first given ``mars train`` option that would change nothing, as the one-line
    reason to refuse it; None if every given option has an effect (docs/robustness.md,
    "Options that would do nothing").  Values out of their range are left to the trainer's
    own checks, which name the range."""
    import math

    from mars.config import ReadoutMode

    def valid_rate(dest: str) -> bool:
        value = getattr(args, dest)
        return isinstance(value, float) and 0 < value < math.inf

    name, mode = config.name, config.readout_mode.value
    exact = config.readout_mode is ReadoutMode.EXACT
    if exact:
        for dest, what in (("readout_aware", "QAT through it is plain QAT"),
                           ("readout_finetune", "there is no readout to fine-tune for"),
                           ("readout_lr", "no readout-aware fine-tuning runs"),
                           ("ste", "no gradient passes through a readout that changes "
                                   "nothing"),
                           ("scale_calibration", "it has no column scale factors")):
            if dest in given and (dest != "readout_lr" or valid_rate(dest)):
                return (f"--{dest.replace('_', '-')} does nothing on configuration {name}: its "
                        f"readout is exact (readout_mode 'exact'), so {what}; leave the option "
                        f"out")
        finetune = 0
    else:
        from mars.sw.train.trainer import DEFAULT_FINETUNE

        finetune = (args.readout_finetune if args.readout_finetune is not None
                    else (DEFAULT_FINETUNE if config.scaled_readout else 0))
    if config.readout_mode is ReadoutMode.SATURATING \
            and config.readout_max >= config.rows_per_step:
        # the clamp never acts: the forward pass and every gradient are the exact product's
        for dest, what in (("readout_aware", "QAT through it is plain QAT"),
                           ("ste", "no K-group is ever clipped")):
            if dest in given:
                return (f"--{dest.replace('_', '-')} does nothing on configuration {name}: its "
                        f"saturating readout of readout_bits {config.readout_bits} never "
                        f"clips a popcount of G={config.rows_per_step} rows, so {what}; "
                        f"leave the option out")
    if "scale_calibration" in given and not exact:
        if not config.scaled_readout:
            return (f"--scale-calibration does nothing on configuration {name}: a {mode} "
                    f"readout has no column scale factors to calibrate (only binary and "
                    f"ternary readouts do); leave the option out")
        if args.readout_aware:
            return ("--scale-calibration does nothing with --readout-aware: the scale "
                    "factors then start from a least-squares fit on the first quantised "
                    "training batch, not from the sequential fit on N images; leave one of "
                    "the two out")
    if "readout_lr" in given and not exact and finetune == 0 and valid_rate("readout_lr"):
        default = "" if args.readout_finetune is not None else f" for a {mode} readout"
        return (f"--readout-lr does nothing: no readout-aware fine-tuning runs (--readout-"
                f"finetune is 0{default}); give --readout-finetune N or leave --readout-lr "
                f"out")
    if getattr(args, "scale_lr", None) is not None and valid_rate("scale_lr"):
        if not config.scaled_readout:
            return (f"--scale-lr does nothing on configuration {name}: its {mode} readout has "
                    f"no column scale factors (only binary and ternary readouts do); leave "
                    f"the option out")
        if finetune == 0:
            return ("--scale-lr does nothing: the column scale factors train only in the "
                    "readout-aware fine-tuning, and --readout-finetune is 0; give "
                    "--readout-finetune N or leave --scale-lr out")
    if "ste" in given and not exact and finetune == 0 and not args.readout_aware:
        return ("--ste does nothing: no training step goes through the readout (neither "
                "--readout-aware nor readout-aware fine-tuning epochs, --readout-finetune); "
                "add one of them or leave --ste out")
    if "lr" in given and args.epochs == 0 and valid_rate("lr"):
        return "--lr does nothing: --epochs is 0, no float training runs; leave --lr out"
    if "qat_lr" in given and args.qat_epochs == 0 and valid_rate("qat_lr"):
        return ("--qat-lr does nothing: --qat-epochs is 0, no QAT epochs run; leave --qat-lr "
                "out")
    if "distill" in given and args.qat_epochs == 0 and finetune == 0:
        return ("--distill does nothing: no QAT or readout-aware fine-tuning epochs run "
                "(--qat-epochs 0); leave --distill out")
    if args.sparsity == 0:
        for dest in ("structure", "scope", "prune_first", "keep_last_dense"):
            if dest in given:
                return (f"--{dest.replace('_', '-')} does nothing: --sparsity is 0, nothing "
                        f"is pruned; leave the option out or give a sparsity")
    return None


def _cmd_train(args: argparse.Namespace) -> int:
    from mars.sw.train.command import check_options, run

    given = _given_options(args)
    check_options(args)                 # ranges first: they name the range
    reason = _unused_train_option(args, given, load_config(args.config))
    if reason:
        raise _UserError(reason)
    status = run(args)
    _warn_if_unmappable(args)
    return status


def _warn_if_unmappable(args: argparse.Namespace) -> None:
    """After ``mars train`` wrote its package: a network that does not map onto its
    configuration for reasons that depend on the groups training kept (K-splitting, the
    memories' depths) is written, for its accuracy and golden-model logits, but every
    ``mars run``, ``flow`` and ``estimate`` on this configuration would refuse it: say so
    now, in one line naming the layer and the configuration field, as the last line."""
    from mars.sw.package import load_package
    from mars.sw.package.writer import check_maps

    out = Path(args.out) if args.out is not None else \
        Path("build") / "packages" / f"{args.dataset}-{load_config(args.config).name}"
    reason = check_maps(load_package(out).network)
    if reason:
        print(f"mars: warning: the package {str(out)!r} does not map onto its configuration, "
              f"so mars run, flow and estimate will refuse it: {reason}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from mars.sw.faults import FaultModel
    from mars.sw.run import read_inputs, run_package

    inputs = read_inputs(args.inputs)
    config = load_config(args.config) if args.config else None
    faults = FaultModel(args.faults, args.fault_seed)   # checks the rate: FaultError
    result = run_package(args.package, inputs, backend=args.backend, config=config,
                         faults=faults)
    with _writing(args.out):
        result.save(Path(args.out))
    fault_note = (f" with stuck-at faults at rate {faults.rate:g}, seed {faults.seed}"
                  if faults.rate else "")
    print(f"{len(result.logits)} inputs on {args.backend}{fault_note}: predictions "
          f"{result.predictions[:16].tolist()}{' ...' if len(result.logits) > 16 else ''}; "
          f"{result.cycles_summary()}; wrote {args.out}")
    return 0


def _cmd_flow(args: argparse.Namespace) -> int:
    from mars.sw.run import flow

    if args.count < 1:                        # [:0] or [:-n] would silently drop inputs
        raise _UserError(f"--count must be at least 1, not {args.count}")
    config = load_config(args.config) if args.config else None
    report = flow(package=Path(args.package) if args.package else None, out=Path(args.out),
                  simulator=args.simulator, count=args.count, config=config)
    return 0 if report["bit_exact"] and report["cycle_model_exact"] else 1


def _cmd_board(args: argparse.Namespace) -> int:
    from mars.sw.board import run_board_command

    return run_board_command(args)


def _cmd_estimate(args: argparse.Namespace) -> int:
    from mars.sw.energy.command import run_estimate

    return run_estimate(args)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mars.sw.energy.command import run_sweep_command

    return run_sweep_command(args)


class _UserError(MarsError):
    """A mistake in the command line's inputs: one line on stderr, exit status 2."""


@contextlib.contextmanager
def _writing(path):
    """An output the user named that cannot be written is their error, not a traceback."""
    try:
        yield
    except OSError as error:
        raise _UserError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mars", description="MARS SRAM-CIM accelerator generator",
        formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verilog", help="emit the Verilog of every block for a configuration",
                       formatter_class=_HelpFormatter)
    _config_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: build/verilog/<config name>)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("config", help="print a configuration as JSON (validated)",
                       formatter_class=_HelpFormatter)
    _config_arg(p)
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("synth", help="Yosys synthesis (and with --pnr nextpnr place-and-route) "
                       "of every block for ECP5 and iCE40",
                       formatter_class=_HelpFormatter)
    _config_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: build/synth/<config name>)")
    p.add_argument("--family", action="append", choices=["ecp5", "ice40"],
                   help="FPGA family; repeat for several (default: both)")
    p.add_argument("--block", action="append", metavar="NAME",
                   help="block to synthesize; repeat for several (default: every block)")
    p.add_argument("--pnr", action="store_true",
                   help="also place and route each block out of context with nextpnr "
                        "(LFE5U-85F-6 CABGA381, iCE40UP5K SG48): utilisation, Fmax, "
                        "critical path (docs/synthesis.md)")
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="nextpnr clock constraint in MHz (default: 100 on ECP5, 48 on iCE40)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--placer", choices=PLACERS,
                   help="nextpnr's placer (default: nextpnr's, heap); the whole default top "
                        "routes with static and --router router2")
    p.add_argument("--router", choices=ROUTERS,
                   help="nextpnr's router (default: nextpnr's, router1)")
    p.add_argument("--floorplan", action="store_true",
                   help="ECP5: pin each macro unit's block RAMs and multipliers to its own "
                        "region of the die before nextpnr (docs/synthesis.md, "
                        "\"Floorplanning the units\")")
    p.add_argument("--keep-routed", action="store_true",
                   help="keep nextpnr's routed netlist (<block>_<family>.routed.json) and "
                        "record where each instance's cells lie "
                        "(python -m mars.sw.hierarchy ROUTED.json --placement)")
    p.add_argument("--slow-nets", type=int, default=0, metavar="N",
                   help="record the N nets whose sinks are reached latest (nextpnr "
                        "--detailed-timing-report) in report.json and print the first 10")
    add_route_patience_argument(p)
    p.add_argument("--tmg-ripup", action="store_true",
                   help="nextpnr's timing-driven rip-up: once routed, reroute the "
                        "connections that fail timing (the whole default top: 90.3 -> 99.7 "
                        "MHz at seed 1)")
    p.add_argument("--router2-heatmap", action="store_true",
                   help="router2: write its congestion per iteration under OUT/heatmap/, "
                        "record where it lies per instance in report.json and draw "
                        "<block>_<family>.congestion.png")
    p.set_defaults(func=_cmd_synth)

    from mars.sw.train.command import add_arguments as train_arguments

    p = sub.add_parser("train", help="train a CIM-aware quantised, pruned network and write "
                       "its model package", formatter_class=_HelpFormatter)
    _config_arg(p)
    train_arguments(p)
    for action in p._actions:           # see which of these the user gives (_given_options)
        if action.dest in _TRAIN_DEFAULTS_SEEN:
            action.default = _Default(action.default)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="run a model package on the golden model or the RTL",
                       formatter_class=_HelpFormatter)
    p.add_argument("--package", required=True, metavar="PKG",
                   help="model package folder (or its manifest.json)")
    p.add_argument("--inputs", metavar="X.npy",
                   help="quantised HWC images (B, H, W, C) (default: the package's test inputs)")
    p.add_argument("--backend", choices=["golden", "verilator", "icarus"], default="golden",
                   help="the golden model, or the RTL on a simulator")
    _config_arg(p, package="the package's")
    p.add_argument("--out", default="build/run/outputs.npz", metavar="Y.npz",
                   help="logits, predictions, cycles, layer_cycles, phase_cycles")
    p.add_argument("--faults", type=float, default=0.0, metavar="RATE",
                   help="fraction of the macros' cells stuck at 0 or 1 (docs/faults.md)")
    p.add_argument("--fault-seed", type=int, default=0, metavar="S",
                   help="seed of the fault map")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("flow", help="the main job: train (or reuse) a package, emit RTL, "
                       "simulate, check bit-exactness and cycles, report",
                       formatter_class=_HelpFormatter)
    p.add_argument("--package", metavar="PKG",
                   help="use this package (default: train the digits network once into "
                        "OUT/package and reuse it)")
    _config_arg(p, package="the package's; when training, the default preset")
    p.add_argument("--out", default="build/flow", metavar="DIR",
                   help="output folder (report, outputs, package, Verilog)")
    p.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                   help="HDL simulator for the RTL")
    p.add_argument("--count", type=int, default=100, metavar="N",
                   help="test inputs to simulate")
    p.set_defaults(func=_cmd_flow)

    from mars.sw.board import add_board_arguments

    p = sub.add_parser("board", help="run a package on an FPGA board through its serial "
                       "host link (docs/serial.md)")
    actions = p.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    p = actions.add_parser("run", help="load a package through the serial link, run its "
                           "inputs, write the same outputs as mars run",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_board_arguments(p)
    p.set_defaults(func=_cmd_board)

    from mars.sw.bitstream import add_bitstream_arguments, run_bitstream_command

    p = sub.add_parser("bitstream", help="a board's bitstream (ULX3S, iCEBreaker) with the "
                       "YoWASP tools: report, summary (docs/board.md)",
                       formatter_class=_HelpFormatter)
    add_bitstream_arguments(p)
    p.set_defaults(func=run_bitstream_command)

    from mars.sw.energy.command import add_estimate_arguments

    p = sub.add_parser("estimate", help="frames/s, latency, energy, TOPS/W and area of a "
                       "model package (docs/energy.md)",
                       formatter_class=_HelpFormatter)
    add_estimate_arguments(p)
    p.set_defaults(func=_cmd_estimate)

    from mars.sw.energy.command import add_sweep_arguments

    p = sub.add_parser("sweep", help="train or reuse, estimate (and simulate) a grid of "
                       "configurations and sparsities; one CSV row per point",
                       formatter_class=_HelpFormatter)
    add_sweep_arguments(p)
    p.set_defaults(func=_cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MarsError as error:
        print(f"mars: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
