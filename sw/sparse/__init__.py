"""CIM-aware sparse weight format: groups, index codes, packing and memory images."""
