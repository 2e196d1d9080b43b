"""Sparse-weight decoder figures behind docs/decoder.md: throughput and synthesis.

    python bench/decoder.py [--presets tiny default ...] [--synth]

(1) Runs the decoder's cocotb testbench (tb/decoder_tb.py) on Verilator and Icarus for
each preset and reports the measured throughput (payloads = kept groups per cycle, with a
consumer that never stalls, at several group sparsities), the payloads compared with the
golden model and the simulation speed.  (2) With ``--synth``, runs the synthesis flow
(`mars.sw.synth.run_synth`, the flow of ``mars synth --config P``, restricted to this
block) into build/synth/<preset>-decoder/ and reports the ``sparse_decoder`` resources.
Writes build/bench/decoder.json and build/bench/decoder.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys

from mars.config import PRESETS
from mars.tb.sim import REPO_ROOT, SIMULATORS, run_testbench

OUT = REPO_ROOT / "build" / "bench"


def bench_sim(presets: list[str]) -> list[dict]:
    rows = []
    for name in presets:
        for sim in SIMULATORS:
            stats = run_testbench("sparse_decoder", PRESETS[name], sim, "mars.tb.decoder_tb",
                                  env={"MARS_SEED": "1"})
            random, throughput = stats["random"], stats["throughput"]
            rows.append({"preset": name, "simulator": sim, **random,
                         "throughput": throughput["walks"]})
            rates = ", ".join(f"{w['groups_per_cycle']:.3f}" for w in throughput["walks"])
            print(f"sim {name}/{sim}: {random['payloads_compared']} payloads compared, "
                  f"{random['mismatches']} mismatches; groups/cycle {rates}", flush=True)
    return rows


def bench_synth(presets: list[str]) -> list[dict]:
    from mars.sw import synth

    rows = []
    for name in presets:
        # The decoder alone (the Yosys script and the counting of `mars synth`).
        report_path = synth.run_synth(
            PRESETS[name], REPO_ROOT / "build" / "synth" / f"{name}-decoder",
            progress=print, blocks=["sparse_decoder"])
        report = json.loads(report_path.read_text())
        for family, result in report["blocks"]["sparse_decoder"].items():
            rows.append({"preset": name, "config_hash": report["config_hash"][:12],
                         "family": family, "yosys": report["yosys"],
                         **{k: result[k] for k in ("luts", "lut4", "carry", "ff", "bram",
                                                   "bram_bits", "lutram", "dsp",
                                                   "storage_bits", "seconds")}})
    return rows


def markdown(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']} with "
             f"`python bench/decoder.py{' --synth' if results.get('synth') else ''}`.", ""]
    if results.get("sim"):
        lines += ["| preset | simulator | payloads compared | mismatches | groups/cycle at "
                  "each sparsity (no stalls) | cycles/s |",
                  "| --- | --- | ---: | ---: | --- | ---: |"]
        for r in results["sim"]:
            rates = ", ".join(f"{100 * w['group_sparsity']:.0f} %: {w['payloads']}/"
                              f"{w['cycles']} = {w['groups_per_cycle']:.3f}"
                              for w in r["throughput"])
            lines.append(f"| {r['preset']} | {r['simulator']} | {r['payloads_compared']} | "
                         f"{r['mismatches']} | {rates} | {r['cycles_per_s']:.0f} |")
        lines.append("")
    if results.get("synth"):
        lines += ["| preset | config hash | family | LUT4 eq. (LUT4 + carry) | FF | BRAM "
                  "(capacity, bits) | storage bits | DSP | Yosys s |",
                  "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: |"]
        for r in results["synth"]:
            lines.append(f"| {r['preset']} | {r['config_hash']} | {r['family']} | {r['luts']} "
                         f"({r['lut4']} + {r['carry']}) | {r['ff']} | {r['bram']} "
                         f"({r['bram_bits']}) | {r['storage_bits']} | {r['dsp']} | "
                         f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "default", "adc3", "wide8"],
                        choices=sorted(PRESETS), help="presets to measure")
    parser.add_argument("--synth", action="store_true",
                        help="also run the synthesis flow and report the decoder's resources")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulations")
    args = parser.parse_args(argv)
    results = {"date": datetime.date.today().isoformat(),
               "machine": f"{platform.machine()}, Python {platform.python_version()}"}
    if not args.no_sim:
        results["sim"] = bench_sim(args.presets)
    if args.synth:
        results["synth"] = bench_synth(args.presets)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decoder.json").write_text(json.dumps(results, indent=2))
    (OUT / "decoder.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
