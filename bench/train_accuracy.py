"""Trainer benchmarks behind docs/training.md.

    python bench/train_accuracy.py [--seeds 0 1 2] [--only accuracy|time|size|readout]

(1) accuracy on scikit-learn's digits: the float baseline against Wb/Ab = 8/8 and 4/4 at
group sparsity 0, 50, 75 and 90 % (target per layer, and per output block), with
unstructured pruning at the same sparsity beside it, over several seeds; (2) wall time of
the default ``mars train`` on 1 and 2 threads; (3) the package size, the stored model
against a dense int8 model, and the macro compute steps per image; (4) ``--only readout``:
the readout table of docs/training.md: exact, 4/3/2-bit saturating ADCs (``adc3`` geometry,
G = 16) and the exact, binary and ternary readouts (``hcim`` geometry, G = 2) at the
``--sparsities``, each without and with readout-aware fine-tuning, with the energy per
inference of seed 0 (build/bench/train/readout.md); ``--set FIELD=VALUE`` runs a sweep
point.  Resumable: the float and QAT networks are cached per geometry, sparsity and seed
(build/bench/train/qat-cache/), finished runs in build/bench/train/readout-runs.json, so a
rerun only runs what is missing (``--rerun-failed`` also the failed ones); (5) ``--only
readout-energy``: five readouts priced on one trained G = 2 network.  Every run is
``mars.sw.train.train`` with the defaults of ``mars train`` except the varied option. Writes
build/bench/train/results.json and build/bench/train/training.md.

    python bench/train_accuracy.py --only readout --sparsities 0.5 0.75 0 --seeds 0 1 2 \
        --jobs 2 --set bitplane=true
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mars.config import PRESETS
from mars.errors import MarsError
from mars.sw.package import load_package
from mars.sw.sparse import DecoderFormat
from mars.sw.train.data import load_dataset
from mars.sw.train.trainer import DEFAULT_FINETUNE, TrainOptions, train

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "bench" / "train"
BITS = ((8, 8), (4, 4))
SPARSITIES = (0.0, 0.5, 0.75, 0.9)
#: Pruning variants (label, TrainOptions fields): CIM groups with the target per layer, per
#: output block (balanced word-line domains), per layer with the classifier kept dense, and
#: single weights (the comparison).
VARIANTS = (
    ("group, per layer", {"structure": "group", "scope": "layer"}),
    ("group, per block", {"structure": "group", "scope": "block"}),
    ("group, classifier dense", {"structure": "group", "scope": "layer", "prune_last": False}),
    ("unstructured", {"structure": "unstructured", "scope": "layer"}),
)


def _accuracy_run(job: tuple) -> dict:
    wb, ab, sparsity, label, fields, seed = job
    options = TrainOptions(weight_bits=wb, act_bits=ab, sparsity=sparsity, seed=seed, **fields)
    start = time.perf_counter()
    result = train(PRESETS["default"], options, None, progress=False, log=lambda s: None)
    all_layers = 1 - sum(r.stored_groups for r in result.layers) / \
        sum(r.groups for r in result.layers)
    return {"wb": wb, "ab": ab, "sparsity": sparsity, "variant": label, "seed": seed,
            "float": result.float_accuracy, "qat": result.qat_accuracy,
            "integer": result.integer_accuracy, "agreement": result.agreement,
            "group_sparsity": _group_sparsity(result), "group_sparsity_all": all_layers,
            "seconds": time.perf_counter() - start}


def bench_accuracy(seeds: list[int], jobs: int) -> list[dict]:
    work = [(wb, ab, sparsity, label, fields, seed)
            for wb, ab in BITS for sparsity in SPARSITIES for label, fields in VARIANTS
            if sparsity > 0 or label == VARIANTS[0][0] for seed in seeds]
    rows = []
    with multiprocessing.Pool(jobs) as pool:
        for row in pool.imap(_accuracy_run, work):
            rows.append(row)
            print(f"{row['wb']}/{row['ab']} {row['variant']:<24} {row['sparsity']:.0%} seed "
                  f"{row['seed']}: float {100 * row['float']:.2f} %, integer "
                  f"{100 * row['integer']:.2f} % (group sparsity {100 * row['group_sparsity']:.1f} "
                  f"% of prunable, {100 * row['group_sparsity_all']:.1f} % of all layers, "
                  f"{row['seconds']:.1f} s)", flush=True)
    return rows


def _group_sparsity(result) -> float:
    prunable = [r for r in result.layers if r.prunable]
    return 1 - sum(r.stored_groups for r in prunable) / sum(r.groups for r in prunable)


#: Geometries of the readout table: a saturating ADC is studied where it clips, on the
#: adc3 macros (G = 16 rows per step: popcounts up to 16, 5 bits exact); the comparator
#: (HCiM) readouts on the hcim macros (G = 2: a comparator bit is useless at G = 8,
#: docs/training.md).
READOUT_GEOMETRIES = {
    "adc3": lambda: PRESETS["adc3"],
    "hcim": lambda: PRESETS["hcim"],
}

#: Readouts of the table: (label, geometry, config fields).  Every run trains with the
#: exact product; the non-exact readouts are exported through the readout before
#: (``start_accuracy``: binary/ternary after the sequential least-squares scale start)
#: and after ``--finetune`` epochs of readout-aware fine-tuning.
READOUTS = (
    ("exact (G = 16, 5 bits)", "adc3", {"readout_mode": "exact", "readout_bits": 5}),
    ("saturating 4 bits (G = 16)", "adc3", {"readout_mode": "saturating", "readout_bits": 4}),
    ("saturating 3 bits (G = 16)", "adc3", {"readout_mode": "saturating", "readout_bits": 3}),
    ("saturating 2 bits (G = 16)", "adc3", {"readout_mode": "saturating", "readout_bits": 2}),
    ("exact (G = 2, 2 bits)", "hcim", {"readout_mode": "exact", "readout_bits": 2}),
    ("binary, T = 1 (G = 2)", "hcim", {"readout_mode": "binary", "readout_threshold": 1}),
    ("ternary, T = 1 (G = 2)", "hcim", {"readout_mode": "ternary", "readout_threshold": 1}),
)
READOUT_SPARSITIES = (0.5, 0.0, 0.75)


def readout_config(index: int):
    label, geometry, fields = READOUTS[index]
    return READOUT_GEOMETRIES[geometry]().replace(name=f"{geometry}-{index}", **fields)


#: Float and QAT networks shared by the readouts of one geometry, sparsity and seed
#: (`train(..., qat_cache=...)`): the readout table trains each once.
QAT_CACHE = OUT / "qat-cache"
#: Finished readout runs by `_run_key` (reruns skip them: the bench is resumable).
RUNS = OUT / "readout-runs.json"


#: Readout-aware fine-tuning epochs of the saturating ADCs in the table (the trainer's
#: default for them is 0); binary/ternary readouts get the trainer's default.
ADC_FINETUNE = 5


def _epochs(index: int, finetune: int | None) -> int:
    """The fine-tuning epochs of a run: `finetune` if given, else `ADC_FINETUNE` for an
    ADC and the trainer's default (`DEFAULT_FINETUNE`) for binary/ternary readouts."""
    config = readout_config(index)
    if config.readout_mode.value == "exact":
        return 0
    if finetune is not None:
        return finetune
    return DEFAULT_FINETUNE if config.scaled_readout else ADC_FINETUNE


