"""A model package on the simulated board: the board top (UART, serial bridge, accelerator)
in Verilator behind a pty, driven by `mars board run`'s code through pyserial
(docs/serial.md).  Checks bit-exactness and cycle counts against the golden model and
prints the link and compute figures as JSON.

    .venv/bin/python bench/board_sim.py PKG [--count N] [--baud 3000000] [--clock-mhz 50]
"""

import argparse
import json
import time

import numpy as np
import serial

from mars.sw.board import board_run
from mars.sw.package import load_package
from mars.sw.run import run_package
from mars.tb.board import BoardSimulation, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--count", type=int, default=None, help="test inputs (default all)")
    parser.add_argument("--baud", type=float, default=3e6, help="for the link time on a board")
    parser.add_argument("--clock-mhz", type=float, default=50.0,
                        help="for the compute time on a board")
    args = parser.parse_args()
    pkg = load_package(args.package)
    inputs = pkg.test_inputs[:args.count]
    config = pkg.network.config
    start = time.perf_counter()
    exe = build(config)
    built = time.perf_counter() - start
    golden = run_package(args.package, inputs, backend="golden")
    with BoardSimulation(exe) as sim:
        port = serial.Serial(sim.path, int(args.baud), timeout=60)
        run = board_run(args.package, port, inputs)
        port.close()
        stats = sim.close()
    result = run.result
    wire = (run.bytes_sent + run.bytes_received) * 10 / args.baud
    print(json.dumps({
        "config": config.name, "images": len(result.logits),
        "bit_exact": bool(np.array_equal(result.logits, golden.logits)),
        "cycles_match_model": bool(np.array_equal(result.phase_cycles, golden.phase_cycles)),
        "frames": run.frames, "bytes_sent": run.bytes_sent,
        "bytes_received": run.bytes_received, "retries": run.retries,
        "link_s_at_baud": round(wire, 4),
        "compute_cycles": int(result.cycles.sum()),
        "compute_s_at_clock": round(float(result.cycles.sum()) / (args.clock_mhz * 1e6), 5),
        "cycles_first_inference": int(result.cycles[0]),
        "cycles_later_inference": int(result.cycles[-1]),
        "simulated_cycles": stats["cycles_simulated"], "link_error_led": stats["link_error"],
        "simulation_wall_s": {"build": round(built, 1), "load": round(run.load_s, 1),
                              "runs": round(run.run_s, 1)},
    }, indent=1))


if __name__ == "__main__":
    main()
