"""The one emitter: every output format of a run is chosen here.

stdout gets exactly one of: the verdict table (``table``), the record as JSON and nothing else
(``json``), one Nagios line (``nagios``), or under ``--quiet`` one line when the verdict is not
OK; the files a run was asked for (``--junit``, ``--prometheus-textfile``) are written by
``write_files``; a run skipped by ``--max-age`` says so with ``skipped``; ``--dry-run``'s plan
with ``plan``. Console text (the not-OK list, why a run is UNKNOWN, the log's summary line) is
``hpcbench.report.console``'s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from hpcbench.core.errors import HpcbenchError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.engine.record import Record
from hpcbench.report import console


def result(record: Record, path: Path, fmt: str, quiet: bool, out: TextIO | None = None) -> None:
    """A finished run's output on stdout."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(record.as_dict(), indent=1) + "\n")
    elif fmt == "nagios":
        from hpcbench.report import nagios

        print(nagios.line(record), file=out)
    elif quiet:
        if record.exit_code != ExitCode.OK:
            bad = ", ".join(console.not_ok(record)) or console.why_unknown(record) or "see record"
            print(f"hpcbench {record.suite.name}: {record.verdict}: {bad} ({path})", file=out)
    else:
        from hpcbench.report.table import render

        render(record, str(path), out)


def skipped(record: Record, line: str, fmt: str, quiet: bool) -> None:
    """--max-age found a recent pass: which record (stdout; stderr under --format json; nothing
    under --quiet); the monitoring system still gets its line, the last pass's."""
    text = f"hpcbench {record.suite.name}: {line}"
    if fmt == "nagios":
        from hpcbench.report import nagios

        print(nagios.line(record, note=line))
    elif fmt == "json":
        print(text, file=sys.stderr)
    elif not quiet:
        print(text)


def plan(fmt: str, *args: Any) -> None:
    """--dry-run: the plan as a table, or as JSON under --format json (nagios: the table)."""
    from hpcbench.report import dryrun

    dryrun.show(*args, "json" if fmt == "json" else "table")


def write_files(record: Record, junit: Path | None, prometheus_dir: Path | None) -> list[Path]:
    """The --junit and --prometheus-textfile files of a saved record; HpcbenchError if one fails."""
    written: list[Path] = []
    try:
        if junit:
            from hpcbench.report import junit as junit_xml

            written.append(junit_xml.write(record, junit))
        if prometheus_dir:
            from hpcbench.report import prometheus

            written.append(prometheus.write(record, prometheus_dir))
    except OSError as exc:
        raise HpcbenchError(f"could not write a report: {exc}") from None
    return written
