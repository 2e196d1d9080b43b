"""Reach into an elaborated Amaranth design from a Python-simulator test."""

from __future__ import annotations

from amaranth.hdl import Fragment, Signal


def signals_by_name(fragment: Fragment) -> dict[str, Signal]:
    """Every signal assigned in `fragment` or below it, by name (a later fragment's
    signal wins where two share a name)."""
    found = {}
    for statements in fragment.statements.values():
        for statement in statements:
            for signal in statement._lhs_signals():
                found[signal.name] = signal
    for sub, _name, _src in fragment.subfragments:
        found.update(signals_by_name(sub))
    return found
