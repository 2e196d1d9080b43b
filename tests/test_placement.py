"""Tests of `mars.sw.placement`: where a placed netlist's instances lie.

Placed netlists here are drawn at random (seeded): cells of a few instance paths, each
in a box of its own; the expectation is NumPy's percentiles of the drawn coordinates per
path and per prefix, computed here from the drawing, not from the module.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mars.sw.hierarchy import UNNAMED
from mars.sw.hierarchy import main
from mars.sw.placement import spread, spread_lines

TOP = {"top": "00000000000000000000000000000001"}
BOXES = {"block.unit0.writer": (0, 40, 0, 30), "block.unit0.gather": (20, 60, 10, 45),
         "block.unit1.writer": (70, 120, 5, 40), "block.ctrl": (50, 70, 40, 60)}


def _placed(seed: int):
    rng = random.Random(seed)
    cells, drawn = {}, {path: [] for path in BOXES}
    drawn[UNNAMED] = []
    for path, (x0, x1, y0, y1) in BOXES.items():
        for i in range(rng.randint(20, 200)):
            x, y = rng.randint(x0, x1), rng.randint(y0, y1)
            kind = rng.choice(["SLICEA.K0", "SLICEB.FF1", "EBR0"])
            cells[f"{path}.sig{i}[3]_TRELLIS_FF_Q"] = {
                "type": "TRELLIS_FF", "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/{kind}"}}
            drawn[path].append((x, y))
    for i in range(rng.randint(1, 30)):
        x, y = rng.randint(0, 126), rng.randint(0, 95)
        cells[f"$nextpnr_CCU2C_{i}$CCU2_COMB0"] = {
            "type": "TRELLIS_COMB", "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/SLICEA.K0"}}
        drawn[UNNAMED].append((x, y))
    cells["unplaced.cell_x"] = {"type": "LUT4", "attributes": {}}   # no bel: not counted
    return {"modules": {"top": {"attributes": TOP, "cells": cells}, "LUT4": {}}}, drawn


@pytest.mark.parametrize("seed", range(5))
def test_spread_is_the_percentiles_of_each_instance_and_its_prefixes(seed):
    placed, drawn = _placed(seed)
    got = spread(placed, depth=3)
    expected = dict(drawn)
    for prefix in ("block", "block.unit0", "block.unit1"):
        expected[prefix] = [xy for path, xys in drawn.items()
                            if path.startswith(prefix + ".") for xy in xys]
    assert set(got) == set(expected)
    for path, xys in expected.items():
        q = np.percentile(np.asarray(xys), [10, 50, 90], axis=0)
        assert got[path]["cells"] == len(xys), path
        assert got[path]["x"] == pytest.approx(q[:, 0].tolist()), path
        assert got[path]["y"] == pytest.approx(q[:, 1].tolist()), path


def test_depth_two_merges_the_blocks_of_a_unit():
    placed, drawn = _placed(7)
    got = spread(placed, depth=2)
    unit0 = len(drawn["block.unit0.writer"]) + len(drawn["block.unit0.gather"])
    assert got["block.unit0"]["cells"] == unit0
    assert "block.unit0.writer" not in got


def test_lines_give_widths_and_leave_out_small_instances():
    placed, drawn = _placed(3)
    got = spread(placed)
    small = spread_lines(got, min_cells=len(drawn["block.ctrl"]) + 1)
    assert not any(line.startswith("| block.ctrl |") for line in small)
    assert any(line.startswith("| block.ctrl |") for line in spread_lines(got))
    lines = spread_lines(got)
    row = got["block.unit1.writer"]
    want = f"{row['x'][2] - row['x'][0]:.0f} x {row['y'][2] - row['y'][0]:.0f} |"
    assert any(line.startswith("| block.unit1.writer |") and line.endswith(want)
               for line in lines)


def _unplaced():
    placed, _ = _placed(1)
    for cell in placed["modules"]["top"]["cells"].values():
        cell["attributes"].pop("NEXTPNR_BEL", None)
    return placed


def test_an_unplaced_netlist_is_refused():
    with pytest.raises(ValueError, match="not a placed netlist"):
        spread(_unplaced())
    with pytest.raises(ValueError, match="depth"):
        spread(_placed(1)[0], depth=0)


def test_command_line_prints_the_table_and_refuses_bad_input(tmp_path, capsys):
    placed, _ = _placed(2)
    path = tmp_path / "routed.json"
    path.write_text(json.dumps(placed))
    assert main([str(path), "--placement", "--min-cells", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| instance | cells |") and "| block.unit0.gather |" in out
    for argv, why in (([str(tmp_path / "none.json"), "--placement"], "no netlist at"),
                      ([str(path), "--placement", "--depth", "0"], "--depth must be at least 1")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        assert why in capsys.readouterr().err
    for text, why in (("{not json", "routed.json"), (json.dumps(_unplaced()), "not a placed")):
        path.write_text(text)
        with pytest.raises(SystemExit) as stop:
            main([str(path), "--placement"])
        assert stop.value.code == 2
        assert why in capsys.readouterr().err
