"""Amaranth generators for the accelerator hardware."""
