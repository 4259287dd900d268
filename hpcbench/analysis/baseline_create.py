"""``hpcbench baseline create``: a baseline profile from golden-node result records.

The expected value of each (check, metric) is the median, over every record and
subject, of the measured values; only measurements whose check ran and passed
its sanity check count. Provenance records the hosts, dates, number of nodes
and the tool version. Counts of faults (unit ``count``: ECC or AER errors, kernel-log
lines, offline CPUs) are left out: the suites judge them by absolute limits.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from hpcbench import __version__
from hpcbench.core.errors import ConfigError
from hpcbench.engine import store

#: the unit of the health probes' fault counts (errors, offline CPUs, missing mounts): such a
#: count is judged by the suite's absolute limits (fail above 0.5, ...), never against what a
#: golden node happened to show, so a profile leaves it out
COUNT_UNIT = "count"


def toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(key: str) -> str:
    """A bare TOML key where allowed, else a quoted one (check ids may contain dots)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


def expected_values(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, str, int]]]:
    """check id -> metric -> (median value, unit, number of samples behind it)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    units: dict[tuple[str, str], str] = {}
    for rec in records:
        for c in rec["checks"]:
            if c["status"] != "ok":
                continue
            for m in c["measurements"]:
                if m.get("sanity"):
                    continue
                key = (c["id"], m["metric"])
                values[key].append(float(m["value"]))
                units[key] = m["unit"]
    out: dict[str, dict[str, tuple[float, str, int]]] = defaultdict(dict)
    for (check, metric), vals in sorted(values.items()):
        out[check][metric] = (statistics.median(vals), units[(check, metric)], len(vals))
    return dict(out)


def match_keys(records: list[dict[str, Any]], how: str | None) -> dict[str, str]:
    cpus = {r["inventory"].get("cpu", {}).get("model") for r in records}
    gpus = {((r["inventory"].get("gpus", {}).get("devices") or [{}])[0]).get("name") for r in records}
    if how is None:
        how = "gpu_name" if gpus - {None} else "cpu_model"
    if how == "none":
        return {}
    found = gpus if how == "gpu_name" else cpus
    if len(found) != 1 or None in found:
        raise ConfigError(
            f"the records do not share one {how.replace('_', ' ')} ({sorted(map(str, found))}); "
            "pass --match none and choose the profile with --baseline"
        )
    return {how: found.pop()}


def render(
    records: list[dict[str, Any]],
    name: str,
    source: str,
    match: dict[str, str],
    expected: dict[str, dict[str, tuple[float, str, int]]] | None = None,
    extra: tuple[str, ...] = (),
    statistic: str = "median over records and subjects of each measurement's value",
) -> str:
    """The profile's TOML. ``expected`` replaces the records' medians; ``extra``: more provenance lines."""
    expected = expected if expected is not None else expected_values(records)
    if not expected:
        raise ConfigError("the records contain no successful measurement to build a baseline from")
    hosts = sorted({r["host"] for r in records})
    dates = sorted(r["started"][:10] for r in records)
    suites = sorted({r["suite"]["name"] for r in records})
    description = f"{source} baseline from {len(hosts)} node(s): suite(s) {', '.join(suites)}"
    lines = [
        f"# Created by hpcbench {__version__} on {date.today().isoformat()} from {len(records)} record(s).",
        f"name = {toml_str(name)}",
        f"description = {toml_str(description)}",
        "",
        "[match]",
    ]
    lines += [f"{k} = {toml_str(v)}" for k, v in match.items()]
    lines += [
        "",
        "[provenance]",
        f"source = {toml_str(source)}",
        f"date = {toml_str(dates[-1])}",
        f"first_date = {toml_str(dates[0])}",
        f"nodes = {len(hosts)}",
        f"hosts = [{', '.join(toml_str(h) for h in hosts)}]",
        f"records = {len(records)}",
        f"tool_version = {toml_str(__version__)}",
        f"statistic = {toml_str(statistic)}",
        *extra,
    ]
    for check, metrics in expected.items():
        lines += ["", f"[expected.{_toml_key(check)}]"]
        for metric, (value, unit, n) in metrics.items():
            if unit == COUNT_UNIT:  # a golden node's 3 AER errors must not become the expected 3
                lines.append(f"# {metric}: a count of faults, judged by the suite's absolute limits")
                continue
            if value <= 0:
                lines.append(f"# {metric}: median {value:g} {unit} of {n} is not a usable expected value")
                continue
            lines.append(f"{metric} = {{ value = {value:.6g}, unit = {toml_str(unit)} }}  # median of {n}")
    return "\n".join(lines) + "\n"


def create(
    paths: list[str],
    output: str,
    *,
    name: str | None = None,
    source: str = "golden-node",
    match: str | None = None,
    force: bool = False,
) -> Path:
    out = Path(output)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    files = store.find(paths)
    if not files:
        raise ConfigError(f"no result records found in {' '.join(paths)}")
    records = [store.load_data(f) for f in files]
    text = render(records, name or out.stem, source, match_keys(records, match))
    return write_profile(text, out)


def write_profile(text: str, out: Path) -> Path:
    """Write a profile atomically, after checking that it loads back."""
    from hpcbench.core import tomlfile
    from hpcbench.core.atomic import write_atomic
    from hpcbench.engine import baselines

    def loads_back(tmp: Path) -> None:  # what we write must load back
        baselines.parse(tomlfile.read(tmp, "baseline"))

    return write_atomic(out, text, check=loads_back)
