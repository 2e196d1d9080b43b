"""The simulation runners: a mapped network on the RTL of the top, through the host driver.

This is the one module of the software that imports the testbenches (`mars.tb`), checked by
import-linter (pyproject.toml): the rest of `mars.sw` reaches the simulators through
`simulate`.  Verilator runs the thin native harness (fast build, ~10^5-10^6 cycles/s);
Icarus runs the cocotb bench.  Both drive the top through `mars.sw.host.HostDriver`.
"""

from __future__ import annotations

import numpy as np

from mars.sw.mapper import Mapping

__all__ = ["SIMULATORS", "simulate"]

SIMULATORS = ("verilator", "icarus")


def simulate(mapping: Mapping, inputs: np.ndarray, simulator: str, *, budget: int) -> dict:
    """Run `inputs` (int64, (B, H, W, C)) on `simulator`.

    Returns a dict with ``outputs`` (B, n_outputs) int64, ``phase_cycles`` (B lists of
    per-phase cycles from the top's counters), ``error`` (0) and ``cycles_per_s``.

    Raises
    ------
    mars.sw.host.AcceleratorError
        If the accelerator raised its error flag or a run took more than `budget` cycles.
    ValueError
        If `simulator` is not one of `SIMULATORS`.
    """
    if simulator == "verilator":
        from mars.tb.native import simulate_native
        return simulate_native(mapping, inputs, budget=budget)
    if simulator == "icarus":
        from mars.tb.accel import simulate as simulate_cocotb   # cocotb is needed only here
        return simulate_cocotb(mapping, inputs, simulator, budget=budget)
    raise ValueError(f"unknown simulator {simulator!r} (choose from {', '.join(SIMULATORS)})")
