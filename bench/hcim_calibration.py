"""How much accuracy a comparator (binary/ternary, HCiM) readout keeps, without retraining.

    python bench/hcim_calibration.py PKG [--mode ternary] [--rows-per-step 2 8]
                                         [--thresholds 1 2] [--calibration 120]

Takes a package trained for the exact readout and converts it to a comparator readout on
the same macros with G rows per step and threshold T: layer by layer, on the first
``--calibration`` test images propagated through the already converted layers, each output
channel's Wb column scale factors are the least-squares fit of the exact product by the
comparator counts (``sum_kg sum_i 2^i c[kg][i][j][n]``, signed per column for ternary),
rounded to the configured fixed point; weights, biases and requantisation stay.  The
accuracy is measured with the accelerator's golden model on the remaining test images.
Prints one line per (G, T) and writes build/bench/hcim_calibration.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from mars.config import ReadoutMode
from mars.sw.golden.accel import accelerator_product, macro_product, run_accelerator
from mars.sw.golden.network import (
    IntegerNetwork, LayerNode, exact_product, im2col, run_network,
)
from mars.sw.package import load_package

OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


def column_counts(patches, node: LayerNode, config) -> np.ndarray:
    """(M, Wb, N): the comparator counts of every bit column, signed by the column sign,
    computed with the golden model (`macro_product` with a unit scale on one column)."""
    n, wb, frac = node.weight.shape[0], config.weight_bits, config.scale_frac_bits
    counts = []
    for j in range(wb):
        scales = np.zeros((n, wb), dtype=np.int64)
        scales[:, j] = 1 << frac
        counts.append(macro_product(patches, node.weight,
                                    dataclasses.replace(node, scales=scales), config))
    return np.stack(counts, axis=1).astype(np.float64)


def convert(network, config, inputs):
    """`network` with least-squares column scale factors for `config`, fitted on
    `inputs` layer by layer through the converted layers."""
    top = 1 << (config.scale_bits - 1)
    values = {"input": inputs.astype(np.int64)}
    nodes = []
    for node in network.nodes:
        if isinstance(node, LayerNode):
            x = values[node.inputs[0]]
            g = node.geometry
            patches = im2col(x.reshape(len(x), g.in_h, g.in_w, g.cin), g).reshape(-1, g.k)
            exact = exact_product(patches, node.weight, node, config).astype(np.float64)
            counts = column_counts(patches, node, config)
            fit = np.stack([np.linalg.lstsq(counts[:, :, n], exact[:, n], rcond=None)[0]
                            for n in range(exact.shape[1])])
            codes = np.clip(np.floor(fit * (1 << config.scale_frac_bits) + 0.5), -top, top - 1)
            node = dataclasses.replace(node, scales=codes.astype(np.int64))
        nodes.append(node)
        # this node alone, on its input (as a one-node network reading "input")
        x = values[node.inputs[0]]
        x = x.reshape(len(x), 1, 1, -1) if x.ndim == 2 else x
        single = IntegerNetwork(config, x.shape[1:], (dataclasses.replace(
            node, inputs=("input",) + tuple(node.inputs[1:])),), node.name)
        _, kept = run_network(single, x, keep=True, product=accelerator_product(config))
        values[node.name] = kept[node.name]
    return dataclasses.replace(network, config=config, nodes=tuple(nodes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--mode", choices=["binary", "ternary"], default="ternary")
    parser.add_argument("--rows-per-step", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--thresholds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calibration", type=int, default=120)
    args = parser.parse_args(argv)
    pkg = load_package(args.package)
    network, x, y = pkg.network, pkg.test_inputs, pkg.test_labels
    cal, test = slice(0, args.calibration), slice(args.calibration, None)
    exact = float((run_accelerator(network, x[test]).argmax(1) == y[test]).mean())
    print(f"{network.config.name} ({network.config.readout_mode.value}): {100 * exact:.2f} % "
          f"on {len(x[test])} test images")
    rows = []
    for g in args.rows_per_step:
        for t in args.thresholds:
            if t > g:
                continue
            config = network.config.replace(name=f"{args.mode}-g{g}-t{t}", rows_per_step=g,
                                            readout_mode=ReadoutMode(args.mode),
                                            readout_threshold=t)
            converted = convert(network, config, x[cal])
            acc = float((run_accelerator(converted, x[test]).argmax(1) == y[test]).mean())
            rows.append({"mode": args.mode, "rows_per_step": g, "threshold": t,
                         "accuracy": acc, "exact": exact})
            print(f"{args.mode} G={g} T={t}: {100 * acc:.2f} % ({100 * (acc - exact):+.2f} "
                  f"points)", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hcim_calibration.json").write_text(json.dumps(
        {"package": args.package, "command": "python bench/hcim_calibration.py "
         + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
