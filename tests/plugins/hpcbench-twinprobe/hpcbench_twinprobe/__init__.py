"""The other "twin"."""

from hpcbench_brokenprobes import Twin

__all__ = ["Twin"]
