"""Validation of the macro energy model against published SRAM-CIM macros.

The published figures live in ``macros.json`` next to this module (each with its paper,
table and how it was read); docs/energy.md ("Validation") explains them.  For each macro:

- its *technology* is calibrated on ONE published operating point (`macro_technology`):
  the per-cell array energy and the readout's Walden figure of merit come from that
  point's published energy breakdown (Jia et al.) or TOPS/W (Si et al., with this
  project's half/half split);
- every other published point is *predicted* (`predict`) with the model's own event
  counts (`mars.sw.energy.counts.macro_events`) and energy rules (`Technology`: Walden
  readout, C*V^2 supply scaling), and compared (`validate`).

Nothing in a prediction is fitted to the point it predicts.
"""

from __future__ import annotations

import json
from pathlib import Path

from .counts import macro_events
from .tech import DEFAULT_TECH, TechError, Technology

__all__ = ["MACROS_FILE", "load_macros", "macro_technology", "macro_tops_per_w",
           "predict", "validate"]

#: The published macro figures (JSON): geometry, calibration point, validation points.
MACROS_FILE = Path(__file__).with_name("macros.json")


def load_macros(path: str | Path = MACROS_FILE) -> dict[str, dict]:
    """The macro records of `path` by name (see ``macros.json``)."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != "mars-macro-validation":
        raise TechError(f"{path}: not a macro validation file")
    return {m["name"]: m for m in doc["macros"]}


def macro_tops_per_w(geometry: dict, tech: Technology) -> float:
    """Macro-only TOPS/W (one MAC = 2 operations) of one compute step of `geometry`.

    A step turns on ``rows_on`` (G) word lines and reads ``columns_read`` (C) columns for
    each of ``input_bits`` (Ab) input bits; a weight spans ``weight_bits`` (Wb) columns, so
    the step computes G * C / Wb MACs.  Its energy is the model's array (cell x input bit)
    and readout (one ``readout_bits`` conversion per column and input bit) energy: the
    figure published macro efficiencies report (no buffers, no digital accumulation).
    """
    G, C = geometry["rows_on"], geometry["columns_read"]
    Ab, Wb = geometry["input_bits"], geometry["weight_bits"]
    events = macro_events(1, G, C, Ab)
    energy_pj = (events["cell_ops"] * tech.cim_cell_fj
                 + events["wordline_pulses"] * tech.cim_wordline_fj) / 1000.0 \
        + events["conversions"] * tech.readout_pj(geometry["readout_bits"])
    macs = G * C // Wb
    return 2 * macs / energy_pj          # operations per pJ = TOPS/W


def macro_technology(record: dict) -> Technology:
    """The macro's own technology, calibrated on its calibration point only.

    With a published energy breakdown per column conversion (``array_pj_per_conversion``,
    ``adc_pj_per_conversion``): ``cim_cell_fj`` = array energy / G (a conversion reads
    one column of G active cells for one input bit), ``readout_fom_fj`` = ADC energy /
    2^readout_bits (Walden).
    Without one (``tops_per_w`` only): the default technology's array and readout energies
    times one common factor that makes the geometry give that figure (for Si et al. the
    factor is 1: the defaults were fitted to it, docs/energy.md).
    """
    cal, geo = record["calibration"], record["geometry"]
    if "array_pj_per_conversion" in cal:
        return Technology(
            name=f"{record['name']}-{cal['supply_v']}V", node_nm=float(record["node_nm"]),
            supply_v=float(cal["supply_v"]),
            cim_cell_fj=cal["array_pj_per_conversion"] * 1000.0 / geo["rows_on"],
            readout_fom_fj=cal["adc_pj_per_conversion"] * 1000.0 / 2 ** geo["readout_bits"])
    # Only a TOPS/W: one common factor on the array and readout energies of the default
    # technology (whose split is this project's assumption) fitted to it.
    k = macro_tops_per_w(geo, DEFAULT_TECH) / float(cal["tops_per_w"])
    return DEFAULT_TECH.replace(
        name=f"{record['name']}-{cal['supply_v']}V", node_nm=float(record["node_nm"]),
        supply_v=float(cal["supply_v"]), cim_cell_fj=DEFAULT_TECH.cim_cell_fj * k,
        cim_wordline_fj=DEFAULT_TECH.cim_wordline_fj * k,
        readout_fom_fj=DEFAULT_TECH.readout_fom_fj * k)


def predict(record: dict, point: dict) -> float:
    """The model's TOPS/W at a published `point` of `record`'s macro: the calibrated
    technology at the point's supply (C*V^2) and the geometry at its bit widths."""
    tech = macro_technology(record)
    if "supply_v" in point:
        tech = tech.at_supply(point["supply_v"])
    geometry = dict(record["geometry"])
    for key in ("input_bits", "weight_bits", "readout_bits"):
        if key in point:
            geometry[key] = point[key]
    return macro_tops_per_w(geometry, tech)


def _label(point: dict) -> str:
    parts = []
    if "input_bits" in point:
        parts.append(f"{point['input_bits']}b x {point.get('weight_bits', '?')}b")
    if "supply_v" in point:
        parts.append(f"{point['supply_v']:g} V")
    return ", ".join(parts)


def validate(path: str | Path = MACROS_FILE) -> list[dict]:
    """Every published point of every macro beside the model's prediction: rows of
    macro, point description, role, published and model TOPS/W, relative error."""
    rows = []
    for name, record in load_macros(path).items():
        for point in record["points"]:
            model = predict(record, point)
            published = float(point["tops_per_w"])
            label = _label(point)
            rows.append({"macro": name, "point": label, "role": point["role"],
                         "published": published, "model": model,
                         "error": model / published - 1.0, "source": point["source"]})
    return rows
