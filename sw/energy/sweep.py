"""``mars sweep``: estimate (and optionally simulate) a grid of configurations and group
sparsities, one CSV row per point.

Each point trains its model package once (or reuses the one already in the package
folder), estimates it (`mars.sw.energy.estimate_network`) and, if asked, runs its test
inputs on a backend.  Points run on local processes (`concurrent.futures`) by default or,
given a scheduler address, on a Dask distributed cluster; either way every point is the
same picklable call, `run_point`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from mars.errors import MarsError

__all__ = ["SweepError", "SweepPoint", "COLUMNS", "run_point", "run_sweep", "write_csv",
           "pareto_front", "plot_sweep"]

#: CSV columns, in order.
COLUMNS = ("config", "sparsity", "package", "accuracy", "mac_sparsity", "cycles",
           "latency_us", "fps", "energy_uj", "tops_per_w_dense", "tops_per_w_effective",
           "tops_dense", "tops_effective", "area_mm2", "dense_cycles", "dense_energy_uj",
           "backend", "sim_inputs", "sim_accuracy", "sim_cycles_match", "error")


class SweepError(MarsError, ValueError):
    """A sweep that cannot run (no points, a bad scheduler address, an unwritable CSV)."""


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point: a configuration (preset or JSON path), a group sparsity, where its
    package lives, how to train it if absent, and what to estimate and simulate."""

    config: str
    sparsity: float
    package: str
    train: dict = dataclasses.field(default_factory=dict)   # TrainOptions fields
    tech: str | None = None
    clock_mhz: float | None = None
    backend: str | None = None           # None, "golden", "verilator" or "icarus"
    count: int = 20


def _train_if_missing(point: SweepPoint):
    from mars.config import load_config
    from mars.sw.package import load_package

    package, config = Path(point.package), load_config(point.config)
    if not (package / "manifest.json").exists():
        from mars.sw.train.trainer import TrainOptions, train
        options = TrainOptions(**{**point.train, "sparsity": point.sparsity})
        options.check()
        train(config, options, package, progress=False, log=lambda line: None)
    pkg = load_package(package)
    built = pkg.network.config
    if built.content_hash != config.content_hash:
        raise SweepError(f"package {str(package)!r} was built for configuration "
                         f"{built.short_hash} ({built.name}), not {config.short_hash} "
                         f"({config.name})")
    return pkg


def run_point(point: SweepPoint) -> dict:
    """Train (or reuse), estimate and optionally simulate one point; a CSV row (dict).

    A user error at this point (a network that does not map, a bad configuration) is
    recorded in the row's ``error`` column instead of stopping the sweep.
    """
    row = dict.fromkeys(COLUMNS, "")
    row.update(config=point.config, sparsity=point.sparsity, package=point.package)
    try:
        from .model import estimate_network
        from .tech import load_technology

        pkg = _train_if_missing(point)
        est = estimate_network(pkg.network, load_technology(point.tech),
                               clock_mhz=point.clock_mhz, inputs=pkg.test_inputs[:16])
        kept = sum(layer["macs_effective"] for layer in est["layers"])
        dense = est.get("dense", {})
        row.update(
            accuracy=pkg.accuracy,
            mac_sparsity=1 - kept / max(1, sum(layer["macs_dense"]
                                                 for layer in est["layers"])),
            cycles=est["cycles_per_inference"], latency_us=est["latency_us"],
            fps=est["fps"], energy_uj=est["energy_per_inference_uj"],
            tops_per_w_dense=est["tops_per_w_dense"],
            tops_per_w_effective=est["tops_per_w_effective"],
            tops_dense=est["tops_dense"], tops_effective=est["tops_effective"],
            area_mm2=est["area_mm2"],
            dense_cycles=dense.get("cycles_per_inference", ""),
            dense_energy_uj=dense["energy_pj"] * 1e-6 if "energy_pj" in dense else "")
        if point.backend:
            from mars.sw.golden.cycles import network_cycles, steady_cycles
            from mars.sw.run import run_network_on

            inputs = pkg.test_inputs[:point.count]
            result = run_network_on(pkg.network, inputs, point.backend)
            model = [[p.cycles for p in network_cycles(result.mapping)]] + \
                [[p.cycles for p in steady_cycles(result.mapping)]] * (len(inputs) - 1)
            row.update(backend=point.backend, sim_inputs=len(inputs),
                       sim_accuracy=float((result.predictions
                                           == pkg.test_labels[:len(inputs)]).mean()),
                       sim_cycles_match=bool((result.phase_cycles == model).all()))
    except MarsError as error:
        row["error"] = str(error)
    return row


