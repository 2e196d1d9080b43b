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

__all__ = ["simulate"]


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
