"""``mars estimate``: the energy, area and throughput report of a model package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mars.errors import MarsError

__all__ = ["add_estimate_arguments", "run_estimate"]


class _EstimateOptionError(MarsError, ValueError):
    """A bad ``mars estimate`` option or an unwritable output."""


def add_estimate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--package", required=True, metavar="PKG", help="model package folder")
    parser.add_argument("--config", metavar="PRESET_OR_JSON",
                        help="the configuration to use: a preset or a configuration JSON "
                             "file; the package must have been built for it (default: the "
                             "package's)")
    parser.add_argument("--tech", metavar="FILE",
                        help="technology JSON (per-event energies, areas; default: the "
                             "28 nm values of docs/energy.md)")
    parser.add_argument("--clock", type=float, metavar="MHZ",
                        help="clock in MHz (default: the technology's clock_mhz)")
    parser.add_argument("--json", metavar="OUT", help="also write the estimate as JSON")
    parser.add_argument("--plots", metavar="DIR",
                        help="write energy and cycle plots (PNG and SVG) into DIR")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip the densified network (what sparsity saves)")
    parser.add_argument("--samples", type=int, default=16, metavar="N",
                        help="binary/ternary readouts: the package's test inputs on which "
                             "non-zero comparator outputs are counted")


def run_estimate(args: argparse.Namespace) -> int:
    from mars.config import load_config
    from mars.sw.package import load_package

    from .model import estimate_network
    from .report import format_estimate, plot_estimate
    from .tech import load_technology

    tech = load_technology(args.tech)
    if args.samples < 1:
        raise _EstimateOptionError(f"--samples must be at least 1, not {args.samples}")
    pkg = load_package(args.package)
    network = pkg.network
    if args.config:
        config = load_config(args.config)
        if config.content_hash != network.config.content_hash:
            raise _EstimateOptionError(
                f"the package was built for configuration {network.config.short_hash} "
                f"({network.config.name}); --config gives {config.short_hash} ({config.name})")
    est = estimate_network(network, tech, clock_mhz=args.clock, with_dense=not args.no_dense,
                           inputs=pkg.test_inputs[:args.samples])
    est["package"] = str(args.package)
    est["package_accuracy"] = pkg.accuracy
    print(format_estimate(est))
    if args.json:
        path = Path(args.json)
        try:
            from mars.sw.files import replace_file      # whole or old after any signal
            replace_file(path, json.dumps(est, indent=2) + "\n")
        except OSError as error:
            raise _EstimateOptionError(f"cannot write --json {str(path)!r}: "
                                       f"{error.strerror}") from None
        print(f"wrote {path}")
    if args.plots:
        try:
            written = plot_estimate(est, Path(args.plots))
        except OSError as error:
            raise _EstimateOptionError(f"cannot write --plots {args.plots!r}: "
                                       f"{error.strerror}") from None
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _fraction(text: str) -> float:
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a sparsity lies in [0, 1), not {text!r}")
    return value


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", metavar="PRESET_OR_JSON",
                        help="the configuration to use: a preset or a configuration JSON "
                             "file; repeat for several (default: default)")
    parser.add_argument("--sparsity", action="append", type=_fraction, metavar="S",
                        help="group sparsity (0.5 or 50%%); repeat (default: 0, 50%%, 75%%)")
    parser.add_argument("--packages", default="build/sweep/packages", metavar="DIR",
                        help="where each point's package is trained once and then reused")
    parser.add_argument("--out", default="build/sweep/sweep.csv", metavar="CSV",
                        help="one row per point")
    parser.add_argument("--plots", default="build/sweep", metavar="DIR",
                        help="accuracy against energy and cycles with the Pareto front")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="local processes (ignored with --scheduler)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the points on this Dask distributed scheduler "
                             "(tcp://host:8786; needs the 'cluster' extra)")
    parser.add_argument("--simulate", choices=["golden", "verilator", "icarus"],
                        help="also run each package's test inputs on this backend")
    parser.add_argument("--count", type=int, default=20, metavar="N",
                        help="test inputs to simulate")
    parser.add_argument("--tech", metavar="FILE", help="technology JSON")
    parser.add_argument("--clock", type=float, metavar="MHZ", help="clock in MHz")
    train = parser.add_argument_group("training of missing packages")
    train.add_argument("--scope", choices=("layer", "block", "global"), default="block",
                       help="where the sparsity target applies (as in mars train)")
    train.add_argument("--epochs", type=int, default=30, help="float training epochs")
    train.add_argument("--qat-epochs", type=int, default=30,
                       help="quantisation-aware (and pruning) epochs")
    train.add_argument("--train-subset", type=int, metavar="N")
    train.add_argument("--test-subset", type=int, metavar="N")
    train.add_argument("--seed", type=int, default=0, help="training seed")


def sweep_points(args: argparse.Namespace) -> list:
    from .sweep import SweepPoint

    train = {"scope": args.scope, "epochs": args.epochs, "qat_epochs": args.qat_epochs,
             "train_subset": args.train_subset, "test_subset": args.test_subset,
             "seed": args.seed}
    points = []
    for spec in args.config or ["default"]:
        label = Path(spec).stem if spec.lower().endswith(".json") else spec
        for s in args.sparsity or [0.0, 0.5, 0.75]:
            package = Path(args.packages) / f"{label}-{args.scope}-s{round(100 * s):02d}"
            points.append(SweepPoint(spec, s, str(package), train, args.tech, args.clock,
                                     args.simulate, args.count))
    return points


def run_sweep_command(args: argparse.Namespace) -> int:
    from .sweep import SweepError, plot_sweep, run_sweep, write_csv

    if args.workers < 1:
        raise SweepError(f"--workers must be at least 1, not {args.workers}")
    if args.count < 1:
        raise SweepError(f"--count must be at least 1, not {args.count}")
    rows = run_sweep(sweep_points(args), workers=args.workers, scheduler=args.scheduler)
    write_csv(rows, Path(args.out))
    print(f"wrote {args.out}")
    if args.plots and any(not row["error"] for row in rows):
        paths = plot_sweep(rows, Path(args.plots))
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 1 if all(row["error"] for row in rows) else 0
