"""Energy, TOPS/W and FPS figures behind docs/energy.md.

    python bench/energy.py [--digits PKG ...] [--vgg vgg8 vgg11 vgg16] [--sparsity 0.9]

1. The model's own check: the Si et al. macro operating point, and the 8-bit point it
   does not calibrate on.
2. Each digits package given (trained with ``mars train``): `mars estimate`'s figures.
3. VGG-shaped CIFAR-10 networks (32x32x3, 3x3 conv stacks with 2x2 max pools, a linear
   classifier) with random 4-bit weights, pruned block-balanced (every output block keeps
   the same number of K-groups) at the given group sparsity, on the ``cifar``
   configuration below.  The energy model needs only the shapes and the kept groups, not
   trained weights, so no CIFAR training is involved.

Writes build/bench/energy.json and energy.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time

import numpy as np

from mars.config import PRESETS
from mars.sw.energy import DEFAULT_TECH, component_energy, estimate_network, network_counts
from mars.sw.golden.network import (
    FlattenNode, IntegerNetwork, LayerNode, PoolNode, load_package,
)
from mars.sw.layer import LayerGeometry, LayerKind
from mars.sw.mapper import map_network
from mars.tb.networks import random_layer
from mars.tb.sim import REPO_ROOT

OUT = REPO_ROOT / "build" / "bench"

VGG = {
    "vgg8": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}

#: The default macro geometry (512x64, G = 8, 4-bit weights and activations, 2x2 macros)
#: with memories large enough for CIFAR-10 maps and VGG weights.
CIFAR = PRESETS["default"].replace(
    name="cifar", act_buffer_words=65536, weight_sram_rows=65536, result_words=256,
    program_words=2048, param_words=1024, max_phases=256)


def _balanced(layer: LayerNode, sparsity: float, rng: np.random.Generator) -> LayerNode:
    """The layer with exactly ceil((1 - sparsity) * K-groups) K-groups kept per output
    block (the trainer's ``--scope block``)."""
    cfg, g = CIFAR, layer.geometry
    G, cpg = cfg.rows_per_step, cfg.channels_per_group
    kgroups = -(-g.k // G)
    keep = max(1, math.ceil((1 - sparsity) * kgroups))
    w = layer.weight.copy()
    w[w == 0] = 1                                  # no accidental all-zero group
    for cb in range(-(-g.cout // cpg)):
        drop = rng.permutation(kgroups)[keep:]
        for kg in drop:
            w[cb * cpg:(cb + 1) * cpg, kg * G:(kg + 1) * G] = 0
    return LayerNode(layer.name, layer.inputs, g, w, layer.bias, layer.output,
                     layer.multiplier, layer.shift)


def vgg_network(name: str, sparsity: float, seed: int = 0) -> IntegerNetwork:
    """A VGG-shaped integer network; the first conv layer stays dense (as the trainer's
    default leaves it)."""
    rng = np.random.default_rng(seed)
    nodes, source, (h, w, c) = [], "input", (32, 32, 3)
    for i, entry in enumerate(VGG[name]):
        if entry == "M":
            nodes.append(PoolNode(f"pool{i}", (source,), (h, w, c), 2, 2, 0))
            source, h, w = f"pool{i}", h // 2, w // 2
            continue
        g = LayerGeometry(LayerKind.CONV, h, w, c, entry, 3, 3, 1, 1)
        layer = random_layer(rng, CIFAR, f"conv{i}", source, g, "act", 0.0)
        nodes.append(_balanced(layer, sparsity if nodes else 0.0, rng))
        source, c = f"conv{i}", entry
    nodes.append(FlattenNode("flat", (source,), (h, w, c)))
    fc = random_layer(rng, CIFAR, "fc", "flat", LayerGeometry.linear(h * w * c, 10), "acc",
                      0.0)
    nodes.append(_balanced(fc, sparsity, rng))
    return IntegerNetwork(CIFAR, (32, 32, 3), tuple(nodes), "fc")


def macro_point(weight_bits: int) -> dict:
    """Macro-only TOPS/W of a dense layer filling one macro (G = 8, 4-bit readout)."""
    cfg = PRESETS["default"].replace(name=f"si-{weight_bits}b", cores=1, macros_per_core=1,
                                     weight_bits=weight_bits, act_bits=weight_bits)
    k, cout = cfg.rows, cfg.channels_per_macro
    fc = LayerNode("fc", ("input",), LayerGeometry.linear(k, cout),
                   np.ones((cout, k), dtype=np.int64), np.zeros(cout, dtype=np.int64), "acc")
    mapping = map_network(IntegerNetwork(cfg, (1, 1, k), (fc,), "fc"))
    counts = network_counts(mapping)[0]
    energy = component_energy(counts, cfg, DEFAULT_TECH)
    macro = energy["macro array"] + energy["readout"]
    return {"bits": weight_bits, "tops_per_w": 2 * counts.macs_effective / macro,
            "published": {4: 68.4, 8: 11.5}[weight_bits]}


def row(label: str, est: dict, seconds: float, **extra) -> dict:
    dense = est.get("dense", {})
    return {"network": label, **extra, "cycles": est["cycles_per_inference"],
            "fps": est["fps"], "latency_us": est["latency_us"],
            "energy_uj": est["energy_per_inference_uj"],
            "tops_per_w_dense": est["tops_per_w_dense"],
            "tops_per_w_effective": est["tops_per_w_effective"],
            "tops_dense": est["tops_dense"], "power_mw": est["power_mw"],
            "area_mm2": est["area_mm2"], "resident": est["weights_resident"],
            "dense_cycle_ratio": dense.get("cycle_ratio"),
            "dense_energy_ratio": dense.get("energy_ratio"),
            "components_pj": est["components_pj"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", nargs="*", default=[], metavar="PKG")
    parser.add_argument("--vgg", nargs="*", default=["vgg8", "vgg11", "vgg16"])
    parser.add_argument("--sparsity", type=float, nargs="*", default=[0.9])
    args = parser.parse_args()
    results = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
               "technology": DEFAULT_TECH.to_dict(),
               "macro": [macro_point(4), macro_point(8)], "networks": []}
    for path in args.digits:
        pkg = load_package(path)
        t = time.perf_counter()
        est = estimate_network(pkg.network)
        results["networks"].append(row(f"digits ({path})", est, time.perf_counter() - t,
                                       sparsity=pkg.manifest["sparsity"]["target"],
                                       accuracy=pkg.accuracy))
    for name in args.vgg:
        for s in args.sparsity:
            t = time.perf_counter()
            try:
                est = estimate_network(vgg_network(name, s), with_dense=False)
            except Exception as error:              # noqa: BLE001 - report, go on
                print(f"{name} at {s:.0%}: {error}")
                continue
            results["networks"].append(row(name, est, time.perf_counter() - t, sparsity=s))
            print(f"{name} at {s:.0%}: {est['fps']:.0f} fps, "
                  f"{est['tops_per_w_dense']:.1f} TOPS/W dense")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "energy.json").write_text(json.dumps(results, indent=2))
    lines = ["| bits | model TOPS/W (macro) | published |", "| ---: | ---: | ---: |"]
    for m in results["macro"]:
        lines.append(f"| {m['bits']}b x {m['bits']}b | {m['tops_per_w']:.1f} | "
                     f"{m['published']} |")
    lines += ["", "| network | group sparsity | cycles | FPS | latency us | energy uJ | "
              "TOPS/W dense | TOPS/W effective | power mW | sparse vs dense energy |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["networks"]:
        ratio = f"{r['dense_energy_ratio']:.2f}x" if r["dense_energy_ratio"] else "-"
        lines.append(f"| {r['network']} | {100 * r['sparsity']:.0f} % | {r['cycles']} | "
                     f"{r['fps']:.0f} | {r['latency_us']:.1f} | {r['energy_uj']:.3f} | "
                     f"{r['tops_per_w_dense']:.1f} | {r['tops_per_w_effective']:.1f} | "
                     f"{r['power_mw']:.1f} | {ratio} |")
    (OUT / "energy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
