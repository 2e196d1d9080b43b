"""How much accuracy a comparator (binary/ternary, HCiM) readout keeps, without retraining.

    python bench/hcim_calibration.py PKG [--mode ternary] [--rows-per-step 2 8]
                                         [--thresholds 1 2] [--calibration 120]

Takes a package trained for the exact readout and converts it to a comparator readout on
the same macros with G rows per step and threshold T: layer by layer, on the first
``--calibration`` test images propagated through the already converted layers, each output
channel's Wb column scale factors are the least-squares fit of the exact product by the
comparator counts (``sum_kg sum_i 2^i c[kg][i][j][n]``, signed per column for ternary),
rounded to the configured fixed point; weights, biases and requantisation stay
(`mars.sw.train.calibrate.sequential_scale_fit`, the trainer's own start).  The
accuracy is measured with the accelerator's golden model on the remaining test images.
Prints one line per (G, T) and writes build/bench/hcim_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mars.config import ReadoutMode
from mars.sw.golden.accel import run_accelerator
from mars.sw.package import load_package
from mars.sw.train.calibrate import sequential_scale_fit

OUT = Path(__file__).resolve().parent.parent / "build" / "bench"


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
            converted = sequential_scale_fit(network, x[cal], config)
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
