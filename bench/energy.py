"""Energy, TOPS/W and FPS figures behind docs/energy.md.

    python bench/energy.py [--digits PKG ...] [--vgg vgg8 vgg11 vgg16] [--sparsity 0.9]
                           [--hcim TERNARY_PKG]

1. The macro validation (`mars.sw.energy.validation.validate`): every published point of
   ``sw/energy/macros.json`` beside the model's prediction.
2. Each digits package given (trained with ``mars train``): `mars estimate`'s figures.
3. With ``--hcim``: a ternary-readout package (HCiM) against the same network with 7-bit
   and 4-bit ADC readouts (exact), the comparison HCiM (arXiv 2403.13577) reports.
4. VGG-shaped CIFAR-10 networks (32x32x3, 3x3 conv stacks with 2x2 max pools, a linear
   classifier) with random 4-bit weights, pruned block-balanced (every output block keeps
   the same number of K-groups) at the given group sparsity, on the ``cifar``
   configuration below.  The energy model needs only the shapes and the kept groups, not
   trained weights, so no CIFAR training is involved.

Writes build/bench/energy.json and energy.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import time

import numpy as np

from mars.config import PRESETS, ReadoutMode
from mars.sw.energy import (
    DEFAULT_TECH, comparator_activity, estimate, estimate_network, scaled_add_pj,
)
from mars.sw.energy.validation import validate
from mars.sw.golden.network import FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.package import load_package
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


def with_readout(network: IntegerNetwork, mode: str, bits: int) -> IntegerNetwork:
    """The same layers on the same geometry with another readout.  An ADC readout drops
    the scale factors; a comparator readout of a network without them gets unit scales
    (the energy model does not read their values)."""
    cfg = network.config.replace(name=f"{mode}{bits}", readout_mode=ReadoutMode(mode),
                                 readout_bits=bits)
    nodes = []
    for n in network.nodes:
        if isinstance(n, LayerNode):
            if not cfg.scaled_readout:
                n = dataclasses.replace(n, scales=None)
            elif n.scales is None:
                n = dataclasses.replace(n, scales=np.ones((n.weight.shape[0], cfg.weight_bits),
                                                          dtype=np.int64))
        nodes.append(n)
    return IntegerNetwork(cfg, network.input_shape, tuple(nodes), network.output)


def hcim_comparison(path: str, samples: int = 64, threshold: int = 1) -> dict:
    """Energy of a ternary (and binary) comparator readout beside the same network with
    7-bit and 4-bit exact ADC readouts, HCiM's comparison.

    A ternary package's non-zero comparator outputs are measured on its own network; for
    an ADC package they are what a comparator with `threshold` would see on that
    network's own activations (`comparator_activity(..., threshold)`).  `samples` of the
    package's test inputs."""
    pkg = load_package(path)
    net, inputs = pkg.network, pkg.test_inputs[:samples]
    if net.config.scaled_readout:
        activity, source = comparator_activity(net, inputs), "its own ternary network"
        ternary = net
    else:
        activity = comparator_activity(net, inputs, threshold)
        source = (f"the {net.config.readout_mode.value}-readout network's activations, "
                  f"comparator threshold {threshold}")
        ternary = with_readout(net, "ternary", net.config.readout_bits)
    variants = {"ternary": (ternary, activity),
                "binary (same comparator outputs)": (
                    with_readout(ternary, "binary", net.config.readout_bits), activity),
                "7-bit ADC": (with_readout(net, "exact", 7), None),
                "4-bit ADC": (with_readout(net, "exact", 4), None)}
    rows, base = {}, None
    for label, (network, act) in variants.items():
        est = estimate(map_network(network), DEFAULT_TECH, activity=act)
        c = est["components_pj"]
        rows[label] = {"energy_pj": est["energy_pj"], "readout_pj": c["readout"],
                       "shift_add_pj": c["shift-add"],
                       "macro_pj": c["macro array"] + c["readout"] + c["shift-add"],
                       "tops_per_w_dense": est["tops_per_w_dense"]}
        if label == "ternary":
            base = est["activity"]
    for label in ("7-bit ADC", "4-bit ADC"):
        for mode in ("ternary", "binary (same comparator outputs)"):
            r = rows[mode]
            r[f"saving_vs_{label[0]}b"] = 1 - r["energy_pj"] / rows[label]["energy_pj"]
            r[f"macro_saving_vs_{label[0]}b"] = 1 - r["macro_pj"] / rows[label]["macro_pj"]
    # Column-bit slots: one comparator output per column, input bit and step.
    slots = base["comparisons_per_inference"] / 2
    per_add = scaled_add_pj(ternary.config, DEFAULT_TECH)
    for label in ("7-bit ADC", "4-bit ADC"):
        adc = rows[label]["readout_pj"] + rows[label]["shift_add_pj"]
        # the non-zero fraction at which readout + shift-add cost as much as the ADC's
        rows["ternary"][f"breakeven_vs_{label[0]}b"] = \
            (adc - rows["ternary"]["readout_pj"]) / (per_add * slots)
    return {"package": path, "accuracy": pkg.accuracy, "samples": len(inputs),
            "activity_source": source,
            "nonzero_fraction": base["nonzero_per_inference"] / slots,
            "scaled_add_pj": per_add,
            "nonzero_per_inference": base["nonzero_per_inference"],
            "comparisons_per_inference": base["comparisons_per_inference"],
            "rows": rows,
            "hcim_published": {"saving_vs_7b": 0.28, "saving_vs_4b": 0.12,
                               "source": "Negi et al., arXiv 2403.13577, abstract: "
                                         "energy reductions up to 28 % and 12 % against "
                                         "analog CiM baselines with 7- and 4-bit ADCs"}}


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
    parser.add_argument("--hcim", nargs="*", default=[], metavar="PKG",
                        help="packages for the HCiM comparison (ternary, or ADC)")
    parser.add_argument("--vgg", nargs="*", default=["vgg8", "vgg11", "vgg16"])
    parser.add_argument("--sparsity", type=float, nargs="*", default=[0.9])
    args = parser.parse_args()
    results = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
               "technology": DEFAULT_TECH.to_dict(), "validation": validate(),
               "networks": []}
    for path in args.digits:
        pkg = load_package(path)
        t = time.perf_counter()
        est = estimate_network(pkg.network, inputs=pkg.test_inputs[:16])
        results["networks"].append(row(f"digits ({path})", est, time.perf_counter() - t,
                                       sparsity=pkg.manifest["sparsity"]["target"],
                                       accuracy=pkg.accuracy))
    results["hcim"] = [hcim_comparison(path) for path in args.hcim]
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
    lines = ["| macro | point | role | published TOPS/W | model TOPS/W | error |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in results["validation"]:
        lines.append(f"| {r['macro']} | {r['point']} | {r['role']} | {r['published']:g} | "
                     f"{r['model']:.1f} | {100 * r['error']:+.1f} % |")
    for h in results["hcim"]:
        lines += ["", f"HCiM comparison: {h['package']} (accuracy {h['accuracy']:.3f}), "
                  f"{h['nonzero_per_inference']:.0f} non-zero comparator outputs of "
                  f"{h['comparisons_per_inference']} ternary comparator decisions per "
                  f"inference ({h['samples']} test inputs; {h['activity_source']})", "",
                  "| readout | energy / inference uJ | macro (array + readout + shift-add) "
                  "uJ | saving vs 7-bit ADC (total / macro) | saving vs 4-bit ADC "
                  "(total / macro) |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, r in h["rows"].items():
            def pair(b, r=r):
                if f"saving_vs_{b}b" not in r:
                    return "-"
                return (f"{100 * r[f'saving_vs_{b}b']:.1f} % / "
                        f"{100 * r[f'macro_saving_vs_{b}b']:.1f} %")
            lines.append(f"| {label} | {r['energy_pj'] * 1e-6:.4f} | "
                         f"{r['macro_pj'] * 1e-6:.4f} | {pair(7)} | {pair(4)} |")
        lines.append("| HCiM (published) | | | up to 28 % | up to 12 % |")
        t = h["rows"]["ternary"]
        lines += ["", f"non-zero fraction {100 * h['nonzero_fraction']:.1f} %; ternary "
                  f"readout + shift-add break even with the 7-bit ADC at "
                  f"{100 * t['breakeven_vs_7b']:.1f} %, with the 4-bit ADC at "
                  f"{100 * t['breakeven_vs_4b']:.1f} % (scale-multiply-add "
                  f"{1000 * h['scaled_add_pj']:.1f} fJ)"]
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
