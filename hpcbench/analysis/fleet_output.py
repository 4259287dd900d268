"""``hpcbench fleet`` output: a rich table on stdout, CSV of every score, JSON for scripts."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from hpcbench.analysis.fleet import SuiteFleet
from hpcbench.analysis.load import Skipped
from hpcbench.core.exitcodes import ExitCode

CSV_COLUMNS = [
    "suite",
    "host",
    "check",
    "subject",
    "metric",
    "unit",
    "value",
    "fleet_median",
    "ratio",
    "score",
    "flagged",
    "expected",
    "nodes",
]


def exit_code(fleets: list[SuiteFleet]) -> ExitCode:
    """FAIL (2) when a node is to be drained, WARN (1) when one needs a look, else OK."""
    if any(f.drain for f in fleets):
        return ExitCode.FAIL
    if any(f.check for f in fleets):
        return ExitCode.WARN
    return ExitCode.OK


def _num(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def as_json(fleets: list[SuiteFleet], skipped: tuple[Skipped, ...]) -> dict[str, Any]:
    out = []
    for f in fleets:
        nodes = f.nodes
        outliers = f.scores.loc[f.scores["flagged"]].sort_values("score")
        out.append(
            {
                "suite": f.suite,
                "nodes": len(nodes),
                "first_record": nodes["started"].min().isoformat() if len(nodes) else None,
                "last_record": nodes["started"].max().isoformat() if len(nodes) else None,
                "drain": f.drain,
                "check": f.check,
                "node_status": [
                    {
                        "host": r.host,
                        "status": r.status,
                        "verdict": r.verdict,
                        "started": r.started.isoformat(),
                        "record": r.file,
                        "outliers": int(r.outliers),
                        "drift": int(r.drift),
                        "worst_ratio": _num(r.worst_ratio),
                        "reasons": list(r.reasons),
                    }
                    for r in nodes.itertuples()
                ],
                "outliers": [
                    {
                        "host": r.host,
                        "check": r.check,
                        "subject": r.subject,
                        "metric": r.metric,
                        "unit": r.unit,
                        "value": _num(r.value),
                        "fleet_median": _num(r.fleet_median),
                        "ratio": _num(r.ratio),
                        "score": _num(r.score) if math.isfinite(r.score) else "-inf",
                        "expected": _num(r.expected),
                    }
                    for r in outliers.itertuples()
                ],
                "drift": [
                    {
                        "host": r.host,
                        "field": r.field,
                        "value": r.value,
                        "majority": r.majority,
                        "share": r.share,
                    }
                    for r in f.drift.itertuples()
                ],
                "split": f.split,
                "metrics": [
                    {
                        "check": r.check,
                        "subject": r.pool,
                        "metric": r.metric,
                        "unit": r.unit,
                        "higher_is_better": bool(r.higher_is_better),
                        "nodes": int(r.nodes),
                        "values": int(r.values),
                        "median": _num(r.median),
                        "mad": _num(r.mad),
                        "flagged": int(r.flagged),
                        "scored": bool(r.scored),
                    }
                    for r in f.metrics.itertuples()
                ],
            }
        )
    return {"suites": out, "skipped": [{"path": s.path, "reason": s.reason} for s in skipped]}


def write_csv(fleets: list[SuiteFleet], path: str) -> Path:
    """Every node's every score (a row per suite, node, check, subject, metric)."""
    import pandas as pd

    parts = []
    for f in fleets:
        part = f.scores.copy()
        part.insert(0, "suite", f.suite)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CSV_COLUMNS)
    from hpcbench.core.atomic import atomic_open

    out = Path(path)
    with atomic_open(out, newline="") as fh:
        frame[CSV_COLUMNS].to_csv(fh, index=False, float_format="%.6g")
    return out


def render(fleets: list[SuiteFleet], stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 160, highlight=False)
    if not fleets:
        console.print("no usable records")
    for f in fleets:
        nodes = f.nodes
        first, last = nodes["started"].min(), nodes["started"].max()
        console.print(
            f"[bold]fleet {f.suite}[/]: {len(nodes)} nodes, "
            f"latest records {first:%Y-%m-%d} .. {last:%Y-%m-%d}; "
            f"[red]{len(f.drain)} to drain[/], [yellow]{len(f.check)} to check[/], "
            f"{int((nodes['status'] == 'OK').sum())} OK"
        )
        bad = nodes.loc[nodes["status"] != "OK"]
        if len(bad):
            t = Table(title=f"{f.suite}: nodes to drain or check", title_justify="left")
            for col in ("host", "status", "verdict", "worst ratio", "why"):
                t.add_column(col, overflow="fold")
            for r in bad.itertuples():
                style = "bold red" if r.status == "DRAIN" else "yellow"
                why = "\n".join(r.reasons[:4]) + (
                    f"\n(+{len(r.reasons) - 4} more)" if len(r.reasons) > 4 else ""
                )
                ratio = f"{r.worst_ratio:.2f}" if math.isfinite(r.worst_ratio) else "-"
                t.add_row(r.host, f"[{style}]{r.status}[/]", str(r.verdict), ratio, why)
            console.print(t)
        t = Table(title=f"{f.suite}: per metric across the fleet", title_justify="left")
        for col, justify in (
            ("check", "left"),
            ("subject", "left"),
            ("metric", "left"),
            ("nodes", "right"),
            ("median", "right"),
            ("MAD", "right"),
            ("flagged", "right"),
        ):
            t.add_column(col, justify=justify)
        for r in f.metrics.itertuples():
            flagged = f"[red]{r.flagged}[/]" if r.flagged else ("0" if r.scored else "too few nodes")
            t.add_row(
                r.check,
                r.pool,
                r.metric,
                str(r.nodes),
                f"{r.median:,.4g} {r.unit}",
                f"{r.mad:,.3g}",
                flagged,
            )
        console.print(t)
        for name, counts in f.split.items():
            console.print(f"split: {name}: " + ", ".join(f"{v} on {n}" for v, n in counts.items()))


def dump_json(fleets: list[SuiteFleet], skipped: tuple[Skipped, ...], stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(as_json(fleets, skipped), indent=1) + "\n")
