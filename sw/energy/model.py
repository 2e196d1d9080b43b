"""Energy, area and throughput of a mapped network: event counts times per-event energies.

`estimate(mapping, tech)` returns a JSON-ready dict (docs/energy.md, "Report"): frames per
second, latency, energy per inference, TOPS and TOPS/W (one MAC = 2 operations; *dense*
counts the unpruned network's MACs, *effective* only those inside kept groups), per layer
and per component, and the area of every block.  Cycles come from the cycle model
(`mars.sw.golden.cycles`), in the steady state (resident weights stay loaded).
"""

from __future__ import annotations

from mars.config import ReadoutMode
from mars.contract.decoder import DecoderFormat
from mars.errors import MarsError
from mars.sw.golden.cycles import ideal_cycles, layer_walk_cycles, network_cycles

from .counts import LayerCounts, comparator_activity, network_counts
from .tech import DEFAULT_TECH, Technology

__all__ = ["EstimateError", "COMPONENTS", "CONVENTION", "component_energy", "static_power_uw",
           "area_um2", "estimate", "estimate_network"]

#: Energy components, in report order.
COMPONENTS = ("macro array", "readout", "shift-add", "accumulate", "requantise",
              "activation buffer", "decoder", "weight load", "static")

CONVENTION = ("one MAC = 2 operations; dense operations: every MAC of the unpruned network "
              "(pixels x K x Cout per layer); effective operations: the MACs inside kept "
              "groups only")


class EstimateError(MarsError, ValueError):
    """An estimate that cannot be made (a clock that is not positive, ...)."""


def decoder_step_pj(cfg, tech: Technology) -> float:
    """One decoder step of one domain (pJ): an index-memory read (a K-group number, one
    entry per weight-SRAM row slot), a k-table read (one entry per K-group of the largest
    layer) and G address adds; widths and depths are the decoder's own
    (`mars.contract.decoder.DecoderFormat`, docs/decoder.md)."""
    fmt = DecoderFormat(cfg)
    return (tech.sram_pj(fmt.kgroup_bits, fmt.index_depth * fmt.kgroup_bits)
            + tech.sram_pj(fmt.ktable_bits, fmt.max_kgroups * fmt.ktable_bits)
            + cfg.rows_per_step * tech.add_pj(fmt.addr_bits))


def scaled_add_pj(cfg, tech: Technology) -> float:
    """One non-zero comparator output of a binary/ternary readout (pJ): q (1 bit binary,
    2 bits ternary: sign and magnitude) times the column's ``scale_bits`` scale factor,
    added into the step's ``psum_bits`` partial sum."""
    q_bits = 2 if cfg.readout_mode is ReadoutMode.TERNARY else 1
    return tech.mult_pj(q_bits, cfg.scale_bits) + tech.add_pj(cfg.psum_bits)


def component_energy(counts: LayerCounts, cfg, tech: Technology) -> dict[str, float]:
    """Dynamic energy (pJ) of each component for one layer's counts (no static part)."""
    Ab, C, R = cfg.act_bits, cfg.cols, cfg.rows
    bank_bits = cfg.act_buffer_words * Ab
    act_word = tech.sram_pj(Ab, bank_bits)
    acc_add = tech.add_pj(cfg.acc_bits)
    return {
        "macro array": (counts.cell_ops * tech.cim_cell_fj
                        + counts.wordline_pulses * tech.cim_wordline_fj) / 1000.0,
        "readout": (counts.conversions * tech.readout_pj(cfg.readout_bits)
                    + counts.comparisons * tech.comparator_pj()),
        "shift-add": (counts.bit_merges * tech.add_pj(cfg.readout_bits + cfg.weight_bits)
                      + counts.shift_adds * tech.add_pj(cfg.psum_bits)
                      + counts.scaled_adds * scaled_add_pj(cfg, tech)),
        # A step's partial sum into its channel, and the bias of every result.
        "accumulate": (counts.accumulations + counts.outputs) * acc_add,
        # acc * M, then the rounding add before the shift.
        "requantise": counts.requants * (tech.mult_pj(cfg.acc_bits, cfg.requant_mult_bits)
                                         + acc_add),
        "activation buffer": ((counts.act_reads + counts.act_writes + counts.pool_reads)
                              * act_word + counts.pool_reads * tech.add_pj(Ab)
                              + counts.result_writes
                              * tech.sram_pj(cfg.acc_bits, cfg.result_words * cfg.acc_bits)),
        "decoder": counts.index_reads * decoder_step_pj(cfg, tech),
        "weight load": (counts.weight_sram_reads * tech.sram_pj(C, cfg.weight_sram_rows * C)
                        + counts.macro_row_writes * tech.sram_pj(C, R * C)),
    }


