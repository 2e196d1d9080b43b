"""Cycles per inference before and after the banked memories (docs/banking.md).

Loads the cycle model of a git revision from before the banking (default 10ad9bd) beside
today's and runs both on the same mappings (the mapper did not change): the test
networks on every preset, and optionally a model package (``--package PKG``).

    python bench/banking_cycles.py [--rev REV] [--package PKG]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mars.config import PRESETS
from mars.sw.golden import cycles as new
from mars.sw.mapper import map_network
from mars.tb.networks import NETWORKS, stable_seed


def old_model(rev: str):
    """`mars.sw.golden.cycles` as it was at `rev`."""
    text = subprocess.run(["git", "show", f"{rev}:sw/golden/cycles.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_cycles.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_cycles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_cycles"] = module
    spec.loader.exec_module(module)
    return module


def steady(model, mapping) -> int:
    return sum(p.cycles for p in model.steady_cycles(mapping))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="10ad9bd")
    parser.add_argument("--package", type=Path)
    args = parser.parse_args()
    old = old_model(args.rev)
    print("| preset | network | before | after | change |")
    print("| --- | --- | ---: | ---: | ---: |")
    rows = []
    for preset in ["default", "tiny", "adc3", "wide8"]:
        for name, (build, sparsity) in NETWORKS.items():
            seed = stable_seed("banking", preset, name)
            rows.append((preset, name, map_network(
                build(PRESETS[preset], np.random.default_rng(seed), sparsity))))
    if args.package:
        from mars.sw.package import load_package
        package = load_package(args.package)
        rows.append((package.network.config.name, str(args.package),
                     map_network(package.network)))
    for preset, name, mapping in rows:
        b, a = steady(old, mapping), steady(new, mapping)
        print(f"| {preset} | {name} | {b} | {a} | {100 * (a - b) / b:+.1f} % |")
        if args.package and name == str(args.package):
            first_b = sum(p.cycles for p in old.network_cycles(mapping))
            first_a = sum(p.cycles for p in new.network_cycles(mapping))
            print(f"first inference (with the weight load): {first_b} -> {first_a}")
            print("WALK cycles per layer before:",
                  old.layer_walk_cycles(mapping, old.steady_cycles(mapping)))
            print("WALK cycles per layer after: ",
                  new.layer_walk_cycles(mapping, new.steady_cycles(mapping)))


if __name__ == "__main__":
    main()
