"""``hpcbench fleet``: every node's latest record against its peers, no baseline needed.

Per suite (records of different suites are never mixed; ``--suite`` keeps one and skips the
others' records with a warning), for each check, subject and metric:

- the fleet median, each node's performance ratio to it (below 1 is worse, whatever the
  metric's direction), and a robust outlier score (the modified z-score, 0.6745 (x - median) /
  MAD, negative = worse);
- a node is a **slow outlier** on a metric when its score is below ``-k`` (3.5) *and* its ratio
  is below ``1 - min_deviation`` (0.95): far from its peers and by enough to matter;
- per-GPU subjects (``gpu0`` ... ``gpuN``) are pooled into one distribution per check and
  metric, so a single weak GPU stands out against every GPU of the fleet;
- a metric needs ``min_nodes`` (5) nodes before anyone is scored against it.

**Configuration drift**: driver, CUDA, GPU firmware, kernel, OS, governor, THP, numa_balancing,
huge pages, torch and the other versions (``load.config``) that differ from the value most of
the fleet has; a field where no value has a majority is reported as split.

A node is **DRAIN** when it is a slow outlier or its own record's verdict is FAIL; **CHECK**
when its configuration drifts, its record is WARN or UNKNOWN (a check could not measure), or
its latest record is more than ``stale_days`` older than the fleet's newest; else **OK**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpcbench.analysis.robust import performance_ratio, robust_score

GPU_POOL = "gpu*"


@dataclass(frozen=True)
class Options:
    k: float = 3.5
    min_deviation: float = 0.05
    min_nodes: int = 5
    stale_days: float = 7.0


@dataclass(frozen=True)
class SuiteFleet:
    """The analysis of one suite's fleet. DataFrames: see ``analyse``."""

    suite: str
    nodes: Any  # host, started, file, verdict, status, outliers, drift, reasons (list)
    scores: Any  # a row per node, check, subject, metric
    metrics: Any  # a row per check, pooled subject, metric
    drift: Any  # host, field, value, majority, share
    split: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> value -> nodes

    @property
    def drain(self) -> list[str]:
        return list(self.nodes.loc[self.nodes["status"] == "DRAIN", "host"])

    @property
    def check(self) -> list[str]:
        return list(self.nodes.loc[self.nodes["status"] == "CHECK", "host"])


def pooled_subject(subjects: Any) -> Any:
    """gpuN -> 'gpu*'; any other subject stays itself (a categorical, computed per category)."""
    import pandas as pd

    s = pd.Series(subjects).astype("category")
    cats = pd.Index(s.cat.categories.astype(str))
    pooled = cats.where(~cats.str.fullmatch(r"gpu\d+"), GPU_POOL)
    uniq = pd.Index(pooled.unique())
    return pd.Categorical.from_codes(uniq.get_indexer(pooled)[s.cat.codes.to_numpy()], uniq)


def score(values: Any, runs: Any, opts: Options) -> tuple[Any, Any]:
    """(scores, metrics) for one suite's latest records: a row per measurement, a row per group."""
    import numpy as np
    import pandas as pd

    v = values.loc[values["sane"]].copy()
    hosts = pd.Categorical(runs["host"])
    v["host"] = pd.Categorical.from_codes(hosts.codes[v["run"].to_numpy()], hosts.categories)
    v["pool"] = pooled_subject(v["subject"])
    keys = ["check", "pool", "metric"]
    grouped = v.groupby(keys, observed=True, sort=False)
    v["fleet_median"] = grouped["value"].transform("median")
    v["absdev"] = (v["value"] - v["fleet_median"]).abs()
    v["mad"] = v.groupby(keys, observed=True, sort=False)["absdev"].transform("median")
    v["nodes"] = grouped["host"].transform("nunique")
    hib = v["higher_is_better"].to_numpy()
    v["ratio"] = performance_ratio(v["value"], v["fleet_median"], hib)
    v["score"] = robust_score(v["value"], v["fleet_median"], v["mad"], hib)
    v["flagged"] = (
        (v["nodes"] >= opts.min_nodes) & (v["score"] < -opts.k) & (v["ratio"] < 1 - opts.min_deviation)
    )
    cols = ["host", "check", "subject", "pool", "metric", "unit", "value", "higher_is_better", "expected"]
    scores = v[cols + ["fleet_median", "mad", "ratio", "score", "nodes", "flagged"]].reset_index(drop=True)
    metrics = (
        v.groupby(keys, observed=True, sort=True)
        .agg(
            unit=("unit", "first"),
            higher_is_better=("higher_is_better", "first"),
            nodes=("nodes", "first"),
            values=("value", "size"),
            median=("fleet_median", "first"),
            mad=("mad", "first"),
            flagged=("flagged", "sum"),
            expected=("expected", "median"),
        )
        .reset_index()
    )
    metrics["flagged"] = metrics["flagged"].astype(int)
    metrics["scored"] = metrics["nodes"] >= opts.min_nodes
    for col in ("check", "pool", "metric", "unit"):
        metrics[col] = metrics[col].astype(str)
    scores["flagged"] = scores["flagged"].astype(bool)
    if scores.empty:
        scores["score"] = np.array([], dtype=float)
    return scores, pd.DataFrame(metrics)


