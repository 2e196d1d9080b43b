"""``mars board run``: a model package on a board, through its serial host link.

The same host driver as the simulators (`mars.sw.host.HostDriver`), over the serial
transport (`mars.sw.host.serial.SerialTransport`): load the package's memories through the
bridge, run each input, read logits and per-phase cycle counters, and write the same
``Y.npz`` as ``mars run`` (docs/architecture.md, "Running it"; docs/serial.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from mars.errors import MarsError

from mars.sw.host import HostDriver, run_inferences
from mars.sw.host.serial import SerialTransport, open_port

__all__ = ["BoardRun", "board_run", "add_board_arguments", "run_board_command"]

#: The bridge's default baud rate (docs/serial.md): FT231X (ULX3S) and FT2232H (iCEBreaker)
#: both run 3 Mbaud exactly.
DEFAULT_BAUD = 3_000_000


@dataclasses.dataclass
class BoardRun:
    """A `mars.sw.run.RunResult` (``result``, backend ``"board"``) and the link's figures:
    ``load_s`` (seconds writing the package's memories), ``run_s`` (inputs, runs and
    answers), ``frames``, ``bytes_sent``, ``bytes_received``, ``retries``."""

    result: object
    load_s: float
    run_s: float
    frames: int
    bytes_sent: int
    bytes_received: int
    retries: int


def board_run(package, port, inputs: np.ndarray | None = None, *, config=None,
              retries: int = 3, on_retry=None) -> BoardRun:
    """Run `package` on the board behind `port` (pyserial-like); `inputs` default to the
    package's test vectors.

    Raises
    ------
    RunError
        Bad inputs or a package for another configuration.
    SerialLinkError
        The link failed (a frame rejected or unanswered `retries` + 1 times).
    AcceleratorError
        The accelerator raised its error flag or did not finish within twice the cycle
        model's count.
    """
    from mars.sw.golden.cycles import network_cycles
    from mars.sw.mapper import map_network
    from mars.sw.run import RunResult, _load, check_inputs

    pkg = _load(package, config)
    network = pkg.network
    x = check_inputs(pkg.test_inputs if inputs is None else inputs, network)
    mapping = map_network(network)
    model = [p.cycles for p in network_cycles(mapping)]
    cfg = mapping.config
    transport = SerialTransport(port, cfg, retries=retries, on_retry=on_retry)
    driver = HostDriver(cfg, transport)
    start = time.perf_counter()
    driver.load(mapping.memories, mapping.n_phases)
    driver.flush()
    loaded = time.perf_counter()
    h, w, c = mapping.output_shape
    answers = run_inferences(driver, x, memories={}, phases=mapping.n_phases,
                             resident=mapping.resident, n_outputs=h * w * c,
                             budget=2 * sum(model) + 1000)
    driver.flush()
    end = time.perf_counter()
    logits = np.array([a.outputs.value for a in answers], dtype=np.int64).reshape(len(x), -1)
    phases = np.array([a.phase_cycles.value for a in answers], dtype=np.int64)
    result = RunResult("board", mapping, logits, phases, end - start)
    return BoardRun(result, loaded - start, end - loaded, transport.frames,
                    transport.bytes_sent, transport.bytes_received, transport.retried)


def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mars board run``."""
    parser.add_argument("--port", required=True, metavar="DEVICE",
                        help="the board's USB serial port (e.g. /dev/ttyUSB0)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                        help="baud rate the bitstream was built for")
    parser.add_argument("--package", required=True, metavar="PKG", help="model package folder")
    parser.add_argument("--inputs", metavar="X.npy",
                        help="quantised HWC images (default: the package's test inputs)")
    parser.add_argument("--config", help="refuse to run unless the package was built for "
                        "this configuration")
    parser.add_argument("--out", default="build/board/outputs.npz", metavar="Y.npz",
                        help="logits, predictions, cycles, layer_cycles, phase_cycles")
    parser.add_argument("--retries", type=int, default=3,
                        help="times a rejected or unanswered frame is sent again")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="the accelerator's clock on the board, for the compute time")


def run_board_command(args: argparse.Namespace) -> int:
    """``mars board run``: load, run, write ``--out``, print link and compute time."""
    from mars.config import load_config

    from mars.sw.run import read_inputs

    inputs = read_inputs(args.inputs)
    if args.retries < 0:
        raise MarsError(f"--retries must be at least 0, not {args.retries}")
    if args.baud < 1:
        raise MarsError(f"--baud must be a positive rate, not {args.baud}")
    if args.clock_mhz is not None and not 0 < args.clock_mhz < math.inf:
        raise MarsError(f"--clock-mhz must be a positive clock in MHz, not {args.clock_mhz}")
    config = load_config(args.config) if args.config else None
    with open_port(args.port, args.baud) as port:
        run = board_run(args.package, port, inputs, config=config, retries=args.retries,
                        on_retry=print)
    result = run.result
    result.save(Path(args.out))
    compute = ""
    if args.clock_mhz:
        seconds = float(result.cycles.sum()) / (args.clock_mhz * 1e6)
        compute = f", compute {seconds * 1e3:.2f} ms at {args.clock_mhz:g} MHz"
    print(f"{len(result.logits)} inputs on the board: predictions "
          f"{result.predictions[:16].tolist()}{' ...' if len(result.logits) > 16 else ''}; "
          f"{result.cycles_summary()}; link: load {run.load_s:.3f} s, "
          f"runs {run.run_s:.3f} s ({run.frames} frames, {run.retries} retries){compute}; "
          f"wrote {args.out}")
    return 0
