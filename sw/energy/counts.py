"""Event counts of one inference, per layer, read off a `mars.sw.mapper.Mapping`.

Every count follows from the mapping's public structures: a walk (`Walk`) runs ``steps``
macro steps on each of its ``pixels`` output pixels, on one macro unit; a step switches on
G word lines in each of the D word-line domains and applies G activations, bit-serially
(Ab input bits), to all C columns; a load (`Load`) copies ``count`` macro rows from a
core's weight SRAM.  docs/energy.md ("Events") lists each count with its formula.

The counts are what the hardware does, not what would be ideal: a domain whose block keeps
fewer groups than the longest block of its set still steps (with zero inputs, a *filler*),
and all C columns are read whether or not their channels exist.
"""

from __future__ import annotations

import dataclasses

__all__ = ["LayerCounts", "EVENTS", "layer_counts", "network_counts"]

#: Event names, in report order.
EVENTS = (
    "macro_steps", "kept_domain_steps", "filler_domain_steps", "wordline_pulses",
    "cell_ops", "conversions", "bit_merges", "shift_adds", "accumulations", "act_reads",
    "index_reads",
    "outputs", "requants", "act_writes", "pool_reads", "result_writes",
    "weight_sram_reads", "macro_row_writes",
)


@dataclasses.dataclass
class LayerCounts:
    """Events of one conv/linear layer in one inference.

    Members (all integers)
    ----------------------
    macro_steps : compute steps summed over the macro units (one step: D domains at once)
    kept_domain_steps, filler_domain_steps : domain steps on a kept group / on a filler
    wordline_pulses : word lines switched on, times input bits (steps * D * G * Ab)
    cell_ops : active cells times input bits (steps * G * C * Ab)
    conversions : column readouts (steps * C * Ab), each of ``readout_bits`` bits
    bit_merges : adds of a channel's Wb weight-bit readouts of one input bit, each
        readout_bits + Wb wide (steps * C/Wb * Ab * (Wb-1))
    shift_adds : psum_bits-wide shift-adds of a channel's Ab input-bit sums
        (steps * C/Wb * (Ab-1))
    accumulations : acc_bits-wide adds of a step into its channel (steps * C/Wb)
    act_reads : Ab-bit activation buffer reads of the gather (steps * D * G)
    index_reads : decoder index-memory reads (steps * D)
    outputs : channel results (pixels * valid channels): bias add, then requantise or raw
    requants : requantisations (outputs of every layer but the last)
    act_writes, pool_reads : activation buffer writes; reads of the fused max pool's
        read-modify-write (every pixel of a window but its first)
    result_writes : acc_bits-wide result memory writes (the last layer)
    weight_sram_reads, macro_row_writes : C-bit rows copied by the loaders
    macs_dense : the unpruned layer's multiply-accumulates (pixels * K * Cout)
    macs_effective : multiply-accumulates inside kept groups (pixels * kept weights'
        positions, padding past K and Cout excluded)
    """

    macro_steps: int = 0
    kept_domain_steps: int = 0
    filler_domain_steps: int = 0
    wordline_pulses: int = 0
    cell_ops: int = 0
    conversions: int = 0
    bit_merges: int = 0
    shift_adds: int = 0
    accumulations: int = 0
    act_reads: int = 0
    index_reads: int = 0
    outputs: int = 0
    requants: int = 0
    act_writes: int = 0
    pool_reads: int = 0
    result_writes: int = 0
    weight_sram_reads: int = 0
    macro_row_writes: int = 0
    macs_dense: int = 0
    macs_effective: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _macs(plan) -> tuple[int, int]:
    """(dense, effective) MACs of a layer: pixels x K x Cout, and pixels x the positions
    of its kept groups (each group: its valid channels x its valid K rows)."""
    g = plan.node.geometry
    cfg = plan.packed.config
    G, cpg = cfg.rows_per_step, cfg.channels_per_group
    pixels = g.out_h * g.out_w
    kept = 0
    for cb, code in enumerate(plan.packed.index_codes):
        channels = min(cpg, g.cout - cb * cpg)
        for kg in code:
            kept += channels * min(G, g.k - int(kg) * G)
    return pixels * g.k * g.cout, pixels * kept


def layer_counts(mapping, layer: int, *, loads: bool = True) -> LayerCounts:
    """Events of layer `layer` (an index into ``mapping.layers``) in one inference.

    `loads`: count the weight loads of the layer's phases (False: the weights are
    resident and stay loaded, the steady state of a resident mapping).  With a resident
    mapping every load sits in the first phase and is counted for the first layer.
    """
    cfg = mapping.config
    G, D, C = cfg.rows_per_step, cfg.wordline_domains, cfg.cols
    Ab, Wb = cfg.act_bits, cfg.weight_bits
    N = cfg.channels_per_macro
    last = layer == len(mapping.layers) - 1
    out = LayerCounts()
    for phase in mapping.phases:
        if phase.layer != layer:
            continue
        if loads:
            rows = sum(ld.count for ld in phase.loads)
            out.weight_sram_reads += rows
            out.macro_row_writes += rows
        for walk in phase.walks:
            steps = walk.steps * walk.pixels
            kept = sum(walk.word["count"]) * walk.pixels
            out.macro_steps += steps
            out.kept_domain_steps += kept
            out.filler_domain_steps += steps * D - kept
            pool_k = walk.word["pool_k"]
            results = walk.pixels * walk.n_valid
            written = walk.word["pool_h"] * walk.word["pool_w"] * pool_k ** 2 * walk.n_valid
            out.outputs += results
            if last:
                out.result_writes += written
            else:
                out.requants += results
                out.act_writes += written
                out.pool_reads += written - walk.word["pool_h"] * walk.word["pool_w"] \
                    * walk.n_valid
    s = out.macro_steps
    out.wordline_pulses = s * D * G * Ab
    out.cell_ops = s * G * C * Ab
    out.conversions = s * C * Ab
    out.bit_merges = s * N * Ab * (Wb - 1)
    out.shift_adds = s * N * (Ab - 1)
    out.accumulations = s * N
    out.act_reads = s * D * G
    out.index_reads = s * D
    out.macs_dense, out.macs_effective = _macs(mapping.layers[layer])
    return out


def network_counts(mapping, *, steady: bool = True) -> list[LayerCounts]:
    """`layer_counts` of every layer.  `steady`: the steady state, where a resident
    mapping's weights stay loaded (no loads); otherwise the first inference."""
    loads = not (steady and mapping.resident)
    return [layer_counts(mapping, i, loads=loads) for i in range(len(mapping.layers))]
