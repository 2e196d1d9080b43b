"""Emit the Verilog of every block of a configuration into a folder, all at once.

The folder is written through `mars.sw.files.write_atomically`: a failure half way leaves
the destination as it was, so nothing half-written ever looks valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from mars.config import MarsConfig
from mars.contract.export import contract_text
from mars.hw.blocks import BLOCKS, to_verilog
from mars.sw.files import write_atomically

__all__ = ["emit_verilog"]


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
