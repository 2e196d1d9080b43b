"""The presets are described with the values they have: `mars.config.describe`, the table
of docs/configuration.md and the README say what the fields say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mars.config import PRESET_PURPOSES, PRESETS, describe

ROOT = Path(__file__).resolve().parent.parent


def table_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## Presets", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_preset_has_a_row_and_a_purpose():
    assert set(table_rows()) == set(PRESETS) == set(PRESET_PURPOSES)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_docs_table_matches_the_values(name):
    c = PRESETS[name]
    _, rc, p, g, bits, b, readout, macros, _purpose = table_rows()[name]
    assert rc == f"{c.rows} x {c.cols}"
    assert (int(p), int(g), int(b)) == (c.partitions, c.rows_per_step, c.act_bits_per_cycle)
    assert bits == f"{c.weight_bits}/{c.act_bits}"
    assert readout == f"{c.readout_mode.value}, {c.readout_bits} bits"
    assert macros == f"{c.cores} x {c.macros_per_core}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_describe_says_the_values(name):
    c = PRESETS[name]
    text = describe(c)
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    for value in (c.rows, c.cols, c.partitions, c.rows_per_step, c.weight_bits,
                  c.readout_bits, c.cores, c.macros_per_core):
        assert value in numbers, (value, text)
    assert c.readout_mode.value in text


def test_readme_describes_the_default_preset_with_its_values():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`default` ({describe(PRESETS['default'])})" in readme


def test_no_docstring_points_outside_the_repository():
    sources = [p for folder in ("mars", "sw", "hw", "tb", "bench")
               for p in (ROOT / folder).rglob("*.py")]
    for path in sources + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        if path.is_file():
            text = path.read_text()
            for pattern in ("BRIEF.md", "shared/design", "../shared"):
                assert pattern not in text, f"{path.relative_to(ROOT)} mentions {pattern}"
