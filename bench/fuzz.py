"""Fuzz campaign: generated bad (and good) inputs for every ``mars`` entry point, counted.

The generators and the judge are the suite's (`mars.tb.fuzz`, tests/test_fuzz.py), run
here on many more seeds: configuration JSON, manifest and tensor corruptions (with and
without a fixed-up SHA-256), ``--inputs`` arrays and random options of every subcommand,
on packages of two random networks (``cnn``: conv, pool, flatten, linear; ``odd``: odd
channel counts, a 1x1 conv, floor-mode pooling) for the ``tiny`` preset.  ``mars`` runs
in-process.  Each outcome is one of: ok (exit 0 with the specification's logits or the
configuration given, exit 2 with one line, or long work reached), traceback, wrong
(exit 0, wrong result), messy (exit 2 but not one line), exit (another status).

    .venv/bin/python bench/fuzz.py                 # 300 cases per generator (1500)
    .venv/bin/python bench/fuzz.py --per-kind 50 --json build/fuzz.json

Exit status 1 if any case is not ok; each such case is printed with its generator and
seed (``GENERATORS[kind](random.Random(f"{kind}-{seed}"), workspace)`` rebuilds it).
Figures: docs/robustness.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from mars.tb import fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=300, metavar="N",
                        help="cases per generator (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(fuzz.GENERATORS),
                        help="generators, comma-separated (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")

    verdicts: collections.Counter = collections.Counter()
    exits: collections.Counter = collections.Counter()
    bad_counts: collections.Counter = collections.Counter()
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mars-fuzz-") as folder:
        spaces = [fuzz.Workspace(Path(folder) / name, seed=7, network=name)
                  for name in ("cnn", "odd")]
        for kind in kinds:
            for seed in range(args.per_kind):
                ws = spaces[seed % len(spaces)]
                case = fuzz.GENERATORS[kind](random.Random(f"{kind}-{seed}"), ws)
                try:
                    outcome = fuzz.run_case(case, ws.workdir)
                    verdict, detail = fuzz.judge(case, outcome)
                finally:
                    ws.restore()
                verdicts[kind, verdict] += 1
                bad_counts[kind, "bad" if case.bad else "good"] += 1
                exits[kind, "long work" if outcome.reached else
                      "traceback" if outcome.traceback else f"exit {outcome.status}"] += 1
                if verdict != "ok":
                    failures.append({"kind": kind, "seed": seed, "verdict": verdict,
                                     "case": case.label, "detail": detail})
                    print(f"{kind} seed {seed}: {verdict}: {case.label[:120]} | {detail[:200]}",
                          flush=True)
    seconds = time.perf_counter() - start

    total = sum(verdicts.values())
    bad = sum(n for (kind, b), n in bad_counts.items() if b == "bad")
    print(f"\n{total} cases ({bad} meant bad) in {seconds:.0f} s\n")
    print("| generator | cases | meant bad | exit 0 | exit 2 | long work | tracebacks | "
          "wrong | messy | other exit |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = {}
    for kind in kinds:
        row = {
            "cases": sum(n for (k, _), n in verdicts.items() if k == kind),
            "bad": bad_counts[kind, "bad"],
            "exit 0": exits[kind, "exit 0"], "exit 2": exits[kind, "exit 2"],
            "long work": exits[kind, "long work"],
            "traceback": verdicts[kind, "traceback"], "wrong": verdicts[kind, "wrong"],
            "messy": verdicts[kind, "messy"], "exit": verdicts[kind, "exit"],
        }
        rows[kind] = row
        print(f"| {kind} | " + " | ".join(str(v) for v in row.values()) + " |")
    sums = {key: sum(row[key] for row in rows.values()) for key in next(iter(rows.values()))}
    print("| **all** | " + " | ".join(f"**{v}**" for v in sums.values()) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"per_kind": rows, "all": sums,
                                               "seconds": seconds, "failures": failures},
                                              indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
