"""The ``mars`` command line.

Each subcommand is a thin front end over a library function, so everything it does is
also reachable from Python (and from the nox sessions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mars.config import PRESETS, ConfigError, load_config

__all__ = ["main"]


def _config_arg(parser: argparse.ArgumentParser, default: str = "default") -> None:
    parser.add_argument(
        "--config", default=default, metavar="PRESET_OR_JSON",
        help=f"a preset ({', '.join(sorted(PRESETS))}) or a configuration JSON file "
             f"(default: %(default)s)")


def _cmd_verilog(args: argparse.Namespace) -> int:
    from mars.sw.emit import emit_verilog

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("build") / "verilog" / config.name
    start = time.perf_counter()
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
    report = run_synth(config, out, families=args.family, progress=print)
    print(f"wrote {report}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mars.sw.train.command import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mars", description="MARS SRAM-CIM accelerator generator",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verilog", help="emit the Verilog of every block for a configuration",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _config_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: build/verilog/<config name>)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("config", help="print a configuration as JSON (validated)")
    _config_arg(p)
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("synth", help="Yosys synthesis of every block for ECP5 and iCE40",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _config_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: build/synth/<config name>)")
    p.add_argument("--family", action="append", choices=["ecp5", "ice40"],
                   help="FPGA family; repeat for several (default: both)")
    p.set_defaults(func=_cmd_synth)

    from mars.sw.train.command import add_arguments as train_arguments

    p = sub.add_parser("train", help="train a CIM-aware quantised, pruned network and write "
                       "its model package", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _config_arg(p)
    train_arguments(p)
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"mars: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
