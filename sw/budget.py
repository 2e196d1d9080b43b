"""Block-RAM budget: every memory of the generated RTL, its shape, and whether a
configuration fits a part before synthesis is tried.

Each memory is described by a `MemoryShape` (copies, depth, width and how Yosys maps it,
all from the configuration); `bram_per_copy` counts the block-RAM primitives one copy
takes in the cheapest mode of the family's primitive (ECP5 DP16KD: 16Kx1, 8Kx2, 4Kx4,
2Kx9, 1Kx18, 512x36; iCE40 SB_RAM40_4K: 256x16, 512x8, 1Kx4, 2Kx2), which is what Yosys's
``memory_libmap`` picks for these shapes.  `check_fit` raises `FitError` (one line naming
the configuration fields to change and values that would fit) when the blocks about to be
synthesised cannot fit the part.  docs/synthesis.md ("Block-RAM budget") has the table for
the presets and the comparison with Yosys.

The activation and result memories are described as hw/top.py builds them now
(`top_buffer_shapes`); the banking of issue 9 part 1 replaces that one function.
"""

from __future__ import annotations

import dataclasses

from mars.config import ConfigError, MarsConfig
from mars.contract.decoder import DecoderFormat
from mars.contract.program import CONTROL_WORD_BITS, UnitFormat, load_layout
from mars.errors import MarsError

__all__ = ["FitError", "MemoryShape", "PART_LIMITS", "MODES", "bram_per_copy",
           "memory_shapes", "top_buffer_shapes", "estimate", "check_fit", "budget_table"]


class FitError(MarsError, ValueError):
    """The configuration's memories cannot fit the part; names the fields to change."""


#: (depth, width) modes of each family's block-RAM primitive.
MODES: dict[str, tuple[tuple[int, int], ...]] = {
    "ecp5": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
}

#: What the target part of each family has (`mars.sw.pnr.PARTS`): block RAMs, LUT4s and
#: flip-flops (datasheet figures: LFE5U-85F, iCE40UP5K).
PART_LIMITS: dict[str, dict[str, int]] = {
    "ecp5": {"bram": 208, "luts": 83640, "ff": 83640},
    "ice40": {"bram": 30, "luts": 5280, "ff": 5280},
}

#: Yosys (``memory_libmap``) puts a memory without ``ram_style`` into ECP5 LUT RAM
#: (TRELLIS_DPR16X4, 16x4, cost 4 each) while that costs less than a block RAM (cost 128):
#: fewer than 32 LUT-RAM cells.  iCE40 has no LUT RAM.
_LUTRAM_CELLS_BELOW = 32


@dataclasses.dataclass(frozen=True)
class MemoryShape:
    """One memory of the RTL.

    Attributes
    ----------
    name : str
        What it is, e.g. ``"unit parameters"``.
    block : str
        The `mars.hw.blocks.BLOCKS` entry that contains it (``mars_top`` holds all).
    copies, depth, width : int
        Instances in the block, words, bits per word.
    mapping : str
        ``"block"`` (``ram_style = "block"``: always block RAM), ``"auto"`` (Yosys
        chooses LUT RAM or block RAM by cost) or ``"ff"`` (several write ports: built
        from flip-flops and multiplexers).
    fields : tuple of str
        The configuration fields that set its depth.
    read_ports : int
        Read ports of one copy (a ``"ff"`` memory needs a multiplexer for each).
    """

    name: str
    block: str
    copies: int
    depth: int
    width: int
    mapping: str
    fields: tuple[str, ...]
    read_ports: int = 1

    @property
    def bits(self) -> int:
        return self.copies * self.depth * self.width


