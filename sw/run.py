"""Running a model package on the accelerator: `run_package` (``mars run``) and the main
job `flow` (``mars flow``, ``nox -s flow``).

Everything that can be wrong with the inputs is checked before a simulator starts: the
package (its files and hashes), the configuration it was built for, whether it fits the
hardware (`mars.sw.mapper`), and the shape and range of the inputs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mars.errors import MarsError
from mars.config import MarsConfig
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.cycles import (
    ideal_cycles, layer_walk_cycles, network_cycles, steady_cycles,
)
from mars.sw.files import replace_file
from mars.sw.golden.network import IntegerNetwork, LayerNode
from mars.sw.mapper import Mapping, map_network
from mars.sw.package import ModelPackage, load_package
from mars.sw.simulate import simulate

__all__ = ["BACKENDS", "RunError", "RunResult", "check_inputs", "run_package",
           "run_network_on", "densified", "flow"]

BACKENDS = ("golden", "verilator", "icarus")


class RunError(MarsError, ValueError):
    """Inputs, package or configuration that cannot run; the message says why."""


def _write_output(path: Path, data: str | bytes) -> None:
    """Replace `path` atomically (old or new after any signal, never torn); an unwritable
    folder is a `RunError` naming it."""
    try:
        replace_file(path, data)
    except OSError as error:
        raise RunError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


@dataclasses.dataclass
class RunResult:
    """Outputs of one run.  ``logits`` (B, classes) int64, ``predictions`` (B,),
    ``phase_cycles`` (B, phases), ``layer_cycles`` (B, layers) and ``cycles`` (B,)."""

    backend: str
    mapping: Mapping
    logits: np.ndarray
    phase_cycles: np.ndarray
    seconds: float
    simulated_cycles_per_second: float = 0.0

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def layer_cycles(self) -> np.ndarray:
        per_layer = [[sum(row[i] for i in plan.phases) for plan in self.mapping.layers]
                     for row in self.phase_cycles]
        return np.array(per_layer, dtype=np.int64)

    @property
    def cycles(self) -> np.ndarray:
        return self.phase_cycles.sum(axis=1)

    def cycles_summary(self) -> str:
        """The cycles in words: the first inference (it loads the weights unless they were
        resident already) apart from the later ones, which run in the steady state."""
        first, later = int(self.cycles[0]), sorted({int(c) for c in self.cycles[1:]})
        if not later or later == [first]:
            return f"{first} cycles per inference"
        steady = str(later[0]) if len(later) == 1 else f"{later[0]}..{later[-1]}"
        return f"{first} cycles for the first inference (weight loads), {steady} per later one"

    def save(self, path: Path) -> None:
        """Write the result as ``.npz`` (keys: see docs/architecture.md, "mars run")."""
        buffer = io.BytesIO()
        np.savez(buffer, logits=self.logits, predictions=self.predictions,
                 cycles=self.cycles, layer_cycles=self.layer_cycles,
                 phase_cycles=self.phase_cycles,
                 layer_names=np.array([p.name for p in self.mapping.layers]),
                 backend=np.array(self.backend))
        _write_output(Path(path), buffer.getvalue())


def read_inputs(path: str | Path | None) -> np.ndarray | None:
    """The array in the ``.npy`` file `path` (None: no file given), else `RunError`.

    Shared by every command that takes ``--inputs`` (``mars run``, ``mars board run``).
    """
    if not path:
        return None
    from mars.sw.package import parse_npy

    try:
        return parse_npy(Path(path).read_bytes())
    except OSError as error:
        raise RunError(f"cannot read inputs {str(path)!r}: {error.strerror or error}") \
            from None
    except ValueError as error:
        raise RunError(f"cannot read inputs {str(path)!r}: not a .npy array ({error})") \
            from None


def check_inputs(inputs: np.ndarray, network: IntegerNetwork) -> np.ndarray:
    """`inputs` as int64 (B, H, W, C) if they fit the network's input, else `RunError`."""
    x = np.asarray(inputs)
    shape = network.input_shape
    if x.ndim == 3 and x.shape == shape:
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != shape:
        raise RunError(f"inputs must have shape (B, {shape[0]}, {shape[1]}, {shape[2]}) "
                       f"(HWC images), got {x.shape}")
    if x.dtype.kind not in "iu":
        raise RunError(f"inputs must be quantised integers, got dtype {x.dtype}")
    hi = network.config.act_max
    if x.size and (x.min() < 0 or x.max() > hi):
        raise RunError(f"inputs must lie in [0, {hi}] (act_bits = "
                       f"{network.config.act_bits}), found {x.min()}..{x.max()}")
    if len(x) == 0:
        raise RunError("no inputs to run")
    return x.astype(np.int64)


