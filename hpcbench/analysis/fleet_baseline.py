"""``hpcbench baseline create --from-fleet DIR``: a fleet-median profile, outliers removed.

The latest record of every node (per suite; ``--suite`` keeps one). For each check and metric,
every node's and subject's value is pooled; outliers are removed iteratively (a round removes
every value whose modified z-score, 0.6745 |x - median| / MAD, exceeds ``k`` = 3.5, on either
side; rounds repeat until one removes nothing), and the expected value is the median of what
remains. Provenance: source fleet-median, the number of nodes, the first and last record
dates, the tool version, and which nodes' values were removed as outliers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcbench.analysis import load
from hpcbench.analysis.baseline_create import match_keys, render, toml_str, write_profile
from hpcbench.analysis.robust import trimmed
from hpcbench.core.errors import ConfigError

K = 3.5


def expected_from_fleet(
    values: Any, hosts: Any, k: float = K
) -> tuple[dict[str, dict[str, tuple[float, str, int]]], dict[str, list[str]]]:
    """(check -> metric -> (median, unit, values kept), "check.metric" -> hosts removed)."""
    v = values.loc[values["sane"]]
    host_of = hosts.to_numpy()[v["run"].to_numpy()]
    expected: dict[str, dict[str, tuple[float, str, int]]] = {}
    removed: dict[str, list[str]] = {}
    for (check, metric), idx in v.groupby(["check", "metric"], observed=True, sort=True).indices.items():
        vals = v["value"].to_numpy()[idx]
        median, keep = trimmed(vals, k)
        expected.setdefault(str(check), {})[str(metric)] = (
            median,
            str(v["unit"].iloc[idx[0]]),
            int(keep.sum()),
        )
        gone = sorted(set(host_of[idx][~keep]))
        if gone:
            removed[f"{check}.{metric}"] = gone
    return expected, removed


def slim_records(runs: Any) -> list[dict[str, Any]]:
    """What ``render`` and ``match_keys`` read of a record, from the loaded runs."""
    out = []
    for r in runs.itertuples():
        cfg = r.config
        gpu = cfg.get("gpu.name")
        out.append(
            {
                "host": r.host,
                "started": r.started.isoformat(),
                "suite": {"name": r.suite},
                "inventory": {
                    "cpu": {"model": cfg.get("cpu.model")},
                    "gpus": {"devices": [{"name": gpu}] if gpu else []},
                },
            }
        )
    return out


def create_from_fleet(
    dirs: list[str],
    output: str,
    *,
    name: str | None = None,
    source: str = "fleet-median",
    match: str | None = None,
    force: bool = False,
    suite: str | None = None,
    k: float = K,
) -> Path:
    out = Path(output)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    loaded = load.load(dirs, latest=True, suite=suite)
    if loaded.runs.empty:
        raise ConfigError(f"no usable result records in {' '.join(dirs)}")
    expected, removed = expected_from_fleet(loaded.values, loaded.runs["host"], k)
    records = slim_records(loaded.runs)
    listed = [
        f"{key}: {', '.join(hosts[:20])}" + (" ..." if len(hosts) > 20 else "")
        for key, hosts in removed.items()
    ]
    extra = (
        f"outlier_rule = {toml_str(f'iterative: values with |modified z| > {k:g} removed until none')}",
        f"outliers_removed = [{', '.join(toml_str(x) for x in listed)}]",
    )
    statistic = "median over the latest record of every node and its subjects, outliers removed"
    text = render(records, name or out.stem, source, match_keys(records, match), expected, extra, statistic)
    return write_profile(text, out)
