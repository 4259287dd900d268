"""Result records on disk: one JSON file per run, written atomically; loading; a DataFrame of many.

The record's shape, its versions and its JSON Schema are in ``hpcbench.engine.record``. ``load`` gives
the typed Record (older schema versions migrated); ``load_data`` the migrated JSON form, for
readers of many records that want only a few fields of each (``hpcbench.analysis``).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hpcbench.core import codec, timeparse
from hpcbench.core.atomic import write_json
from hpcbench.core.errors import ConfigError
from hpcbench.engine.record import Record, migrate


def save_atomic(record: Record | dict[str, Any], path: Path) -> Path:
    """Write the record as JSON atomically (hpcbench.core.atomic)."""
    return write_json(path, record.as_dict() if isinstance(record, Record) else record, indent=1)


def record_path(outdir: str | Path, host: str, started: str) -> Path:
    """results/<host>/<UTC time>.json, with a time that sorts and is safe in file names."""
    stamp = started.replace(":", "").replace("-", "")
    stamp = stamp.split(".")[0].rstrip("Z").replace("+0000", "") + "Z"
    path = Path(outdir) / host / f"{stamp}.json"
    n = 1
    while path.exists():
        path = Path(outdir) / host / f"{stamp}-{n}.json"
        n += 1
    return path


_NAME = re.compile(r"^(\d{8}T\d{6})Z(?:-(\d+))?\.json$")


def name_stamp(name: str) -> tuple[datetime, int] | None:
    """What ``record_path`` put in a record's file name: the UTC start and the collision number
    (``20261128T020000Z-1.json`` -> 2026-11-28 02:00:00 UTC, 1: written after the one without);
    None for any other name."""
    m = _NAME.match(name)
    if not m:
        return None
    return datetime.strptime(m[1], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc), int(m[2] or 0)


def _json_loads() -> Any:
    """orjson's parser where installed (3x faster on fleets of records), else the standard one."""
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
        return json.loads


def load_data(path: str | Path) -> dict[str, Any]:
    """One record's JSON, migrated to this schema version; ConfigError with the file name when it
    is not a readable record."""
    p = Path(path)
    try:
        data = _json_loads()(p.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such record") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and orjson's are ValueErrors
        raise ConfigError(f"{p}: not a readable result record: {exc}") from None
    if not isinstance(data, dict) or "checks" not in data or "schema_version" not in data:
        raise ConfigError(f"{p}: not an hpcbench result record (no schema_version or checks)")
    return migrate(data, str(p))


def load(path: str | Path) -> Record:
    """One record, typed; ConfigError naming the file and the field that does not fit."""
    data = load_data(path)
    try:
        return Record.from_dict(data)
    except codec.DecodeError as exc:
        raise ConfigError(f"{path}: not a valid result record: {exc}") from None


def find(paths: list[str | Path]) -> list[Path]:
    """Record files among files and folders (recursively), sorted."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
        else:
            out.append(p)
    return out


def to_dataframe(paths: list[str | Path]) -> Any:
    """Load records (files or folders) into one pandas DataFrame: a row per evaluation.

    Unreadable records raise ConfigError; columns: run_id, host, started, suite, check, probe,
    subject, status, verdict, metric, measured, unit, expected, ratio, kind, reason.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for path in find(paths):
        rec = load_data(path)
        for c in rec["checks"]:
            base = {
                "file": str(path),
                "run_id": rec["run_id"],
                "host": rec["host"],
                "started": rec["started"],
                "suite": rec["suite"]["name"],
                "check": c["id"],
                "probe": c["probe"],
                "subject": c["subject"],
                "status": c["status"],
            }
            evals = c.get("evaluations") or [
                {"verdict": c["verdict"], "metric": None, "reason": c.get("reason")}
            ]
            for e in evals:
                rows.append(
                    {
                        **base,
                        "verdict": e["verdict"],
                        "metric": e.get("metric"),
                        "measured": e.get("measured"),
                        "unit": e.get("unit"),
                        "expected": e.get("expected"),
                        "ratio": e.get("ratio"),
                        "kind": e.get("kind"),
                        "reason": e.get("reason"),
                    }
                )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["started"] = pd.to_datetime(frame["started"], utc=True)
    return frame


# ---------------------------------------------------------------------------
# history: what earlier records of this host say (--max-age, --deadline, --dry-run)


def name_time(name: str) -> datetime | None:
    """The UTC start time in a record's file name (20261128T020000Z.json, ...Z-1.json), or None."""
    stamp = name_stamp(name)
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
        if owner is not None and not owned_by(path, owner):
            continue
        try:
            record = load(path)
        except ConfigError:
            continue  # a bad record does not stop the run; the run writes a good one
        started = timeparse.try_time(record.started)
        if started is None or not same(record, suite):
            continue
        stamp = name_stamp(path.name)
        order = (started, stamp[1] if stamp else 0)  # two runs in one second: name-1.json is the later
        if newest is None or order > newest[0]:
            newest = (order, path, record)
    return (newest[1], newest[2]) if newest else None


def owned_by(path: Path, uid: int) -> bool:
    """Whether ``path`` is a regular file (not a link) of ``uid``."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == uid


def same_name(record: Record, suite: dict[str, Any]) -> bool:
    return record.suite.name == suite.get("name")


def durations(outdir: Path, host: str, suite: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(check id, subject) -> seconds each took in this host's newest record of a suite of this name
    (any verdict, any version of the file): what --deadline and --dry-run expect a run to take."""
    since = datetime(1970, 1, 2, tzinfo=timezone.utc)
    found = newest_of_suite(Path(outdir) / host, suite, since, same_name, owner=os.geteuid())
    if found is None:
        return {}
    # a check that was skipped or failed fast will likely do so again: its duration is as good a guess
    return {(c.id, c.subject): c.duration for c in found[1].checks if c.status != "interrupted"}


def recent_pass(
    outdir: Path,
    host: str,
    suite: dict[str, Any],
    max_age_s: float | None,
    max_age_text: str = "",
    now: datetime | None = None,
    euid: int | None = None,
) -> tuple[Path, Record, str] | None:
    """With --max-age: the newest record of this suite for this host when it passed recently
    enough, and the line that says so; else None (run). Only records the running user (``euid``)
    owns count: a record planted by another user never skips a run."""
    if max_age_s is None:
        return None
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(seconds=max_age_s)
    owner = os.geteuid() if euid is None else euid
    found = newest_of_suite(Path(outdir) / host, suite, since, owner=owner)
    if found is None or not fresh_pass(found[1], now, max_age_s):
        return None
    path, record = found
    started = timeparse.try_time(record.started)
    age = timeparse.format_duration((now - started).total_seconds()) if started else "?"
    line = f"skipped: {path} passed (OK) {age} ago, within --max-age {max_age_text} (run {record.run_id})"
    return path, record, line
