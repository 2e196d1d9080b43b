"""The technology file: per-event energies, per-block areas and leakage of one process node.

`Technology` is a frozen, validated dataclass like `mars.config.MarsConfig`; its JSON form
carries a schema name and version.  The defaults describe a 28 nm node; every value, where
it comes from and the scaling rule applied to it are in docs/energy.md ("Technology file").
A user's JSON file may give any subset of the fields: the others keep their defaults.

Units: energies in picojoules (pJ) or femtojoules (fJ) as the field name says, areas in
square micrometres (um^2), leakage in picowatts (pW) or microwatts (uW), the clock in MHz.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from mars.errors import MarsError

__all__ = ["TECH_SCHEMA_VERSION", "TechError", "Technology", "DEFAULT_TECH", "load_technology",
           "HOROWITZ_45NM", "scale_energy", "scale_area"]

TECH_SCHEMA_VERSION = 1
_SCHEMA_NAME = "mars-technology"


class TechError(MarsError, ValueError):
    """A malformed technology file; the message names the file, the field and the value."""


#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, the
#: table of energy and area per operation at 45 nm, 0.9 V.  Energies in pJ, areas in um^2;
#: SRAM: one 64-bit read of an 8 KB array.
HOROWITZ_45NM = {
    "node_nm": 45.0,
    "add8_pj": 0.03, "add32_pj": 0.1, "mult8_pj": 0.2, "mult32_pj": 3.1,
    "sram8kb_read64_pj": 10.0, "sram32kb_read64_pj": 20.0, "sram1mb_read64_pj": 100.0,
    "add8_um2": 36.0, "add32_um2": 137.0, "mult8_um2": 282.0, "mult32_um2": 3495.0,
}


def scale_energy(value: float, from_nm: float, to_nm: float) -> float:
    """Dynamic energy C*V^2 at the same supply: capacitance scales with the feature size."""
    return value * to_nm / from_nm


def scale_area(value: float, from_nm: float, to_nm: float) -> float:
    """Area scales with the square of the feature size."""
    return value * (to_nm / from_nm) ** 2


def _defaults_28nm() -> dict[str, float]:
    h, n = HOROWITZ_45NM, 28.0
    e = lambda v: scale_energy(v, h["node_nm"], n)      # noqa: E731
    a = lambda v: scale_area(v, h["node_nm"], n)        # noqa: E731
    # Si et al., JSSC 2021 (ISSCC 2020 15.5): 28 nm 64 Kb SRAM-CIM, 68.4 TOPS/W at 4-bit
    # inputs and weights: 2 / 68.4 pJ = 29.24 fJ per 4b x 4b MAC, the whole macro.  Split
    # half array, half readout (our assumption, docs/energy.md) at the reference operating
    # point (G = 8 rows on, 4-bit readout): 16 cell products and Ab*Wb/G = 2 conversions
    # per MAC.
    mac_fj = 2.0 / 68.4 * 1000.0
    return {
        "cim_cell_fj": mac_fj / 2 / 16,
        "readout_fom_fj": mac_fj / 2 / 2 / 2 ** 4,
        "add_pj_per_bit": e(h["add32_pj"]) / 32,
        "mult_pj_per_bit2": e(h["mult32_pj"]) / 32 ** 2,
        "sram_pj_per_bit_8kb": e(h["sram8kb_read64_pj"]) / 64,
        "add_um2_per_bit": a(h["add32_um2"]) / 32,
        "mult_um2_per_bit2": a(h["mult32_um2"]) / 32 ** 2,
    }


_D = _defaults_28nm()


@dataclasses.dataclass(frozen=True)
class Technology:
    """Per-event energies, areas and leakage of one process node.

    Parameters
    ----------
    name : str
        A label for reports.
    node_nm : float
        Process node (nm), for reports only (values are given at this node).
    supply_v : float
        Supply voltage (V) the energies are given at; `at_supply` rescales the dynamic
        energies to another supply by C*V^2.
    clock_mhz : float
        Default clock of the accelerator (MHz); ``mars estimate --clock`` overrides it.
    cim_cell_fj : float
        Array energy (fJ) of one active cell for one input bit: one word line on, one
        column, one activation bit (word-line drive and bit-line charge, no readout).
    cim_wordline_fj : float
        Extra energy (fJ) per word-line pulse (one row, one input bit); 0 when the cell
        energy already includes the word-line drive, as the default's calibration does.
    readout_fom_fj : float
        Walden figure of merit of the column readout (fJ per conversion step): one
        conversion at b bits costs ``readout_fom_fj * 2**b``; one comparator decision
        (the binary and ternary readouts) costs as a 1-bit conversion,
        ``readout_fom_fj * 2``.
    add_pj_per_bit : float
        Ripple adder energy per bit (pJ): an n-bit add costs ``n * add_pj_per_bit``.
    mult_pj_per_bit2 : float
        Array multiplier energy per bit product (pJ): an a x b multiply costs
        ``a * b * mult_pj_per_bit2``.
    sram_pj_per_bit_8kb : float
        Read (or write) energy per bit of an 8 KB SRAM (pJ); an SRAM of capacity S costs
        ``sram_pj_per_bit_8kb * sqrt(S / 8 KB)`` per bit (bit lines and word lines both grow
        with the square root of the capacity).
    sram_leak_pw_per_bit : float
        Leakage of one SRAM or CIM cell (pW), macros and buffers alike.
    logic_leak_uw_per_unit : float
        Leakage of one macro unit's logic (decoders, accumulators, writer) (uW).
    cell_um2 : float
        Area of one 6T SRAM bit cell (um^2).
    sram_array_efficiency : float
        Cell area over total area of an SRAM (0..1].
    cim_array_efficiency : float
        Cell area over total area of a CIM macro, readouts included (0..1].
    add_um2_per_bit, mult_um2_per_bit2 : float
        Adder area per bit and multiplier area per bit product (um^2).

    Raises
    ------
    TechError
        A field of the wrong type, negative, zero where it must be positive, or an
        efficiency outside (0, 1].
    """

    name: str = "28nm-default"
    node_nm: float = 28.0
    supply_v: float = 0.9
    clock_mhz: float = 200.0
    cim_cell_fj: float = _D["cim_cell_fj"]
    cim_wordline_fj: float = 0.0
    readout_fom_fj: float = _D["readout_fom_fj"]
    add_pj_per_bit: float = _D["add_pj_per_bit"]
    mult_pj_per_bit2: float = _D["mult_pj_per_bit2"]
    sram_pj_per_bit_8kb: float = _D["sram_pj_per_bit_8kb"]
    sram_leak_pw_per_bit: float = 20.0
    logic_leak_uw_per_unit: float = 10.0
    cell_um2: float = 0.127
    sram_array_efficiency: float = 0.6
    cim_array_efficiency: float = 0.35
    add_um2_per_bit: float = _D["add_um2_per_bit"]
    mult_um2_per_bit2: float = _D["mult_um2_per_bit2"]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TechError(f"name must be a non-empty string, not {self.name!r}")
        for field in dataclasses.fields(self):
            if field.name == "name":
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise TechError(f"{field.name} must be a finite number, not {value!r}")
            if value < 0:
                raise TechError(f"{field.name} must not be negative, not {value!r}")
            object.__setattr__(self, field.name, float(value))
        for field in ("node_nm", "supply_v", "clock_mhz", "cell_um2"):
            if getattr(self, field) <= 0:
                raise TechError(f"{field} must be positive, not {getattr(self, field)!r}")
        for field in ("sram_array_efficiency", "cim_array_efficiency"):
            value = getattr(self, field)
            if not 0 < value <= 1:
                raise TechError(f"{field} must lie in (0, 1], not {value!r}")

    # -- derived costs -----------------------------------------------------------------------

    def readout_pj(self, bits: int) -> float:
        """One column conversion at `bits` bits (pJ), Walden's rule FoM * 2**bits."""
        return self.readout_fom_fj * 2 ** bits / 1000.0

    def comparator_pj(self) -> float:
        """One comparator decision (pJ): a 1-bit conversion by Walden's rule, FoM * 2."""
        return self.readout_pj(1)

    def at_supply(self, volts: float) -> Technology:
        """The same node at supply `volts`: every dynamic energy times (volts/supply_v)^2
        (C*V^2, the capacitances unchanged); areas, leakage and the clock unchanged."""
        if isinstance(volts, bool) or not isinstance(volts, (int, float)) or not volts > 0:
            raise TechError(f"supply must be a positive number of volts, not {volts!r}")
        k = (volts / self.supply_v) ** 2
        return self.replace(supply_v=float(volts), **{f: getattr(self, f) * k
                                                       for f in DYNAMIC_FIELDS})

    def add_pj(self, bits: int) -> float:
        return self.add_pj_per_bit * bits

    def mult_pj(self, a_bits: int, b_bits: int) -> float:
        return self.mult_pj_per_bit2 * a_bits * b_bits

    def sram_pj(self, bits: int, capacity_bits: int) -> float:
        """Reading (or writing) `bits` bits of an SRAM of `capacity_bits` bits (pJ)."""
        return self.sram_pj_per_bit_8kb * bits * math.sqrt(capacity_bits / (8 * 1024 * 8))

    def sram_um2(self, capacity_bits: int) -> float:
        return capacity_bits * self.cell_um2 / self.sram_array_efficiency

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        doc = {"schema": _SCHEMA_NAME, "schema_version": TECH_SCHEMA_VERSION, **self.to_dict()}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "technology") -> Technology:
        """From a dict as `to_json` writes it; missing fields keep their defaults."""
        if not isinstance(doc, dict):
            raise TechError(f"{source}: expected a JSON object, not {type(doc).__name__}")
        doc = dict(doc)
        schema = doc.pop("schema", _SCHEMA_NAME)
        if schema != _SCHEMA_NAME:
            raise TechError(f"{source}: schema must be {_SCHEMA_NAME!r}, not {schema!r}")
        version = doc.pop("schema_version", TECH_SCHEMA_VERSION)
        if type(version) is not int or version != TECH_SCHEMA_VERSION:
            raise TechError(f"{source}: schema_version {version!r} is not supported "
                            f"(this tool reads version {TECH_SCHEMA_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise TechError(f"{source}: unknown field {unknown[0]!r} "
                            f"(known fields: {', '.join(sorted(known))})")
        try:
            return cls(**doc)
        except TechError as error:
            raise TechError(f"{source}: {error}") from None

    def replace(self, **changes: Any) -> Technology:
        return dataclasses.replace(self, **changes)


#: The per-event (dynamic) energies: what `Technology.at_supply` scales by V^2.
DYNAMIC_FIELDS = ("cim_cell_fj", "cim_wordline_fj", "readout_fom_fj", "add_pj_per_bit",
                  "mult_pj_per_bit2", "sram_pj_per_bit_8kb")

DEFAULT_TECH = Technology()


def load_technology(path: str | Path | None) -> Technology:
    """The technology in a JSON file, or the 28 nm defaults for ``None``."""
    if path is None:
        return DEFAULT_TECH
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise TechError(f"cannot read technology file {str(path)!r}: "
                        f"{error.strerror}") from None
    except UnicodeDecodeError:
        raise TechError(f"technology file {str(path)!r} is not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise TechError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, "
                        f"column {error.colno})") from None
    except RecursionError:
        raise TechError(f"{path}: not valid JSON (nested too deeply)") from None
    return Technology.from_dict(doc, source=str(path))
