"""Index overhead of each index encoding at 0/50/75/90 % group sparsity.

    python bench/sparse_index.py [--seed N] [--sparsity 0 0.5 ...] [--out DIR]

For realistic layer shapes (the 8x8-digits CNN of sw/train, VGG16 and ResNet18 on CIFAR)
and a random group mask per layer with exactly the given fraction of groups pruned, it
packs every layer with `mars.sw.sparse.pack_layer` and reports, per network, configuration
and sparsity, the **index bits per stored weight bit** (all index codes of the network /
weight bits of its kept groups) of every encoding in `mars.sw.sparse.ENCODINGS`, of the
hardware's fixed-width absolute format (``hw``: `DecoderFormat.kgroup_bits` per kept
group, the count lives in the descriptor; the buffer is enlarged to hold the network's
largest input map where the preset's is smaller) and the entropy bound log2 C(n, k).
Writes build/bench/sparse_index.json and build/bench/sparse_index.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mars.config import PRESETS, MarsConfig
from mars.sw.layer import LayerGeometry
from mars.sw.sparse import (
    ENCODINGS,
    DecoderFormat,
    entropy_bits,
    expand_group_mask,
    group_counts,
    pack_layer,
)

OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


def _conv(size: int, cin: int, cout: int, k: int = 3, stride: int = 1) -> LayerGeometry:
    return LayerGeometry("conv", size, size, cin, cout, k, k, stride, k // 2)


def digits_cnn() -> list[LayerGeometry]:
    """sw/train's default network on 8x8 digits (width 16)."""
    return [_conv(8, 1, 16), _conv(8, 16, 32), _conv(4, 32, 32), LayerGeometry.linear(128, 10)]


def vgg16_cifar() -> list[LayerGeometry]:
    layers, cin, size = [], 3, 32
    for entry in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512]:
        if entry == "M":
            size //= 2
        else:
            layers.append(_conv(size, cin, entry))
            cin = entry
    return layers + [LayerGeometry.linear(512, 10)]


def resnet18_cifar() -> list[LayerGeometry]:
    layers, cin, size = [_conv(32, 3, 64)], 64, 32
    for stage, cout in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage and not block else 1
            layers.append(_conv(size, cin, cout, 3, stride))
            if stride == 2 or cin != cout:
                layers.append(_conv(size, cin, cout, 1, stride))          # shortcut
            size = -(-size // stride)
            layers.append(_conv(size, cout, cout))
            cin = cout
    return layers + [LayerGeometry.linear(512, 10)]


#: (network, its layers, the configurations it is measured on)
NETWORKS = [
    ("digits-cnn", digits_cnn, ["tiny", "default"]),
    ("vgg16-cifar", vgg16_cifar, ["default", "adc3"]),
    ("resnet18-cifar", resnet18_cifar, ["default", "adc3"]),
]


def masked_weights(geometry: LayerGeometry, config: MarsConfig, sparsity: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Random nonzero weights with exactly round(sparsity * groups) groups pruned."""
    blocks, kgroups = group_counts(geometry.cout, geometry.k, config)
    total = blocks * kgroups
    keep = np.ones(total, dtype=bool)
    keep[rng.permutation(total)[:round(sparsity * total)]] = False
    W = rng.integers(1, config.weight_max + 1, size=(geometry.cout, geometry.k))
    W *= rng.choice([-1, 1], size=W.shape)
    return W * expand_group_mask(keep.reshape(blocks, kgroups), geometry.cout, geometry.k,
                                 config)


def measure(network: str, layers: list[LayerGeometry], config: MarsConfig, sparsity: float,
            rng: np.random.Generator) -> dict:
    bits = dict.fromkeys([*ENCODINGS, "hw", "entropy"], 0.0)
    stored = groups = kept = 0
    # The hardware's index width follows from the activation buffer (DecoderFormat); the
    # presets' buffers are smaller than a CIFAR map, so size it for the largest input map.
    largest = max(geometry.in_size for geometry in layers)
    buffer = max(config.act_buffer_words, 1 << (largest - 1).bit_length())
    kgroup_bits = DecoderFormat(config.replace(act_buffer_words=buffer)).kgroup_bits
    for geometry in layers:
        packed = pack_layer(masked_weights(geometry, config, sparsity, rng), geometry, config)
        for encoding in ENCODINGS:
            bits[encoding] += packed.index_bits(encoding)
        bits["hw"] += packed.stored_groups * kgroup_bits
        bits["entropy"] += sum(entropy_bits(len(code), packed.n_kgroups)
                               for code in packed.index_codes)
        stored += packed.stored_weight_bits
        groups += packed.group_map.total
        kept += packed.stored_groups
    return {"network": network, "config": config.name, "sparsity": sparsity,
            "measured_sparsity": 1 - kept / groups, "groups": groups, "kept": kept,
            "stored_weight_bits": stored, "hw_buffer_words": buffer,
            "hw_kgroup_bits": kgroup_bits,
            "overhead": {k: (v / stored if stored else None) for k, v in bits.items()}}


def markdown(results: dict) -> str:
    columns = [*ENCODINGS, "hw", "entropy"]
    lines = [f"Measured {results['date']} with `python bench/sparse_index.py` "
             f"(seed {results['seed']}): index bits per stored weight bit, in %.", "",
             "| network | config | group sparsity | " + " | ".join(columns) + " | hw width |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " | ---: |"]
    for row in results["rows"]:
        cells = ["-" if row["overhead"][c] is None else f"{100 * row['overhead'][c]:.1f}"
                 for c in columns]
        lines.append(f"| {row['network']} | {row['config']} | "
                     f"{100 * row['measured_sparsity']:.0f} % | " + " | ".join(cells)
                     + f" | {row['hw_kgroup_bits']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="random seed of the group masks")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.75, 0.9],
                        help="group sparsities to measure")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the results")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = []
    for network, layers, configs in NETWORKS:
        for name in configs:
            for sparsity in args.sparsity:
                rows.append(measure(network, layers(), PRESETS[name], sparsity, rng))
                print(f"{network} {name} {sparsity:.2f}: done", file=sys.stderr, flush=True)
    results = {"date": datetime.date.today().isoformat(), "seed": args.seed,
               "machine": f"{platform.machine()}, Python {platform.python_version()}",
               "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sparse_index.json").write_text(json.dumps(results, indent=2))
    (args.out / "sparse_index.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
