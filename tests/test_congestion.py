"""Tests of router2's watch and congestion summary (`mars.sw.congestion`) and of their use
in `mars synth --pnr` (``--route-patience``, ``--router2-heatmap``), with a stand-in
nextpnr that writes router2's iteration lines and heatmap files as the real one does."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter

import pytest

import mars.sw.pnr as pnr
from mars.sw.cli import main
from mars.sw.congestion import RouterWatch, congestion, router2_iterations
from test_pnr import FAKE_YOSYS, _fake  # the stand-in Yosys (tests/ is on sys.path)

# The stand-in: router2's line per iteration (the format of nextpnr's common/router2.cc),
# with --router2-heatmap the two files per iteration (written before the line, as router2
# does); then, if the last count is not 0, it runs on (up to a minute) like a router2 that
# does not converge, else it writes a report and ends.  $FAKE_PAUSE: seconds after each
# iteration (the watch then sees the lines as they come, not all at once).
FAKE_ROUTER2 = """\
import json, os, sys, time
argv = sys.argv[1:]
log = open(argv[argv.index("--log") + 1], "w")
counts = json.loads(os.environ["FAKE_OVERUSED"])
nets = json.loads(os.environ.get("FAKE_NETS", "{}"))
prefix = argv[argv.index("--router2-heatmap") + 1] if "--router2-heatmap" in argv else None
log.write("Info: Routing globals...\\nInfo: Running router2...\\n")
for i, n in enumerate(counts, 1):
    if prefix:
        with open(f"{prefix}_congestion_by_net_{i}.csv", "w") as f:
            for net, uses in nets.get(str(i), {}).items():
                f.write(f"{net},{uses}\\n")
        with open(f"{prefix}_congestion_by_coordinate_{i}.csv", "w") as f:
            for x in range(7):
                f.write("".join(f"{(x * y + i) % 5}," for y in range(4)) + "\\n")
    log.write(f"Info:     iter={i} wires={9000 + i} overused={n} overuse={3 * n} "
              "archfail=NA\\n")
    log.flush()
    time.sleep(float(os.environ.get("FAKE_PAUSE", "0")))
if counts[-1]:
    time.sleep(60)
    sys.exit(0)
json.dump({"fmax": {}, "utilization": {}, "critical_paths": []},
          open(argv[argv.index("--report") + 1], "w"))
