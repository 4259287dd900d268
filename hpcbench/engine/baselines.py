"""Baseline profiles: what a given kind of hardware should reach, and where that number came from.

name = "epyc-9654-2s"
description = "2 x AMD EPYC 9654, 24 x DDR5-4800"
[match]                      # all given keys must match the inventory
cpu_model = "AMD EPYC 9654"  # substring of the CPU model
# gpu_name = "NVIDIA H200"   # substring of the first GPU's name
# pci_device_id = "0x233510DE"
[provenance]
source = "golden-node"       # datasheet | golden-node | fleet-median | estimate | published
date = "2026-11-28"
nodes = 1
[expected.membw]             # check id
triad = 520.0                # metric = value, in the probe's unit
copy = { value = 480.0, unit = "GB/s", source = "STREAM on node a17", estimate = false }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpcbench.core import tomlfile
from hpcbench.core.errors import ConfigError
from hpcbench.node.inventory import GpuDevice, Inventory

SOURCES = ("datasheet", "golden-node", "fleet-median", "estimate", "published")
MATCH_KEYS = ("cpu_model", "gpu_name", "pci_device_id")
_TOP_KEYS = {"name", "description", "match", "provenance", "expected"}


@dataclass(frozen=True)
class Expectation:
    value: float
    unit: str = ""
    source: str = ""
    estimate: bool = False


@dataclass(frozen=True)
class Baseline:
    name: str
    path: str
    match: dict[str, str]
    provenance: dict[str, Any]
    expected: dict[str, dict[str, Expectation]]
    description: str = ""
    matched_by: str = ""

    def expectation(self, check_id: str, metric: str) -> Expectation | None:
        return self.expected.get(check_id, {}).get(metric)

    def provenance_text(self, exp: Expectation | None = None) -> str:
        p = self.provenance
        parts = [f"{self.name}: {p.get('source', '?')}"]
        if p.get("nodes"):
            parts.append(f"{p['nodes']} node{'s' if p['nodes'] != 1 else ''}")
        if p.get("date"):
            parts.append(str(p["date"]))
        if exp is not None and exp.source:
            parts.append(exp.source)
        if exp is not None and exp.estimate:
            parts.append("estimate")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "match": self.match,
            "matched_by": self.matched_by,
            "provenance": self.provenance,
        }


def parse(doc: tomlfile.TomlDoc) -> Baseline:
    data = doc.data

    def err(key: str, message: str, table: str | None = None) -> ConfigError:
        leaf = key.rsplit(".", 1)[-1]
        return doc.error(f"key '{key}'", message, doc.line_of(leaf, table) if table else doc.line_of(leaf))

    for key in data:
        if key not in _TOP_KEYS:
            raise err(key, f"unknown key; expected one of {', '.join(sorted(_TOP_KEYS))}")
    name = data.get("name", Path(doc.path).stem)
    if not isinstance(name, str) or not name:
        raise err("name", f"expected a non-empty string, got {name!r}")
    match = data.get("match", {})
    if not isinstance(match, dict):
        raise err("match", "expected a table")
    for key, value in match.items():
        if key not in MATCH_KEYS:
            raise err(f"match.{key}", f"unknown match key; expected one of {', '.join(MATCH_KEYS)}", "match")
        if not isinstance(value, str) or not value:
            raise err(f"match.{key}", f"expected a non-empty string, got {value!r}", "match")
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        raise err("provenance", "expected a [provenance] table with source and date")
    if prov.get("source") not in SOURCES:
        raise err(
            "provenance.source",
            f"expected one of {', '.join(SOURCES)}, got {prov.get('source')!r}",
            "provenance",
        )
    if "date" not in prov:
        raise err("provenance.date", "expected the date the values were measured or published", "provenance")
    nodes = prov.get("nodes")
    if nodes is not None and (isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1):
        raise err("provenance.nodes", f"expected a positive integer, got {nodes!r}", "provenance")
    raw_expected = data.get("expected")
    if not isinstance(raw_expected, dict) or not raw_expected:
        raise err("expected", "expected [expected.<check id>] tables of metric = value")
    expected: dict[str, dict[str, Expectation]] = {}
    for check_id, metrics in raw_expected.items():
        table = f"expected.{check_id}"
        if not isinstance(metrics, dict):
            raise err(table, "expected a table of metric = value")
        expected[check_id] = {}
        for metric, value in metrics.items():
            key = f"{table}.{metric}"
            if isinstance(value, dict):
                extra = set(value) - {"value", "unit", "source", "estimate"}
                if extra:
                    raise err(
                        key,
                        f"unknown key {sorted(extra)[0]!r}; expected value, unit, source, estimate",
                        table,
                    )
                number = value.get("value")
                exp_kwargs = {k: value[k] for k in ("unit", "source", "estimate") if k in value}
            else:
                number, exp_kwargs = value, {}
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
                raise err(key, f"expected a positive number, got {number!r}", table)
            expected[check_id][metric] = Expectation(float(number), **exp_kwargs)
    return Baseline(
        name=name,
        path=doc.path,
        match=dict(match),
        provenance=dict(prov),
        expected=expected,
        description=str(data.get("description", "")),
    )


def load(name_or_path: str, site: Sequence[Path] = ()) -> Baseline:
    """A profile by path, or by name in the ``site`` folders, then the bundled ones."""
    path = tomlfile.resolve(name_or_path, "baselines", "baseline", site)
    return parse(tomlfile.read(path, "baseline"))


def match_score(match: dict[str, str], inventory: Inventory) -> int:
    """How many match keys the inventory satisfies; 0 when any key fails or there are none."""
    if not match:
        return 0
    inventory = inventory
    cpu_model = (inventory.cpu.model or "").lower()
    devices = inventory.gpus.devices
    gpu = devices[0] if devices else GpuDevice()
    for key, want in match.items():
        want_l = want.lower()
        if key == "cpu_model" and want_l not in cpu_model:
            return 0
        if key == "gpu_name" and want_l not in (gpu.name or "").lower():
            return 0
        if key == "pci_device_id" and want_l != (gpu.pci_device_id or "").lower():
            return 0
    return len(match)


def choose(inventory: Inventory, explicit: str | None = None, site: Sequence[Path] = ()) -> Baseline | None:
    """The baseline for this node: the explicit one (``--baseline FILE|NAME``), else the profile
    that matches the inventory best in the ``site`` folders, else among the bundled ones, else None."""
    if explicit:
        chosen = load(explicit, site)
        return replace(chosen, matched_by="chosen with --baseline")
    for folder in (*site, tomlfile.bundled_dir() / "baselines"):
        best: tuple[int, Baseline] | None = None
        for path in sorted(Path(folder).glob("*.toml")):
            candidate = parse(tomlfile.read(path, "baseline"))
            score = match_score(candidate.match, inventory)
            if score and (best is None or score > best[0]):
                best = (score, candidate)
        if best is not None:
            keys = ", ".join(f"{k}={v!r}" for k, v in best[1].match.items())
            where = "" if Path(folder) == tomlfile.bundled_dir() / "baselines" else f" (site folder {folder})"
            return replace(best[1], matched_by=f"inventory matched {keys}{where}")
    return None
