"""The command line's contract with its user: every subcommand's help shows each default
once, and bad inputs end in one line ``mars: error: ...`` with exit status 2, never a
traceback."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.cli import build_parser, main
from mars.tb.networks import stable_seed, write_random_package

TINY = PRESETS["tiny"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def option_blocks(help_text: str) -> dict[str, str]:
    """An option's help text, keyed by its first flag (wrapped lines joined)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_shows_each_default_once(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    blocks = option_blocks(text)
    assert blocks, text
    for flag, block in blocks.items():
        assert block.count("(default") <= 1, f"mars {command} {flag}: {block}"
        assert "(default: None)" not in block, f"mars {command} {flag}: {block}"


def test_config_means_the_configuration_to_use_everywhere():
    for command, parser in subcommands().items():
        for action in parser._actions:
            if "--config" in action.option_strings:
                assert action.help.startswith("the configuration to use"), command


def one_line_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mars: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A small package of a random network for `tiny`, written by the package writer."""
    out = tmp_path_factory.mktemp("cli") / "pkg"
    write_random_package(out, TINY, "cnn", seed=stable_seed("cli", "cnn"))
    return out


def test_run_package_works(package, tmp_path, capsys):
    assert main(["run", "--package", str(package), "--out", str(tmp_path / "y.npz")]) == 0
    assert "3 inputs on golden" in capsys.readouterr().out


def test_run_missing_package(tmp_path, capsys):
    line = one_line_error(capsys, "run", "--package", str(tmp_path / "nothing"))
    assert "manifest.json" in line


def test_run_config_must_be_the_packages(package, tmp_path, capsys):
    line = one_line_error(capsys, "run", "--package", str(package), "--config", "default",
                          "--out", str(tmp_path / "y.npz"))
    assert "--config" in line
    assert main(["run", "--package", str(package), "--config", "tiny",
                 "--out", str(tmp_path / "y.npz")]) == 0


def test_run_bad_inputs(package, tmp_path, capsys):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"not an array")
    assert "cannot read inputs" in one_line_error(
        capsys, "run", "--package", str(package), "--inputs", str(bad))
    np.save(bad, np.zeros((2, 3, 3, 3), dtype=np.uint8))
    assert "shape" in one_line_error(capsys, "run", "--package", str(package),
                                     "--inputs", str(bad))


def test_run_unwritable_output(package, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(capsys, "run", "--package", str(package),
                          "--out", str(blocker / "y.npz"))
    assert "cannot write" in line


def test_flow_config_must_be_the_packages(package, tmp_path, capsys):
    line = one_line_error(capsys, "flow", "--package", str(package), "--config", "wide8",
                          "--out", str(tmp_path / "flow"))
    assert "--config" in line


def test_a_real_process_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mars.sw.cli", "verilog", "--config", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mars: error: ")
