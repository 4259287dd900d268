"""Records built from the parts a test cares about, the rest filled in; every one a valid Record.

``check`` turns a verdict into the check that has it: PASS/WARN/FAIL/NOBASELINE/SKIP through one
evaluation of that verdict, ERROR through status "error" (what the runner writes for a check
that could not measure).
"""

from __future__ import annotations

from typing import Any

from hpcbench.engine.record import SCHEMA_VERSION, Record


def check(cid: str = "c", subject: str = "node", verdict: str = "PASS", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": cid, "probe": "fixed", "subject": subject, "status": "ok"}
    if verdict == "ERROR":
        base["status"] = "error"
    elif "evaluations" not in fields:
        base["evaluations"] = [{"metric": "score", "verdict": verdict}]
    return {**base, **fields}


def record(**fields: Any) -> Record:
    """A Record of schema version SCHEMA_VERSION; ``checks`` may be check() dicts or CheckResults."""
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool_version": "0.0.0",
        "run_id": "r1",
        "host": "n1",
        "started": "2026-11-28T02:00:00Z",
        "ended": "2026-11-28T02:01:00Z",
        "suite": {"name": "t"},
        "baseline": None,
        "inventory": {},
        "checks": [],
    }
    data.update(fields)
    if isinstance(data["suite"], dict):
        data["suite"] = {"name": "t", **data["suite"]}
    data["not_run"] = [
        {"id": n, "reason": "not started"} if isinstance(n, str) else n for n in data.get("not_run", [])
    ]
    return Record.from_dict(data)
