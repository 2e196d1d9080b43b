"""MARS SRAM-CIM accelerator generator."""
