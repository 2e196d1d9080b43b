"""The accelerator configuration: one frozen, validated dataclass.

`MarsConfig` is the single source of truth that the golden model, the RTL generators, the
testbenches and (later) the trainer all read.  Every geometry of the CIM macro is a field
here; nothing downstream hard-codes a size.  Named presets are built with
`dataclasses.replace` from the defaults, in the way Gemmini derives its variants.

The arithmetic the fields describe is in ``docs/macro.md`` and ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from mars.errors import MarsError, json_kind, json_text

__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "ReadoutMode",
    "SkipGranularity",
    "MAX_WRITER_STAGES",
    "MIN_WRITER_STAGES",
    "MarsConfig",
    "PRESETS",
    "PRESET_PURPOSES",
    "describe",
    "preset",
    "load_config",
]

#: Bumped whenever a field is added, removed, renamed or changes meaning.
SCHEMA_VERSION = 2
#: What changed since each older version, and how to update a file written by it.
_SCHEMA_CHANGES = {
    1: "version 2 renamed max_layers to max_phases: rename that field if the file has it, "
       "set schema_version to 2 and delete content_hash (the hash covers field names)",
}
_SCHEMA_NAME = "mars-config"


class ConfigError(MarsError, ValueError):
    """An impossible or malformed configuration; the message names the field and value."""


class ReadoutMode(enum.Enum):
    """How a column's popcount is read out (the ADC model).

    ``exact`` needs at least ceil(log2(G+1)) readout bits and returns the popcount.
    ``saturating`` clips the popcount at ``2**readout_bits - 1``.
    ``binary`` and ``ternary`` are ADC-less (HCiM, arXiv 2403.13577): a comparator turns
    the popcount p into q = [p >= readout_threshold] in {0, 1}, or into the ternary
    q = s_j * [p >= readout_threshold] in {-1, 0, +1} of the column's signed partial sum
    (s_j = -1 on a weight's sign column); a digital unit multiplies q by a trained
    per-column scale factor (``scale_bits``-bit fixed point with ``scale_frac_bits``
    fraction bits) and accumulates (docs/macro.md).
    """

    EXACT = "exact"
    SATURATING = "saturating"
    BINARY = "binary"
    TERNARY = "ternary"


class SkipGranularity(enum.Enum):
    """Which output channels share one sparsity group (a skippable unit of work)."""

    PARTITION = "partition"
    MACRO = "macro"


#: The writer's register stages (`MarsConfig.writer_stages`): the full pipeline timed for
#: the ECP5 at 100 MHz, and the fewest (the lane choice and the output register).
MAX_WRITER_STAGES = 6
MIN_WRITER_STAGES = 2

#: Most activation regions: residual networks need 3 (docs/banking.md); each region is a
#: whole buffer of block RAM copies, so a larger number is a mistake, not a design.
MAX_ACT_REGIONS = 16


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclasses.dataclass(frozen=True)
class MarsConfig:
    """Geometry and arithmetic of a MARS accelerator.

    Parameters
    ----------
    name : str
        A label for reports; not part of the content hash.
    rows : int
        R, word lines of one CIM macro.
    cols : int
        C, bit-line columns of one macro (1-bit cells).
    partitions : int
        P, column partitions of a macro.
    rows_per_step : int
        G, word lines switched on at once (one compute step reads G rows).
    weight_bits : int
        Wb, two's-complement weight width; a weight occupies Wb adjacent columns.
    act_bits : int
        Ab, unsigned activation width, applied bit-serially.
    act_bits_per_cycle : int
        Sets the length of a compute step, Ab / act_bits_per_cycle cycles (1 is
        bit-serial, Ab bit-parallel); must divide Ab.  The macro reads a step's rows over
        its first ``macro_read_chunks`` cycles (docs/macro.md).
    readout_bits : int
        Width of the per-column readout (ADC) result.
    readout_mode : ReadoutMode
        ``exact``, ``saturating``, ``binary`` or ``ternary``.
    readout_threshold : int
        Binary/ternary readouts: the comparator's threshold on the popcount, 1..G.
    scale_bits : int
        Binary/ternary readouts: signed two's-complement width of a column scale factor.
    scale_frac_bits : int
        Binary/ternary readouts: fraction bits of a column scale factor (0 .. scale_bits-1);
        a layer's product is its scaled sum shifted right (floor) by this many bits.
    scale_rounding : str
        ``nearest`` (round half up) or ``floor``: how trained scale factors become codes.
    skip_granularity : SkipGranularity
        Output channels that share one sparsity group: a partition or the whole macro.
    cores : int
        CIM cores in the accelerator.
    macros_per_core : int
        CIM macros in each core.
    weight_sram_rows : int
        Depth of each core's weight SRAM, in macro rows (C bits each).
    act_buffer_words : int
        Depth of each ping-pong activation buffer, in Ab-bit activations.
    acc_bits : int
        Signed width of a layer's accumulators (partial sums over groups, plus bias).
    requant_mult_bits : int
        Unsigned width of the per-channel requantisation multiplier M.
    program_words : int
        Depth of each macro unit's and each core loader's program memory (instructions;
        a unit stores each instruction as ceil(bits / 36) 36-bit words).
    param_words : int
        Depth of each macro unit's parameter memory (bias, M, S of one block set a word,
        stored as ceil(bits / 36) 36-bit words).
    result_words : int
        Depth of the result memory that receives the last layer's raw accumulators (and,
        with ``residual_adds``, the raw accumulators of conv shortcuts until their add).
    max_phases : int
        Most phases in one run (depth of the per-phase cycle counters); a phase loads
        macro rows, then computes (docs/architecture.md).
    act_regions : int
        Regions of the activation memory, ``act_buffer_words`` activations each, 2 to
        `MAX_ACT_REGIONS` (2: the ping-pong halves; more keep the shortcut of a residual
        block live while its body runs, docs/banking.md).
    residual_adds : bool
        The writers fuse residual adds and add stored partial sums (K-splitting: a block
        set keeping more groups than R/G is split over several walks): a shortcut read
        port on the activation and result memories and a second multiplier and shift per
        channel in the parameter word (docs/architecture.md, "Residual adds").
    writer_stages : int
        Register stages of each unit's writer from a lane group's issue to its offer,
        `MIN_WRITER_STAGES` to `MAX_WRITER_STAGES` (6: S0 the aligned group's choice,
        S1 the lanes' rotation, S2 partial products, S3 product, S4 clamp window, the
        output register; 5 leaves out S0, 4 also S2, 3 also S3, 2 also S4).  Fewer
        stages take fewer flip-flops and a slower clock; the
        writer's latency, and so the cycle counts, follow (docs/architecture.md,
        "Arithmetic of the writer").
    hide_loads : bool
        The controller starts the core loaders with the units' walks: a phase's loader
        program copies the next phase's rows into row slots its walks do not read while
        they compute, so a reload costs only what exceeds the walk (docs/architecture.md,
        "Hidden reloads").  Off, the loads of a phase run before its walks only; the
        hash holds the field only when it is set (off builds the hardware it always did).

    Raises
    ------
    ConfigError
        If a field has the wrong type or the fields are inconsistent.
    """

    name: str = "default"
    rows: int = 512
    cols: int = 64
    partitions: int = 4
    rows_per_step: int = 8
    weight_bits: int = 4
    act_bits: int = 4
    act_bits_per_cycle: int = 1
    readout_bits: int = 4
    readout_mode: ReadoutMode = ReadoutMode.EXACT
    readout_threshold: int = 1
    scale_bits: int = 12
    scale_frac_bits: int = 2
    scale_rounding: str = "nearest"
    skip_granularity: SkipGranularity = SkipGranularity.PARTITION
    cores: int = 2
    macros_per_core: int = 2
    weight_sram_rows: int = 1024
    act_buffer_words: int = 4096
    acc_bits: int = 32
    requant_mult_bits: int = 16
    program_words: int = 32
    param_words: int = 16
    result_words: int = 256
    max_phases: int = 64
    act_regions: int = 2
    residual_adds: bool = False
    writer_stages: int = MAX_WRITER_STAGES
    hide_loads: bool = False

    def __post_init__(self) -> None:
        # Accept the enum's string value too (JSON, CLI), but store the enum.
        for field, enum_type in (("readout_mode", ReadoutMode),
                                 ("skip_granularity", SkipGranularity)):
            value = getattr(self, field)
            if not isinstance(value, enum_type):
                try:
                    object.__setattr__(self, field, enum_type(value))
                except ValueError:
                    allowed = ", ".join(repr(m.value) for m in enum_type)
                    raise ConfigError(
                        f"{field} must be one of {allowed}, not {json_text(value)}") from None
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, not {json_text(self.name)}")
        for field in _INT_FIELDS:
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{field} must be an integer, not {json_text(value)}")
            # Fields with a range of their own say it whole (`_check_consistency`).
            if field not in _RANGED_FIELDS and value < (0 if field == "scale_frac_bits" else 1):
                raise ConfigError(f"{field} must be at least "
                                  f"{0 if field == 'scale_frac_bits' else 1}, not {value}")
        self._check_consistency()

    def _check_consistency(self) -> None:
        R, C, P, G = self.rows, self.cols, self.partitions, self.rows_per_step
        Wb, Ab = self.weight_bits, self.act_bits
        if R % G:
            raise ConfigError(
                f"rows_per_step (G={G}) must divide rows (R={R})")
        if C % P:
            raise ConfigError(
                f"partitions (P={P}) must divide cols (C={C})")
        if Wb < 2:
            raise ConfigError(
                f"weight_bits must be at least 2 for two's complement, not {Wb}")
        if (C // P) % Wb:
            raise ConfigError(
                f"weight_bits (Wb={Wb}) must divide the columns per partition "
                f"(C/P={C // P})")
        if Ab % self.act_bits_per_cycle:
            raise ConfigError(
                f"act_bits_per_cycle ({self.act_bits_per_cycle}) must divide "
                f"act_bits (Ab={Ab})")
        if self.readout_mode is ReadoutMode.EXACT and self.readout_bits < self.exact_readout_bits:
            raise ConfigError(
                f"readout_bits ({self.readout_bits}) is too narrow for an exact readout of "
                f"G={G} rows: it needs at least {self.exact_readout_bits}; use "
                f"readout_mode 'saturating' to model a narrower ADC")
        self._check_scale_factors()
        if self.readout_bits > self.exact_readout_bits + 8:
            raise ConfigError(
                f"readout_bits ({self.readout_bits}) is far wider than any popcount of "
                f"G={G} rows ({self.exact_readout_bits} bits suffice)")
        if not self.psum_bits < self.acc_bits <= 64:
            raise ConfigError(
                f"acc_bits ({self.acc_bits}) must exceed psum_bits ({self.psum_bits}) "
                f"and be at most 64")
        if not 2 <= self.requant_mult_bits <= 32:
            raise ConfigError(
                f"requant_mult_bits must lie in [2, 32], not {self.requant_mult_bits}")
        if self.acc_bits + self.requant_mult_bits > 63:
            # The golden model requantises in int64: acc*M + 2^(S-1) must not wrap.
            raise ConfigError(
                f"acc_bits ({self.acc_bits}) + requant_mult_bits ({self.requant_mult_bits}) "
                f"must be at most 63: the requantisation product acc*M is computed in "
                f"64-bit signed integers")
        for field in ("program_words", "param_words", "result_words", "max_phases"):
            if not _is_pow2(getattr(self, field)):
                raise ConfigError(f"{field} must be a power of two, not {getattr(self, field)}")
        if not _is_pow2(self.weight_sram_rows):
            raise ConfigError(
                f"weight_sram_rows must be a power of two, not {self.weight_sram_rows}")
        if not 2 <= self.act_regions <= MAX_ACT_REGIONS:
            raise ConfigError(f"act_regions must be 2 (the ping-pong halves) to "
                              f"{MAX_ACT_REGIONS}, not {self.act_regions}")
        if not isinstance(self.residual_adds, bool):
            raise ConfigError(f"residual_adds must be true or false, not "
                              f"{json_text(self.residual_adds)}")
        if not MIN_WRITER_STAGES <= self.writer_stages <= MAX_WRITER_STAGES:
            raise ConfigError(f"writer_stages must be {MIN_WRITER_STAGES} to "
                              f"{MAX_WRITER_STAGES}, not {self.writer_stages}")
        if not isinstance(self.hide_loads, bool):
            raise ConfigError(f"hide_loads must be true or false, not "
                              f"{json_text(self.hide_loads)}")
        if not _is_pow2(self.act_buffer_words):
            raise ConfigError(
                f"act_buffer_words must be a power of two, not {self.act_buffer_words}")
        if self.weight_sram_rows < R:
            raise ConfigError(
                f"weight_sram_rows ({self.weight_sram_rows}) must hold at least one macro's "
                f"rows (R={R})")

    # -- derived values ------------------------------------------------------------------

    def _check_scale_factors(self) -> None:
        """Binary/ternary readouts: threshold, scale-factor format, accumulator room."""
        if self.scale_rounding not in SCALE_ROUNDINGS:
            raise ConfigError(f"scale_rounding must be one of "
                              f"{', '.join(map(repr, SCALE_ROUNDINGS))}, not "
                              f"{json_text(self.scale_rounding)}")
        if not self.scaled_readout:
            return
        G = self.rows_per_step
        if not 1 <= self.readout_threshold <= G:
            raise ConfigError(f"readout_threshold ({self.readout_threshold}) must lie in "
                              f"1..G={G} (rows_per_step) for a {self.readout_mode.value} "
                              f"readout")
        if not 2 <= self.scale_bits <= 24:
            raise ConfigError(f"scale_bits must lie in [2, 24], not {self.scale_bits}")
        if self.scale_frac_bits >= self.scale_bits:
            raise ConfigError(f"scale_frac_bits ({self.scale_frac_bits}) must be smaller "
                              f"than scale_bits ({self.scale_bits})")
        # a layer sums at most max_kgroups steps (the decoder's k-table depth) before the
        # shift by scale_frac_bits: that sum must fit the accumulator
        bound = self.max_kgroups * self.psum_range[1]
        if bound.bit_length() + 1 > self.acc_bits:
            raise ConfigError(
                f"scale_bits ({self.scale_bits}) overflows the accumulator: "
                f"{self.max_kgroups} K-groups (act_buffer_words / rows_per_step) x "
                f"(2^act_bits - 1) x weight_bits x 2^(scale_bits-1) needs "
                f"{bound.bit_length() + 1} bits, acc_bits is {self.acc_bits}")

    @property
    def scaled_readout(self) -> bool:
        """True for the ADC-less readouts (binary, ternary) with column scale factors."""
        return self.readout_mode in (ReadoutMode.BINARY, ReadoutMode.TERNARY)

    @property
    def max_kgroups(self) -> int:
        """Most K-groups of one layer: ceil(act_buffer_words / G) (the k-table depth)."""
        return -(-self.act_buffer_words // self.rows_per_step)

    @property
    def cols_per_partition(self) -> int:
        """Columns in one partition, C/P."""
        return self.cols // self.partitions

    @property
    def channels_per_macro(self) -> int:
        """Output channels one macro computes at once, C/Wb (one weight per row each)."""
        return self.cols // self.weight_bits

    @property
    def channels_per_partition(self) -> int:
        """Output channels in one partition, (C/P)/Wb."""
        return self.cols_per_partition // self.weight_bits

    @property
    def channels_per_group(self) -> int:
        """Output channels that share one sparsity group (see `skip_granularity`)."""
        if self.skip_granularity is SkipGranularity.MACRO:
            return self.channels_per_macro
        return self.channels_per_partition

    @property
    def wordline_domains(self) -> int:
        """Column sets with word lines of their own, D: P at partition skip granularity
        (each partition switches on its own row slot with its own inputs), else 1."""
        return self.cols // (self.channels_per_group * self.weight_bits)

    @property
    def cols_per_domain(self) -> int:
        """Columns of one word-line domain, C/D."""
        return self.cols // self.wordline_domains

    @property
    def row_slots(self) -> int:
        """Row groups of G rows in a macro, R/G: the addresses a compute step can name."""
        return self.rows // self.rows_per_step

    @property
    def macro_read_chunks(self) -> int:
        """Q, storage reads of one compute step: gcd(G, Ab / act_bits_per_cycle).

        The macro reads a step's G rows row-serially, G/Q of them a cycle over the step's
        first Q cycles (docs/macro.md, "Storage"), so a storage word is G/Q rows wide and
        Q times as deep as there are row slots."""
        return math.gcd(self.rows_per_step, self.cycles_per_step)

    @property
    def rows_per_read(self) -> int:
        """G/Q, rows of one storage read (the width of a storage word, in rows)."""
        return self.rows_per_step // self.macro_read_chunks

    @property
    def exact_readout_bits(self) -> int:
        """Readout bits that represent every popcount of G rows, ceil(log2(G+1))."""
        return max(1, self.rows_per_step.bit_length())

    @property
    def readout_max(self) -> int:
        """Largest value the readout returns, min(G, 2**readout_bits - 1)."""
        return min(self.rows_per_step, 2 ** self.readout_bits - 1)

    @property
    def cycles_per_step(self) -> int:
        """Clock cycles the macro spends on one compute step, Ab / act_bits_per_cycle."""
        return self.act_bits // self.act_bits_per_cycle

    @property
    def psum_range(self) -> tuple[int, int]:
        """Smallest and largest partial sum one compute step can produce (inclusive).

        Binary/ternary readouts: ``sum_i 2^i sum_j |scale|`` in units of 2^-scale_frac_bits,
        scale factors in [-2^(scale_bits-1), 2^(scale_bits-1) - 1]."""
        x_max = 2 ** self.act_bits - 1
        if self.scaled_readout:
            return (-x_max * self.weight_bits * 2 ** (self.scale_bits - 1),
                    x_max * self.weight_bits * 2 ** (self.scale_bits - 1))
        q_max = self.readout_max
        pos_weight = 2 ** (self.weight_bits - 1) - 1   # magnitude bits
        neg_weight = 2 ** (self.weight_bits - 1)       # sign bit
        return -x_max * neg_weight * q_max, x_max * pos_weight * q_max

    @property
    def psum_bits(self) -> int:
        """Signed width that holds every partial sum of one compute step."""
        lo, hi = self.psum_range
        return max(lo.bit_length() if lo >= 0 else (-lo - 1).bit_length(),
                   hi.bit_length()) + 1

    @property
    def weight_min(self) -> int:
        return -(2 ** (self.weight_bits - 1))

    @property
    def weight_max(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def act_max(self) -> int:
        return 2 ** self.act_bits - 1

    @property
    def macros(self) -> int:
        """Macros in the whole accelerator."""
        return self.cores * self.macros_per_core

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields (enums as their string values)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    def hardware_fields(self) -> dict[str, Any]:
        """`to_dict` without `name`, with every field the configured readout and geometry
        do not use set to the value that stands for "unused" (what `content_hash` hashes).

        - exact and saturating readouts have no comparator and no column scale factors:
          ``readout_threshold``, ``scale_bits``, ``scale_frac_bits`` and
          ``scale_rounding`` take their defaults;
        - binary and ternary readouts compare the popcount itself (no ADC):
          ``readout_bits`` is taken as the popcount's width, `exact_readout_bits`;
        - with one partition a partition is the whole macro: ``skip_granularity`` is
          ``partition``;
        - ``writer_stages`` is left out at `MAX_WRITER_STAGES` (the full pipeline, which
          every configuration had before the field existed: its depth changes cycle
          counts, not arithmetic) and ``hide_loads`` when false: the hardware every
          configuration had before that field existed.

        The defaults and the popcount's width are what the presets already hold, so their
        hashes are the ones they had when every field was hashed.
        """
        content = self.to_dict()
        del content["name"]
        if not self.scaled_readout:
            for field in _SCALE_ONLY_FIELDS:
                content[field] = getattr(_DEFAULT, field)
        else:
            content["readout_bits"] = self.exact_readout_bits
        if self.partitions == 1:
            content["skip_granularity"] = SkipGranularity.PARTITION.value
        if self.writer_stages == MAX_WRITER_STAGES:
            del content["writer_stages"]
        if not self.hide_loads:
            del content["hide_loads"]       # off: the hardware (and hash) from before it
        return content

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the fields that build the hardware and its
        arithmetic (`hardware_fields`: every field but `name`, those the readout does not
        use normalised).

        Two configurations that build the same hardware have the same hash, whatever
        they are called and whatever they hold in fields their readout ignores; packages,
        memory images and the simulator caches carry it to detect a mismatch.
        """
        canonical = json.dumps(self.hardware_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def legacy_content_hash(self) -> str:
        """The hash of every field but `name`, as tools before the normalisation of
        `hardware_fields` wrote it (no ``writer_stages`` then: the full pipeline); a
        configuration file carrying it is still read."""
        content = self.to_dict()
        del content["name"]
        if self.writer_stages == MAX_WRITER_STAGES:
            del content["writer_stages"]
        if not self.hide_loads:
            del content["hide_loads"]       # newer than the legacy hash
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of `content_hash`, for folder names and log lines."""
        return self.content_hash[:12]

    def to_json(self) -> str:
        """JSON text with schema name and version, the fields and the content hash."""
        doc = {"schema": _SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **self.to_dict(),
               "content_hash": self.content_hash}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: str = "configuration") -> MarsConfig:
        """Build from a dict as written by `to_json`.

        Missing fields take their defaults (the ``default`` preset).  Unknown fields, a
        wrong schema or version, and a stored hash that disagrees with the content are
        errors.
        """
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a JSON object, not {json_kind(doc)}")
        doc = dict(doc)
        schema = doc.pop("schema", _SCHEMA_NAME)
        if schema != _SCHEMA_NAME:
            raise ConfigError(f"{source}: schema must be {_SCHEMA_NAME!r}, not "
                              f"{json_text(schema)}")
        version = doc.pop("schema_version", SCHEMA_VERSION)
        if type(version) is not int or version != SCHEMA_VERSION:
            change = _SCHEMA_CHANGES.get(version) if type(version) is int else None
            raise ConfigError(
                f"{source}: schema_version {json_text(version)} is not supported "
                f"(this tool reads version {SCHEMA_VERSION})" + (f"; {change}" if change else ""))
        has_hash = "content_hash" in doc
        stored_hash = doc.pop("content_hash", None)
        if has_hash and not isinstance(stored_hash, str):
            raise ConfigError(f"{source}: content_hash must be a string, not "
                              f"{json_text(stored_hash)}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown field {unknown[0]!r} "
                f"(known fields: {', '.join(sorted(known))})")
        try:
            config = cls(**doc)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        if has_hash and stored_hash not in (config.content_hash, config.legacy_content_hash):
            raise ConfigError(
                f"{source}: content_hash {stored_hash!r} does not match the fields "
                f"(they hash to {config.content_hash!r}); the file was edited or damaged")
        return config

    @classmethod
    def from_json(cls, text: str, *, source: str = "configuration") -> MarsConfig:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{source}: not valid JSON ({error.msg} at line {error.lineno}, "
                f"column {error.colno})") from None
        except RecursionError:
            raise ConfigError(f"{source}: not valid JSON (nested too deeply)") from None
        return cls.from_dict(doc, source=source)

    def replace(self, **changes: Any) -> MarsConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)


#: How trained scale factors become fixed-point codes.
SCALE_ROUNDINGS = ("nearest", "floor")

_INT_FIELDS = tuple(f.name for f in dataclasses.fields(MarsConfig) if f.type == "int")
#: Integer fields whose check in `MarsConfig._check_consistency` names their whole range (a
#: value below it gets that message, not the generic "at least 1").
_RANGED_FIELDS = frozenset({"requant_mult_bits", "act_regions", "writer_stages"})
#: Fields only binary and ternary readouts use (the comparator and the column scale factors).
_SCALE_ONLY_FIELDS = ("readout_threshold", "scale_bits", "scale_frac_bits", "scale_rounding")


_DEFAULT = MarsConfig()

#: Named presets, each described by `describe` from its own values (docs/configuration.md,
#: "Presets", is checked against them).  What each is for is `PRESET_PURPOSES`.
PRESETS: dict[str, MarsConfig] = {
    "default": _DEFAULT,
    "tiny": _DEFAULT.replace(
        name="tiny", rows=64, cols=16, partitions=2, rows_per_step=4, readout_bits=3,
        cores=1, macros_per_core=1, weight_sram_rows=256, act_buffer_words=2048,
        program_words=32, param_words=16, result_words=16, max_phases=16),
    # An ADC narrower than the popcount (saturating readout), whole-macro skip groups.
    "adc3": _DEFAULT.replace(
        name="adc3", rows=128, cols=32, partitions=4, rows_per_step=16,
        readout_bits=3, readout_mode=ReadoutMode.SATURATING,
        skip_granularity=SkipGranularity.MACRO, cores=2, macros_per_core=2),
    # 8-bit weights and activations, with two activation bits per cycle.
    "wide8": _DEFAULT.replace(
        name="wide8", rows=128, cols=64, partitions=8, rows_per_step=8, weight_bits=8,
        act_bits=8, act_bits_per_cycle=2, readout_bits=4),
    # ADC-less ternary readout (HCiM, docs/training.md "Readouts"): two word lines per
    # step, so that one comparator bit per column popcount (0, 1 or 2) keeps the product.
    "hcim": _DEFAULT.replace(
        name="hcim", rows_per_step=2, readout_bits=2, readout_mode=ReadoutMode.TERNARY,
        readout_threshold=1),
    # The iCEBreaker's part with the serial bridge: 20 of 30 EBR, 85 % of the logic cells,
    # about 25 MHz against its 12 MHz (docs/board.md).  Block RAMs count by word width (16
    # bits each); since programs and parameters are 36-bit words, 256-word activation
    # buffers, a 1024-row weight SRAM and 16 phases fit, which every network of the test
    # suite needs (64 words ran only the mlp); the logic cells, not the EBR, are the limit.
    # A two-stage writer: the 12 MHz clock needs none of the registers of the five-stage
    # one (timed for the ECP5 at 100 MHz), and without them the top places (227 flip-flops,
    # 185 logic cells fewer; docs/board.md, "The iCEBreaker's placement").
    "ice40": _DEFAULT.replace(
        name="ice40", rows=64, cols=4, partitions=1, rows_per_step=2, readout_bits=2,
        cores=1, macros_per_core=1, weight_sram_rows=1024, act_buffer_words=256, acc_bits=15,
        program_words=32, param_words=32, result_words=16, max_phases=16, writer_stages=2),
    # MARS-like (Sie et al., IEEE TCAD 2022, arXiv 2010.12861): the published four CIM
    # cores and 8-partition macros on the default macro; memories sized for VGG16 and
    # ResNet18 on CIFAR-10 (65,536-word buffers hold the 32x32x64 maps, 2^18 weight rows
    # a core the dense VGG16, a 65,536-word result memory the partial sums of a K-split
    # 32x32x64 layer); residual adds and K-splitting for ResNet18 and the VGG16 layers
    # that keep more than R/G groups, a third activation region for ResNet18's pooled last
    # add; reloads hidden behind the walks (hide_loads: VGG16 at 50 % from 83 % to 98 % of
    # the ideal bound).  A paper-sized model for cycle figures, far beyond any FPGA
    # (docs/configuration.md, "The mars preset").
    "mars": _DEFAULT.replace(
        name="mars", partitions=8, cores=4, macros_per_core=2, weight_sram_rows=1 << 18,
        act_buffer_words=65536, program_words=2048, param_words=128, result_words=65536,
        max_phases=512, act_regions=3, residual_adds=True, hide_loads=True),
}


#: What each preset is for (its values are described by `describe`).
PRESET_PURPOSES: dict[str, str] = {
    "default": "the reference design: several cores of partitioned macros, sized to build "
               "and simulate in minutes",
    "tiny": "the ULX3S board top; fits an LFE5U-25F (not an iCE40UP5K: 93 block RAMs)",
    "ice40": "the iCEBreaker board top: an iCE40UP5K with the serial bridge; the test "
             "suite's small networks",
    "adc3": "an ADC narrower than the popcount (saturating readout), whole-macro skip groups",
    "wide8": "wider weights and activations, several activation bits per cycle",
    "hcim": "ADC-less ternary readout (HCiM) with trained column scale factors, two word "
            "lines per step",
    "mars": "MARS-like: the paper's four cores and 8-partition macros, residual adds and "
            "K-splitting, memories for VGG16/ResNet18 on CIFAR-10; cycle figures only, far "
            "beyond any FPGA",
}


def describe(config: MarsConfig) -> str:
    """One line saying what `config` builds, generated from its fields, e.g. ``512x64
    macro, 4 partitions, 8 word lines on at once, 4-bit weights and activations, exact
    4-bit readout, 2 cores x 2 macros``."""
    c = config
    bits = (f"{c.weight_bits}-bit weights and activations" if c.weight_bits == c.act_bits
            else f"{c.weight_bits}-bit weights, {c.act_bits}-bit activations")
    if c.act_bits_per_cycle > 1:
        bits += f" ({c.act_bits_per_cycle} activation bits per cycle)"
    def count(n: int, what: str) -> str:
        return f"{n} {what}" if n == 1 else f"{n} {what}s"

    return (f"{c.rows}x{c.cols} macro, {count(c.partitions, 'partition')}, "
            f"{count(c.rows_per_step, 'word line')} on at once, {bits}, "
            f"{c.readout_mode.value} {c.readout_bits}-bit readout, "
            f"{count(c.cores, 'core')} x {count(c.macros_per_core, 'macro')}")


def preset(name: str) -> MarsConfig:
    """The named preset; `ConfigError` listing the presets if there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r} (presets: {', '.join(sorted(PRESETS))})") from None


def load_config(spec: str | Path) -> MarsConfig:
    """A preset name or the path of a JSON file, as the CLI's ``--config`` takes it."""
    spec_str = str(spec)
    if spec_str in PRESETS:
        return PRESETS[spec_str]
    path = Path(spec_str)
    if path.suffix.lower() == ".json" or path.exists():
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"cannot read configuration {str(path)!r}: "
                              f"{error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"configuration {str(path)!r} is not UTF-8 text") from None
        return MarsConfig.from_json(text, source=str(path))
    raise ConfigError(
        f"unknown preset {spec_str!r} and no such JSON file "
        f"(presets: {', '.join(sorted(PRESETS))})")
