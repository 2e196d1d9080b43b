"""Cycles per inference of residual networks (docs/architecture.md, "Residual adds").

For the test networks (tb/networks.py, RESIDUAL_NETWORKS) on every preset with residual
adds, and the CIFAR ResNet8/ResNet20 (random weights, 50 % group sparsity) on `default`
with residual adds and buffers sized for 32x32x16 maps: the cycle model's cycles per
inference (weights reloaded each inference where they are not resident), and what the
same mapping would take if the fused adds' lane groups did not wait for the write slot
(the price of the shared shortcut read port).

    python bench/residual_cycles.py
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mars.config import PRESETS
from mars.sw.golden import cycles
from mars.sw.mapper import MappingError, map_network
from mars.tb.networks import (
    RESIDUAL_NETWORKS,
    cifar_resnet_config,
    residual_config,
    resnet_cifar,
    stable_seed,
)


def _count(mapping, free_reads: bool) -> int:
    original = cycles._walk_info

    def no_add(*args):
        return dataclasses.replace(original(*args), add=False)

    if free_reads:
        cycles._walk_info = no_add
    try:
        return sum(p.cycles for p in cycles.network_cycles(mapping,
                                                            skip_loads=mapping.resident))
    finally:
        cycles._walk_info = original


def main() -> None:
    rows = []
    for preset in ("tiny", "default", "adc3", "wide8"):
        config = residual_config(PRESETS[preset])
        for name, (build, sparsity) in sorted(RESIDUAL_NETWORKS.items()):
            rng = np.random.default_rng(stable_seed("residual", config.name, name))
            try:
                mapping = map_network(build(config, rng, sparsity))
            except MappingError as error:
                rows.append((preset, name, str(error), "", ""))
                continue
            rows.append((preset, name, _count(mapping, False), _count(mapping, True), ""))
    config = cifar_resnet_config()
    for depth in (8, 20):
        network = resnet_cifar(config, np.random.default_rng(depth), 0.5, depth=depth,
                               size=32, width=16)
        mapping = map_network(network)
        rows.append(("default+", f"resnet{depth} cifar", _count(mapping, False),
                     _count(mapping, True), mapping.n_phases))
    print("| preset | network | cycles | without the slot wait of adds | phases |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
