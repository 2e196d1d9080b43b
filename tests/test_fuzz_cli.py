"""argparse's own errors are the one line every ``mars`` error is: ``mars: error: ...``
naming the subcommand, exit status 2, no usage lines.

The cases are generated from the parser itself, for every subcommand (``board run``
included): an unknown option, the command without its arguments, a value out of each
option's choices, a word where each number belongs, and each option without its value.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from mars.sw.cli import build_parser, main
from mars.tb.fuzz import _subparsers

COMMANDS = _subparsers(build_parser())


def bad_argvs(name: str, parser: argparse.ArgumentParser) -> list[list[str]]:
    argv = name.split()
    cases = [[*argv, "--no-such-option"], [*argv, "--no-such-option", "value"]]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    required = []
    for action in options:
        if action.required:
            required += [action.option_strings[0], "pkg"]
    if required:
        cases.append(argv)                                 # required options missing
    for action in options:
        flag = action.option_strings[0]
        if action.choices:
            cases.append([*argv, *required, flag, "no-such-choice"])
        if action.type in (int, float):
            cases.append([*argv, *required, flag, "not-a-number"])
        if action.nargs != 0:
            cases.append([*argv, *required, flag])          # the value left out
    return cases


CASES = [pytest.param(argv, id=" ".join(argv)) for name, parser in sorted(COMMANDS.items())
         for argv in bad_argvs(name, parser)]


def test_every_subcommand_is_covered():
    assert {"verilog", "config", "synth", "train", "run", "flow", "board run", "estimate",
            "sweep"} <= set(COMMANDS)
    assert len(CASES) > 4 * len(COMMANDS)


@pytest.mark.parametrize("argv", CASES)
def test_an_argument_error_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mars: error: "), captured.err
    command = " ".join(word for word in argv[:2] if word in " ".join(COMMANDS).split())
    assert lines[0].startswith(f"mars: error: {command}: "), lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("argv", [[], ["bogus"], ["board"]])
def test_no_or_unknown_subcommand_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("mars: error: ")


def test_a_real_process_prints_one_line_for_a_bad_option(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mars.sw.cli", "run", "--backend", "x"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("mars: error: run: ")
