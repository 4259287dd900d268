"""Probes: base.py (the contract), registry.py (discovery and the contract's check), and one
package per probe holding everything only that probe uses."""
