"""A/B comparison of two native Verilator builds of the top on one workload.

    python bench/native_ab.py PACKAGE EXE_A EXE_B [--inputs 100] [--reps 5]

Maps the package's network, then drives each harness executable (`mars.tb.native.build`
makes them, under build/native/) through the host driver with the same inputs, alternating
A and B ``--reps`` times.  Prints the simulated cycles per second of each (by the harness's
wall clock, and per CPU second of the harness process, which is much less sensitive to
other load on the machine) and whether both builds gave exactly the same outputs, cycles
per phase and cycles per run.  Use it to check that a refactoring of the RTL keeps its
behaviour cycle for cycle and its simulation speed (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

from mars.sw.golden.cycles import network_cycles
from mars.sw.golden.network import load_package
from mars.sw.host import HostDriver
from mars.sw.host.driver import run_inferences
from mars.sw.mapper import map_network
from mars.tb.native import NativeTransport


def run_once(exe: Path, mapping, inputs, budget: int):
    """One run: (cycles/s by wall clock, cycles per CPU second, (outputs, phase cycles,
    run cycles))."""
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
    behaviour = ([a.outputs.value for a in answers], [a.phase_cycles.value for a in answers],
                 [a.run.value.cycles for a in answers])
    cycles = stats["cycles_simulated"]
    return cycles / stats["wall_s"], cycles / cpu, behaviour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("package", type=Path)
    parser.add_argument("exe", type=Path, nargs=2, help="the two harness executables")
    parser.add_argument("--inputs", type=int, default=100, help="test inputs per run")
    parser.add_argument("--reps", type=int, default=5, help="runs of each executable")
    args = parser.parse_args()
    mapping = map_network(load_package(args.package).network)
    inputs = load_package(args.package).test_inputs[:args.inputs]
    budget = 2 * sum(p.cycles for p in network_cycles(mapping)) + 1000
    rates = {exe: [] for exe in args.exe}
    behaviour = {}
    for _ in range(args.reps):
        for exe in args.exe:
            wall, cpu, behaviour[exe] = run_once(exe, mapping, inputs, budget)
            rates[exe].append((wall, cpu))
    for exe, runs in rates.items():
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{exe}\n  cycles/s (wall): median {np.median(walls):.0f}  "
              f"({' '.join(f'{v:.0f}' for v in walls)})\n"
              f"  cycles per CPU s: median {np.median(cpus):.0f}  "
              f"({' '.join(f'{v:.0f}' for v in cpus)})")
    a, b = (behaviour[exe] for exe in args.exe)
    print(f"identical outputs, cycles per phase and per run: {a == b}; "
          f"cycles per inference (last): {a[2][-1]}")


if __name__ == "__main__":
    main()