def _storage_bits(cfg) -> dict[str, int]:
    return {
        "CIM macros": cfg.macros * cfg.rows * cfg.cols,
        "weight SRAMs": cfg.cores * cfg.weight_sram_rows * cfg.cols,
        "activation buffers": cfg.act_regions * cfg.act_buffer_words * cfg.act_bits,
        "result memory": cfg.result_words * cfg.acc_bits,
    }


def static_power_uw(cfg, tech: Technology) -> float:
    """Leakage of the whole accelerator (uW): every storage cell plus each unit's logic."""
    bits = sum(_storage_bits(cfg).values())
    return bits * tech.sram_leak_pw_per_bit / 1e6 + cfg.macros * tech.logic_leak_uw_per_unit


def area_um2(cfg, tech: Technology) -> dict[str, float]:
    """Area of each block of the accelerator (um^2): memories from their bits, the CIM
    macros with their readouts from the CIM array efficiency, and each unit's datapath
    (accumulators, shift-adders, requantisation multipliers, decoder address adders)."""
    bits = _storage_bits(cfg)
    N, D = cfg.channels_per_macro, cfg.wordline_domains
    lanes = min(N, -(-N // cfg.cycles_per_step))          # the writer's channels a cycle
    addr = DecoderFormat(cfg).addr_bits
    unit = (N * (cfg.acc_bits + cfg.psum_bits) * tech.add_um2_per_bit
            + lanes * cfg.acc_bits * cfg.requant_mult_bits * tech.mult_um2_per_bit2
            + D * cfg.rows_per_step * addr * tech.add_um2_per_bit)
    return {
        "CIM macros": bits["CIM macros"] * tech.cell_um2 / tech.cim_array_efficiency,
        "weight SRAMs": tech.sram_um2(bits["weight SRAMs"]),
        "activation buffers": tech.sram_um2(bits["activation buffers"]),
        "result memory": tech.sram_um2(bits["result memory"]),
        "unit datapaths": cfg.macros * unit,
    }


def _ops_figures(ops: float, seconds: float, energy_pj: float) -> tuple[float, float]:
    """(TOPS, TOPS/W) of `ops` operations in `seconds` using `energy_pj`."""
    tops = ops / seconds / 1e12 if seconds else 0.0
    tops_w = ops / (energy_pj * 1e-12) / 1e12 if energy_pj else 0.0
    return tops, tops_w


def estimate(mapping, tech: Technology | None = None, *, clock_mhz: float | None = None,
             dense_mapping=None, activity: dict[str, float] | None = None,
             activity_note: str | None = None) -> dict:
    """Throughput, energy and area of one inference of `mapping` in the steady state.

    Parameters
    ----------
    mapping : mars.sw.mapper.Mapping
    tech : Technology, optional
        Per-event energies and areas (default: the 28 nm defaults).
    clock_mhz : float, optional
        Clock (MHz); default ``tech.clock_mhz``.
    dense_mapping : Mapping, optional
        The same network with every group stored; its cycles and energy are added
        (``dense``) to show what sparsity saves.
    activity : dict, optional
        Binary/ternary readouts: non-zero comparator outputs per inference by layer name
        (`comparator_activity`); each costs a scale-multiply-add, zeros cost nothing.
        Missing layers count none.  The dense network gets the same figures (pruned
        groups have no popcount that could fire).
    activity_note : str, optional
        Where the activity came from, for the report (``activity``).

    Returns
    -------
    dict
        JSON-ready; energies in pJ (``energy_pj``) and uJ, times in us, areas in um^2 and
        mm^2.  Keys: docs/energy.md, "Report".

    Raises
    ------
    EstimateError
        If the clock is not a positive number.
    """
    tech = tech or DEFAULT_TECH
    clock = tech.clock_mhz if clock_mhz is None else clock_mhz
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
        raise EstimateError(f"--clock must be a positive number of MHz, not {clock!r}")
    cfg = mapping.config
    steady = network_cycles(mapping, skip_loads=mapping.resident)
    # Without resident weights every inference loads them: the first is the steady one.
    first = network_cycles(mapping) if mapping.resident else steady
    walk = layer_walk_cycles(mapping, steady)
    ideal = ideal_cycles(mapping)
    counts = network_counts(mapping, steady=True, activity=activity)
    first_counts = network_counts(mapping, steady=False, activity=activity)
    static_uw = static_power_uw(cfg, tech)
    period_s = 1e-6 / clock

    layers, totals = [], dict.fromkeys(COMPONENTS, 0.0)
    dense_ops = effective_ops = 0
    for i, plan in enumerate(mapping.layers):
        cycles = sum(p.cycles for p in steady if p.layer == i)
        energy = component_energy(counts[i], cfg, tech)
        energy["static"] = static_uw * 1e-6 * cycles * period_s * 1e12
        for key, value in energy.items():
            totals[key] += value
        dense_ops += 2 * counts[i].macs_dense
        effective_ops += 2 * counts[i].macs_effective
        layers.append({
            "name": plan.name, "group_sparsity": plan.packed.sparsity,
            "cycles": cycles, "walk_cycles": walk[i], "ideal_cycles": ideal[i],
            "utilisation": ideal[i] / walk[i] if walk[i] else 0.0,
            "macs_dense": counts[i].macs_dense, "macs_effective": counts[i].macs_effective,
            "energy_pj": sum(energy.values()), "components_pj": energy,
            "events": counts[i].to_dict(),
        })
    cycles = sum(p.cycles for p in steady)
    seconds = cycles * period_s
    energy_pj = sum(totals.values())
    tops_d, tops_w_d = _ops_figures(dense_ops, seconds, energy_pj)
    tops_e, tops_w_e = _ops_figures(effective_ops, seconds, energy_pj)
    first_cycles = sum(p.cycles for p in first)
    first_load_pj = sum(component_energy(c, cfg, tech)["weight load"] for c in first_counts)
    area = area_um2(cfg, tech)
    report = {
        "config": cfg.name, "config_hash": cfg.content_hash, "technology": tech.name,
        "node_nm": tech.node_nm, "clock_mhz": float(clock), "convention": CONVENTION,
        "weights_resident": mapping.resident,
        "readout": (f"{cfg.readout_mode.value}, comparator threshold "
                    f"{cfg.readout_threshold}" if cfg.scaled_readout
                    else f"{cfg.readout_mode.value} {cfg.readout_bits}-bit"),
        "cycles_per_inference": cycles, "latency_us": seconds * 1e6,
        "fps": 1.0 / seconds if seconds else 0.0,
        "energy_pj": energy_pj, "energy_per_inference_uj": energy_pj * 1e-6,
        "power_mw": energy_pj * 1e-12 / seconds * 1e3 if seconds else 0.0,
        "static_power_uw": static_uw,
        "dense_ops": dense_ops, "effective_ops": effective_ops,
        "tops_dense": tops_d, "tops_effective": tops_e,
        "tops_per_w_dense": tops_w_d, "tops_per_w_effective": tops_w_e,
        "components_pj": totals,
        "first_inference": {"cycles": first_cycles, "weight_load_pj": first_load_pj},
        "area_um2": area, "area_mm2": sum(area.values()) / 1e6,
        "layers": layers,
    }
    if cfg.scaled_readout:
        report["activity"] = {
            "source": activity_note or ("none measured: scale-multiply-adds not counted"
                                        if not activity else "given"),
            "nonzero_per_inference": sum(c.scaled_adds for c in counts),
            "comparisons_per_inference": sum(c.comparisons for c in counts),
        }
    if dense_mapping is not None:
        dense = estimate(dense_mapping, tech, clock_mhz=clock, activity=activity)
        report["dense"] = {
            "cycles_per_inference": dense["cycles_per_inference"],
            "energy_pj": dense["energy_pj"], "fps": dense["fps"],
            "cycle_ratio": dense["cycles_per_inference"] / cycles if cycles else 0.0,
            "energy_ratio": dense["energy_pj"] / energy_pj if energy_pj else 0.0,
        }
    return report


def estimate_network(network, tech: Technology | None = None, *,
                     clock_mhz: float | None = None, with_dense: bool = True,
                     inputs=None) -> dict:
    """`estimate` of an `IntegerNetwork`: maps it (and, `with_dense`, its densified copy).

    `inputs` (B, H, W, C), binary/ternary readouts only: the images whose non-zero
    comparator outputs are counted (`comparator_activity`); ignored for ADC readouts.
    """
    from mars.sw.mapper import MappingError, map_network
    from mars.sw.run import densified

    mapping, dense, why = map_network(network), None, None
    if with_dense:
        try:
            dense = map_network(densified(network))
        except MappingError as error:      # the unpruned network may not fit at all
            why = str(error)
    activity, note = None, None
    if network.config.scaled_readout and inputs is not None and len(inputs):
        activity = comparator_activity(network, inputs)
        note = f"measured on {len(inputs)} input(s)"
    report = estimate(mapping, tech, clock_mhz=clock_mhz, dense_mapping=dense,
                      activity=activity, activity_note=note)
    if why is not None:
        report["dense"] = {"error": why}
    return report
