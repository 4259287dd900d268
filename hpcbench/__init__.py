"""hpcbench: node-level hardware benchmark and validation for GPU/LLM clusters."""

__version__ = "0.1.0"
