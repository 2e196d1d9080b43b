"""The layers of the code base (pyproject.toml, ``[tool.importlinter]``), checked with
import-linter: the contract imports no hardware, software or testbench; the hardware no
software or testbench; the golden models and the host driver no hardware; only
`mars.sw.simulate` imports the testbenches.

import-linter finds a package's modules by walking the folder of its root package.  Here
`mars` is ``mars/`` while `mars.hw`, `mars.sw` and `mars.tb` are ``hw/``, ``sw/`` and ``tb/``
(setuptools ``package-dir``), so through the editable install it sees no `mars.hw`.  The
test stages a copy of the sources laid out as installed (``mars/hw``, ...) and runs
``lint-imports`` there, in a subprocess whose ``sys.path`` starts with the staging folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_LINT = ("import sys; from importlinter.cli import lint_imports_command; "
         "sys.argv = ['lint-imports', *sys.argv[1:]]; lint_imports_command()")


def _stage(root: Path) -> Path:
    """Copy the sources into ``root/mars`` as an installed tree; return ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "mars", root / "mars", ignore=ignore)
    for part in ("hw", "sw", "tb"):
        shutil.copytree(REPO / part, root / "mars" / part, ignore=ignore)
    return root


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _LINT, str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True, text=True, timeout=120)


def test_import_layers_hold(tmp_path):
    pytest.importorskip("importlinter")
    done = lint_imports(_stage(tmp_path))
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"lint-imports found broken layers:\n{report}"
    import tomllib
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    kept = len(contracts["contracts"])
    assert f"Contracts: {kept} kept, 0 broken." in report, report


def test_a_forbidden_import_is_caught(tmp_path):
    """The check can fail: a hardware module that imports the software breaks it."""
    pytest.importorskip("importlinter")
    root = _stage(tmp_path)
    with open(root / "mars" / "hw" / "blocks.py", "a") as f:
        f.write("\n\ndef _bad():\n    import mars.sw.mapper  # noqa: F401\n")
    done = lint_imports(root)
    assert done.returncode != 0
    assert "mars.hw.blocks -> mars.sw.mapper" in done.stdout
