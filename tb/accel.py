"""Run a mapped network on the RTL of the accelerator top (Verilator or Icarus)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mars.sw.host import AcceleratorError, AcceleratorTimeout
from mars.sw.mapper import Mapping

from .cache import build_dir
from .sim import run_testbench

__all__ = ["simulate", "assert_exact_on_rtl"]


def simulate(mapping: Mapping, inputs: np.ndarray, simulator: str, *,
             budget: int, backdoor: bool = False) -> dict:
    """Outputs (B, n_outputs) int64, cycles per input and per phase, from the RTL.

    With a resident mapping the first input loads the weights and the later ones skip
    the loads (``skip_loads``), as a deployed accelerator would.

    `inputs` are quantised HWC images (B, H, W, C); `budget` is the most cycles one
    inference may take before the run is stopped as hung.  The bench (`mars.tb.top_tb`)
    drives the top through the host driver; `backdoor` loads whole memories straight into
    the simulator's arrays instead of through the host port.

    Raises
    ------
    mars.sw.host.AcceleratorError
        If the accelerator raised its error flag or did not finish within `budget`.
    """
    config = mapping.config
    inputs = np.asarray(inputs)
    h, w, c = mapping.output_shape
    case = {
        "memories": [{"memory": memory.value, "unit": unit, "domain": domain,
                      "words": [format(int(word), "x") for word in words]}
                     for (memory, unit, domain), words in mapping.memories.items() if words],
        "inputs": [image.reshape(-1).tolist() for image in inputs.astype(np.int64)],
        "phases": mapping.n_phases,
        "n_outputs": h * w * c,
        "budget": int(budget),
        "resident": mapping.resident,
    }
    work = build_dir("sim") / "cases"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=work, delete=False) as f:
        json.dump(case, f)
        case_path = Path(f.name)
    try:
        stats = run_testbench("mars_top", config, simulator, "mars.tb.top_tb",
                              env={"MARS_CASE": str(case_path),
                                   "MARS_BACKDOOR": str(int(backdoor))})
    finally:
        os.unlink(case_path)
    if "accelerator_error" in stats:
        kind = AcceleratorTimeout if stats["timeout"] else AcceleratorError
        raise kind(stats["accelerator_error"])
    stats["outputs"] = np.array(stats["outputs"], dtype=np.int64)
    return stats


def assert_exact_on_rtl(network, inputs: np.ndarray, simulator: str, where: str) -> None:
    """Map `network`, run `inputs` on the top in `simulator` and assert that every output
    equals the golden accelerator model (`run_accelerator`) and every phase's cycle count
    the cycle model's (the first inference with its loads, the later ones in the steady
    state); `where` names the case in the failure message."""
    from mars.sw.golden.accel import run_accelerator
    from mars.sw.golden.cycles import network_cycles
    from mars.sw.mapper import map_network

    mapping = map_network(network)
    expected = run_accelerator(network, inputs)
    first = [p.cycles for p in network_cycles(mapping)]
    later = [p.cycles for p in network_cycles(mapping, skip_loads=mapping.resident)]
    stats = simulate(mapping, inputs, simulator, budget=2 * sum(first) + 1000)
    assert stats["error"] == 0, where
    np.testing.assert_array_equal(stats["outputs"], expected, err_msg=where)
    assert stats["phase_cycles"] == [first] + [later] * (len(inputs) - 1), where
