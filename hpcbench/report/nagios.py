"""``--format nagios``: one line for Nagios, Icinga, NRPE and check_mk, with the run's exit code.

    HPCBENCH <STATE> - <summary> | 'check_subject_metric'=value[UOM];warn;crit;0;

STATE is OK, WARNING, CRITICAL or UNKNOWN (exit 0, 1, 2, 3). The summary names the suite and, when
the run is not OK, the worst checks with their reasons. The performance data holds every judged
metric: warn and crit are absolute values in Nagios' range syntax, the expected value times the
warn or fail fraction (``42.5:`` alerts below 42.5, where higher is better; ``120`` alerts above
120, where lower is better; ``42.5:65`` also above 65 where ``thresholds.above`` caps a result
that is too good), or the suite's absolute limits. A value gets a unit of measure only where
Nagios has one (s, ms, us, %, B, KB, MB, TB); otherwise the unit is part of the label
(``'membw_node_triad_GB_s'=41.2;...``). Reads the record only.
"""

from __future__ import annotations

import re

from hpcbench.core.measurement import Evaluation, Verdict
from hpcbench.engine.record import CheckResult, Record

STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
#: a probe's unit -> (Nagios unit of measure, factor)
UOM = {
    "s": ("s", 1.0),
    "ms": ("ms", 1.0),
    "us": ("us", 1.0),
    "µs": ("us", 1.0),
    "ns": ("us", 1e-3),
    "%": ("%", 1.0),
    "B": ("B", 1.0),
    "KB": ("KB", 1.0),
    "MB": ("MB", 1.0),
    "TB": ("TB", 1.0),
    "GB": ("MB", 1e3),
    "KiB": ("B", 2.0**10),
    "MiB": ("B", 2.0**20),
    "GiB": ("B", 2.0**30),
    "TiB": ("B", 2.0**40),
}
#: units that need no word in the label (dimensionless)
PLAIN = ("", "count", "flag", "ratio")
SUMMARY_CHECKS = 3


def _num(value: float) -> str:
    return f"{value:.6g}"


def label(c: CheckResult, e: Evaluation) -> str:
    """``membw_node_triad`` (``_GB_s`` where Nagios has no unit for it), quoted for perfdata."""
    parts = [c.id, c.subject, e.metric]
    if e.unit not in UOM and e.unit not in PLAIN:
        parts.append(e.unit)
    text = "_".join(re.sub(r"[^A-Za-z0-9.]+", "_", p).strip("_") for p in parts if p)
    return f"'{text}'"


def ranges(e: Evaluation, higher_is_better: bool, factor: float, above: float | None) -> tuple[str, str]:
    """(warn, crit) in Nagios' range syntax, as absolute values in the perfdata's unit."""
    out = []
    for frac in (e.warn, e.fail):
        if frac is None:
            out.append("")
            continue
        if e.kind in ("baseline", "relative") and e.expected is not None:
            limit = e.expected * frac if higher_is_better else e.expected / frac
        else:  # absolute limits are values already
            limit = frac
        limit *= factor
        if higher_is_better:
            top = f"{_num(e.expected * above * factor)}" if above and e.expected is not None else ""
            out.append(f"{_num(limit)}:{top}")
        else:
            out.append(_num(limit))
    return out[0], out[1]


def perfdata(record: Record) -> list[str]:
    items = []
    for c in record.checks:
        direction = {m.metric: m.higher_is_better for m in c.measurements}
        above = (c.thresholds.get("thresholds") or {}).get("above")
        for e in c.evaluations:
            if e.measured is None:
                continue
            uom, factor = UOM.get(e.unit, ("", 1.0))
            higher = direction.get(e.metric, True)
            warn, crit = ranges(e, higher, factor, above if e.kind == "baseline" else None)
            items.append(f"{label(c, e)}={_num(e.measured * factor)}{uom};{warn};{crit};0;")
    return items


def summary(record: Record) -> str:
    bad = sorted(record.not_ok(), key=lambda c: -c.verdict.severity)
    head = f"{record.suite.name} on {record.host}: {len(record.checks)} check(s)"
    if not bad and not record.not_run:
        nobase = sum(1 for c in record.checks if c.verdict is Verdict.NOBASELINE)
        return head + (f", {nobase} without a baseline" if nobase else ", all passed")
    words = [f"{c.id}/{c.subject} {c.verdict.value}: {c.why}" for c in bad[:SUMMARY_CHECKS]]
    if len(bad) > SUMMARY_CHECKS:
        words.append(f"+{len(bad) - SUMMARY_CHECKS} more")
    if record.not_run:
        words.append(f"not run: {', '.join(n.id for n in record.not_run)}")
    return f"{head}; " + "; ".join(words)


def line(record: Record, note: str = "") -> str:
    """The Nagios line of a record; ``note`` replaces the summary (e.g. the --max-age skip)."""
    state = STATES.get(record.exit_code, "UNKNOWN")
    text = " ".join((note or summary(record)).replace("|", "/").split())  # '|' starts the perfdata
    data = " ".join(perfdata(record))
    return f"HPCBENCH {state} - {text}" + (f" | {data}" if data else "")
