"""Entry points of one group, read the way ``importlib.metadata.entry_points(group=...)`` reads them,
without importing it: ``importlib.metadata`` imports the ``email`` package at its own import (to
parse METADATA), a quarter of what ``hpcbench list`` used to spend starting up.

What it reads, as ``importlib.metadata`` does (Python 3.10-3.13, ``MetadataPathFinder``):

- every folder on ``sys.path`` in order (``""``: the current folder), its ``*.dist-info`` and
  ``*.egg-info`` folders in the order ``os.listdir`` gives them;
- one distribution per normalized name, the first found (a package installed twice: the one
  Python would import);
- ``entry_points.txt``: ``[group]`` sections of ``name = module:attr`` lines, ``#``/``;``
  comments and blank lines skipped;
- the name and version for messages from METADATA's (or PKG-INFO's) header lines.

Where ``sys.path`` holds a zip archive or an ``.egg``, or an import hook on ``sys.meta_path`` finds
distributions of its own, ``importlib.metadata`` itself is asked (``find``): those rare set-ups
keep its exact behaviour, at its cost. tests/core/test_entrypoints.py compares the two on the
installed packages and on planted folders.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_NORMALIZE = re.compile(r"[-_.]+")


def normalized(name: str) -> str:
    """A distribution's name as ``importlib.metadata`` compares them (PEP 503, ``-`` as ``_``)."""
    return _NORMALIZE.sub("-", name).lower().replace("-", "_")


@dataclass(frozen=True)
class Distribution:
    """An installed distribution's metadata folder (``.dist-info`` or ``.egg-info``)."""

    path: str
    #: ``name version`` where importlib.metadata already read it (a zip archive's distribution)
    known_label: str = ""

    @property
    def stem_name(self) -> str:
        """The name in the folder's name (``hpcbench_x-1.0.dist-info`` -> ``hpcbench_x``)."""
        return os.path.basename(self.path.rstrip(os.sep)).rpartition(".")[0].partition("-")[0]

    def header(self) -> dict[str, str]:
        """METADATA's (PKG-INFO's) header fields, up to the first blank line; {} when unreadable."""
        for name in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(self.path, name), encoding="utf-8", errors="replace") as fh:
                    return parse_header(fh)
            except OSError:
                continue
        return {}

    def label(self) -> str:
        """``name version`` as METADATA says (``hpcbench-x 1.0``); the folder's name as a fallback."""
        if self.known_label:
            return self.known_label
        head = self.header()
        name = head.get("name") or self.stem_name
        return f"{name} {head['version']}" if head.get("version") else name


@dataclass(frozen=True)
class EntryPoint:
    """``name = value`` of a group, ``value`` being ``module`` or ``module:attr.attr``."""

    name: str
    value: str
    group: str
    dist: Distribution | None = field(default=None, compare=False)

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        return self.value.partition(":")[2].partition("[")[0].strip()

    def load(self) -> Any:
        """Import the module and return the object named (as ``EntryPoint.load`` does)."""
        import importlib

        obj: Any = importlib.import_module(self.module)
        for part in filter(None, self.attr.split(".")):
            obj = getattr(obj, part)
        return obj


def parse_header(lines: Iterable[str]) -> dict[str, str]:
    """Header fields of a METADATA file (RFC 822 style), keys lower-cased, the first of each kept."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def parse(text: str, group: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of ``group`` in an ``entry_points.txt``."""
    pairs: list[tuple[str, str]] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def distributions(path: Iterable[str]) -> Iterator[Distribution]:
    """Every metadata folder on ``path``, first occurrence of each normalized name only. In a
    folder, its ``*.dist-info`` and ``*.egg-info`` grouped by name, in the order of each name's
    first appearance in ``os.listdir`` (importlib.metadata's ``Lookup``)."""
    seen: set[str] = set()
    for entry in path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            continue
        by_name: dict[str, Distribution] = {}
        for child in children:
            if child.lower().endswith((".dist-info", ".egg-info")):
                dist = Distribution(os.path.join(root, child))
                by_name.setdefault(normalized(dist.stem_name), dist)
        for key, dist in by_name.items():
            if key not in seen:
                seen.add(key)
                yield dist


def _needs_the_library(path: Iterable[str]) -> bool:
    """True where ``importlib.metadata`` would find what this reader does not: a zip archive or
    an ``.egg`` on the path, or a meta path finder of its own that finds distributions."""
    import importlib.machinery

    if any(p.lower().endswith(".egg") or os.path.isfile(p) for p in path if p):
        return True
    return any(
        hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder
        for finder in sys.meta_path
    )


def find(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` in the order ``importlib.metadata.entry_points`` gives them."""
    path = list(sys.path if path is None else path)
    if _needs_the_library(path):
        return _from_the_library(group)
    found: list[EntryPoint] = []
    for dist in distributions(path):
        try:
            with open(os.path.join(dist.path, "entry_points.txt"), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            continue
        found.extend(EntryPoint(name, value, group, dist) for name, value in parse(text, group))
    return found


def version(name: str, path: list[str] | None = None) -> str | None:
    """The installed version of distribution ``name`` (``importlib.metadata.version``), None when
    it is not installed."""
    path = list(sys.path if path is None else path)
    if _needs_the_library(path):
        from importlib import metadata

        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    key = normalized(name)
    for dist in distributions(path):
        if normalized(dist.stem_name) == key:
            return dist.header().get("version")
    return None


def _from_the_library(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        where = getattr(dist, "_path", None)
        label = f"{dist.metadata['Name']} {dist.metadata['Version']}" if dist is not None else ""
        found.append(EntryPoint(ep.name, ep.value, group, Distribution(str(where or ""), label)))
    return found