def bram_per_copy(family: str, depth: int, width: int) -> int:
    """Block-RAM primitives of one `depth` x `width` memory in its cheapest mode."""
    return min(-(-width // w) * -(-depth // d) for d, w in MODES[family])


def _is_small_ff(family: str, shape: MemoryShape) -> bool:
    """iCE40: Yosys built a 4-deep memory without ``ram_style`` from flip-flops (the ice40
    preset's cycle counters, docs/board.md); 16-deep ones went to EBR."""
    return family == "ice40" and shape.mapping == "auto" and shape.depth < 16


def _is_lutram(family: str, shape: MemoryShape) -> bool:
    cells = -(-shape.depth // 16) * -(-shape.width // 4)
    return family == "ecp5" and shape.mapping == "auto" and cells < _LUTRAM_CELLS_BELOW


def top_buffer_shapes(config: MarsConfig) -> list[MemoryShape]:
    """The activation and result memories as hw/top.py builds them (docs/banking.md).

    The activation memory is words of G activations (both ping-pong halves), built as
    explicit copies of one write port and one read port each: one copy per word-line
    domain of every unit and one for the write stage and the host; every region
    (``act_regions`` of them, 2 by default).  The result memory is words of the writer's
    lanes of accumulators with one write port (the write slots).  With ``residual_adds``
    the activation memory has one more copy (the shortcut read port) and the result
    memory a second read port, which Yosys builds as a second copy (docs/banking.md).
    """
    from mars.contract.banking import Banking

    cfg, bank = config, Banking(config)
    extra = 1 if cfg.residual_adds else 0
    act = MemoryShape("activation memory", "mars_top",
                      1 + cfg.macros * cfg.wordline_domains + extra,
                      bank.words, bank.word_bits, "block", ("act_buffer_words", "act_regions"))
    result = MemoryShape("result memory", "mars_top", 1 + extra, bank.result_depth,
                         bank.lanes * cfg.acc_bits, "auto", ("result_words",))
    return [act, result]


def memory_shapes(config: MarsConfig) -> list[MemoryShape]:
    """Every memory of the top, unit and core ones with their copies across the top."""
    cfg, fmt, dec = config, UnitFormat(config), DecoderFormat(config)
    D, U = cfg.wordline_domains, cfg.macros
    return [
        MemoryShape("macro storage (a word-line domain)", "cim_macro", D * U,
                    cfg.row_slots * cfg.macro_read_chunks, cfg.rows_per_read * cfg.cols // D,
                    "block", ("rows",)),
        MemoryShape("index memory (a domain)", "sparse_decoder", D * U, dec.index_depth,
                    dec.kgroup_bits, "block", ("weight_sram_rows",)),
        MemoryShape("k-table (a domain)", "sparse_decoder", D * U, dec.max_kgroups,
                    dec.ktable_bits, "block", ("act_buffer_words",)),
        MemoryShape("unit program", "mars_top", U, fmt.program_depth, CONTROL_WORD_BITS,
                    "block", ("program_words",)),
        MemoryShape("unit parameters", "mars_top", U, fmt.param_depth, CONTROL_WORD_BITS,
                    "block", ("param_words",)),
        MemoryShape("weight SRAM", "mars_top", cfg.cores, cfg.weight_sram_rows, cfg.cols,
                    "block", ("weight_sram_rows",)),
        MemoryShape("loader program", "mars_top", cfg.cores, cfg.program_words,
                    load_layout(cfg).size, "block", ("program_words",)),
        *top_buffer_shapes(cfg),
        MemoryShape("phase cycle counters", "mars_top", 1, cfg.max_phases, 32, "auto",
                    ("max_phases",)),
    ]


def _shapes_of(config: MarsConfig, block: str) -> list[MemoryShape]:
    shapes = memory_shapes(config)
    if block == "mars_top":
        return shapes
    # A block alone: one copy of its own memories (a decoder is one domain's).
    return [dataclasses.replace(s, copies=1 if block == "sparse_decoder" else
                                s.copies // config.macros)
            for s in shapes if s.block == block]


def estimate(config: MarsConfig, family: str, block: str = "mars_top") -> list[dict]:
    """Per memory of `block`: the shape and its estimated cost on `family`.

    Returns a list of dicts: ``name``, ``copies``, ``depth``, ``width``, ``fields``,
    ``mapping`` (``"bram"``, ``"lutram"`` or ``"ff"``), ``bram`` (primitives, all
    copies), ``ff_bits`` and ``mux_luts`` (for memories built from flip-flops: the storage
    bits, and a quarter of a LUT4 per bit per read port for the read multiplexers, as
    measured: Yosys built the default top's activation memory, 32768 bits x 145 read
    ports, from 1.19 million ``$mux`` cells).
    """
    rows = []
    for shape in _shapes_of(config, block):
        row = {"name": shape.name, "copies": shape.copies, "depth": shape.depth,
               "width": shape.width, "fields": shape.fields, "bram": 0, "ff_bits": 0,
               "mux_luts": 0}
        if shape.mapping == "ff":
            row["mapping"] = "ff"
            row["ff_bits"] = shape.bits
            row["mux_luts"] = shape.read_ports * shape.bits // 4
        elif _is_lutram(family, shape):
            row["mapping"] = "lutram"
        elif _is_small_ff(family, shape):
            row["mapping"] = "ff"
            row["ff_bits"] = shape.bits
        else:
            row["mapping"] = "bram"
            row["bram"] = shape.copies * bram_per_copy(family, shape.depth, shape.width)
        rows.append(row)
    return rows


def _overflows(config: MarsConfig, family: str, block: str) -> dict[str, int]:
    """Resources of `block` the estimate puts above the part's (resource -> needed)."""
    rows = estimate(config, family, block)
    need = {"bram": sum(r["bram"] for r in rows),
            "ff": sum(r["ff_bits"] for r in rows),
            "luts": sum(r["mux_luts"] for r in rows)}
    return {key: value for key, value in need.items() if value > PART_LIMITS[family][key]}


_SHRINKABLE = ("param_words", "program_words", "weight_sram_rows", "act_buffer_words",
               "result_words", "max_phases")


def _suggest(config: MarsConfig, family: str, block: str) -> MarsConfig | None:
    """A configuration that fits, found by halving, one at a time, the depth field whose
    halving saves the most of the resources that overflow (as fractions of the part's);
    None if none does."""
    limits = PART_LIMITS[family]

    def cost(cfg, keys):
        rows = estimate(cfg, family, block)
        need = {"bram": sum(r["bram"] for r in rows),
                "ff": sum(r["ff_bits"] for r in rows),
                "luts": sum(r["mux_luts"] for r in rows)}
        return sum(need[key] / limits[key] for key in keys)

    cfg = config
    while over := _overflows(cfg, family, block):
        best = None
        for field in _SHRINKABLE:
            value = getattr(cfg, field)
            if value <= 1:
                continue
            try:
                smaller = cfg.replace(**{field: value // 2})
            except ConfigError:
                continue
            saved = cost(cfg, over) - cost(smaller, over)
            if saved > 0 and (best is None or saved > best[0]):
                best = (saved, smaller)
        if best is None:
            return None
        cfg = best[1]
    return cfg


def check_fit(config: MarsConfig, family: str, block: str = "mars_top") -> None:
    """Raise `FitError` if `block` of `config` cannot fit the family's part.

    The message (one line) says what overflows, the memories that take the most, and the
    depth fields with values that would fit (found by `_suggest`), or that the fields
    cannot make it fit (fewer cores or macros, or a bigger part).
    """
    from mars.sw.pnr import PARTS

    over = _overflows(config, family, block)
    if not over:
        return
    limits, part = PART_LIMITS[family], PARTS[family].name
    rows = estimate(config, family, block)
    what = {"bram": "block RAMs", "ff": "flip-flops", "luts": "LUT4s"}
    parts = [f"{need} {what[key]} (the part has {limits[key]})" for key, need in over.items()]
    key = "bram" if "bram" in over else "mux_luts"
    top = sorted(rows, key=lambda r: -r[key])[:3]
    biggest = ", ".join(
        f"{r['name']} {r[key]} ({r['copies']} x {r['depth']} x {r['width']} bits"
        f"{' in flip-flops' if r['mapping'] == 'ff' else ''}, {'/'.join(r['fields'])})"
        for r in top if r[key])
    fit = _suggest(config, family, block)
    if fit is None:
        advice = ("no smaller memory depth fits: use fewer cores or macros_per_core, or "
                  "a bigger part")
    else:
        changes = ", ".join(f"{f}={getattr(fit, f)} (now {getattr(config, f)})"
                            for f in _SHRINKABLE if getattr(fit, f) != getattr(config, f))
        advice = f"these would fit: {changes}"
    raise FitError(f"configuration {config.name}: {block} needs about {', '.join(parts)} "
                   f"on {part}; most: {biggest}; {advice}")


def budget_table(config: MarsConfig, family: str = "ecp5") -> list[str]:
    """The per-memory estimate of the whole top as Markdown rows (docs/synthesis.md)."""
    lines = ["| memory | copies | depth x width | sized by | mapped to | block RAMs |",
             "| --- | ---: | --- | --- | --- | ---: |"]
    rows = estimate(config, family)
    for r in rows:
        lines.append(f"| {r['name']} | {r['copies']} | {r['depth']} x {r['width']} "
                     f"| {', '.join(r['fields'])} | {r['mapping']} | {r['bram']} |")
    lines.append(f"| **total** | | | | | **{sum(r['bram'] for r in rows)}** |")
    return lines
