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

from mars.config import ReadoutMode

__all__ = ["LayerCounts", "EVENTS", "layer_counts", "network_counts"]

#: Event names, in report order.
EVENTS = (
    "macro_steps", "kept_domain_steps", "filler_domain_steps", "wordline_pulses",
    "cell_ops", "conversions", "comparisons", "bit_merges", "shift_adds", "scaled_adds",
    "accumulations", "act_reads",
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
    conversions : ADC column readouts (steps * C * Ab), each of ``readout_bits`` bits
        (exact and saturating readouts; 0 for binary/ternary)
    comparisons : comparator decisions of the ADC-less readouts (binary: one per column
        and input bit, steps * C * Ab; ternary: two, 2 * steps * C * Ab; else 0)
    bit_merges : adds of a channel's Wb weight-bit readouts of one input bit, each
        readout_bits + Wb wide (steps * C/Wb * Ab * (Wb-1); ADC readouts only)
    shift_adds : psum_bits-wide shift-adds of a channel's Ab input-bit sums
        (steps * C/Wb * (Ab-1); ADC readouts only)
    scaled_adds : binary/ternary readouts: comparator outputs that are not zero, each a
        digital scale-multiply-add (q times the column's scale factor, into the step's
        partial sum); zero outputs cost nothing.  Data dependent: the mean over the
        inputs `comparator_activity` ran (0 when none was measured)
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
    comparisons: int = 0
    bit_merges: int = 0
    shift_adds: int = 0
    scaled_adds: float = 0.0
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


def macro_events(steps: int, G: int, C: int, Ab: int, D: int = 1) -> dict[str, int]:
    """The array and readout events of `steps` compute steps of one macro geometry: G word
    lines on in each of D word-line domains (each domain's own C/D columns), C columns
    read, Ab input bits applied bit-serially.  Returns ``wordline_pulses`` (steps*D*G*Ab),
    ``cell_ops`` (active cell x input bit, steps*G*C*Ab) and ``conversions`` (one column
    readout per column and input bit, steps*C*Ab)."""
    return {"wordline_pulses": steps * D * G * Ab, "cell_ops": steps * G * C * Ab,
            "conversions": steps * C * Ab}


def layer_counts(mapping, layer: int, *, loads: bool = True,
                 nonzero: float = 0.0) -> LayerCounts:
    """Events of layer `layer` (an index into ``mapping.layers``) in one inference.

    `loads`: count the weight loads of the layer's phases (False: the weights are
    resident and stay loaded, the steady state of a resident mapping).  With a resident
    mapping every load sits in the first phase and is counted for the first layer.
    `nonzero`: binary/ternary readouts, the layer's non-zero comparator outputs per
    inference (`comparator_activity`); each is one scale-multiply-add.
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
    for name, value in macro_events(s, G, C, Ab, D).items():
        setattr(out, name, value)
    if cfg.scaled_readout:
        # ADC-less (HCiM): a comparator per column and input bit (two for ternary), and a
        # digital scale-multiply-add per non-zero output; zeros are gated off.
        comparators = 2 if cfg.readout_mode is ReadoutMode.TERNARY else 1
        out.comparisons = out.conversions * comparators
        out.conversions = 0
        out.scaled_adds = float(nonzero)
    else:
        out.bit_merges = s * N * Ab * (Wb - 1)
        out.shift_adds = s * N * (Ab - 1)
    out.accumulations = s * N
    out.act_reads = s * D * G
    out.index_reads = s * D
    out.macs_dense, out.macs_effective = _macs(mapping.layers[layer])
    return out


def network_counts(mapping, *, steady: bool = True,
                   activity: dict[str, float] | None = None) -> list[LayerCounts]:
    """`layer_counts` of every layer.  `steady`: the steady state, where a resident
    mapping's weights stay loaded (no loads); otherwise the first inference.
    `activity`: non-zero comparator outputs per inference by layer name
    (`comparator_activity`; binary/ternary readouts)."""
    loads = not (steady and mapping.resident)
    activity = activity or {}
    return [layer_counts(mapping, i, loads=loads, nonzero=activity.get(plan.name, 0.0))
            for i, plan in enumerate(mapping.layers)]


def comparator_activity(network, inputs, threshold: int | None = None) -> dict[str, float]:
    """Non-zero comparator outputs per inference of each layer of a binary/ternary network.

    Runs the accelerator's golden model (`mars.sw.golden.accel.accelerator_product`) on
    `inputs` (B, H, W, C) and counts, per layer, the column popcounts p with
    ``p >= readout_threshold`` over every pixel, K-group, input bit, weight-bit column and
    channel, divided by B.  Pruned groups and filler steps hold zero weights or inputs,
    their popcounts are 0 and count nothing, like the padding columns past Cout.

    `threshold`: count ``p >= threshold`` instead of the configuration's
    ``readout_threshold``; with it an ADC-readout network can be asked what a comparator
    readout would see on its own activations (the layers still run with the network's
    own readout).

    Returns
    -------
    dict
        Layer name -> mean count (float); empty for exact and saturating readouts unless
        `threshold` is given.

    Raises
    ------
    ValueError
        If `inputs` do not fit the network (shape, range).
    """
    import numpy as np

    from mars.sw.golden.accel import accelerator_product
    from mars.sw.golden.network import run_network

    cfg = network.config
    if not cfg.scaled_readout and threshold is None:
        return {}
    G, Ab, Wb = cfg.rows_per_step, cfg.act_bits, cfg.weight_bits
    T = cfg.readout_threshold if threshold is None else threshold
    counts: dict[str, int] = {}

    def counting_product(patches, weight, layer, config):
        x = np.asarray(patches, dtype=np.int64).reshape(-1, patches.shape[-1])
        w = np.asarray(weight, dtype=np.int64)
        n, k = w.shape
        kg = -(-k // G)
        x = np.pad(x, [(0, 0), (0, kg * G - k)])
        w = np.pad(w, [(0, 0), (0, kg * G - k)])
        w_bits = ((w[None] >> np.arange(Wb)[:, None, None]) & 1)           # (Wb, N, KG*G)
        w_bits = w_bits.reshape(Wb * n, kg, G).transpose(1, 2, 0).astype(np.float64)
        total = 0
        for start in range(0, x.shape[0], 2048):
            xc = x[start:start + 2048]
            x_bits = (xc[None] >> np.arange(Ab)[:, None, None]) & 1         # (Ab, m, KG*G)
            x_bits = x_bits.reshape(-1, kg, G).transpose(1, 0, 2).astype(np.float64)
            p = np.rint(np.matmul(x_bits, w_bits))                          # popcounts
            total += int(np.count_nonzero(p >= T))
        counts[layer.name] = counts.get(layer.name, 0) + total
        return accelerator_product(config)(patches, weight, layer, config)

    x = np.asarray(inputs)
    run_network(network, x, product=counting_product)
    batch = max(len(x), 1)
    return {name: value / batch for name, value in counts.items()}