def run_network_on(network: IntegerNetwork, inputs: np.ndarray, backend: str,
                   mapping: Mapping | None = None, faults=None) -> RunResult:
    """Run `network` on `inputs` with one backend; cycles come from the RTL's counters
    (simulators) or the cycle model (golden).

    `faults` (a `mars.sw.faults.FaultModel`, None: none) makes cells of the macros stuck:
    the mapping's weight image is made faulty (`mars.sw.faults.inject_faults`) and every
    backend runs that image (the golden model decodes its weights from it).  A zero rate
    is the fault-free run.
    """
    if backend not in BACKENDS:
        raise RunError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    x = check_inputs(inputs, network)
    mapping = mapping or map_network(network)
    faulty = faults is not None and faults.rate > 0
    if faulty:
        from mars.sw.faults import FaultMap, inject_faults
        mapping = inject_faults(mapping, FaultMap.draw(faults, network.config))
    model = [p.cycles for p in network_cycles(mapping)]
    start = time.perf_counter()
    if backend == "golden":
        if faulty:
            from mars.sw.faults import run_mapping
            logits = run_mapping(mapping, x)
        else:
            logits = run_accelerator(network, x)
        # Like the RTL run: the first inference loads the weights; with a resident mapping
        # the later ones skip the loads.
        later = [p.cycles for p in steady_cycles(mapping)]
        phases = np.array([model] + [later] * (len(x) - 1), dtype=np.int64)
    else:
        # The host driver raises AcceleratorError on the error flag or a timeout.
        stats = simulate(mapping, x, backend, budget=2 * sum(model) + 1000)
        logits = stats["outputs"].reshape(len(x), -1)
        phases = np.array(stats["phase_cycles"], dtype=np.int64)
    seconds = time.perf_counter() - start
    rate = stats["cycles_per_s"] if backend != "golden" else 0.0
    return RunResult(backend, mapping, logits.reshape(len(x), -1), phases, seconds, rate)


def _load(package: Path | str, config: MarsConfig | None) -> ModelPackage:
    pkg = load_package(package)
    if config is not None and config.content_hash != pkg.network.config.content_hash:
        raise RunError(
            f"the package was built for configuration {pkg.network.config.short_hash} "
            f"({pkg.network.config.name}), not {config.short_hash} ({config.name}) given by "
            f"--config; leave --config out to use the package's")
    return pkg


def run_package(package: Path | str, inputs: np.ndarray | None = None, *,
                backend: str = "golden", config: MarsConfig | None = None,
                faults=None) -> RunResult:
    """Run a package on `inputs` (default: its test vectors), with stuck cells if `faults`
    (a `mars.sw.faults.FaultModel`) is given."""
    pkg = _load(package, config)
    return run_network_on(pkg.network, pkg.test_inputs if inputs is None else inputs,
                          backend, faults=faults)


def densified(network: IntegerNetwork) -> IntegerNetwork:
    """The same network with every pruned group stored (zeros replaced by 1): what the
    accelerator would spend without sparsity.  Only for cycle counts."""
    nodes = tuple(dataclasses.replace(n, weight=np.where(n.weight == 0, 1, n.weight))
                  if isinstance(n, LayerNode) else n for n in network.nodes)
    return dataclasses.replace(network, nodes=nodes)