"""

INSTANCES = ["block.unit0.gather", "block.unit3.gather", "block.unit3.decoder2",
             "block.unit1.writer", "block.loader"]


def _nets(rng):
    """Overused wire-uses of random nets in random instances, and their sums per instance
    (the independent expectation)."""
    nets, sums = {}, Counter()
    for k in range(40):
        where = rng.choice(INSTANCES)
        uses = rng.randrange(0, 50)
        nets[f"{where}.sig{k}[{rng.randrange(8)}]"] = uses
        if uses:
            sums[where] += uses
    return nets, sums


def _run(tmp_path, monkeypatch, counts, nets_by_iteration, options, pause=0.0):
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("FAKE_CELLS", json.dumps({"LUT4": 3}))
    monkeypatch.setenv("NEXTPNR_ECP5", _fake(tmp_path, "nextpnr.py", FAKE_ROUTER2))
    monkeypatch.setenv("FAKE_OVERUSED", json.dumps(counts))
    monkeypatch.setenv("FAKE_NETS", json.dumps(nets_by_iteration))
    monkeypatch.setenv("FAKE_PAUSE", str(pause))
    monkeypatch.setattr(pnr, "ROUTER_POLL_S", 0.05)
    out = tmp_path / "out"
    start = time.perf_counter()
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   "--pnr", "--router", "router2", "--out", str(out), *options])
    return status, out, time.perf_counter() - start


def test_a_route_that_does_not_converge_is_stopped_with_where_it_is_congested(
        tmp_path, monkeypatch, capsys):
    seed = 20261206
    rng = random.Random(seed)
    patience = rng.randrange(4, 9)
    best_at = rng.randrange(3, 10)
    falling = sorted(rng.sample(range(200, 5000), best_at), reverse=True)
    best = falling[-1]
    # grown past max(2 * best, best + 100) by the time the patience runs out
    counts = falling + [max(2 * best, best + 100) + rng.randrange(1, 3000)
                        for _ in range(patience + 3)]
    nets, sums = _nets(rng)
    status, out, seconds = _run(tmp_path, monkeypatch, counts, {str(best_at): nets},
                                ["--route-patience", str(patience), "--router2-heatmap"])
    assert status == 2, f"seed {seed}"
    assert seconds < 30                       # stopped, not waited out (the stand-in: 60 s)
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("mars: error: nextpnr-ecp5 stopped on block 'cim_macro' for "
                            "ecp5 (router2 does not converge: ")
    assert f"{best} overused wires at their lowest at iteration {best_at}, " in first
    since = re.search(r"\((\d+) iterations without a new low\)", first)
    assert since and int(since[1]) >= patience
    top = sorted(sums.items(), key=lambda item: (-item[1], item[0]))[:4]
    assert (f"most overused at iteration {best_at}: "
            + ", ".join(f"{path} {uses}" for path, uses in top)) in first, f"seed {seed}"
    assert f"map {out / 'cim_macro_ecp5.congestion.png'}, log " in first
    assert (out / "cim_macro_ecp5.congestion.png").stat().st_size > 0
    assert "Traceback" not in err and not (out / "report.json").exists()


def test_a_route_that_converges_runs_to_the_end_and_reports_its_iterations(
        tmp_path, monkeypatch, capsys):
    seed = 61206
    rng = random.Random(seed)
    patience = 5
    # a plateau of patience - 1 iterations before each new low: never stopped
    counts = []
    for level in sorted(rng.sample(range(1, 3000), 6), reverse=True) + [0]:
        counts += [level] + ([level + rng.randrange(1, 9) for _ in range(patience - 1)]
                             if level else [])
    nets, sums = _nets(rng)
    status, out, _ = _run(tmp_path, monkeypatch, counts, {"1": nets},
                          ["--route-patience", str(patience), "--router2-heatmap"], pause=0.1)
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert f"({len(counts)} router2 iterations)" in printed.out
    routed = json.loads((out / "report.json").read_text())["blocks"]["cim_macro"]["ecp5"]["pnr"]
    assert routed["router2"] == [[i, n] for i, n in enumerate(counts, 1)]
    assert routed["congestion"]["iteration"] == 1
    assert routed["congestion"]["wire_uses"] == sum(sums.values())
    assert routed["congestion"]["by_instance"] == dict(
        sorted(sums.items(), key=lambda item: (-item[1], item[0])))
    assert (out / routed["congestion"]["map"]).stat().st_size > 0


def test_a_board_build_naming_router2_among_its_options_is_watched(tmp_path, monkeypatch):
    """`mars bitstream` passes its placer and router among nextpnr's other options
    (`mars.sw.bitstream.nextpnr_options`): the last ``--router`` given is the one watched."""
    monkeypatch.setenv("NEXTPNR_ECP5", _fake(tmp_path, "nextpnr.py", FAKE_ROUTER2))
    monkeypatch.setenv("FAKE_OVERUSED", json.dumps([900, 400, 410, 420, 430, 1000]))
    monkeypatch.setattr(pnr, "ROUTER_POLL_S", 0.05)
    (tmp_path / "top.json").write_text("{}")
    with pytest.raises(pnr.PnrError, match=r"nextpnr-ecp5 stopped on block 'top' for ecp5 "
                       r"\(router2 does not converge: 400 overused wires at their lowest at "
                       r"iteration 2, 1000 at iteration 6 \(4 iterations without a new low\)"):
        pnr.place_and_route(tmp_path, "top", "ecp5", "top.json", route_patience=4,
                            extra_args=("--router", "router1", "--router", "router2"))


def test_patience_zero_never_stops_and_without_the_heatmap_no_files(tmp_path, monkeypatch):
    """35 iterations without a new low, grown tenfold, seen as they come: the default
    patience (30) would stop them, 0 does not."""
    counts = [500, 100] + [1000] * 35 + [0]
    status, out, _ = _run(tmp_path, monkeypatch, counts, {}, ["--route-patience", "0"],
                          pause=0.02)
    assert status == 0
    routed = json.loads((out / "report.json").read_text())["blocks"]["cim_macro"]["ecp5"]["pnr"]
    assert routed["router2"] == [[i, n] for i, n in enumerate(counts, 1)]
    assert "congestion" not in routed and not (out / "heatmap").exists()
    assert not (out / "cim_macro_ecp5.congestion.png").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--pnr", "--route-patience", "-2"],
     "--route-patience must be a number of iterations, 0 (none) or more, not -2"),
    (["--pnr", "--router2-heatmap"],
     "--router2-heatmap is router2's congestion map: it needs --pnr and --router router2"),
    (["--router", "router2", "--router2-heatmap"],
     "--router2-heatmap is router2's congestion map: it needs --pnr and --router router2"),
])
def test_bad_route_options_are_one_line(options, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    status = main(["synth", "--config", "tiny", "--block", "cim_macro", "--family", "ecp5",
                   *options, "--out", str(tmp_path / "out")])
    assert status == 2
    assert capsys.readouterr().err.strip() == f"mars: error: {message}"


def _line(i, n):
    return f"Info:     iter={i} wires={100 * i} overused={n} overuse={n + 7} archfail=NA\n"


def _first_stop(counts, patience):
    """Brute force: the first iteration at which `patience` iterations have passed since
    the lowest count so far (its first occurrence) and the count has grown past twice it
    and by more than 100, or 4 x `patience` iterations have; None if there is none."""
    for i in range(1, len(counts) + 1):
        low = min(counts[:i])
        since = i - (counts.index(low) + 1)
        if low > 0 and since >= patience and (counts[i - 1] > max(2 * low, low + 100)
                                              or since >= 4 * patience):
            return i
    return None


def test_the_watch_stops_exactly_when_the_rule_says(tmp_path):
    """Fed one line at a time, some split across two writes: it stops at the first
    iteration the rule names, found by brute force over every prefix."""
    seed = 5
    rng = random.Random(seed)
    # a fall, a long stretch above it with ties at the lowest count, then growth
    counts = ([rng.randrange(150, 400) for _ in range(10)] + [120]
              + [rng.choice([120, 130, 200, 239, 241]) for _ in range(30)]
              + [rng.randrange(200, 900) for _ in range(30)])
    log = tmp_path / "pnr.log"
    log.write_text("Info: Running router2...\n")
    patience = 7
    watch = RouterWatch(log, patience)
    stopped_at = None
    with open(log, "a") as handle:
        for i, n in enumerate(counts, 1):
            line = _line(i, n)
            cut = rng.randrange(len(line))
            handle.write(line[:cut])
            handle.flush()
            assert watch() == "" or stopped_at      # a half line is not read
            handle.write(line[cut:])
            handle.flush()
            if watch() and stopped_at is None:
                stopped_at = i
    expected = _first_stop(counts, patience)
    assert expected is not None and stopped_at == expected, f"seed {seed}"
    assert watch.best == min(counts) and watch.last_iteration == len(counts)


def test_a_route_holding_a_few_wires_for_long_is_not_stopped_until_it_stalls(tmp_path):
    """The end of a route that converges: a handful of wires for many iterations, a new low
    now and then; stopped only after 4 x the patience without one."""
    log = tmp_path / "pnr.log"
    counts = [900, 300, 40, 5, 2] + [2, 3, 4, 2, 5] * 3 + [1] + [3, 4, 2, 1] * 4 + [0]
    watch = RouterWatch(log, 5)
    with open(log, "w") as handle:
        for i, n in enumerate(counts, 1):
            handle.write(_line(i, n))
            handle.flush()
            assert watch() == "", f"stopped at iteration {i}"
    assert _first_stop(counts, 5) is None
    low_at = counts.index(1) + 1
    stalled = counts[:-1] + [3] * (low_at + 20 - (len(counts) - 1))   # 20 = 4 x 5 after
    assert _first_stop(stalled, 5) == len(stalled)
    log.write_text("".join(_line(i, n) for i, n in enumerate(stalled[:-1], 1)))
    assert RouterWatch(log, 5)() == ""
    log.write_text("".join(_line(i, n) for i, n in enumerate(stalled, 1)))
    assert "(20 iterations without a new low)" in RouterWatch(log, 5)()


def test_the_watch_counts_afresh_when_router2_restarts_and_not_at_zero(tmp_path):
    log = tmp_path / "pnr.log"
    first = [_line(i, n) for i, n in enumerate([500, 100, 900, 900, 900, 900], 1)]
    log.write_text("".join(first + [_line(1, 300), _line(2, 200)]))
    watch = RouterWatch(log, 3)
    assert watch() == ""                    # the second pass's iteration 2 is its lowest
    assert (watch.best, watch.best_iteration) == (200, 2)
    log.write_text("".join(_line(i, 0) for i in range(1, 9)))
    assert RouterWatch(log, 3)() == ""      # nothing overused: routed, not stuck
    assert RouterWatch(tmp_path / "missing.log", 3)() == ""
    log.write_text("".join(_line(i, n) for i, n in enumerate([500, 100, 900, 100, 900, 901],
                                                               1)))
    assert "lowest at iteration 2, 901 at iteration 6" in RouterWatch(log, 4)()  # tie: no low
    with pytest.raises(ValueError, match="patience must be 1 or more"):
        RouterWatch(log, 0)


def test_a_legal_route_that_the_rip_up_keeps_rerouting_is_stopped(tmp_path):
    """With --tmg-ripup at an unreachable clock router2 iterates on a legal route (0
    overused wires) forever: stopped after 4 x the patience; a route that stops at its
    first 0 (or a little after it) is not."""
    log = tmp_path / "pnr.log"
    counts = [900, 40, 3, 1, 0, 1, 0] + [0] * 18
    log.write_text("".join(_line(i, n) for i, n in enumerate(counts[:-1], 1)))
    assert RouterWatch(log, 5)() == ""                  # legal at 5, 19 iterations on
    log.write_text("".join(_line(i, n) for i, n in enumerate(counts, 1)))
    reason = RouterWatch(log, 5)()
    assert reason.startswith("router2 does not finish: the route is legal since iteration 5, "
                             "and 20 iterations later")


def test_router2_lines_parse_with_and_without_timing_failures():
    text = ("Info:     iter=3 wires=17 overused=4 overuse=9 archfail=NA\n"
            "Info:     iter=4 wires=18 overused=0 overuse=0 tmgfail=2 archfail=NA\n"
            "Info: [ 1234,  5678) |   12   34   56 |   1   2   3|\n")
    assert router2_iterations(text) == [(3, 4), (4, 0)]


def test_congestion_of_a_missing_iteration_is_empty(tmp_path):
    assert congestion(tmp_path, "heatmap/x_ecp5", 3) == {}
