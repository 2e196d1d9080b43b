"""The code base is lint-clean under the rules of pyproject.toml (``[tool.ruff.lint]``):
lines of at most 100 characters, no unused import or variable, no redefinition, no
undefined name.  Ruff is pinned in the ``test`` extras, so the suite never skips this."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
