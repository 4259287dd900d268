"""Probes: one module per probe, plus the contract (base) and the registry."""
