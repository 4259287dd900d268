"""The result record: one JSON file per run, written atomically; loading; a DataFrame of many.

Shape (schema_version 1):

    {schema_version, tool_version, run_id, host, started, ended, duration,
     suite: {name, path, sha256, description, require_baseline},
     baseline: {name, path, match, matched_by, provenance} | null,
     inventory: {...},
     checks: [{id, probe, subject, expand, params, thresholds, timeout, started, duration,
               status, reason, hint, verdict, measurements: [...], evaluations: [...]}],
     not_run: [check ids], interrupted: "SIGTERM" | null, verdict, exit_code}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.atomic import write_json
from hpcbench.errors import ConfigError
from hpcbench.model import Evaluation, Measurement, Verdict, worst_verdict

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CheckResult:
    """One check on one subject: what ran, what it measured, and the verdicts."""

    id: str
    probe: str
    subject: str
    status: str  # ok | error | skip | interrupted
    params: dict[str, Any] = field(default_factory=dict)
    expand: str = "none"
    thresholds: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    started: str = ""
    duration: float = 0.0
    reason: str = ""
    hint: str = ""
    measurements: tuple[Measurement, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()

    @property
    def verdict(self) -> Verdict:
        if self.status in ("error", "interrupted"):
            return Verdict.ERROR
        if self.status == "skip":
            return Verdict.SKIP
        # a SKIP (a metric not measured here, a relative check with one subject) hides no other verdict:
        # the check is SKIP only when everything in it was skipped
        judged = [e.verdict for e in self.evaluations if e.verdict is not Verdict.SKIP]
        return worst_verdict(judged or [e.verdict for e in self.evaluations])

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "probe": self.probe,
            "subject": self.subject,
            "expand": self.expand,
            "params": self.params,
            "thresholds": self.thresholds,
            "timeout": self.timeout,
            "started": self.started,
            "duration": self.duration,
            "status": self.status,
            "reason": self.reason,
            "hint": self.hint,
            "verdict": self.verdict.value,
            "measurements": [m.as_dict() for m in self.measurements],
            "evaluations": [e.as_dict() for e in self.evaluations],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(
            id=d["id"],
            probe=d["probe"],
            subject=d["subject"],
            status=d["status"],
            params=d.get("params", {}),
            expand=d.get("expand", "none"),
            thresholds=d.get("thresholds", {}),
            timeout=d.get("timeout"),
            started=d.get("started", ""),
            duration=float(d.get("duration", 0.0)),
            reason=d.get("reason", ""),
            hint=d.get("hint", ""),
            measurements=tuple(Measurement.from_dict(m) for m in d.get("measurements", [])),
            evaluations=tuple(Evaluation.from_dict(e) for e in d.get("evaluations", [])),
        )


def save_atomic(record: dict[str, Any], path: Path) -> Path:
    """Write the record as JSON atomically (hpcbench.atomic)."""
    return write_json(path, record, indent=1)


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


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Bring an older record up to SCHEMA_VERSION; refuse newer or unknown ones."""
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return data
    raise ConfigError(
        f"{source}: schema_version {version!r} is not supported (this hpcbench reads {SCHEMA_VERSION})"
    )


def _json_loads() -> Any:
    """orjson's parser where installed (3x faster on fleets of records), else the standard one."""
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
        return json.loads


def load(path: str | Path) -> dict[str, Any]:
    """One record, validated; ConfigError with the file name when it is not a readable record."""
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
        rec = load(path)
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
