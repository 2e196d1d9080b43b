"""``pytest -n 2`` over simulation tests that share one design, repeated from a clean build
folder: the figures behind docs/robustness.md ("Parallel test workers").

    nice .venv/bin/python bench/xdist_repeat.py [--runs 10] [-k "tiny-verilator"]

Each run points ``MARS_BUILD_DIR`` at a fresh empty folder and runs
``pytest -n 2 tb/test_top.py -k tiny-verilator``: five networks on the ``tiny`` top with
Verilator, so both workers need the same not yet built cocotb model at once (one builds
it under the cache's file lock, the other waits).  Prints one line per run (passed,
failed, errors, seconds) and a summary; writes build/bench/xdist_repeat.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mars.tb.sim import REPO_ROOT

OUT = REPO_ROOT / "build" / "bench"


def counts(summary: str) -> dict[str, int]:
    """pytest's last line ("5 passed, 1 failed in 80.1s") as numbers."""
    found = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)",
                                                    summary)}
    found["errors"] = found.pop("error", 0) + found.pop("errors", 0)
    return {key: found.get(key, 0) for key in ("passed", "failed", "errors", "skipped")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tests", default="tb/test_top.py")
    parser.add_argument("-k", dest="keyword", default="tiny-verilator")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="mars-xdist-") as folder:
            env = {**os.environ, "MARS_BUILD_DIR": str(Path(folder) / "build")}
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-n", str(args.workers),
                 "-p", "no:cacheprovider", "-m", "sim", args.tests, "-k", args.keyword],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
        lines = result.stdout.strip().splitlines()
        row = {"run": run + 1, "returncode": result.returncode, "seconds": round(seconds, 1),
               **counts(lines[-1] if lines else "")}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if result.returncode:
            print(result.stdout[-3000:], result.stderr[-2000:], flush=True)
    ok = sum(r["returncode"] == 0 and r["failed"] == r["errors"] == 0 for r in rows)
    times = [r["seconds"] for r in rows]
    print(f"{ok}/{len(rows)} runs passed; {sum(r['passed'] for r in rows)} tests passed, "
          f"{sum(r['failed'] + r['errors'] for r in rows)} failed; seconds per run "
          f"min {min(times)}, median {sorted(times)[len(times) // 2]}, max {max(times)}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "xdist_repeat.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