def _local_map(points: Sequence[SweepPoint], workers: int) -> list[dict]:
    if workers <= 1:
        return [run_point(p) for p in points]
    import concurrent.futures
    import multiprocessing

    # Spawned workers: torch and forked threads do not mix.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(run_point, points))


def _dask_map(points: Sequence[SweepPoint], scheduler) -> list[dict]:
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("--scheduler needs Dask distributed: pip install "
                         "'mars-cim[cluster]'") from None
    if isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler!r}: "
                             f"{error}") from None
        owned = True
    else:
        client, owned = scheduler, False
    try:
        futures = client.map(run_point, list(points), pure=False)
        return client.gather(futures)
    finally:
        if owned:
            client.close()


def run_sweep(points: Sequence[SweepPoint], *, workers: int = 1, scheduler=None,
              progress: Callable[[str], None] = print) -> list[dict]:
    """Every point's row, in the order of `points`.

    `scheduler`: a Dask scheduler address (``tcp://host:8786``) or a ``distributed.Client``;
    otherwise `workers` local processes (1: in this process).
    """
    if not points:
        raise SweepError("the sweep has no points")
    where = (f"Dask scheduler {scheduler}" if isinstance(scheduler, str)
             else "a Dask client" if scheduler is not None
             else f"{workers} local process{'es' if workers > 1 else ''}")
    progress(f"sweeping {len(points)} points on {where}")
    rows = _dask_map(points, scheduler) if scheduler is not None \
        else _local_map(points, workers)
    for row in rows:
        status = f"error: {row['error']}" if row["error"] else \
            f"{row['cycles']} cycles, {row['energy_uj']:.4f} uJ, accuracy {row['accuracy']:.3f}"
        progress(f"  {row['config']} sparsity {row['sparsity']}: {status}")
    return rows


def write_csv(rows: Sequence[dict], path: Path) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as error:
        raise SweepError(f"cannot write {str(path)!r}: {error.strerror}") from None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point beats: none has lower
    or equal cost and higher or equal accuracy with one of them strictly better.
    Sorted by cost."""
    front = []
    for i, (cost, acc) in enumerate(points):
        dominated = any(c <= cost and a >= acc and (c < cost or a > acc)
                        for j, (c, a) in enumerate(points) if j != i)
        if not dominated and all(not math.isnan(v) for v in (cost, acc)):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_sweep(rows: Sequence[dict], out: Path) -> list[Path]:
    """Accuracy against energy and against cycles, with the Pareto front, as PNG and SVG
    in `out`; returns the written paths."""
    from .report import _pyplot, _save

    plt = _pyplot()
    ok = [r for r in rows if not r["error"]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in ((axes[0], "energy_uj", "energy per inference (uJ)"),
                           (axes[1], "cycles", "cycles per inference")):
        pts = [(float(r[key]), float(r["accuracy"])) for r in ok]
        for config in sorted({r["config"] for r in ok}):
            sel = [(p, r) for p, r in zip(pts, ok) if r["config"] == config]
            ax.scatter([p[0] for p, _ in sel], [100 * p[1] for p, _ in sel], label=config)
            for p, r in sel:
                ax.annotate(f"{100 * float(r['sparsity']):.0f}%", (p[0], 100 * p[1]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [100 * pts[i][1] for i in front], "k--",
                drawstyle="steps-post", label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy against energy and cycles (labels: group sparsity)", fontsize=10)
    fig.tight_layout()
    paths = _save(fig, out / "sweep_pareto", plt)
    return paths
