"""Operations options of ``run``, ``probe`` and ``slurm-check``: --log-file, --max-age, --junit,
--prometheus-textfile. Validated before anything runs (exit 4 with one line); the reports are
written from the saved record, after it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hpcbench import results, timeparse, trust
from hpcbench.errors import ConfigError, HpcbenchError
from hpcbench.model import Verdict
from hpcbench.record import Record


@dataclass(frozen=True)
class Options:
    log_file: Path | None = None
    max_age_s: float | None = None
    max_age_text: str = ""
    deadline_s: float | None = None
    junit: Path | None = None
    prometheus_dir: Path | None = None


def parse_duration(text: str, option: str = "--max-age") -> float:
    """A duration option's seconds (hpcbench.timeparse's grammar); ConfigError naming the option."""
    try:
        return timeparse.parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: {exc}") from None


def _writable_dir(option: str, given: str, folder: Path) -> None:
    where = "" if Path(given) == folder else f" {folder}"
    if not folder.is_dir():
        raise ConfigError(f"{option} {given}: no such folder{where}")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {given}: folder{where} not writable")
    trust.check(folder, f"{option} {given}: folder")


def options(args: Any) -> Options:
    """The operations options of a command line, checked; ConfigError names the bad one."""
    max_age = getattr(args, "max_age", None)
    deadline = getattr(args, "deadline", None)
    junit = getattr(args, "junit", None)
    prom = getattr(args, "prometheus_textfile", None)
    log = getattr(args, "log_file", None)
    if junit:
        if Path(junit).is_dir():
            raise ConfigError(f"--junit {junit}: is a folder")
        _writable_dir("--junit", junit, Path(junit).parent)
        trust.check_target(junit, "--junit")
    if prom:
        _writable_dir("--prometheus-textfile", prom, Path(prom))
    if log:
        if Path(log).is_dir():
            raise ConfigError(f"--log-file {log}: is a folder")
        _writable_dir("--log-file", log, Path(log).parent)
    return Options(
        log_file=Path(log) if log else None,
        max_age_s=parse_duration(max_age) if max_age is not None else None,
        deadline_s=parse_duration(deadline, "--deadline") if deadline is not None else None,
        max_age_text=max_age or "",
        junit=Path(junit) if junit else None,
        prometheus_dir=Path(prom) if prom else None,
    )


def name_time(name: str) -> datetime | None:
    """The UTC start time in a record's file name (20261128T020000Z.json, ...Z-1.json), or None."""
    stamp = results.name_stamp(name)
    return stamp[0] if stamp else None


def same_suite(record: Record, suite: dict[str, Any]) -> bool:
    """Whether a record is of this suite file with the same checks chosen (--only, --skip)."""
    return (
        record.suite.name == suite.get("name")
        and record.suite.sha256 == suite.get("sha256")
        and record.suite.selection == suite.get("selection", "")
    )


def fresh_pass(record: Record, now: datetime, max_age_s: float) -> bool:
    """Whether a record passed (OK, nothing left unrun, not interrupted) and started within max_age_s."""
    started = timeparse.try_time(record.started)
    if started is None or record.verdict != "OK" or record.exit_code != 0:
        return False
    if record.interrupted or record.not_run:
        return False
    return timedelta(0) <= now - started <= timedelta(seconds=max_age_s)


