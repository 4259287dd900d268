"""``hpcbench compare OLD NEW``: run to run, per check, subject and metric, beyond the noise?

Each side is a record file, or a folder whose newest good record is taken. For every check,
subject and metric measured on both sides: the checked value before and after, the change of
the samples' medians, the noise (the pooled robust spread of both sets of repeat samples, as
a fraction of the old median), and the rule of ``robust.compare_samples``: a change counts
when it exceeds ``k`` (3) times the noise *and* the two sample ranges do not overlap. With fewer
than 3 samples on a side the change is reported but not judged. Metrics measured on one side
only are listed; so are verdict changes.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from hpcbench.analysis import load
from hpcbench.analysis.robust import compare_samples
from hpcbench.core.errors import ConfigError
from hpcbench.core.exitcodes import ExitCode


@dataclass(frozen=True)
class Row:
    check: str
    subject: str
    metric: str
    unit: str
    old_value: float
    new_value: float
    old_median: float
    new_median: float
    change: float
    noise: float
    better: bool
    significant: bool | None
    old_verdict: str | None
    new_verdict: str | None
    why: str

    @property
    def status(self) -> str:
        if self.significant is None:
            return "not judged"
        if not self.significant:
            return "within noise"
        return "better" if self.better else "worse"


@dataclass(frozen=True)
class Comparison:
    old: dict[str, Any]  # file, host, suite, started, verdict of each side
    new: dict[str, Any]
    rows: tuple[Row, ...]
    only_old: tuple[str, ...]
    only_new: tuple[str, ...]
    k: float

    @property
    def worse(self) -> list[Row]:
        return [r for r in self.rows if r.status == "worse"]


def _side(path: str) -> tuple[dict[str, Any], Any]:
    loaded = load.load([path], latest=True, samples=True)
    if loaded.runs.empty:
        raise ConfigError(f"{path}: no usable result record")
    if len(loaded.runs) > 1:
        hosts = sorted(set(loaded.runs["host"]))
        suites = sorted(set(loaded.runs["suite"]))
        raise ConfigError(
            f"{path}: holds the newest records of {len(loaded.runs)} hosts/suites "
            f"({', '.join(hosts[:3])}; {', '.join(suites[:3])}); give one record file or one host's folder"
        )
    run = loaded.runs.iloc[0]
    info = {
        "file": run["file"],
        "host": run["host"],
        "suite": run["suite"],
        "started": run["started"].isoformat(),
        "verdict": run["verdict"],
    }
    return info, loaded.values


def compare_values(old: Any, new: Any, k: float = 3.0) -> tuple[list[Row], list[str], list[str]]:
    """Rows for every (check, subject, metric) on both sides; the keys found on one side only."""

    def index(frame: Any) -> dict[tuple[str, str, str], Any]:
        return {(str(r.check), str(r.subject), str(r.metric)): r for r in frame.itertuples()}

    a, b = index(old), index(new)
    rows = []
    for key in sorted(a.keys() & b.keys()):
        o, n = a[key], b[key]
        hib = bool(n.higher_is_better)
        ch = compare_samples(o.samples, n.samples, hib, k=k)
        rows.append(
            Row(
                *key,
                unit=str(n.unit),
                old_value=float(o.value),
                new_value=float(n.value),
                old_median=ch.old,
                new_median=ch.new,
                change=ch.change,
                noise=ch.noise,
                better=ch.better,
                significant=ch.significant,
                old_verdict=None if o.verdict is None or o.verdict != o.verdict else str(o.verdict),
                new_verdict=None if n.verdict is None or n.verdict != n.verdict else str(n.verdict),
                why=ch.why,
            )
        )
    fmt = "/".join
    return rows, [fmt(x) for x in sorted(a.keys() - b.keys())], [fmt(x) for x in sorted(b.keys() - a.keys())]


def run(old_path: str, new_path: str, k: float = 3.0) -> Comparison:
    old_info, old_values = _side(old_path)
    new_info, new_values = _side(new_path)
    if old_info["suite"] != new_info["suite"]:
        print(
            f"hpcbench: warning: comparing suite {old_info['suite']!r} with {new_info['suite']!r}: "
            "only the checks both ran",
            file=sys.stderr,
        )
    rows, only_old, only_new = compare_values(old_values, new_values, k)
    if not rows:
        raise ConfigError(f"{old_path} and {new_path} have no check, subject and metric in common")
    return Comparison(old_info, new_info, tuple(rows), tuple(only_old), tuple(only_new), k)


def exit_code(c: Comparison) -> ExitCode:
    """FAIL (2) when a metric got worse beyond the noise, else OK."""
    return ExitCode.FAIL if c.worse else ExitCode.OK


def _pct(x: float) -> str:
    return f"{x:+.1%}" if math.isfinite(x) else "-"


def render(c: Comparison, stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 160, highlight=False)
    title = (
        f"{c.old['host']} {c.old['started'][:19]} ({c.old['suite']}) -> "
        f"{c.new['host']} {c.new['started'][:19]} ({c.new['suite']})"
    )
    t = Table(title=title, caption=f"beyond the noise: |change| > {c.k:g} x noise and ranges apart")
    for col, justify in (
        ("check", "left"),
        ("subject", "left"),
        ("metric", "left"),
        ("old", "right"),
        ("new", "right"),
        ("change", "right"),
        ("noise", "right"),
        ("", "left"),
        ("verdict", "left"),
    ):
        t.add_column(col, justify=justify)
    style = {"worse": "bold red", "better": "green", "within noise": "dim", "not judged": "yellow"}
    for r in c.rows:
        verdict = r.new_verdict or "-"
        if r.old_verdict and r.old_verdict != r.new_verdict:
            verdict = f"{r.old_verdict} -> {verdict}"
        t.add_row(
            r.check,
            r.subject,
            r.metric,
            f"{r.old_value:,.4g} {r.unit}",
            f"{r.new_value:,.4g} {r.unit}",
            _pct(r.change),
            f"±{r.noise:.1%}" if math.isfinite(r.noise) else "-",
            f"[{style[r.status]}]{r.status}[/]",
            verdict,
        )
    console.print(t)
    for label, keys in (("only in the old record", c.only_old), ("only in the new record", c.only_new)):
        if keys:
            console.print(f"{label}: {', '.join(keys)}")
    worse = c.worse
    console.print(
        f"{len(worse)} worse beyond the noise"
        + (
            ": " + ", ".join(f"{r.check}/{r.subject} {r.metric} {_pct(r.change)}" for r in worse)
            if worse
            else ""
        )
    )


def as_json(c: Comparison) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "old": c.old,
        "new": c.new,
        "k": c.k,
        "rows": [
            {
                "check": r.check,
                "subject": r.subject,
                "metric": r.metric,
                "unit": r.unit,
                "old_value": r.old_value,
                "new_value": r.new_value,
                "old_median": r.old_median,
                "new_median": r.new_median,
                "change": num(r.change),
                "noise": num(r.noise),
                "status": r.status,
                "significant": r.significant,
                "old_verdict": r.old_verdict,
                "new_verdict": r.new_verdict,
                "why": r.why,
            }
            for r in c.rows
        ],
        "only_old": list(c.only_old),
        "only_new": list(c.only_new),
        "worse": len(c.worse),
    }


def dump_json(c: Comparison, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(as_json(c), indent=1) + "\n")
