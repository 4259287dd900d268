"""Result records on disk: one JSON file per run, written atomically; loading; a DataFrame of many.

The record's shape, its versions and its JSON Schema are in ``hpcbench.engine.record``. ``load`` gives
the typed Record (older schema versions migrated); ``load_data`` the migrated JSON form, for
readers of many records that want only a few fields of each (``hpcbench.analysis``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcbench.core import codec
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
