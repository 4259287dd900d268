"""``hpcbench history HOST [DIR]``: one node's trend over its records, and since when it degraded.

A series is one (suite, check, subject, metric) over the node's records in time order. Each
point is compared with the **rolling median of the previous ``window`` healthy points** (at
least 3): it is *degraded* when its performance ratio to that median is below
``1 - tolerance`` (0.95) *and* it lies beyond 3 x the robust spread (1.4826 MAD) of those
points. Degraded points do not enter later windows, so a lasting drop stays a drop instead of
becoming the new normal, and "degraded since" is the first point of the current run of
degraded points. The trend is the least-squares slope, as a fraction of the series median per
week.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hpcbench.analysis import load
from hpcbench.analysis.robust import MAD_TO_SIGMA
from hpcbench.core.errors import ConfigError
from hpcbench.core.exitcodes import ExitCode

NOISE_K = 3.0
MIN_POINTS = 3


@dataclass(frozen=True)
class Point:
    started: str
    value: float
    reference: float | None  # rolling median of the previous healthy points
    ratio: float | None
    degraded: bool


@dataclass(frozen=True)
class Series:
    suite: str
    check: str
    subject: str
    metric: str
    unit: str
    higher_is_better: bool
    points: tuple[Point, ...]
    trend_per_week: float | None

    @property
    def degraded_now(self) -> bool:
        return bool(self.points) and self.points[-1].degraded

    @property
    def since(self) -> str | None:
        """The start of the current run of degraded points."""
        if not self.degraded_now:
            return None
        first = None
        for p in reversed(self.points):
            if not p.degraded:
                break
            first = p.started
        return first

    @property
    def degraded_count(self) -> int:
        return sum(p.degraded for p in self.points)


@dataclass(frozen=True)
class History:
    host: str
    records: int
    first: str
    last: str
    series: tuple[Series, ...]
    window: int
    tolerance: float

    @property
    def degraded(self) -> list[Series]:
        return [s for s in self.series if s.degraded_now]


def degradation(
    values: list[float], higher_is_better: bool, window: int = 7, tolerance: float = 0.05
) -> list[tuple[float | None, float | None, bool]]:
    """(reference, ratio, degraded) per value, against the rolling median of earlier healthy ones."""
    healthy: list[float] = []
    out: list[tuple[float | None, float | None, bool]] = []
    for x in values:
        w = healthy[-window:]
        if len(w) < MIN_POINTS:
            out.append((None, None, False))
            healthy.append(x)
            continue
        ref = statistics.median(w)
        spread = MAD_TO_SIGMA * statistics.median(abs(v - ref) for v in w)
        worse_by = (ref - x) if higher_is_better else (x - ref)
        ratio = (x / ref if ref else math.inf) if higher_is_better else (ref / x if x else math.inf)
        bad = ratio < 1 - tolerance and worse_by > NOISE_K * spread
        out.append((ref, ratio, bad))
        if not bad:
            healthy.append(x)
    return out


def trend(days: list[float], values: list[float]) -> float | None:
    """Least-squares slope as a fraction of the median per week; None with fewer than 3 points."""
    if len(values) < 3 or len(set(days)) < 2:
        return None
    md, mv = statistics.fmean(days), statistics.fmean(values)
    var = sum((d - md) ** 2 for d in days)
    slope = sum((d - md) * (v - mv) for d, v in zip(days, values, strict=True)) / var
    med = statistics.median(values)
    return slope * 7 / med if med else None


def run(
    host: str, dirs: list[str], suite: str | None = None, window: int = 7, tolerance: float = 0.05
) -> History:
    for d in dirs:
        if not Path(d).exists():
            raise ConfigError(f"{d}: no such file or folder")
    loaded = load.load(dirs, host=host, suite=suite)
    runs, values = loaded.runs, loaded.values
    if runs.empty:
        raise ConfigError(f"no usable records of host {host!r} in {' '.join(dirs)}")
    v = values.loc[values["sane"]].copy()
    v["suite"] = runs["suite"].to_numpy()[v["run"].to_numpy()]
    started = runs["started"]
    t0 = started.min()
    series = []
    for (s, check, subject, metric), g in v.groupby(["suite", "check", "subject", "metric"], observed=True):
        g = g.sort_values("run")  # runs are sorted by start time
        times = started.iloc[g["run"].to_numpy()]
        vals = [float(x) for x in g["value"]]
        hib = bool(g["higher_is_better"].iloc[0])
        judged = degradation(vals, hib, window, tolerance)
        days = [(t - t0).total_seconds() / 86400 for t in times]
        points = tuple(
            Point(t.isoformat(), x, ref, ratio, bad)
            for t, x, (ref, ratio, bad) in zip(times, vals, judged, strict=True)
        )
        series.append(
            Series(
                str(s),
                str(check),
                str(subject),
                str(metric),
                str(g["unit"].iloc[0]),
                hib,
                points,
                trend(days, vals),
            )
        )
    return History(
        host,
        len(runs),
        started.min().isoformat(),
        started.max().isoformat(),
        tuple(series),
        window,
        tolerance,
    )


def exit_code(h: History) -> ExitCode:
    """FAIL (2) when a series is degraded at the latest record, else OK."""
    return ExitCode.FAIL if h.degraded else ExitCode.OK


def render(h: History, show_all: bool = False, stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 160, highlight=False)
    console.print(
        f"[bold]{h.host}[/]: {h.records} records, {h.first[:10]} .. {h.last[:10]}; {len(h.series)} series; "
        f"[red]{len(h.degraded)} degraded now[/] (against the rolling median of {h.window} healthy records)"
    )
    shown = [s for s in h.series if show_all or s.degraded_count]
    if not shown:
        console.print("no degradation in any series")
        return
    t = Table()
    for col, justify in (
        ("suite", "left"),
        ("check", "left"),
        ("subject", "left"),
        ("metric", "left"),
        ("records", "right"),
        ("latest", "right"),
        ("rolling median", "right"),
        ("ratio", "right"),
        ("trend/week", "right"),
        ("status", "left"),
    ):
        t.add_column(col, justify=justify)
    for s in sorted(shown, key=lambda s: (not s.degraded_now, s.points[-1].ratio or 1)):
        last = s.points[-1]
        if s.degraded_now:
            status = f"[bold red]DEGRADED since {(s.since or '')[:10]}[/]"
        elif s.degraded_count:
            status = f"[yellow]recovered ({s.degraded_count} degraded)[/]"
        else:
            status = "ok"
        t.add_row(
            s.suite,
            s.check,
            s.subject,
            s.metric,
            str(len(s.points)),
            f"{last.value:,.4g} {s.unit}",
            f"{last.reference:,.4g} {s.unit}" if last.reference is not None else "-",
            f"{last.ratio:.2f}" if last.ratio is not None else "-",
            f"{s.trend_per_week:+.1%}" if s.trend_per_week is not None else "-",
            status,
        )
    console.print(t)


def as_json(h: History) -> dict[str, Any]:
    return {
        "host": h.host,
        "records": h.records,
        "first": h.first,
        "last": h.last,
        "window": h.window,
        "tolerance": h.tolerance,
        "degraded": len(h.degraded),
        "series": [
            {
                "suite": s.suite,
                "check": s.check,
                "subject": s.subject,
                "metric": s.metric,
                "unit": s.unit,
                "higher_is_better": s.higher_is_better,
                "degraded_now": s.degraded_now,
                "since": s.since,
                "degraded_points": s.degraded_count,
                "trend_per_week": s.trend_per_week,
                "points": [p.__dict__ for p in s.points],
            }
            for s in h.series
        ],
    }


def dump_json(h: History, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(as_json(h), indent=1) + "\n")


def write_csv(h: History, path: str) -> Path:
    import csv

    from hpcbench.core.atomic import atomic_open

    out = Path(path)
    with atomic_open(out, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "suite",
                "check",
                "subject",
                "metric",
                "unit",
                "started",
                "value",
                "reference",
                "ratio",
                "degraded",
            ]
        )
        for s in h.series:
            for p in s.points:
                w.writerow(
                    [
                        s.suite,
                        s.check,
                        s.subject,
                        s.metric,
                        s.unit,
                        p.started,
                        p.value,
                        p.reference,
                        p.ratio,
                        p.degraded,
                    ]
                )
    return out