def _run_key(job: tuple) -> str:
    index, sparsity, seed, finetune, ste, extra = job
    finetune = _epochs(index, finetune)
    extra = {k: v for k, v in sorted(extra.items())}
    return json.dumps([READOUTS[index][0], sparsity, seed, finetune, ste, extra])


def _readout_run(job: tuple) -> dict:
    index, sparsity, seed, finetune, ste, extra = job
    torch.set_num_threads(1)
    label = READOUTS[index][0]
    # extra: TrainOptions fields and ("config." prefixed) configuration fields of a sweep
    config = readout_config(index).replace(
        **{k[7:]: v for k, v in extra.items() if k.startswith("config.")})
    # "sweep": true marks a sweep point: accuracies by the bit-plane model, not the
    # golden accelerator model (equal, tested; much faster at G = 2), no energy
    # "bitplane": true: the same, with energies (the table, when time is short)
    fields = {k: v for k, v in extra.items()
              if not k.startswith("config.") and k not in ("sweep", "bitplane")}
    # block scope: balanced word-line domains, so that every network maps onto its macros
    # (with layer scope the adc3 macros, 8 row slots of 16 rows, cannot hold conv1's
    # unbalanced output blocks) and has an energy estimate
    options = TrainOptions(sparsity=sparsity, seed=seed, readout_finetune=_epochs(
        index, finetune), ste=ste, scope="block", **fields)
    start = time.perf_counter()
    row = {"key": _run_key(job), "readout": label, "index": index, "sparsity": sparsity,
           "seed": seed, "finetune": _epochs(index, finetune), "ste": ste, "extra": extra}
    try:
        result = train(config, options, None, progress=False, log=lambda s: None,
                       qat_cache=QAT_CACHE,
                       golden=not (extra.get("sweep") or extra.get("bitplane")))
    except Exception as error:          # a run that cannot be exported is a result too
        return {**row, "error": str(error), "integer": None,
                "seconds": time.perf_counter() - start}
    energy = None
    if seed == 0 and not extra.get("sweep"):
        from mars.sw.energy.model import estimate_network
        from mars.sw.train.quant import input_codes

        codes = input_codes(torch.from_numpy(load_dataset("digits").x_test[:16]),
                            config.act_bits).permute(0, 2, 3, 1).numpy().astype("uint8")
        try:
            energy = estimate_network(result.network, with_dense=False,
                                      inputs=codes)["energy_per_inference_uj"]
        except MarsError as error:      # e.g. a network the mapper cannot place
            energy = f"not mapped: {error}"
    return {**row, "float": result.float_accuracy, "qat": result.qat_accuracy,
            "integer": result.integer_accuracy, "start": result.start_accuracy,
            "agreement": result.agreement, "group_sparsity": _group_sparsity(result),
            "energy_uj": energy, "qat_seconds": result.seconds["qat"],
            "readout_seconds": result.seconds.get("readout", 0.0),
            "phase_seconds": result.seconds, "seconds": time.perf_counter() - start}


