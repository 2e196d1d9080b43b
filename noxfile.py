"""Entry points: ``nox -s flow`` (the main job), ``nox -s verilog`` (emit RTL),
``nox -s tests``, ``nox -s synth``, ``nox -s pnr``, ``nox -s pnr_top``, ``nox -s bitstream``,
``nox -s bitstream_default``, ``nox -s bench``.
Positional arguments after ``--`` are passed on (see each session)."""

from pathlib import Path

import nox

nox.options.sessions = ["flow"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"
# Installed on its own first: pip then takes the CPU wheel from the local find-links instead
# of resolving torch with everything else (which can pull the newest CUDA build, GBs).
TORCH = "torch==2.13.0"


@nox.session(python=PYTHON)
def verilog(session: nox.Session) -> None:
    """Emit the Verilog of every block into build/verilog/<config>/.

    ``nox -s verilog`` emits the ``default`` preset; ``nox -s verilog -- tiny my.json``
    emits the named presets or JSON configurations.
    """
    session.install("-e", ".")
    for config in session.posargs or ["default"]:
        session.run("mars", "verilog", "--config", config)


@nox.session(python=PYTHON)
def flow(session: nox.Session) -> None:
    """The main job: train the digits network (once, reused after), emit RTL, simulate its
    test inputs on Verilator, check bit-exactness and cycles against the golden and cycle
    models, and print the report (build/flow/report.json).  ``-- --count N`` etc. are
    passed to ``mars flow``."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("mars", "flow", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests, cocotb simulations (Verilator and Icarus) and synthesis checks.

    Extra arguments go to pytest, e.g. ``nox -s tests -- -m "not synth" -k tiny``.
    """
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(python=PYTHON)
def synth(session: nox.Session) -> None:
    """Yosys synthesis for ECP5 and iCE40 of the macro and the decoder for every preset
    (or the given presets/JSON files), and of the whole top for ECP5 (tiny preset);
    reports in build/synth/<config>/report.json and build/synth/<config>-top/."""
    session.install("-e", ".[synth]")
    from_presets = session.posargs or session.run(
        "python", "-c", "from mars.config import PRESETS; print(' '.join(PRESETS))",
        silent=True).split()
    for config in from_presets:
        session.run("mars", "synth", "--config", config, "--block", "cim_macro",
                    "--block", "sparse_decoder")
    # The whole top: every memory port is replicated block RAM, so only the small
    # configuration is practical here (minutes); see docs/synthesis.md.
    tops = session.posargs or ["tiny"]
    for config in tops:
        session.run("mars", "synth", "--config", config, "--block", "mars_top",
                    "--family", "ecp5", "--out", f"build/synth/{config}-top")


@nox.session(python=PYTHON)
def pnr(session: nox.Session) -> None:
    """Place and route out of context (``mars synth --pnr``): the macro and the decoder of
    each preset (default: tiny and default; or ``-- PRESET_OR_JSON ...``) on ECP5 and iCE40,
    then the tiny top on both.  Reports in
    build/pnr/<config>-<block>-<family>/report.json (docs/synthesis.md).

    One run per block and family, so that a block that does not fit the iCE40UP5K (exit 2,
    the message names what overflowed) does not hide the others; on ECP5 every run must
    succeed.  The default top takes most of an hour: ``nox -s pnr_top``.
    """
    session.install("-e", ".[synth]")

    def build(config: str, block: str, family: str) -> None:
        session.run("mars", "synth", "--pnr", "--config", config, "--block", block,
                    "--family", family, "--out", f"build/pnr/{config}-{block}-{family}",
                    success_codes=[0] if family == "ecp5" else [0, 2])

    for config in session.posargs or ["tiny", "default"]:
        for block in ("cim_macro", "sparse_decoder"):
            for family in ("ecp5", "ice40"):
                build(config, block, family)
    build("tiny", "mars_top", "ecp5")
    build("tiny", "mars_top", "ice40")


@nox.session(python=PYTHON)
def pnr_top(session: nox.Session) -> None:
    """The whole default top placed and routed out of context on the LFE5U-85F at 100 MHz
    with nextpnr's static placer and router2 (the pair that routes it; docs/synthesis.md,
    "The row-serial macro read") and each unit's hard blocks pinned to its own quadrant
    ("Floorplanning the units"), with nextpnr's timing-driven rip-up: about an hour on 2
    cores; stopped with an error if router2 does not converge, naming where it is
    congested.  Report in build/pnr/default-mars_top-ecp5/report.json; ``--
    PRESET_OR_JSON`` for another configuration."""
    session.install("-e", ".[synth]")
    config = session.posargs[0] if session.posargs else "default"
    session.run("mars", "synth", "--pnr", "--config", config, "--block", "mars_top",
                "--family", "ecp5", "--placer", "static", "--router", "router2",
                "--floorplan", "--tmg-ripup", "--router2-heatmap",
                "--out", f"build/pnr/{Path(config).stem}-mars_top-ecp5")


@nox.session(python=PYTHON)
def bitstream_default(session: nox.Session) -> None:
    """The ULX3S bitstream of the default accelerator at 33.33 MHz (static placer and
    router2; about an hour on 2 cores, docs/board.md) into build/bitstream/ulx3s-default/."""
    session.install("-e", ".[synth]")
    session.run("mars", "bitstream", "--board", "ulx3s", "--config", "default",
                "--clock", "33.333333", "--placer", "static", "--router", "router2",
                "--out", "build/bitstream/ulx3s-default")


@nox.session(python=PYTHON)
def bitstream(session: nox.Session) -> None:
    """Board bitstreams with the YoWASP tools (``mars bitstream``): the iCEBreaker, then the
    ULX3S (or ``-- icebreaker`` / ``-- ulx3s``), each into build/bitstream/<board>/ with
    report.json and summary.txt (docs/board.md).  Minutes each on 2 cores."""
    session.install("-e", ".[synth]")
    for board in session.posargs or ["icebreaker", "ulx3s"]:
        session.run("mars", "bitstream", "--board", board)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks behind the figures in docs/benchmarks.md (emit time, simulation speed)."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("python", "bench/run.py", *session.posargs)
