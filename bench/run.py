"""Benchmarks behind docs/benchmarks.md.

    python bench/run.py [--ops N] [--only emit|sim]

Measures (1) Verilog emit time of every block per preset and (2) simulated clock cycles
per second of the macro's cocotb testbench on Verilator and Icarus.  Writes
build/bench/results.json and build/bench/benchmarks.md (tables ready for docs/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time

from mars.config import PRESETS
from mars.hw.blocks import BLOCKS, to_verilog
from mars.tb.sim import REPO_ROOT, SIMULATORS, run_testbench

OUT = REPO_ROOT / "build" / "bench"


def bench_emit(repeats: int = 3) -> list[dict]:
    to_verilog("cim_macro", PRESETS["tiny"])      # first conversion compiles Yosys (WASM)
    rows = []
    for name, config in PRESETS.items():
        if name == "mars":      # paper-sized memories: a cycle-figure preset, not a build
            continue
        for block in BLOCKS:
            times, lines = [], 0
            while len(times) < repeats:
                start = time.perf_counter()
                text = to_verilog(block, config)
                times.append(time.perf_counter() - start)
                lines = len(text.splitlines())
                if times[0] > 5:        # slow blocks (the whole top): one run is enough
                    break
            rows.append({"preset": name, "block": block, "lines": lines,
                         "seconds_median": statistics.median(times)})
            print(f"emit {name}/{block}: {rows[-1]['seconds_median']:.2f} s, {lines} lines",
                  flush=True)
    return rows


def bench_sim(ops: int) -> list[dict]:
    rows = []
    for name in ("tiny", "default", "adc3", "wide8"):
        for sim in SIMULATORS:
            # No random stalls: the figure is the simulator's speed, not the stimulus'.
            stats = run_testbench("cim_macro", PRESETS[name], sim, "mars.tb.macro_tb",
                                  env={"MARS_OPS": str(ops), "MARS_SEED": "1",
                                       "MARS_VALID": "1.0", "MARS_READY": "1.0"})
            rows.append({"preset": name, **stats})
            print(f"sim {name}/{sim}: {stats['cycles']} cycles in {stats['wall_s']:.2f} s "
                  f"= {stats['cycles_per_s']:.0f} cycles/s, {stats['ops_compared']} steps "
                  f"compared, {stats['mismatches']} mismatches", flush=True)
    return rows


def markdown(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']} with "
             f"`python bench/run.py` (`nox -s bench`).", ""]
    if results.get("emit"):
        lines += ["| preset | block | Verilog lines | emit time (s, median of 3; 1 run if > 5 s) |",
                  "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['preset']} | {r['block']} | {r['lines']} | {r['seconds_median']:.2f} |"
                  for r in results["emit"]]
        lines.append("")
    if results.get("sim"):
        lines += ["| preset | simulator | steps compared | mismatches | cycles | wall (s) "
                  "| cycles/s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['preset']} | {r['simulator']} | {r['ops_compared']} | "
                  f"{r['mismatches']} | {r['cycles']} | {r['wall_s']:.2f} | "
                  f"{r['cycles_per_s']:.0f} |" for r in results["sim"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000,
                        help="compute steps per weight load in the simulation benchmark")
    parser.add_argument("--only", choices=["emit", "sim"])
    args = parser.parse_args(argv)
    results = {"date": datetime.date.today().isoformat(),
               "machine": f"{platform.machine()}, Python {platform.python_version()}"}
    if args.only in (None, "emit"):
        results["emit"] = bench_emit()
    if args.only in (None, "sim"):
        results["sim"] = bench_sim(args.ops)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    (OUT / "benchmarks.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
