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
                        help="refuse unless the package was built for this configuration")
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


def run_estimate(args: argparse.Namespace) -> int:
    from mars.config import load_config
    from mars.sw.golden.network import load_package

    from .model import estimate_network
    from .report import format_estimate, plot_estimate
    from .tech import load_technology

    tech = load_technology(args.tech)
    pkg = load_package(args.package)
    network = pkg.network
    if args.config:
        config = load_config(args.config)
        if config.content_hash != network.config.content_hash:
            raise _EstimateOptionError(
                f"the package was built for configuration {network.config.short_hash} "
                f"({network.config.name}); --config gives {config.short_hash} ({config.name})")
    est = estimate_network(network, tech, clock_mhz=args.clock, with_dense=not args.no_dense)
    est["package"] = str(args.package)
    est["package_accuracy"] = pkg.accuracy
    print(format_estimate(est))
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(est, indent=2) + "\n")
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
