"""Energy, area and throughput estimates (docs/energy.md): event counts from the mapping
and the cycle model, times per-event energies from a technology file."""

from .counts import EVENTS, LayerCounts, comparator_activity, layer_counts, network_counts
from .model import (
    COMPONENTS, CONVENTION, EstimateError, area_um2, component_energy, estimate,
    estimate_network, scaled_add_pj, static_power_uw,
)
from .tech import DEFAULT_TECH, TechError, Technology, load_technology

__all__ = ["EVENTS", "LayerCounts", "comparator_activity", "layer_counts", "network_counts",
           "COMPONENTS", "CONVENTION", "EstimateError", "area_um2", "component_energy",
           "estimate", "estimate_network", "scaled_add_pj", "static_power_uw", "DEFAULT_TECH",
           "TechError", "Technology", "load_technology"]
