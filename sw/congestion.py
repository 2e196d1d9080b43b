"""router2's progress and congestion: stopping a route that does not converge, and where
its overused wires lie.

nextpnr's router2 (common/router2.cc, after CRoute: Vercruyce et al., FCCM 2019) routes
every net, lets nets share wires, and raises the cost of shared ("overused") wires each
iteration until none is left.  It has no iteration limit: on a design that is too
congested the count of overused wires reaches a lowest value and then climbs for hours
(docs/synthesis.md: the whole default top at b0379bb bottomed out at 516 overused wires at
iteration 34 and was at 4,855 by iteration 68).  `RouterWatch` reads nextpnr's log while it
runs and says when to stop it: after `patience` iterations without a new lowest count,
once the count has grown well past that lowest one (`RouterWatch.grown`), or after
`STALL_FACTOR` times as many whatever the count.

With ``--router2-heatmap PREFIX`` router2 writes per iteration
``PREFIX_congestion_by_net_<i>.csv`` (``net,uses``: over the net's overused wires, the
other nets each shares it with) and ``PREFIX_congestion_by_coordinate_<i>.csv`` (one row
per tile column x, one value per tile row y: over the tile's overused wires, the nets on
each).  A wire two nets share counts 1 for each net in the first and 2 in the second.
`congestion` sums the first by instance path (``block.unit3.gather``) and
`plot_congestion` draws the second.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mars.sw.hierarchy import instance_path

__all__ = ["HEATMAP_DIR", "ROUTE_PATIENCE", "RouterWatch", "add_route_patience_argument",
           "congestion", "heatmap_prefix", "map_name", "plot_congestion",
           "router2_iterations"]

#: router2's line after each iteration (nextpnr common/router2.cc, ``log_info``).
_ITERATION = re.compile(r"\biter=(\d+) wires=\d+ overused=(\d+)\b")

#: Iterations router2 may run without a new lowest count of overused wires before it is
#: stopped (if the count has also grown: `RouterWatch.grown`).  The whole default top's
#: routes that converged (c66e847, session 27; four runs) went at most 8 to 17 iterations
#: without a new low, all of them at their end, on one or two wires; the five that did not
#: converge (session 26) were stopped by hand 26 to 46 iterations past their lowest count,
#: by then 4.6- to 16-fold (docs/synthesis.md, "router2 that does not converge").
ROUTE_PATIENCE = 30

#: A count that has not grown is stopped after this many times the patience without a new
#: low: with ``--tmg-ripup`` router2 can hold a dozen wires for hundreds of iterations, the
#: timing rip-up undoing what the congestion step resolved (c66e847 seed 2, session 27:
#: 5 to 16 wires from iteration 92 to 409, its last new low at 262; stopped by hand).
STALL_FACTOR = 4

#: Folder (inside the output folder) of router2's heatmap files.
HEATMAP_DIR = "heatmap"

#: Instance names kept when overused wire-uses are summed (``block.unit3.gather``).
CONGESTION_DEPTH = 3


def add_route_patience_argument(parser: argparse.ArgumentParser) -> None:
    """``--route-patience N`` (``mars synth --pnr``, ``mars bitstream``)."""
    parser.add_argument("--route-patience", type=int, default=ROUTE_PATIENCE, metavar="N",
                        help="router2: stop nextpnr with an error when N iterations pass "
                             "without a new lowest count of overused wires (it does not "
                             "converge); 0: never stop it")


def router2_iterations(log_text: str) -> list[tuple[int, int]]:
    """``(iteration, overused wires)`` of each of router2's iteration lines in `log_text`."""
    return [(int(m[1]), int(m[2])) for m in _ITERATION.finditer(log_text)]


