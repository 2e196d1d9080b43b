"""The board top (UART, serial bridge, accelerator) in Verilator behind a pseudo-terminal.

`mars.hw.bridge.SerialTop` is built with a small C++ harness (harness.cpp) that joins its
UART pins to a pty through a bit-level 8N1 model of the host's UART, so the host side
opens the pty with pyserial exactly as it opens a board's USB-serial port: `mars board
run`'s code (`mars.sw.board.board_run`) is what drives it.  The model is built once per
configuration and divisor and cached under ``build/board/`` like the native harness.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from amaranth.back import verilog

from mars.config import MarsConfig
from mars.errors import EnvironmentProblem
from mars.hw.bridge import SerialTop

from ..cache import build_dir, cached_entry
from ..sim import failed_build, require_simulator, tool_versions

__all__ = ["build", "BoardSimulation"]

_HARNESS = Path(__file__).with_name("harness.cpp")
_FLAGS = ["-Wno-WIDTH", "-Wno-fatal", "--no-timing", "-O3", "--x-assign", "fast",
          "--x-initial", "fast", "--noassert"]


def build(config: MarsConfig, *, divisor: int = 4, timeout: int | None = None,
          progress=print) -> Path:
    """The harness executable of `SerialTop(config, divisor=divisor)` (cached).

    Raises
    ------
    EnvironmentProblem
        Verilator or a C++ compiler is missing.
    SimulatorBuildError
        Verilator or the compiler failed (log kept beside the cache entry).
    """
    require_simulator("verilator")
    text = verilog.convert(SerialTop(config, divisor=divisor, timeout=timeout),
                           name="mars_serial_top")
    digest = hashlib.sha256(text.encode() + _HARNESS.read_bytes() + str(divisor).encode()
                            + " ".join(_FLAGS).encode()
                            + tool_versions("verilator").encode()).hexdigest()
    entry = build_dir("board") / f"{config.short_hash}-{digest[:12]}"
    exe_name = "obj_dir/mars_serial_top_harness"

    def compile_into(folder: Path) -> None:
        (folder / "mars_serial_top.v").write_text(text)
        progress(f"building the Verilator model of the board top ({config.name}) in {entry}")
        command = ["verilator", "--cc", "--exe", "--build", "-j",
                   str(max(1, os.cpu_count() or 1)), *_FLAGS, f"-CFLAGS", f"-DDIVISOR={divisor}",
                   "--top-module", "mars_serial_top", "-o", "mars_serial_top_harness",
                   "mars_serial_top.v", str(_HARNESS)]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        except OSError as error:
            raise EnvironmentProblem(f"cannot run verilator: {error}") from None
        (folder / "build.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise failed_build(entry, folder, "build.log",
                               f"Verilator model of the board top ({config.name})")

    cached_entry(entry, digest, compile_into, outputs=[exe_name], progress=progress,
                 what=f"the Verilator model of the board top ({config.name})")
    return entry / exe_name


class BoardSimulation:
    """The running harness: `path` is its pty (open it with pyserial); `close` ends the
    simulation and returns ``{"cycles_simulated": int, "link_error": int}``."""

    def __init__(self, exe: Path):
        self._process = subprocess.Popen([str(exe)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
        line = self._process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PTY":
            self._process.kill()
            raise RuntimeError(f"the board harness did not start: {line} "
                               f"{self._process.stderr.read()[-2000:]}")
        self.path = line[1]

    def close(self) -> dict:
        out, err = self._process.communicate(timeout=60)
        end = out.split()
        if len(end) < 3 or end[0] != "END":
            raise RuntimeError(f"the board harness failed: {err[-2000:]}")
        return {"cycles_simulated": int(end[1]), "link_error": int(end[2])}

    def __enter__(self) -> BoardSimulation:
        return self

    def __exit__(self, *exc) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()
