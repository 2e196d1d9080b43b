"""ResNet18 (CIFAR-10 shapes: 32x32x3 input, 64 .. 512 channels) on `default` with
residual adds (and K-splitting) and buffers sized for it: cycles per inference of the
cycle model (every inference reloads the weights: they are not resident), the ideal
bound (kept groups x pixels x Ab/b over every domain) and the phases.  Random weights
pruned group by group at each sparsity (tb/networks.py, `resnet_cifar`).

    python bench/resnet18_cycles.py [SPARSITY ...]        # default: 0 0.5 0.75 0.9
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mars.config import PRESETS
from mars.sw.golden.cycles import ideal_cycles, network_cycles
from mars.sw.mapper import map_network
from mars.tb.networks import residual_config, resnet_cifar

#: `default` with residual adds, sized for ResNet18 on CIFAR shapes: 32x32x64 maps,
#: partial sums of a 32x32x64 layer, 11 million weights at 0 % sparsity.
CONFIG = residual_config(PRESETS["default"]).replace(
    name="default-resnet18", result_words=65536, act_buffer_words=65536,
    weight_sram_rows=524288, param_words=256, program_words=2048, max_phases=512)


def main(sparsities: list[float]) -> None:
    print("| group sparsity | cycles per inference | ideal | ideal / cycles | phases |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for sparsity in sparsities:
        start = time.time()
        network = resnet_cifar(CONFIG, np.random.default_rng(18), sparsity, size=32,
                               width=64, stages=4, blocks=2)
        mapping = map_network(network)
        cycles = sum(p.cycles for p in network_cycles(mapping))
        ideal = sum(ideal_cycles(mapping))
        print(f"| {sparsity:.0%} | {cycles:,} | {ideal:,.0f} | {ideal / cycles:.0%} | "
              f"{mapping.n_phases} |", flush=True)
        print(f"<!-- {time.time() - start:.0f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [0.0, 0.5, 0.75, 0.9])
