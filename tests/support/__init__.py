"""What several test folders share: fake NVML replaying pynvml's types and values, a fixed clock,
record and fleet builders, the one-node Slurm cluster, and the rule that turns skips into failures.
Importable as ``support`` (pyproject's ``pythonpath = ["tests"]``; children get ``TESTS`` on their
PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path

#: the tests folder (on the PYTHONPATH of children that import a fake from here)
TESTS = Path(__file__).resolve().parent.parent
#: the checkout
ROOT = TESTS.parent
