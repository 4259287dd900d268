"""Probe discovery through the ``hpcbench.probes`` entry-point group.

Built-in probes register there too (see pyproject.toml), so a third-party
package is found exactly like ours. Duplicate names are refused.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from hpcbench.errors import ConfigError

GROUP = "hpcbench.probes"


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise ConfigError(
                f"two probes are named {ep.name!r}: {found[ep.name].value} and {ep.value}; "
                "uninstall one of the packages"
            )
        found[ep.name] = ep
    return found


def names() -> list[str]:
    return sorted(_entry_points())


def load(name: str) -> Any:
    """The probe class registered under ``name``; ConfigError when unknown or broken."""
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"unknown probe {name!r}; known probes: {known}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plugin must not take the CLI down
        raise ConfigError(f"probe {name!r} ({eps[name].value}) failed to load: {exc}") from None
    if getattr(cls, "name", None) != name:
        raise ConfigError(f"entry point {name!r} loads a probe named {getattr(cls, 'name', None)!r}")
    return cls


def load_all() -> dict[str, Any]:
    return {name: load(name) for name in names()}
