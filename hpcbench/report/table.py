"""The terminal verdict table (rich): check, subject, metric, measured, expected, ratio, verdict, why."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from hpcbench.core.measurement import Verdict
from hpcbench.engine.record import Record

_STYLE = {
    "PASS": "green",
    "WARN": "yellow",
    "FAIL": "bold red",
    "ERROR": "bold magenta",
    "SKIP": "dim",
    "NOBASELINE": "cyan",
}


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.4g} {unit}".strip() if isinstance(value, (int, float)) else str(value)


def rows(record: Record) -> list[list[str]]:
    """The table's rows from a result record: one per evaluation, one per check that measured
    nothing. Metrics of one check and subject SKIPped for the same reason share one row
    (``nvme_media_errors, nvme_percent_used (5)``: a node without NVMe is one line, not five)."""
    out: list[list[str]] = []
    for c in record.checks:
        if not c.evaluations:
            why = "; ".join(x for x in (c.reason, c.hint) if x)
            out.append([c.id, c.subject, "-", "-", "-", "-", c.verdict.value, why])
            continue
        skipped: dict[str, list[str]] = {}
        for e in c.evaluations:
            if e.verdict is Verdict.SKIP and e.measured is None:
                skipped.setdefault(e.reason, []).append(e.metric)
                continue
            label = e.metric + (" (relative)" if e.kind == "relative" else "")
            ratio = f"{e.ratio:.2f}" if e.ratio is not None else "-"
            expected = _num(e.expected, e.unit) if e.expected is not None else "-"
            why = "; ".join(x for x in (e.reason, e.hint) if x)
            if e.verdict is Verdict.PASS and e.kind == "baseline":
                why = e.provenance
            out.append(
                [c.id, c.subject, label, _num(e.measured, e.unit), expected, ratio, e.verdict.value, why]
            )
        for why, metrics in skipped.items():
            label = ", ".join(metrics) + (f" ({len(metrics)})" if len(metrics) > 1 else "")
            out.append([c.id, c.subject, label, "-", "-", "-", Verdict.SKIP.value, why])
    return out


def render(record: Record, record_file: str | None, stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 160, highlight=False)
    title = f"hpcbench {record.suite.name} on {record.host}"
    baseline = record.baseline
    caption = (
        f"baseline: {baseline.name} ({baseline.matched_by})"
        if baseline
        else "baseline: none matched this node"
    )
    table = Table(title=title, caption=caption, caption_justify="left")
    for name, justify in (
        ("check", "left"),
        ("subject", "left"),
        ("metric", "left"),
        ("measured", "right"),
        ("expected", "right"),
        ("ratio", "right"),
        ("verdict", "left"),
        ("reason / hint", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for row in rows(record):
        cells = [escape(cell) for cell in row]  # a reason may hold '[...]' (e.g. a library's source path)
        cells[6] = f"[{_STYLE.get(row[6], '')}]{cells[6]}[/]"
        table.add_row(*cells)
    console.print(table)
    for line in summary_lines(record, record_file):
        console.print(line, markup=False)


def summary_lines(record: Record, record_file: str | None) -> list[str]:
    lines = [
        f"verdict: {record.verdict} (exit {record.exit_code})"
        + (f"; interrupted by {record.interrupted}" if record.interrupted else "")
    ]
    for skipped in record.not_run:
        lines.append(f"not run: {skipped.id}: {skipped.reason}")
    if record_file:
        lines.append(f"record: {record_file}")
    no_base = sum(1 for c in record.checks for e in c.evaluations if e.verdict is Verdict.NOBASELINE)
    if no_base:
        req = record.suite.require_baseline
        lines.append(
            f"{no_base} measurement(s) have no baseline"
            + (" and this suite requires one (UNKNOWN)." if req else "; the relative checks above need none.")
        )
        if record_file:
            lines.append(
                f"to record this node as the baseline once you trust it: "
                f"hpcbench baseline create {record_file} -o suites/baselines/<name>.toml"
            )
    return lines
