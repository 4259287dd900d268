"""Typed exceptions. Each becomes a verdict or an exit code with a one-line reason."""

from __future__ import annotations


class HpcbenchError(Exception):
    """Base class of every error hpcbench reports to the user."""


class ConfigError(HpcbenchError):
    """Bad command line, suite, baseline, record or parameter: exit code 4, nothing run."""


class ParamError(ConfigError):
    """A probe parameter failed validation."""

    def __init__(self, probe: str, key: str, message: str) -> None:
        super().__init__(f"probe {probe!r}: parameter {key!r}: {message}")
        self.probe = probe
        self.key = key


class LockHeld(HpcbenchError):
    """Another hpcbench run holds this node's lock."""


class ProbeSkip(HpcbenchError):
    """Raised by a probe: the probe does not apply here (verdict SKIP)."""


class ProbeError(HpcbenchError):
    """Raised by a probe: it could not measure (verdict ERROR)."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.hint = hint
