"""A/B comparison of two native Verilator builds of the top on one workload.

    python bench/native_ab.py PACKAGE EXE_A EXE_B [--inputs 100] [--reps 5]
        [--python-a PY] [--python-b PY] [--allow-cycle-change]

Maps the package's network, then drives each harness executable (`mars.tb.native.build`
makes them, under build/native/) through the host driver with the same inputs, alternating
A and B ``--reps`` times.  Prints the simulated cycles per second of each (by the harness's
wall clock, and per CPU second of the harness process, which is much less sensitive to
other load on the machine) and whether both builds gave exactly the same outputs, cycles
per phase and cycles per run.  Use it to check that a refactoring of the RTL keeps its
behaviour cycle for cycle and its simulation speed (docs/benchmarks.md).

Each run is driven by a child process, ``PY native_ab.py --worker ...``, which maps the
network and encodes the program with the ``mars`` that interpreter imports: give
``--python-a``/``--python-b`` the venv of the tree each executable was built from when the
host-side encoding changed between them (e.g. the instruction layout), so that each build
gets the program its own software writes.  The outputs of both builds must be the
package's test logits.  ``--allow-cycle-change`` compares a change that legitimately
changes the cycle counts (a faster control path): it still requires identical outputs
and reports the cycles per inference of each build; then compare the cycles per CPU
second, not the inferences per second.  Exit status 1 when the required behaviour
differs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_once(package: Path, exe: Path, n_inputs: int) -> dict:
    """One run of `exe` on the package's first `n_inputs` test inputs, with this process's
    ``mars``: rates (cycles/s by wall clock, cycles per CPU second of the harness) and the
    behaviour (outputs, cycles per phase and per run of every input) and whether the outputs
    are the package's test logits."""
    from mars.sw.golden.cycles import network_cycles
    from mars.sw.host import HostDriver
    from mars.sw.host.driver import run_inferences
    from mars.sw.mapper import map_network
    from mars.sw.package import load_package
    from mars.tb.native import NativeTransport

    loaded = load_package(package)
    mapping = map_network(loaded.network)
    inputs = loaded.test_inputs[:n_inputs]
    budget = 2 * sum(p.cycles for p in network_cycles(mapping)) + 1000
    h, w, c = mapping.output_shape
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with NativeTransport(exe) as transport:
        driver = HostDriver(mapping.config, transport)
        answers = run_inferences(driver, inputs, memories=mapping.memories,
                                 phases=mapping.n_phases, resident=mapping.resident,
                                 n_outputs=h * w * c, budget=budget)
        driver.flush()
        stats = transport.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cycles = stats["cycles_simulated"]
    outputs = np.array([a.outputs.value for a in answers], dtype=np.int64)
    expected = np.asarray(loaded.test_logits[:n_inputs], dtype=np.int64)
    return {"package_logits": bool(outputs.size == expected.size and np.array_equal(
                outputs.reshape(expected.shape), expected)),
            "wall": cycles / stats["wall_s"], "cpu": cycles / cpu,
            "outputs": [np.asarray(a.outputs.value).tolist() for a in answers],
            "phase_cycles": [np.asarray(a.phase_cycles.value).tolist() for a in answers],
            "run_cycles": [int(a.run.value.cycles) for a in answers]}


def run_child(python: str, package: Path, exe: Path, n_inputs: int) -> dict:
    """`run_once` in a child process of interpreter `python`."""
    done = subprocess.run([python, __file__, "--worker", str(package), str(exe),
                           "--inputs", str(n_inputs)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"native_ab: the run of {exe} with {python} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("package", type=Path)
    parser.add_argument("exe", type=Path, nargs="+",
                        help="the two harness executables (one with --worker)")
    parser.add_argument("--inputs", type=int, default=100, help="test inputs per run")
    parser.add_argument("--reps", type=int, default=5, help="runs of each executable")
    parser.add_argument("--python-a", default=sys.executable,
                        help="interpreter (venv) that drives EXE_A")
    parser.add_argument("--python-b", default=sys.executable,
                        help="interpreter (venv) that drives EXE_B")
    parser.add_argument("--allow-cycle-change", action="store_true",
                        help="require identical outputs only, not identical cycle counts")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_once(args.package, args.exe[0], args.inputs)))
        return
    if len(args.exe) != 2:
        parser.error("give two harness executables, EXE_A and EXE_B")
    pythons = dict(zip(args.exe, (args.python_a, args.python_b)))
    rates = {exe: [] for exe in args.exe}
    behaviour = {}
    for _ in range(args.reps):
        for exe in args.exe:
            result = run_child(pythons[exe], args.package, exe, args.inputs)
            rates[exe].append((result["wall"], result["cpu"]))
            behaviour[exe] = result
    for exe, runs in rates.items():
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        run_cycles = behaviour[exe]["run_cycles"]
        print(f"{exe}  (driven by {pythons[exe]})\n"
              f"  cycles/s (wall): median {np.median(walls):.0f}  "
              f"({' '.join(f'{v:.0f}' for v in walls)})\n"
              f"  cycles per CPU s: median {np.median(cpus):.0f}  "
              f"({' '.join(f'{v:.0f}' for v in cpus)})\n"
              f"  cycles per inference: mean {np.mean(run_cycles):.1f}  "
              f"min {min(run_cycles)}  max {max(run_cycles)}  last {run_cycles[-1]}")
    a, b = (behaviour[exe] for exe in args.exe)
    same_outputs = a["outputs"] == b["outputs"]
    same_cycles = (a["phase_cycles"] == b["phase_cycles"]
                   and a["run_cycles"] == b["run_cycles"])
    print(f"identical outputs: {same_outputs}; identical cycles per phase and per run: "
          f"{same_cycles}; outputs = the package's logits: A {a['package_logits']}, "
          f"B {b['package_logits']}")
    right = same_outputs and a["package_logits"] and b["package_logits"]
    if not right or not (same_cycles or args.allow_cycle_change):
        sys.exit(1)


if __name__ == "__main__":
    main()