def newest_of_suite(
    host_dir: Path,
    suite: dict[str, Any],
    since: datetime,
    same: Callable[[Record, dict[str, Any]], bool] | None = None,
    owner: int | None = None,
) -> tuple[Path, Record] | None:
    """This host's newest readable record of ``suite`` (``same``: the test, default same_suite) that
    started after ``since`` (file names say when; older files are not read), or None. With
    ``owner``: only regular files of that uid count (a record another user wrote or linked there
    is not this user's run)."""
    same = same or same_suite
    if not host_dir.is_dir():
        return None
    newest: tuple[tuple[datetime, int], Path, Record] | None = None
    for path in host_dir.glob("*.json"):
        when = name_time(path.name)
        if path.name.startswith(".") or (when is not None and when < since - timedelta(seconds=1)):
            continue
        if owner is not None and not _owned_by(path, owner):
            continue
        try:
            record = results.load(path)
        except ConfigError:
            continue  # a bad record does not stop the run; the run writes a good one
        started = timeparse.try_time(record.started)
        if started is None or not same(record, suite):
            continue
        stamp = results.name_stamp(path.name)
        order = (started, stamp[1] if stamp else 0)  # two runs in one second: name-1.json is the later
        if newest is None or order > newest[0]:
            newest = (order, path, record)
    return (newest[1], newest[2]) if newest else None


def _owned_by(path: Path, uid: int) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == uid


def _same_name(record: Record, suite: dict[str, Any]) -> bool:
    return record.suite.name == suite.get("name")


def durations(outdir: Path, host: str, suite: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(check id, subject) -> seconds each took in this host's newest record of a suite of this name
    (any verdict, any version of the file): what --deadline and --dry-run expect a run to take."""
    since = datetime(1970, 1, 2, tzinfo=timezone.utc)
    found = newest_of_suite(Path(outdir) / host, suite, since, _same_name, owner=os.geteuid())
    if found is None:
        return {}
    # a check that was skipped or failed fast will likely do so again: its duration is as good a guess
    return {(c.id, c.subject): c.duration for c in found[1].checks if c.status != "interrupted"}


def recent_pass(
    outdir: Path,
    host: str,
    suite: dict[str, Any],
    opts: Options,
    now: datetime | None = None,
    euid: int | None = None,
) -> tuple[Path, Record, str] | None:
    """With --max-age: the newest record of this suite for this host when it passed recently
    enough, and the line that says so; else None (run). Only records the running user (``euid``)
    owns count: a record planted by another user never skips a run."""
    if opts.max_age_s is None:
        return None
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(seconds=opts.max_age_s)
    owner = os.geteuid() if euid is None else euid
    found = newest_of_suite(Path(outdir) / host, suite, since, owner=owner)
    if found is None or not fresh_pass(found[1], now, opts.max_age_s):
        return None
    path, record = found
    started = timeparse.try_time(record.started)
    age = timeparse.format_duration((now - started).total_seconds()) if started else "?"
    line = (
        f"skipped: {path} passed (OK) {age} ago, within --max-age {opts.max_age_text} (run {record.run_id})"
    )
    return path, record, line


def write_reports(record: Record, opts: Options) -> list[Path]:
    """The --junit and --prometheus-textfile files of a saved record; HpcbenchError if one fails."""
    written: list[Path] = []
    try:
        if opts.junit:
            from hpcbench.report import junit

            written.append(junit.write(record, opts.junit))
        if opts.prometheus_dir:
            from hpcbench.report import prometheus

            written.append(prometheus.write(record, opts.prometheus_dir))
    except OSError as exc:
        raise HpcbenchError(f"could not write a report: {exc}") from None
    return written


def open_log(opts: Options, suite: str) -> Any:
    """The --log-file's RunLog, or None."""
    if opts.log_file is None:
        return None
    from hpcbench.report.logfile import RunLog

    return RunLog.open(opts.log_file, suite)


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


def skipped(fresh: tuple[Path, Record, str], args: Any, runlog: Any, on_record: Any) -> int:
    """--max-age found a recent pass: say which record (stdout; stderr under --format json; only
    the log under --quiet) and exit 0 without running."""
    import sys

    path, record, line = fresh
    if runlog:
        runlog.line(line)
    if on_record is not None:
        on_record(record, path)
    text = f"hpcbench {record.suite.name}: {line}"
    if args.format == "nagios":  # the monitoring system still gets its line: the last pass's
        from hpcbench.report import nagios

        print(nagios.line(record, note=line))
    elif args.format == "json":
        print(text, file=sys.stderr)
    elif not args.quiet:
        print(text)
    return 0
