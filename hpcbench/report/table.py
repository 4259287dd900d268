"""The terminal verdict table (rich): check, subject, metric, measured, expected, ratio, verdict, why."""

from __future__ import annotations

import sys
from typing import Any, TextIO

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


def rows(record: dict[str, Any]) -> list[list[str]]:
    """The table's rows from a result record: one per evaluation, one per check that measured nothing."""
    out: list[list[str]] = []
    for c in record["checks"]:
        evals = c.get("evaluations") or []
        if not evals:
            why = "; ".join(x for x in (c.get("reason"), c.get("hint")) if x)
            out.append([c["id"], c["subject"], "-", "-", "-", "-", c["verdict"], why])
            continue
        for e in evals:
            label = e["metric"] + (" (relative)" if e.get("kind") == "relative" else "")
            ratio = f"{e['ratio']:.2f}" if e.get("ratio") is not None else "-"
            expected = _num(e.get("expected"), e.get("unit", "")) if e.get("expected") is not None else "-"
            why = "; ".join(x for x in (e.get("reason"), e.get("hint")) if x)
            if e["verdict"] == "PASS" and e.get("kind") == "baseline":
                why = e.get("provenance", "")
            out.append(
                [
                    c["id"],
                    c["subject"],
                    label,
                    _num(e.get("measured"), e.get("unit", "")),
                    expected,
                    ratio,
                    e["verdict"],
                    why,
                ]
            )
    return out


def render(record: dict[str, Any], record_file: str | None, stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 160, highlight=False)
    suite = record["suite"]["name"]
    baseline = record.get("baseline")
    title = f"hpcbench {suite} on {record['host']}"
    caption = (
        f"baseline: {baseline['name']} ({baseline['matched_by']})"
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


def summary_lines(record: dict[str, Any], record_file: str | None) -> list[str]:
    lines = [
        f"verdict: {record['verdict']} (exit {record['exit_code']})"
        + (f"; interrupted by {record['interrupted']}" if record.get("interrupted") else "")
    ]
    if record.get("not_run"):
        lines.append(f"not run: {', '.join(record['not_run'])}")
    if record_file:
        lines.append(f"record: {record_file}")
    no_base = sum(
        1 for c in record["checks"] for e in c.get("evaluations", []) if e["verdict"] == "NOBASELINE"
    )
    if no_base:
        req = record["suite"].get("require_baseline")
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
