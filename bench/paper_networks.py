"""MARS's benchmark networks on the MARS-like preset: cycles, FPS and utilisation.

    python bench/paper_networks.py [--config mars] [--networks vgg16 resnet18]
                                   [--sparsity 0 0.5 0.75 0.9] [--seed 0] [--out DIR]
                                   [--digits-only]

For VGG16 and ResNet18 with CIFAR-10 shapes (32x32x3 images, 10 classes; the trainer's
``vgg16`` and ``resnet18`` models, read by its graph parser
`mars.sw.train.models.parse_model`) it builds
an integer network with random Wb-bit weights, prunes every layer but the first
block-balanced to the given group sparsity (each output block keeps exactly
ceil((1 - s) * K-groups) K-groups: the trainer's ``--scope block``), maps it and runs the
exact cycle model.  Cycle counts depend only on the shapes and the kept groups, not on
the weights' values, so no CIFAR training is involved.  Per cell:

- ``cycles``: clock cycles of one inference, weight loads included
  (`mars.sw.golden.cycles.network_cycles`); ``load_cycles`` and ``load_share`` the LOAD
  part; ``steady_cycles`` with resident weights left in the macros (equal to ``cycles``
  unless the whole network is resident);
- ``fps_100mhz`` and ``fps_fmax``: 1 / latency at 100 MHz and at ``FMAX_MHZ`` below;
- ``utilisation``: the ideal bound (`ideal_cycles`: kept groups x output pixels x Ab/b over
  every macro's word-line domains) over ``cycles``; ``compute_utilisation`` the same over
  the WALK cycles only;
- a cell that does not map carries the mapper's one-line reason instead.

Also the per-layer utilisation of the digits network (sw/train's default model, 8x8x1)
on the ``default`` preset at the trainer's default sparsity (50 %), block-balanced.

Writes DIR/paper_networks.json (default build/bench/paper/) and prints the Markdown tables
of docs/benchmarks.md; ``--digits-only`` measures the digits network alone (seconds),
into DIR/digits.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
from torch import nn

from mars.config import PRESETS, MarsConfig, load_config
from mars.errors import MarsError
from mars.sw.golden.cycles import ideal_cycles, network_cycles, steady_cycles
from mars.sw.golden.network import AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.mapper import map_network
from mars.sw.train.models import digits_cnn, parse_model, resnet18_cifar, vgg_cifar
from mars.tb.networks import random_layer

OUT = Path(__file__).resolve().parent.parent / "build" / "bench" / "paper"

#: Post-route Fmax of the slowest block of the default accelerator measured after the
#: pipelining of issue 9 part 2 (docs/synthesis.md: sparse_decoder, default preset, LFE5U-85F-6,
#: out of context).  A whole top was not placed and routed at that revision, so this is
#: a block Fmax, an upper bound on the top's clock.
FMAX_MHZ = 108.2
FMAX_SOURCE = "sparse_decoder (default) post-route Fmax, docs/synthesis.md"

def vgg16(image_shape=(3, 32, 32), classes: int = 10, width: float = 1.0) -> nn.Sequential:
    """VGG16 for CIFAR (the trainer's ``vgg16``); `width` scales every channel count."""
    return vgg_cifar(image_shape, classes, "vgg16", width)


resnet18 = resnet18_cifar


#: Network name -> factory(image_shape, classes, width).
NETWORKS = {"vgg16": vgg16, "resnet18": resnet18,
            "digits": lambda image_shape, classes, width=1.0: digits_cnn(image_shape, classes)}


def balanced_prune(layer: LayerNode, config: MarsConfig, sparsity: float,
                   rng: np.random.Generator) -> LayerNode:
    """`layer` with exactly ``max(1, ceil((1 - sparsity) * KG))`` of its KG K-groups kept
    in every output block (the trainer's ``--scope block``); every weight of a kept group
    is made non-zero so that no group is pruned by accident."""
    g = layer.geometry
    G, cpg = config.rows_per_step, config.channels_per_group
    kgroups = -(-g.k // G)
    keep = max(1, math.ceil((1 - sparsity) * kgroups - 1e-9))
    w = layer.weight.copy()
    w[w == 0] = 1
    for cb in range(-(-g.cout // cpg)):
        for kg in rng.permutation(kgroups)[keep:]:
            w[cb * cpg:(cb + 1) * cpg, kg * G:(kg + 1) * G] = 0
    return LayerNode(layer.name, layer.inputs, g, w, layer.bias, layer.output,
                     layer.multiplier, layer.shift)


def build_network(name: str, config: MarsConfig, sparsity: float, *, seed: int = 0,
                  image_shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10,
                  width: float = 1.0) -> IntegerNetwork:
    """The integer network of `name` (`NETWORKS`) for images of shape (C, H, W): the
    trainer's graph of the torch model with random Wb-bit weights and requantisation
    parameters, every layer but the first pruned block-balanced to `sparsity`."""
    model = NETWORKS[name](image_shape, classes, width)
    graph = parse_model(model, image_shape)
    rng = np.random.default_rng(seed)
    nodes: list = []
    first = True
    for spec in graph:
        if spec.is_layer:
            layer = random_layer(rng, config, spec.name, spec.inputs[0], spec.geometry,
                                 spec.output, 0.0)
            layer = balanced_prune(layer, config, 0.0 if first else sparsity, rng)
            nodes.append(layer)
            first = False
        elif spec.op == "maxpool":
            nodes.append(PoolNode(spec.name, spec.inputs, spec.in_shape, spec.kernel,
                                  spec.stride, spec.pad))
        elif spec.op == "flatten":
            nodes.append(FlattenNode(spec.name, spec.inputs, spec.in_shape))
        elif spec.op == "add":
            channels = spec.out_shape[2]
            # Each input rescaled by about 1/2 (M/2^S with S in 12..16), as a trained add's
            # two steps would be of the same order; values do not change the cycles.
            shift = rng.integers(12, 17, size=(2, channels))
            mult = np.maximum(1, (2.0 ** (shift - 1) * rng.uniform(0.5, 1.5, (2, channels))
                                  ).astype(np.int64))
            nodes.append(AddNode(spec.name, spec.inputs, mult, shift))
        else:  # pragma: no cover - parse_model emits only the ops above
            raise TypeError(f"unknown op {spec.op!r}")
    c, h, w = image_shape
    return IntegerNetwork(config, (h, w, c), tuple(nodes), nodes[-1].name)


def _reason(error: Exception) -> str:
    """The first line of an error, as the CLI would print it."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def measure(network: IntegerNetwork, *, fmax_mhz: float = FMAX_MHZ) -> dict:
    """Map `network` and count one inference with the exact cycle model.

    Returns ``{"maps": False, "reason": ...}`` if the mapper (or anything it calls)
    refuses it with a `MarsError`, else the figures listed in the module docstring and
    ``layers``: per layer (in mapping order) its name, ideal cycles, WALK cycles, LOAD
    cycles of its phases, and the two utilisations.
    """
    try:
        mapping = map_network(network)
    except MarsError as error:
        return {"maps": False, "reason": _reason(error)}
    phases = network_cycles(mapping)
    steady = steady_cycles(mapping)
    ideal = ideal_cycles(mapping)
    layers = [{"name": plan.node.name, "ideal": ideal[i], "walk_cycles": 0, "load_cycles": 0,
               "steady_walk_cycles": 0, "steady_load_cycles": 0}
              for i, plan in enumerate(mapping.layers)]
    for phase, again in zip(phases, steady):
        layers[phase.layer]["walk_cycles"] += phase.walk_cycles
        layers[phase.layer]["load_cycles"] += phase.load_cycles
        layers[again.layer]["steady_walk_cycles"] += again.walk_cycles
        layers[again.layer]["steady_load_cycles"] += again.load_cycles
    for row in layers:
        row["compute_utilisation"] = row["ideal"] / row["walk_cycles"]
        row["utilisation"] = row["ideal"] / (row["walk_cycles"] + row["load_cycles"])
        # a later inference of a resident network (weights kept: every load skipped)
        row["steady_utilisation"] = row["ideal"] / (row["steady_walk_cycles"]
                                                    + row["steady_load_cycles"])
    cycles = sum(p.cycles for p in phases)
    load = sum(p.load_cycles for p in phases)
    walk = sum(p.walk_cycles for p in phases)
    return {
        "maps": True, "cycles": cycles, "load_cycles": load, "walk_cycles": walk,
        "steady_cycles": sum(p.cycles for p in steady), "resident": bool(mapping.resident),
        "phases": len(phases), "ideal_cycles": sum(ideal),
        "utilisation": sum(ideal) / cycles, "compute_utilisation": sum(ideal) / walk,
        "load_share": load / cycles,
        "fps_100mhz": 100e6 / cycles, "fps_fmax": fmax_mhz * 1e6 / cycles,
        "layers": layers,
    }


def digits_layers(config: MarsConfig | None = None, sparsity: float = 0.5,
                  seed: int = 0) -> dict:
    """The digits network (8x8x1, sw/train's default model) measured on `config`
    (default: the ``default`` preset) at `sparsity`, block-balanced."""
    config = config or PRESETS["default"]
    return measure(build_network("digits", config, sparsity, seed=seed,
                                 image_shape=(1, 8, 8)))


def table(results: list[dict]) -> list[str]:
    """The Markdown table of docs/benchmarks.md: one row per network and sparsity."""
    lines = ["| network | group sparsity | cycles / inference | FPS at 100 MHz | "
             f"FPS at {FMAX_MHZ:g} MHz | utilisation (with loads) | compute only | "
             "load share |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        head = f"| {r['network']} | {r['sparsity']:.0%} |"
        if not r["maps"]:
            lines.append(f"{head} does not map: {r['reason']} | | | | | |")
            continue
        lines.append(f"{head} {r['cycles']} | {r['fps_100mhz']:.0f} | {r['fps_fmax']:.0f} | "
                     f"{r['utilisation']:.1%} | {r['compute_utilisation']:.1%} | "
                     f"{r['load_share']:.1%} |")
    return lines


def digits_table(result: dict) -> list[str]:
    lines = ["| layer | ideal cycles | WALK cycles | LOAD cycles | utilisation (compute) | "
             "utilisation (with loads) | later inferences: WALK / LOAD cycles | "
             "utilisation (later inferences) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["layers"]:
        lines.append(f"| {row['name']} | {row['ideal']:.0f} | {row['walk_cycles']} | "
                     f"{row['load_cycles']} | {row['compute_utilisation']:.1%} | "
                     f"{row['utilisation']:.1%} | {row['steady_walk_cycles']} / "
                     f"{row['steady_load_cycles']} | {row['steady_utilisation']:.1%} |")
    return lines


def run(config: MarsConfig, networks: list[str], sparsities: list[float], seed: int,
        progress=print) -> list[dict]:
    results = []
    for name in networks:
        for sparsity in sparsities:
            start = time.time()
            network = build_network(name, config, sparsity, seed=seed)
            result = {"network": name, "sparsity": sparsity, **measure(network)}
            result["seconds"] = round(time.time() - start, 2)
            progress(f"{name} {sparsity:.0%}: " + (
                f"{result['cycles']} cycles" if result["maps"] else result["reason"])
                + f" ({result['seconds']} s)")
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mars", help="preset or JSON (default: mars)")
    parser.add_argument("--networks", nargs="+", default=["vgg16", "resnet18"],
                        choices=sorted(set(NETWORKS) - {"digits"}))
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.0, 0.5, 0.75, 0.9])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--digits-only", action="store_true",
                        help="measure only the digits network (a few seconds; writes "
                             "digits.json instead of paper_networks.json)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except MarsError as error:
        print(f"paper_networks: error: {error}", file=sys.stderr)
        return 2
    results = [] if args.digits_only else run(
        config, args.networks, args.sparsity, args.seed,
        progress=lambda line: print(line, file=sys.stderr))
    digits = digits_layers(seed=args.seed)
    doc = {
        "bench": "paper_networks", "date": datetime.date.today().isoformat(),
        "python": platform.python_version(), "seed": args.seed,
        "config": config.to_dict(), "config_hash": config.short_hash,
        "fmax_mhz": FMAX_MHZ, "fmax_source": FMAX_SOURCE,
        "results": results,
        "digits": {"config": "default", "config_hash": PRESETS["default"].short_hash,
                   "sparsity": 0.5, **digits},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "digits.json" if args.digits_only else "paper_networks.json"
    (args.out / name).write_text(json.dumps(doc, indent=1) + "\n")
    if results:
        print("\n".join(table(results)))
        print()
    if digits["maps"]:
        print("\n".join(digits_table(digits)))
    else:
        print(f"digits network does not map: {digits['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