def _done_runs() -> dict[str, dict]:
    return {r["key"]: r for r in json.loads(RUNS.read_text())} if RUNS.exists() else {}


def bench_readout(seeds: list[int], jobs: int, which: list[int] | None = None,
                  sparsities=READOUT_SPARSITIES[:1], finetune: int | None = None,
                  ste: str = "plain", tag: str = "", extra: dict | None = None,
                  rerun_failed: bool = False) -> list[dict]:
    """The readout runs of `which` (indices into READOUTS) x `sparsities` x `seeds`; runs
    already in `RUNS` are taken from there (a failed one is rerun if `rerun_failed`).
    The exact readouts come first: they train (and cache) the QAT networks the others
    of their geometry load."""
    extra = dict(extra or {})
    work = [(index, sparsity, seed, finetune, ste, extra) for sparsity in sparsities
            for index in sorted(range(len(READOUTS)),
                                key=lambda i: READOUTS[i][2]["readout_mode"] != "exact")
            for seed in seeds if which is None or index in which]
    done = _done_runs()
    rows = [done[_run_key(job)] for job in work if _run_key(job) in done
            and not (rerun_failed and done[_run_key(job)].get("error"))]
    todo = [job for job in work if _run_key(job) not in {r["key"] for r in rows}]
    print(f"{len(rows)} runs cached, {len(todo)} to run", flush=True)
    with multiprocessing.Pool(jobs) as pool:
        for row in pool.imap(_readout_run, todo):
            rows.append(row)
            done = _done_runs()
            done[row["key"]] = row
            RUNS.write_text(json.dumps(list(done.values()), indent=2))
            (OUT / f"readout{tag}.json").write_text(json.dumps(rows, indent=2))
            head = f"{row['readout']:<28} {100 * row['sparsity']:.0f} % seed {row['seed']}"
            if row.get("error"):
                print(f"{head}: FAILED: {row['error']}", flush=True)
                continue
            before = "" if row["start"] is None else f"{100 * row['start']:.2f} % -> "
            print(f"{head}: integer {before}{100 * row['integer']:.2f} %, fake-quant "
                  f"agreement {100 * row['agreement']:.2f} %, {row['seconds']:.0f} s",
                  flush=True)
    return rows