def drift(runs: Any) -> tuple[Any, dict[str, dict[str, int]]]:
    """(rows of host, field, value, majority, share) and the split fields with their counts."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    split: dict[str, dict[str, int]] = {}
    hosts = list(runs["host"])
    if len(hosts) < 3:
        return pd.DataFrame(rows, columns=["host", "field", "value", "majority", "share"]), split
    configs = list(runs["config"])
    fields = sorted({k for c in configs for k in c})
    absent = "(absent)"
    for name in fields:
        vals = [c.get(name, absent) for c in configs]
        counts: dict[str, int] = {}
        for x in vals:
            counts[x] = counts.get(x, 0) + 1
        if len(counts) == 1:
            continue
        majority, top = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        share = top / len(vals)
        if share <= 0.5:
            split[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
            continue
        for host, x in zip(hosts, vals, strict=True):
            if x != majority:
                rows.append({"host": host, "field": name, "value": x, "majority": majority, "share": share})
    return pd.DataFrame(rows, columns=["host", "field", "value", "majority", "share"]), split


def _fmt(x: float) -> str:
    return f"{x:,.4g}"


def outlier_reason(r: Any) -> str:
    score = "-inf" if r.score == float("-inf") else f"{r.score:.1f}"
    return (
        f"{r.check}/{r.subject} {r.metric}: {_fmt(r.value)} {r.unit} is {r.ratio:.0%} of the fleet median "
        f"{_fmt(r.fleet_median)} {r.unit} (robust score {score})"
    )


def pooled_reason(group: Any, pool: str) -> str:
    """One line for several flagged subjects of one check and metric on a node (e.g. 8 GPUs)."""
    w = group.iloc[0]  # sorted by score: the worst first
    lo, hi = group["ratio"].min(), group["ratio"].max()
    span = f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"{lo:.0%}-{hi:.0%}"
    return (
        f"{w.check}/{pool} {w.metric}: {len(group)} {'GPUs' if pool == GPU_POOL else 'subjects'} at {span} "
        f"of the fleet median "
        f"{_fmt(w.fleet_median)} {w.unit} (worst {w.subject}: {_fmt(w.value)} {w.unit})"
    )


def nodes_table(runs: Any, scores: Any, drift_rows: Any, opts: Options) -> Any:
    """A row per node: status (DRAIN, CHECK, OK) and the reasons, worst first."""
    import pandas as pd

    flagged = scores.loc[scores["flagged"]].sort_values("score")
    by_host: dict[str, list[str]] = {}
    for (host, _, pool, _), group in flagged.groupby(
        ["host", "check", "pool", "metric"], observed=True, sort=False
    ):
        by_host.setdefault(str(host), []).append(
            outlier_reason(group.iloc[0]) if len(group) == 1 else pooled_reason(group, str(pool))
        )
    drift_by_host: dict[str, list[str]] = {}
    for r in drift_rows.itertuples():
        drift_by_host.setdefault(r.host, []).append(
            f"{r.field} is {r.value}; {r.share:.0%} of the fleet has {r.majority}"
        )
    worst = scores.groupby("host")["ratio"].min() if not scores.empty else pd.Series(dtype=float)
    newest = runs["started"].max()
    out = []
    for r in runs.itertuples():
        reasons = list(by_host.get(r.host, []))
        if r.verdict == "FAIL":
            reasons += [f"own record: {p}" for p in r.problems if p.startswith("FAIL")][:4]
        status = "DRAIN" if reasons else "OK"
        checks = list(drift_by_host.get(r.host, []))
        if r.verdict in ("WARN", "UNKNOWN"):
            checks += [f"own record: {p}" for p in r.problems][:5]
        age = (newest - r.started).total_seconds() / 86400
        if age > opts.stale_days:
            checks.append(f"latest record is {age:.0f} days older than the fleet's newest")
        if checks and status == "OK":
            status = "CHECK"
        out.append(
            {
                "host": r.host,
                "started": r.started,
                "file": r.file,
                "verdict": r.verdict,
                "status": status,
                "outliers": len(by_host.get(r.host, [])),
                "drift": len(drift_by_host.get(r.host, [])),
                "worst_ratio": float(worst.get(r.host, float("nan"))),
                "reasons": reasons + checks,
            }
        )
    order = {"DRAIN": 0, "CHECK": 1, "OK": 2}
    nodes = pd.DataFrame(out)
    if nodes.empty:
        return pd.DataFrame(
            columns=[
                "host",
                "started",
                "file",
                "verdict",
                "status",
                "outliers",
                "drift",
                "worst_ratio",
                "reasons",
            ]
        )
    nodes["_o"] = nodes["status"].map(order)
    return nodes.sort_values(["_o", "worst_ratio", "host"]).drop(columns="_o").reset_index(drop=True)


def analyse(loaded: Any, opts: Options | None = None) -> list[SuiteFleet]:
    """The fleet analysis of each suite in ``loaded`` (latest records), in suite order."""
    opts = opts or Options()
    out = []
    for suite in sorted(set(loaded.runs["suite"])):
        mask = (loaded.runs["suite"] == suite).to_numpy()
        runs = loaded.runs.loc[mask].reset_index(drop=True)
        remap = {int(old): new for new, old in enumerate(mask.nonzero()[0])}
        values = loaded.values.loc[loaded.values["run"].isin(remap)].copy()
        values["run"] = values["run"].map(remap)
        scores, metrics = score(values, runs, opts)
        drift_rows, split = drift(runs)
        out.append(
            SuiteFleet(suite, nodes_table(runs, scores, drift_rows, opts), scores, metrics, drift_rows, split)
        )
    return out
