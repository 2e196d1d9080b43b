"""Write generated files into an output folder all at once or not at all.

Everything is produced in a hidden temporary folder beside the destination first; only
when every file is complete are they moved into place.  A failure half way leaves the
destination as it was, so nothing half-written ever looks valid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mars.config import MarsConfig
from mars.contract.export import contract_text
from mars.hw.blocks import BLOCKS, to_verilog

__all__ = ["write_atomically", "emit_verilog"]


def write_atomically(out_dir: Path, files: dict[str, Callable[[], str]]) -> list[Path]:
    """Produce each file's text by calling its function, then move all into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, produce in files.items():
            (staging / name).write_text(produce())
        out_dir.mkdir(exist_ok=True)
        written = []
        for name in files:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def emit_verilog(config: MarsConfig, out_dir: Path,
                 report: Callable[[str], None] | None = None) -> list[Path]:
    """The Verilog of every block for `config`, with ``config.json`` and ``contract.json``
    (`mars.contract.export`: address map, word layouts, memories) beside it.

    Returns the paths written.  `report`, if given, receives one line per block with the
    time its conversion took.
    """
    def producer(name: str) -> Callable[[], str]:
        def produce() -> str:
            start = time.perf_counter()
            text = to_verilog(name, config)
            if report is not None:
                report(f"{name}.v: {len(text.splitlines())} lines "
                       f"in {time.perf_counter() - start:.2f} s")
            return text
        return produce

    files: dict[str, Callable[[], str]] = {f"{name}.v": producer(name) for name in BLOCKS}
    files["config.json"] = config.to_json
    files["contract.json"] = lambda: contract_text(config)
    return write_atomically(out_dir, files)