#: Readouts priced on one trained hcim-geometry network (G = 2): the minimal exact ADC,
#: HCiM's 4- and 7-bit ADC baselines (exact here: a popcount of 2 rows never clips) and
#: the comparator readouts (their scale factors fitted, their activity measured).
ENERGY_READOUTS = (
    ("exact ADC, 2 bits", {"readout_mode": "exact", "readout_bits": 2}),
    ("ADC, 4 bits", {"readout_mode": "exact", "readout_bits": 4}),
    ("ADC, 7 bits", {"readout_mode": "exact", "readout_bits": 7}),
    ("binary, T = 1", {"readout_mode": "binary", "readout_threshold": 1}),
    ("ternary, T = 1", {"readout_mode": "ternary", "readout_threshold": 1}),
)


def bench_readout_energy(sparsity: float = 0.5, seed: int = 0, samples: int = 16
                         ) -> list[dict]:
    """Energy per inference (`mars.sw.energy`) of each of `ENERGY_READOUTS` on the network
    the readout table trains for its exact G = 2 row (same options and seed, so the same
    network), the comparator readouts' scale factors by `sequential_scale_fit`."""
    import dataclasses

    from mars.sw.energy.model import estimate_network
    from mars.sw.train.calibrate import sequential_scale_fit
    from mars.sw.train.quant import input_codes

    index = next(i for i, r in enumerate(READOUTS) if r[1] == "hcim"
                 and r[2]["readout_mode"] == "exact")
    config = readout_config(index)
    result = train(config, TrainOptions(sparsity=sparsity, seed=seed, scope="block"), None,
                   progress=False, log=lambda s: None, qat_cache=QAT_CACHE)
    data = load_dataset("digits")
    codes = input_codes(torch.from_numpy(data.x_test[:samples]), config.act_bits)
    codes = codes.permute(0, 2, 3, 1).numpy().astype("uint8")
    calib = input_codes(torch.from_numpy(data.x_train[:256]), config.act_bits)
    calib = calib.permute(0, 2, 3, 1).numpy().astype("uint8")
    rows = []
    for label, fields in ENERGY_READOUTS:
        target = config.replace(name=label, **fields)
        network = dataclasses.replace(result.network, config=target)
        if target.scaled_readout:
            network = sequential_scale_fit(network, calib)
        est = estimate_network(network, with_dense=False, inputs=codes)
        rows.append({"readout": label, "energy_uj": est["energy_per_inference_uj"],
                     "components_pj": est.get("components_pj"),
                     "activity": est.get("activity")})
        print(f"energy {label}: {est['energy_per_inference_uj']:.4f} uJ", flush=True)
    return rows