def flow(*, package: Path | None, out: Path, simulator: str = "verilator",
         count: int | None = None, train_options=None, config: MarsConfig | None = None,
         say: Callable[[str], None] = print) -> dict:
    """The main job: (train,) emit RTL, simulate the test inputs, check, report.

    `config` is the configuration to use: without a `package` the digits network is
    trained for it (default: the ``default`` preset); a package must have been built for
    it (`RunError` otherwise; default: the package's).
    """
    from mars.sw.emit import emit_verilog

    out = Path(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if package is None:
        package = out / "package"
        if not (package / "manifest.json").exists():
            from mars.config import PRESETS
            from mars.sw.train.trainer import TrainOptions, train
            say(f"[1/5] training the default digits network into {package}")
            # Block scope: every output block keeps as many groups as the others, so the
            # D word-line domains of a macro never wait for each other (no fillers).
            train(config or PRESETS["default"], train_options or TrainOptions(scope="block"),
                  package, progress=True)
        else:
            say(f"[1/5] reusing the package in {package}")
    else:
        say(f"[1/5] using the package {package}")
    pkg = _load(package, config)
    network, config = pkg.network, pkg.network.config
    timings["package"] = time.perf_counter() - t0

    t = time.perf_counter()
    say(f"[2/5] emitting RTL for configuration {config.name} ({config.short_hash})")
    emit_verilog(config, out / "verilog")
    timings["verilog"] = time.perf_counter() - t

    inputs = pkg.test_inputs if count is None else pkg.test_inputs[:count]
    labels = pkg.test_labels[:len(inputs)]
    mapping = map_network(network)
    say(f"[3/5] simulating {len(inputs)} test inputs on {simulator} "
        f"({mapping.n_phases} phases on {config.cores}x{config.macros_per_core} macros)")
    t = time.perf_counter()
    rtl = run_network_on(network, inputs, simulator, mapping)
    timings["simulation"] = time.perf_counter() - t

    say("[4/5] checking against the golden model")
    golden = run_network_on(network, inputs, "golden", mapping)
    mismatches = int((rtl.logits != golden.logits).any(axis=1).sum())
    cycle_mismatches = int((rtl.phase_cycles != golden.phase_cycles).any(axis=1).sum())

    say("[5/5] report")
    dense_mapping = map_network(densified(network))
    dense_cycles = sum(p.cycles for p in steady_cycles(dense_mapping))
    ideal = ideal_cycles(mapping)
    # The steady state: the last inference (with resident weights, loads are skipped).
    per_layer = rtl.layer_cycles[-1]
    walk = layer_walk_cycles(mapping, steady_cycles(mapping))
    layers = []
    for i, plan in enumerate(mapping.layers):
        layers.append({
            "name": plan.name, "group_sparsity": plan.packed.sparsity,
            "stored_groups": plan.packed.stored_groups, "phases": len(plan.phases),
            "cycles": int(per_layer[i]), "walk_cycles": walk[i], "ideal_cycles": ideal[i],
            "utilisation": ideal[i] / walk[i] if walk[i] else 0.0,
        })
    sparse_cycles = int(rtl.cycles[-1])
    report = {
        "config": config.name, "config_hash": config.content_hash,
        "package": str(package), "simulator": simulator, "inputs": len(inputs),
        "package_accuracy": pkg.accuracy,
        "rtl_accuracy": float((rtl.predictions == labels).mean()),
        "bit_exact": mismatches == 0, "mismatched_inputs": mismatches,
        "cycle_model_exact": cycle_mismatches == 0,
        "cycles_per_inference": sparse_cycles, "dense_cycles_per_inference": dense_cycles,
        "first_inference_cycles": int(rtl.cycles[0]), "weights_resident": mapping.resident,
        "speedup_from_sparsity": dense_cycles / sparse_cycles,
        "ideal_cycles": sum(ideal),
        "utilisation": sum(ideal) / sum(walk),
        "simulated_cycles_per_second": rtl.simulated_cycles_per_second,
        "layers": layers, "seconds": timings,
    }
    from mars.sw.energy import estimate           # energy, TOPS/W, FPS (docs/energy.md)
    report["estimate"] = estimate(mapping, dense_mapping=dense_mapping)
    _write_output(out / "report.json", json.dumps(report, indent=2))
    rtl.save(out / "rtl_outputs.npz")
    say(format_report(report))
    return report


def format_report(report: dict) -> str:
    lines = [
        "",
        f"MARS flow: {report['config']} configuration, {report['inputs']} inputs on "
        f"{report['simulator']}",
        f"  bit-exact vs golden model : {'yes' if report['bit_exact'] else 'NO'} "
        f"({report['mismatched_inputs']} inputs differ)",
        f"  cycle model exact         : {'yes' if report['cycle_model_exact'] else 'NO'}",
        f"  accuracy (RTL / package)  : {100 * report['rtl_accuracy']:.1f} % / "
        + ("none in the package" if report["package_accuracy"] is None
           else f"{100 * report['package_accuracy']:.1f} % (package: whole test split)"),
        f"  weights                   : "
        f"{'resident in the macros' if report['weights_resident'] else 'reloaded per layer'}"
        f" (first inference {report['first_inference_cycles']} cycles)",
        f"  cycles per inference      : {report['cycles_per_inference']} sparse, "
        f"{report['dense_cycles_per_inference']} dense "
        f"({report['speedup_from_sparsity']:.2f}x from sparsity)",
        f"  macro utilisation (WALK)  : {100 * report['utilisation']:.0f} % of the ideal bound",
        f"  simulation speed          : {report['simulated_cycles_per_second']:.0f} cycles/s",
    ]
    if "estimate" in report:
        from mars.sw.energy.report import summary_lines
        lines += summary_lines(report["estimate"])
    lines += [
        "",
        f"  {'layer':<10} {'sparsity':>8} {'groups':>7} {'cycles':>8} {'ideal':>8} {'util':>6}",
    ]
    for layer in report["layers"]:
        lines.append(f"  {layer['name']:<10} {100 * layer['group_sparsity']:>7.0f}% "
                     f"{layer['stored_groups']:>7} {layer['cycles']:>8} "
                     f"{layer['ideal_cycles']:>8.0f} {100 * layer['utilisation']:>5.0f}%")
    return "\n".join(lines)
