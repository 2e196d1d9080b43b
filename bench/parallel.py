"""Parallel commands on an unbuilt model: the figures behind docs/architecture.md, "Caches".

    python bench/parallel.py [--trials 10] [--processes 3] [--config tiny]

Each trial starts `--processes` ``mars run --backend verilator`` at once on a random
network's package (`mars.tb.networks.write_random_package`) with an empty private
``MARS_BUILD_DIR``, so every trial races to build the same Verilator model.  A trial
passes when every process exits 0 with the golden model's logits and exactly one of them
built the model.  Prints one line per trial and a summary; writes build/bench/parallel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mars.config import load_config
from mars.tb.networks import write_random_package
from mars.tb.sim import REPO_ROOT

OUT = REPO_ROOT / "build" / "bench"


def trial(work: Path, package: Path, logits: np.ndarray, processes: int) -> dict:
    env = {**os.environ, "MARS_BUILD_DIR": str(work / "build")}
    start = time.perf_counter()
    runs = [subprocess.Popen(
        [sys.executable, "-m", "mars.sw.cli", "run", "--package", str(package),
         "--backend", "verilator", "--out", str(work / f"y{i}.npz")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(processes)]
    outputs = [run.communicate()[0] for run in runs]
    seconds = time.perf_counter() - start
    codes = [run.returncode for run in runs]
    equal = all(code == 0 and np.array_equal(np.load(work / f"y{i}.npz")["logits"], logits)
                for i, code in enumerate(codes))
    builders = sum(any(line.startswith("building the Verilator model")
                       for line in out.splitlines()) for out in outputs)
    ok = equal and builders == 1
    return {"ok": ok, "exit_codes": codes, "equal_to_golden": equal, "builders": builders,
            "seconds": round(seconds, 1),
            "failure": None if ok else [out[-2000:] for out in outputs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--config", default="tiny")
    args = parser.parse_args()
    config = load_config(args.config)
    rows = []
    for n in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            logits = write_random_package(work / "package", config)
            row = trial(work, work / "package", logits, args.processes)
        rows.append(row)
        print(f"trial {n + 1}: {'ok' if row['ok'] else 'FAILED'} (exit {row['exit_codes']}, "
              f"{row['builders']} builder, {row['seconds']} s)", flush=True)
    passed = sum(row["ok"] for row in rows)
    print(f"{passed} of {len(rows)} trials passed ({args.processes} processes each, "
          f"config {config.name})")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "parallel.json").write_text(json.dumps(
        {"config": config.name, "processes": args.processes, "trials": rows}, indent=2))
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
