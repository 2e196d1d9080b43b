"""Readable tables and plots of an estimate (`mars.sw.energy.estimate`)."""

from __future__ import annotations

from pathlib import Path

from .model import COMPONENTS

__all__ = ["format_estimate", "summary_lines", "plot_estimate"]


def summary_lines(est: dict, indent: str = "  ") -> list[str]:
    """The headline figures, one per line (also used by the flow report)."""
    w = 26
    lines = [
        f"{indent}{'clock / technology':<{w}}: {est['clock_mhz']:.0f} MHz, {est['technology']}",
        f"{indent}{'latency / throughput':<{w}}: {est['latency_us']:.2f} us, "
        f"{est['fps']:.0f} frames/s",
        f"{indent}{'energy per inference':<{w}}: {est['energy_per_inference_uj']:.4f} uJ "
        f"({est['power_mw']:.2f} mW average)",
        f"{indent}{'TOPS (dense / effective)':<{w}}: {est['tops_dense']:.4f} / "
        f"{est['tops_effective']:.4f}",
        f"{indent}{'TOPS/W (dense / effective)':<{w}}: {est['tops_per_w_dense']:.1f} / "
        f"{est['tops_per_w_effective']:.1f}",
    ]
    dense = est.get("dense")
    if dense and "error" not in dense:
        lines.append(f"{indent}{'sparsity saves':<{w}}: {dense['cycle_ratio']:.2f}x cycles, "
                     f"{dense['energy_ratio']:.2f}x energy (dense "
                     f"{dense['energy_pj'] / 1e6:.4f} uJ)")
    return lines


def format_estimate(est: dict) -> str:
    """The estimate as text: summary, components, layers, area."""
    total = est["energy_pj"] or 1.0
    lines = [f"MARS estimate: {est['config']} configuration ({est['config_hash'][:12]}), "
             f"{len(est['layers'])} layers", *summary_lines(est),
             f"  area                      : {est['area_mm2']:.3f} mm^2 "
             f"({est['node_nm']:.0f} nm)",
             f"  readout                   : {est.get('readout', '?')}"
             + (f" ({est['activity']['comparisons_per_inference']} comparator decisions, "
                f"{est['activity']['nonzero_per_inference']:.0f} non-zero outputs per "
                f"inference: {est['activity']['source']})" if "activity" in est else ""),
             f"  convention                : {est['convention']}", "",
             f"  {'component':<18} {'energy pJ':>12} {'share':>6}"]
    for name in COMPONENTS:
        value = est["components_pj"][name]
        lines.append(f"  {name:<18} {value:>12.1f} {100 * value / total:>5.1f}%")
    lines += ["", f"  {'layer':<10} {'sparsity':>8} {'cycles':>8} {'util':>5} {'MACs dense':>11} "
                  f"{'effective':>10} {'energy pJ':>11} {'TOPS/W eff':>10}"]
    for layer in est["layers"]:
        e = layer["energy_pj"]
        tw = 2 * layer["macs_effective"] / e if e else 0.0   # ops/pJ == TOPS/W
        lines.append(f"  {layer['name']:<10} {100 * layer['group_sparsity']:>7.0f}% "
                     f"{layer['cycles']:>8} {100 * layer['utilisation']:>4.0f}% "
                     f"{layer['macs_dense']:>11} {layer['macs_effective']:>10} "
                     f"{e:>11.1f} {tw:>10.1f}")
    lines += ["", f"  {'block':<20} {'area um^2':>12}"]
    for name, value in est["area_um2"].items():
        lines.append(f"  {name:<20} {value:>12.0f}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_estimate(est: dict, out: Path) -> list[Path]:
    """Energy per component and cycles/utilisation per layer, as PNG and SVG in `out`.

    Returns the written paths.
    """
    plt = _pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    # Energy per component, stacked per layer.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [layer["name"] for layer in est["layers"]]
    bottom = [0.0] * len(names)
    for component in COMPONENTS:
        values = [layer["components_pj"][component] for layer in est["layers"]]
        if not any(values):
            continue
        ax.bar(names, values, bottom=bottom, label=component)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("energy per inference (pJ)")
    ax.set_title(f"Energy per layer and component: {est['config']}, {est['technology']}, "
                 f"{est['clock_mhz']:.0f} MHz\n{est['energy_per_inference_uj']:.3f} uJ, "
                 f"{est['tops_per_w_effective']:.1f} TOPS/W effective", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    written += _save(fig, out / "energy_components", plt)

    # Cycles (walk and ideal) and utilisation per layer.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [layer["cycles"] for layer in est["layers"]], width=0.4,
           label="cycles (steady state)")
    ax.bar([i + 0.2 for i in x], [layer["ideal_cycles"] for layer in est["layers"]],
           width=0.4, label="ideal bound")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("cycles per inference")
    ax2 = ax.twinx()
    ax2.plot(list(x), [100 * layer["utilisation"] for layer in est["layers"]], "ko-",
             label="utilisation (WALK)")
    ax2.set_ylabel("utilisation (%)")
    ax2.set_ylim(0, 105)
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=8,
              loc="upper right")
    ax.set_title(f"Cycles and utilisation per layer: {est['config']}, "
                 f"{est['cycles_per_inference']} cycles per inference", fontsize=10)
    fig.tight_layout()
    written += _save(fig, out / "cycles_utilisation", plt)
    return written


def _save(fig, stem: Path, plt) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
