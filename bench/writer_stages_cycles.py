"""Cycles per inference with the writer's full pipeline and with one stage fewer
(docs/synthesis.md, "The writer's S0, and where a unit's cells lie").

The same mapping, the cycle model with ``writer_stages`` MAX - 1 (no S0) and MAX: the
test networks on four presets and optionally a model package (``--package PKG``).

    python bench/writer_stages_cycles.py [--package PKG]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mars.config import MAX_WRITER_STAGES, PRESETS
from mars.sw.golden import cycles
from mars.sw.mapper import MappingError, map_network
from mars.tb.networks import NETWORKS, stable_seed


def steady(mapping, stages: int) -> int:
    staged = dataclasses.replace(mapping, config=mapping.config.replace(writer_stages=stages))
    return sum(p.cycles for p in cycles.steady_cycles(staged))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path)
    args = parser.parse_args()
    rows = []
    for preset in ["default", "tiny", "adc3", "wide8"]:
        for name, (build, sparsity) in NETWORKS.items():
            seed = stable_seed("banking", preset, name)
            try:
                rows.append((preset, name, map_network(
                    build(PRESETS[preset], np.random.default_rng(seed), sparsity))))
            except MappingError:
                continue
    if args.package:
        from mars.sw.package import load_package
        package = load_package(args.package)
        rows.append((package.network.config.name, str(args.package),
                     map_network(package.network)))
    full = MAX_WRITER_STAGES
    print(f"| preset | network | writer_stages {full - 1} | {full} | change |")
    print("| --- | --- | ---: | ---: | ---: |")
    for preset, name, mapping in rows:
        b, a = steady(mapping, full - 1), steady(mapping, full)
        print(f"| {preset} | {name} | {b} | {a} | {100 * (a - b) / b:+.1f} % |")


if __name__ == "__main__":
    main()
