"""Run a mapped network on the RTL of the accelerator top (Verilator or Icarus)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mars.sw.mapper import Mapping

from .cache import build_dir
from .sim import run_testbench

__all__ = ["simulate"]


def simulate(mapping: Mapping, inputs: np.ndarray, simulator: str, *,
             budget: int) -> dict:
    """Outputs (B, n_outputs) int64, cycles per input and per phase, from the RTL.

    With a resident mapping the first input loads the weights and the later ones skip
    the loads (``skip_loads``), as a deployed accelerator would.

    `inputs` are quantised HWC images (B, H, W, C); `budget` is the most cycles one
    inference may take before the run is stopped as hung.
    """
    config = mapping.config
    inputs = np.asarray(inputs)
    h, w, c = mapping.output_shape
    case = {
        "memories": [{"region": region, "unit": unit, "domain": domain,
                      "words": [format(int(word), "x") for word in words]}
                     for (region, unit, domain), words in mapping.memories.items() if words],
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
                              env={"MARS_CASE": str(case_path)})
    finally:
        os.unlink(case_path)
    stats["outputs"] = np.array(stats["outputs"], dtype=np.int64)
    return stats
