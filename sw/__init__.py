"""Software side: golden model, CLI, (later) trainer and exporter."""