@dataclass
class RouterWatch:
    """Follows router2 in nextpnr's log; called, returns why to stop it, or ``""``.

    `mars.sw.tools.run_tool` calls it every few seconds while nextpnr runs.  It reads only
    what the log gained since the last call (whole lines).

    Attributes
    ----------
    log : Path
        nextpnr's ``--log`` file (it may not exist yet).
    patience : int
        Iterations without a new lowest count of overused wires that stop the route, if
        the count has also `grown`; `STALL_FACTOR` times as many stop it in any case (at
        least 1).
    best, best_iteration, last, last_iteration : int
        The lowest count so far and its iteration, and the latest ones (-1 before the first
        iteration).
    legal_iteration : int
        The first iteration with no overused wire (-1 before it).  With ``--tmg-ripup``
        router2 goes on from there while it counts connections that fail timing: at an
        unreachable clock forever (c66e847 seed 3 at 103 MHz, session 27: legal at
        iteration 174, still rerouting 21 connections at 290 and more), so that too is
        stopped after `STALL_FACTOR` times the patience.
    """

    log: Path
    patience: int = ROUTE_PATIENCE
    best: int = -1
    best_iteration: int = -1
    last: int = -1
    last_iteration: int = -1
    legal_iteration: int = -1
    _offset: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be 1 or more iterations, not {self.patience}")

    def _new_lines(self) -> str:
        try:
            with open(self.log, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return ""
        end = chunk.rfind(b"\n") + 1          # a line still being written waits
        self._offset += end
        return chunk[:end].decode(errors="replace")

    @staticmethod
    def grown(best: int, last: int) -> bool:
        """The count has grown well past its lowest: more than twice it and by more than
        100.  A route that converges can hold a few wires for many iterations at its end
        (2 wires for 14 iterations and more, c66e847 seed 1 with ``--tmg-ripup``) and is
        not stopped for that; one that does not grows from hundreds to thousands."""
        return last > max(2 * best, best + 100)

    def __call__(self) -> str:
        for iteration, overused in router2_iterations(self._new_lines()):
            if iteration < self.last_iteration:      # router2 restarted (e.g. a second
                self.best = self.best_iteration = -1  # routing pass): count afresh
                self.legal_iteration = -1
            self.last, self.last_iteration = overused, iteration
            if self.best < 0 or overused < self.best:
                self.best, self.best_iteration = overused, iteration
            if overused == 0 and self.legal_iteration < 0:
                self.legal_iteration = iteration
        legal_for = self.last_iteration - self.legal_iteration
        if self.legal_iteration >= 0 and legal_for >= STALL_FACTOR * self.patience:
            return (f"router2 does not finish: the route is legal since iteration "
                    f"{self.legal_iteration}, and {legal_for} iterations later the "
                    f"timing-driven rip-up still reroutes connections that fail timing (the "
                    f"clock is out of reach: a lower --freq, or no --tmg-ripup)")
        since = self.last_iteration - self.best_iteration
        if self.best > 0 and since >= self.patience and (
                self.grown(self.best, self.last) or since >= STALL_FACTOR * self.patience):
            return (f"router2 does not converge: {self.best} overused wires at their "
                    f"lowest at iteration {self.best_iteration}, {self.last} at iteration "
                    f"{self.last_iteration} ({since} iterations without a new low)")
        return ""


def map_name(prefix: str) -> str:
    """The congestion map's file name for a heatmap prefix, in the output folder
    (``heatmap/x_ecp5`` -> ``x_ecp5.congestion.png``)."""
    return f"{Path(prefix).name}.congestion.png"


def heatmap_prefix(name: str, family: str) -> str:
    """``--router2-heatmap``'s prefix for a block, relative to the output folder."""
    return f"{HEATMAP_DIR}/{name}_{family}"


def _heatmap_file(out_dir: Path, prefix: str, kind: str, iteration: int) -> Path:
    return out_dir / f"{prefix}_congestion_by_{kind}_{iteration}.csv"


def congestion(out_dir: Path, prefix: str, iteration: int, top: int = 12) -> dict[str, Any]:
    """Overused wire-uses of one router2 iteration (each net's uses of wires beyond their
    capacity, the ``by_net`` file), summed by instance path.

    Parameters
    ----------
    out_dir : Path
        nextpnr's working folder.
    prefix : str
        The ``--router2-heatmap`` prefix, relative to `out_dir` (`heatmap_prefix`).
    iteration : int
        The iteration (1 is the first).
    top : int
        How many instances to keep, most congested first.

    Returns
    -------
    dict
        ``iteration``, ``wire_uses`` (the sum over all nets), ``by_instance`` (instance
        path, `CONGESTION_DEPTH` names, to its wire-uses; the `top` largest) and the
        ``by_net`` / ``by_coordinate`` file names; empty if the net file is missing.
    """
    by_net = _heatmap_file(out_dir, prefix, "net", iteration)
    if not by_net.exists():
        return {}
    where: Counter[str] = Counter()
    for line in by_net.read_text(errors="replace").splitlines():
        net, _, uses = line.rpartition(",")        # router2 does not quote a net's name
        if net and uses.strip().isdigit() and int(uses) > 0:
            where[instance_path(net, CONGESTION_DEPTH)] += int(uses)
    ranked = sorted(where.items(), key=lambda item: (-item[1], item[0]))[:top]
    coordinate = _heatmap_file(out_dir, prefix, "coordinate", iteration)
    return {"iteration": iteration, "wire_uses": sum(where.values()),
            "by_instance": dict(ranked), "by_net": str(by_net.relative_to(out_dir)),
            "by_coordinate": str(coordinate.relative_to(out_dir))}


def plot_congestion(coordinate_csv: Path, png: Path, title: str) -> bool:
    """Draw a ``congestion_by_coordinate`` file as an image of the die (x right, y down, as
    nextpnr-ecp5 numbers its tiles); returns False (nothing written) if the file is
    missing or empty."""
    if not coordinate_csv.exists():
        return False
    with open(coordinate_csv, newline="") as handle:
        columns = [[int(v) for v in row if v.strip()] for row in csv.reader(handle)]
    columns = [column for column in columns if column]
    if not columns:
        return False
    import matplotlib

    matplotlib.use("Agg")                      # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([column + [0] * (max(map(len, columns)) - len(column))
                     for column in columns]).T       # rows are y, columns x
    fig, ax = plt.subplots(figsize=(8, 6.5))
    image = ax.imshow(grid, cmap="inferno", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="nets on overused wires, per tile")
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_title(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True
