"""Accuracy against the rate of stuck-at cells in the macros (docs/faults.md).

    python bench/faults.py [--seeds 0 1 2] [--rates 0 1e-4 ...] [--qat-epochs 30]
                           [--package NAME=PKG ...]

For the ``default`` configuration (exact 4-bit readout) and the ``hcim`` preset (the
ADC-less ternary readout with trained column scale factors, two rows per step), the
digits network is
trained (``mars.sw.train.train`` with the defaults of ``mars train``; a package is reused
from build/bench/faults/packages/ or given with ``--package default=PKG``), then every
test image of the package is run on the golden model with a fault map per (rate, seed)
(`mars.sw.faults.fault_sweep`: half the stuck cells at 0, half at 1; one seed's maps are
nested over the rates).  Writes
build/bench/faults/results.json, faults.md (the table) and faults.png / faults.svg (the
plot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from mars.config import PRESETS
from mars.sw.faults import fault_sweep
from mars.sw.package import load_package

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "bench" / "faults"
RATES = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
#: name -> configuration: the default one and the HCiM preset (ternary, G = 2, threshold 1)
#: on the same macros.  At the default G = 8 a comparator per column keeps too little of
#: the popcount and the digits network trains to near chance (docs/faults.md).
CONFIGS = {
    "default": PRESETS["default"],
    "hcim": PRESETS["hcim"],
}


def package_for(name: str, given: dict[str, str], qat_epochs: int, say) -> Path:
    """The package of configuration `name`: given, reused, or trained now."""
    if name in given:
        return Path(given[name])
    path = OUT / "packages" / name
    if (path / "manifest.json").exists():
        if load_package(path).network.config.content_hash == CONFIGS[name].content_hash:
            say(f"{name}: reusing {path}")
            return path
    from mars.sw.train.trainer import TrainOptions, train

    say(f"{name}: training the digits network into {path}")
    start = time.perf_counter()
    train(CONFIGS[name], TrainOptions(qat_epochs=qat_epochs), path, progress=False,
          log=lambda s: None)
    say(f"{name}: trained in {time.perf_counter() - start:.0f} s")
    return path


def sweep(name: str, package: Path, rates, seeds, say) -> list[dict]:
    pkg = load_package(package)
    network = pkg.network
    start = time.perf_counter()
    rows = fault_sweep(network, pkg.test_inputs, pkg.test_labels, rates, seeds)
    for row in rows:
        row.update(config=name, config_name=network.config.name,
                   readout=network.config.readout_mode.value, package=str(package),
                   package_accuracy=pkg.accuracy, images=len(pkg.test_inputs))
        say(f"{name}: rate {row['rate']:g} seed {row['seed']}: accuracy "
            f"{100 * row['accuracy']:.2f} %, {100 * row['flipped']:.2f} % of predictions "
            f"changed, {row['stuck_cells']} stuck cells")
    say(f"{name}: {len(rows)} runs in {time.perf_counter() - start:.0f} s")
    return rows


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.mean(values), min(values), max(values)


def markdown(rows: list[dict], command: str, meta: dict) -> str:
    names = list(dict.fromkeys(r["config"] for r in rows))
    rates = sorted({r["rate"] for r in rows})
    lines = [f"Command: `{command}` ({meta['date']}, {meta['machine']}; "
             f"{meta['seconds']:.0f} s).", ""]
    for name in names:
        first = next(r for r in rows if r["config"] == name)
        lines.append(f"- `{name}`: configuration `{first['config_name']}` "
                     f"(readout `{first['readout']}`), package accuracy "
                     f"{100 * first['package_accuracy']:.2f} % on {first['images']} test "
                     f"images")
    lines += ["", "| fault rate | " + " | ".join(
        f"{n}: accuracy %, mean (min..max) | {n}: predictions changed %" for n in names) + " |",
        "| ---: | " + " | ".join("---: | ---:" for _ in names) + " |"]
    for rate in rates:
        cells = []
        for name in names:
            sel = [r for r in rows if r["config"] == name and r["rate"] == rate]
            mean, lo, hi = _stats([100 * r["accuracy"] for r in sel])
            flipped = statistics.mean(100 * r["flipped"] for r in sel)
            cells.append(f"{mean:.2f} ({lo:.2f}..{hi:.2f}) | {flipped:.2f}")
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = list(dict.fromkeys(r["config"] for r in rows))
    rates = sorted({r["rate"] for r in rows})
    # log axis: the fault-free point is drawn at a tenth of the smallest nonzero rate
    nonzero = [r for r in rates if r > 0]
    at_zero = min(nonzero) / 10 if nonzero else 1e-5
    for name in names:
        xs, mean, lo, hi = [], [], [], []
        for rate in rates:
            sel = [100 * r["accuracy"] for r in rows if r["config"] == name and r["rate"] == rate]
            m, a, b = _stats(sel)
            xs.append(rate or at_zero)
            mean.append(m)
            lo.append(m - a)
            hi.append(b - m)
        label = next(f"{name} ({r['readout']} readout)" for r in rows if r["config"] == name)
        ax.errorbar(xs, mean, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"stuck-at cell rate (fault-free drawn at {at_zero:g})")
    ax.set_ylabel("digits test accuracy (%)")
    ax.set_title("Accuracy against stuck-at-0/1 cells in the macros (golden model)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "faults.png", dpi=120)
    fig.savefig(out / "faults.svg")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS),
                        default=list(CONFIGS))
    parser.add_argument("--qat-epochs", type=int, default=30,
                        help="QAT epochs of the packages the bench trains")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="folder of the results, the table and the plot")
    parser.add_argument("--package", action="append", default=[], metavar="NAME=PKG",
                        help="use this package for configuration NAME (default: train)")
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.package)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    say = lambda line: print(line, flush=True)      # noqa: E731
    start = time.perf_counter()
    rows = []
    for name in args.configs:
        package = package_for(name, given, args.qat_epochs, say)
        rows += sweep(name, package, args.rates, args.seeds, say)
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "seconds": time.perf_counter() - start}
    command = "python " + " ".join(["bench/faults.py"] + (argv if argv is not None
                                                           else sys.argv[1:]))
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = markdown(rows, command, meta)
    (out / "faults.md").write_text(text)
    plot(rows, out)
    print(text)
    print(f"wrote {out / 'results.json'}, faults.md, faults.png, faults.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
