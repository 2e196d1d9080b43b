"""Quantisation-aware training with BN folding, CIM-aware group pruning, model export."""
