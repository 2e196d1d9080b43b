"""Benchmarks of the accelerator top behind docs/benchmarks.md ("The accelerator").

    python bench/accel.py [--sparsity 0 0.5 0.75] [--inputs 20] [--icarus-inputs 1]

For the default configuration and the digits network trained with block-balanced group
pruning at each sparsity: RTL cycles per inference (Verilator, native harness; checked
bit-exact against the golden model and cycle-exact against the cycle model), cycles per
layer against the ideal bound, speedup over the same network dense, and simulated cycles
per second on Verilator and Icarus.  Writes build/bench/accel.json and accel.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time


from mars.config import PRESETS
from mars.sw.golden.cycles import ideal_cycles, layer_walk_cycles, steady_cycles
from mars.sw.package import load_package
from mars.sw.mapper import map_network
from mars.sw.run import densified, run_network_on
from mars.sw.train.trainer import TrainOptions, train
from mars.tb.sim import REPO_ROOT

OUT = REPO_ROOT / "build" / "bench"


def bench(sparsity: float, inputs: int, icarus_inputs: int) -> dict:
    config = PRESETS["default"]
    package = OUT / "packages" / f"digits-block-{int(sparsity * 100)}"
    if not (package / "manifest.json").exists():
        train(config, TrainOptions(sparsity=sparsity, scope="block"), package, progress=False)
    pkg = load_package(package)
    mapping = map_network(pkg.network)
    x = pkg.test_inputs[:inputs]
    rtl = run_network_on(pkg.network, x, "verilator", mapping)
    golden = run_network_on(pkg.network, x, "golden", mapping)
    assert (rtl.logits == golden.logits).all(), "RTL differs from the golden model"
    assert (rtl.phase_cycles == golden.phase_cycles).all(), "RTL differs from the cycle model"
    row = {"sparsity": sparsity, "accuracy": pkg.accuracy, "inputs": len(x),
           "first_inference": int(rtl.cycles[0]), "cycles": int(rtl.cycles[-1]),
           "verilator_cycles_per_s": rtl.simulated_cycles_per_second}
    dense = map_network(densified(pkg.network))
    row["dense_cycles"] = sum(p.cycles for p in steady_cycles(dense))
    row["speedup"] = row["dense_cycles"] / row["cycles"]
    ideal = ideal_cycles(mapping)
    walks = layer_walk_cycles(mapping, steady_cycles(mapping))
    row["layers"] = [{"name": plan.name, "sparsity": plan.packed.sparsity,
                      "cycles": int(rtl.layer_cycles[-1][i]), "walk": walks[i],
                      "ideal": ideal[i]} for i, plan in enumerate(mapping.layers)]
    row["ideal"] = sum(ideal)
    row["utilisation"] = sum(ideal) / row["cycles"]
    if icarus_inputs:
        icarus = run_network_on(pkg.network, x[:icarus_inputs], "icarus", mapping)
        assert (icarus.logits == golden.logits[:icarus_inputs]).all()
        row["icarus_cycles_per_s"] = icarus.simulated_cycles_per_second
    print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
    return row


def markdown(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']} with `python bench/accel.py`.",
             "", "| group sparsity | integer accuracy | cycles / inference | dense | speedup "
             "| ideal | utilisation | first inference | Verilator cycles/s | Icarus cycles/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["rows"]:
        lines.append(
            f"| {100 * r['sparsity']:.0f} % | {100 * r['accuracy']:.2f} % | {r['cycles']} | "
            f"{r['dense_cycles']} | {r['speedup']:.2f}x | {r['ideal']:.0f} | "
            f"{100 * r['utilisation']:.0f} % | {r['first_inference']} | "
            f"{r['verilator_cycles_per_s']:.0f} | {r.get('icarus_cycles_per_s', 0):.0f} |")
    lines += ["", "| group sparsity | layer | layer sparsity | cycles | WALK cycles | ideal "
              "| WALK utilisation |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["rows"]:
        for layer in r["layers"]:
            lines.append(f"| {100 * r['sparsity']:.0f} % | {layer['name']} | "
                         f"{100 * layer['sparsity']:.0f} % | {layer['cycles']} | "
                         f"{layer['walk']} | {layer['ideal']:.0f} | "
                         f"{100 * layer['ideal'] / layer['walk']:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--icarus-inputs", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = [bench(s, args.inputs, args.icarus_inputs) for s in args.sparsity]
    results = {"date": datetime.date.today().isoformat(),
               "machine": f"{platform.machine()}, Python {platform.python_version()}",
               "rows": rows, "seconds": time.perf_counter() - start}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "accel.json").write_text(json.dumps(results, indent=2))
    (OUT / "accel.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