def energy_markdown(rows: list[dict]) -> str:
    base = {r["readout"]: r["energy_uj"] for r in rows}
    lines = ["| readout (G = 2) | energy / inference (uJ) | saving vs 7-bit ADC | saving vs "
             "4-bit ADC |",
             "| --- | ---: | ---: | ---: |"]
    for r in rows:
        e = r["energy_uj"]
        lines.append(f"| {r['readout']} | {e:.4f} | {100 * (1 - e / base['ADC, 7 bits']):+.1f} % "
                     f"| {100 * (1 - e / base['ADC, 4 bits']):+.1f} % |")
    # HCiM's published figures (docs/energy.md, [7]) beside the model's
    lines.append("| HCiM, published (ADC-less vs ADC) | | up to 28 % | up to 12 % |")
    return "\n".join(lines) + "\n"


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def readout_markdown(rows: list[dict], command: str) -> str:
    """The accuracy table: per readout and sparsity, the integer accuracy (mean over
    seeds, min..max) without and with readout-aware fine-tuning, the difference to the
    exact readout of the same geometry and seed (mean, min..max over seeds), and the
    energy per inference (seed 0)."""
    sparsities = sorted({r["sparsity"] for r in rows}, key=lambda v: (v != 0.5, v == 0, v))
    lines = [f"Measured {datetime.date.today().isoformat()} with `{command}`.", "",
             "| readout | group sparsity | seeds | without readout-aware training, integer "
             "acc. % | fine-tuning epochs | with readout-aware fine-tuning, integer acc. % "
             "| vs exact, without (points) | vs exact, with (points) "
             "| energy / inference (uJ) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ok_rows = [r for r in rows if not r.get("error")]
    for sparsity in sparsities:
        for index, (label, geometry, fields) in enumerate(READOUTS):
            items = [r for r in rows if r["index"] == index and r["sparsity"] == sparsity]
            ok = [r for r in items if not r.get("error")]
            if not items:
                continue
            failed = len(items) - len(ok)
            exact = fields["readout_mode"] == "exact"
            with_ft = [100 * r["integer"] for r in ok]
            without = with_ft if exact else [100 * r["start"] for r in ok
                                             if r["start"] is not None]
            # paired with the exact readout of the same geometry, sparsity and seed
            base = {r["seed"]: 100 * r["integer"] for r in ok_rows
                    if r["sparsity"] == sparsity and READOUTS[r["index"]][1] == geometry
                    and READOUTS[r["index"]][2]["readout_mode"] == "exact"}
            d_without = [100 * r["start"] - base[r["seed"]] for r in ok
                         if r["seed"] in base and r["start"] is not None]
            d_with = [100 * r["integer"] - base[r["seed"]] for r in ok if r["seed"] in base]
            energy = [r["energy_uj"] for r in ok if isinstance(r.get("energy_uj"), float)]
            epochs = sorted({r["finetune"] for r in ok})
            lines.append(
                f"| {label} | {100 * sparsity:.0f} % | {len(ok)} | {_stat(without)} | "
                f"{'-' if exact else ', '.join(map(str, epochs))} | "
                f"{'(same)' if exact else _stat(with_ft)} | "
                f"{'' if exact else _stat(d_without)} | {'' if exact else _stat(d_with)} | "
                f"{f'{energy[0]:.4f}' if energy else '-'} |")
            if failed:
                lines[-1] += f" ({failed} run(s) failed)"
    return "\n".join(lines).replace("-0.00", "0.00") + "\n"


def bench_time(repeats: int = 3) -> list[dict]:
    """Wall time of the default ``mars train`` (a fresh process each time), 1 and 2
    threads interleaved, `repeats` times each: the machines are shared and noisy."""
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for threads in times:
            out = OUT / f"pkg-threads{threads}"
            cmd = ["mars", "train", "--out", str(out), "--threads", str(threads),
                   "--no-progress"]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[threads].append(time.perf_counter() - start)
            print(f"mars train --threads {threads}: {times[threads][-1]:.1f} s", flush=True)
    return [{"command": f"mars train --threads {threads} --no-progress", "threads": threads,
             "wall_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
             "repeats": len(values)} for threads, values in times.items()]


def bench_size() -> list[dict]:
    """Package size and stored model bytes for the default package, sparsities 0..90 %."""
    rows = []
    config = PRESETS["default"]
    fmt = DecoderFormat(config)
    runs = [("group", "layer", s) for s in SPARSITIES] + \
        [("group", "block", s) for s in SPARSITIES[1:]] + [("unstructured", "layer", 0.75)]
    for structure, scope, sparsity in runs:
        out = OUT / f"pkg-{structure}-{scope}-{int(100 * sparsity)}"
        train(config, TrainOptions(sparsity=sparsity, structure=structure, scope=scope), out,
              progress=False, log=lambda s: None)
        package = load_package(out)
        folder = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        dense_int8 = bias = packed = index = steps = 0
        for node in package.manifest["nodes"]:
            if node["op"] not in ("conv", "linear"):
                continue
            n, k = node["weight"]["shape"]
            dense_int8 += n * k
            bias += 4 * n + (4 * n if "multiplier" in node else 0)   # bias + (M, S) words
            sparse = node["sparse"]
            packed += sparse["weights_image"]["words"] * config.cols // 8
            index += sum(img["words"] for img in sparse["index_images"]) * fmt.kgroup_bits / 8
            h, w, _ = node["out_shape"]
            steps += sparse["stored_slots"] * h * w        # compute steps of one image
        rows.append({"structure": structure, "scope": scope, "sparsity": sparsity,
                     "folder_bytes": folder, "compute_steps": steps,
                     "dense_int8_weight_bytes": dense_int8, "packed_weight_bytes": packed,
                     "index_bytes": index, "bias_requant_bytes": bias,
                     "integer_accuracy": package.accuracy})
        print(f"size {structure} {scope} {sparsity:.0%}: folder {folder} B, dense int8 "
              f"weights {dense_int8} B, packed {packed} B + index {index:.0f} B, "
              f"{steps} compute steps/image", flush=True)
    return rows


def _summary(rows: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["wb"], row["ab"], row["variant"], row["sparsity"])
        groups.setdefault(key, []).append(row)
    out = {}
    for key, items in groups.items():
        ints = [100 * r["integer"] for r in items]
        floats = [100 * r["float"] for r in items]
        out[key] = {"integer_mean": statistics.mean(ints), "integer_min": min(ints),
                    "integer_max": max(ints), "float_mean": statistics.mean(floats),
                    "agreement_min": min(r["agreement"] for r in items),
                    "group_sparsity": statistics.mean(r["group_sparsity"] for r in items),
                    "group_sparsity_all": statistics.mean(r["group_sparsity_all"]
                                                          for r in items),
                    "seconds_mean": statistics.mean(r["seconds"] for r in items),
                    "n": len(items)}
    return out


def markdown(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']} with "
             f"`python bench/train_accuracy.py --seeds {' '.join(map(str, results['seeds']))}"
             f"{' --jobs ' + str(results['jobs']) if results.get('jobs', 1) > 1 else ''}`.",
             ""]
    if results.get("accuracy"):
        summary = _summary(results["accuracy"])
        floats = sorted({round(100 * r["float"], 2) for r in results["accuracy"]})
        lines += [f"Float baseline (same float phase for every row of a seed): "
                  f"{', '.join(f'{f:.2f} %' for f in floats)} "
                  f"(mean {statistics.mean(100 * r['float'] for r in results['accuracy']):.2f} %).",
                  "",
                  "| Wb/Ab | target sparsity | "
                  + " | ".join(label for label, _ in VARIANTS)
                  + " | fake-quant = integer |",
                  "| --- | ---: | " + "---: | " * len(VARIANTS) + "---: |"]

        def cell(entry):
            if entry is None:
                return "-"
            return (f"{entry['integer_mean']:.2f} ({entry['integer_min']:.2f}.."
                    f"{entry['integer_max']:.2f})")
        for wb, ab in BITS:
            for s in SPARSITIES:
                entries = [summary.get((wb, ab, label, s)) for label, _ in VARIANTS]
                agree = min(e["agreement_min"] for e in entries if e is not None)
                lines.append(f"| {wb}/{ab} | {100 * s:.0f} % | "
                             + " | ".join(cell(e) for e in entries)
                             + f" | {'all' if agree == 1.0 else f'{100 * agree:.2f} %'} |")
        lines += ["", "Measured group sparsity (stored groups, mean over seeds), of the "
                  "prunable layers / of all layers:", "",
                  "| Wb/Ab | target | " + " | ".join(label for label, _ in VARIANTS) + " |",
                  "| --- | ---: |" + " ---: |" * len(VARIANTS)]
        for wb, ab in BITS:
            for s in SPARSITIES[1:]:
                entries = [summary.get((wb, ab, label, s)) for label, _ in VARIANTS]
                lines.append(f"| {wb}/{ab} | {100 * s:.0f} % | " + " | ".join(
                    f"{100 * e['group_sparsity']:.1f} / {100 * e['group_sparsity_all']:.1f}"
                    for e in entries) + " |")
        lines.append("")
    if results.get("time"):
        lines += ["| command | wall time, median (s) | min..max (s) | runs |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| `{r['command']}` | {r['wall_s']:.1f} | {r['min_s']:.1f}..{r['max_s']:.1f} "
                  f"| {r['repeats']} |" for r in results["time"]]
        lines.append("")
    if results.get("size"):
        lines += ["| pruning | scope | target | package folder (bytes) | dense int8 weights "
                  "(bytes) | packed weight image (bytes) | index memories (bytes) "
                  "| bias + M/S (bytes) | compute steps / image | integer acc. % |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['structure']} | {r['scope']} | {100 * r['sparsity']:.0f} % | "
                  f"{r['folder_bytes']} | {r['dense_int8_weight_bytes']} | "
                  f"{r['packed_weight_bytes']} | {r['index_bytes']:.0f} | "
                  f"{r['bias_requant_bytes']} | {r['compute_steps']} | "
                  f"{100 * r['integer_accuracy']:.2f} |" for r in results["size"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=["accuracy", "time", "size", "readout",
                                           "readout-energy"])
    parser.add_argument("--readouts", type=int, nargs="+",
                        help="--only readout: indices into READOUTS to run (default all)")
    parser.add_argument("--sparsities", type=float, nargs="+",
                        default=list(READOUT_SPARSITIES[:1]),
                        help="--only readout: group sparsities (default 0.5)")
    parser.add_argument("--finetune", type=int,
                        help="--only readout: readout-aware fine-tuning epochs (default: "
                             f"{ADC_FINETUNE} for the ADCs, the trainer's default for "
                             "binary/ternary)")
    parser.add_argument("--ste", choices=["plain", "clipped"], default="plain",
                        help="--only readout: the gradient through the readout")
    parser.add_argument("--tag", default="",
                        help="--only readout: suffix of the output files (readoutTAG.json)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="--only readout: a TrainOptions field (or config.FIELD) for "
                             "every run, VALUE as JSON (a sweep point)")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="--only readout: rerun the cached runs that failed")
    parser.add_argument("--jobs", type=int, default=1,
                        help="accuracy runs in parallel (each on one thread)")
    args = parser.parse_args(argv)
    results = {"date": datetime.date.today().isoformat(), "seeds": args.seeds,
               "jobs": args.jobs,
               "machine": f"{platform.machine()}, Python {platform.python_version()}"}
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only == "readout-energy":
        rows = bench_readout_energy(seed=args.seeds[0])
        (OUT / "readout_energy.json").write_text(json.dumps(rows, indent=2))
        text = energy_markdown(rows)
        (OUT / "readout_energy.md").write_text(text)
        print(text)
        return 0
    if args.only == "readout":
        command = "python bench/train_accuracy.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        extra = {}
        for item in args.set:
            field, _, value = item.partition("=")
            extra[field] = json.loads(value)
        rows = bench_readout(args.seeds, args.jobs, args.readouts, args.sparsities,
                             args.finetune, args.ste, args.tag, extra, args.rerun_failed)
        (OUT / f"readout{args.tag}.json").write_text(json.dumps(rows, indent=2))
        text = readout_markdown(rows, command)
        (OUT / f"readout{args.tag}.md").write_text(text)
        print(text)
        return 0
    if args.only in (None, "size"):
        results["size"] = bench_size()
    if args.only in (None, "accuracy"):
        results["accuracy"] = bench_accuracy(args.seeds, args.jobs)
    if args.only in (None, "time"):
        results["time"] = bench_time()
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    (OUT / "training.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
