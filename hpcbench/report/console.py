"""Console text of a record: which checks are not OK, why a run is UNKNOWN, the log's summary."""

from __future__ import annotations

from pathlib import Path

from hpcbench.core import timeparse
from hpcbench.core.measurement import Verdict
from hpcbench.engine.record import Record


def not_ok(record: Record) -> list[str]:
    """``check/subject`` of every check that is WARN, FAIL or ERROR, sorted."""
    return sorted({f"{c.id}/{c.subject}" for c in record.not_ok()})


def why_unknown(record: Record) -> str:
    """Why a run with no WARN, FAIL or ERROR check is UNKNOWN: checks left unrun, or measurements
    without the baseline the suite requires; "" otherwise."""
    parts = []
    if record.not_run:
        parts.append(f"not run: {', '.join(n.id for n in record.not_run)}")
    nobase = sorted({c.id for c in record.checks if c.verdict is Verdict.NOBASELINE})
    if nobase and record.suite.require_baseline:
        parts.append(
            f"no baseline for {', '.join(nobase)}, and suite {record.suite.name} requires one "
            "(hpcbench baseline create RECORD -o PROFILE.toml)"
        )
    return "; ".join(parts)


def summary(record: Record, path: Path) -> str:
    """The log's one-line summary: ``FAIL (exit 2) in 12 s: membw/node, ...; record results/...``."""
    start, end = timeparse.try_time(record.started), timeparse.try_time(record.ended)
    took = f" in {timeparse.format_duration((end - start).total_seconds())}" if start and end else ""
    bad = not_ok(record)
    what = ", ".join(bad) if bad else f"{len(record.checks)} check(s) judged"
    extra = f"; interrupted by {record.interrupted}" if record.interrupted else ""
    if record.not_run:
        extra += f"; not run: {', '.join(n.id for n in record.not_run)}"
    return f"{record.verdict} (exit {record.exit_code}){took}: {what}{extra}; record {path}"
