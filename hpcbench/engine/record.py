"""The result record as typed data, its versions, and its published JSON Schema.

One record per run (``results/<host>/<UTC time>.json``); schema version 2:

    {schema_version, tool_version, run_id, host, started, ended,
     suite: {name, path, sha256, description, require_baseline},
     baseline: {name, path, description, match, matched_by, provenance} | null,
     inventory: {...}  (hpcbench.node.inventory.Inventory),
     checks: [{id, probe, subject, expand, params, thresholds, timeout, started, duration, status,
               reason, hint, verdict, measurements: [...], evaluations: [...]}],
     not_run: [{id, reason}], interrupted: "SIGTERM" | null, verdict, exit_code}

Version 1 wrote ``not_run`` as a list of check ids; ``migrate`` is the one function that brings
an older record up to this version. The JSON Schema (``record_schema()``, shipped as
``hpcbench/schemas/record.schema.json``, printed by ``hpcbench schema record``) is generated
from these classes, so the two cannot drift apart; ``hpcbench validate`` checks files
against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hpcbench.core import codec
from hpcbench.core.errors import ConfigError
from hpcbench.core.measurement import Evaluation, Measurement, Verdict, worst_verdict
from hpcbench.node.inventory import Inventory

SCHEMA_VERSION = 2
SCHEMA_ID = "https://hpcbench.dev/schemas/record.schema.json"
#: a check's status: what happened to its child process
Status = Literal["ok", "error", "skip", "interrupted"]
#: a run's verdict, the name of its exit code
RunVerdict = Literal["OK", "WARN", "FAIL", "UNKNOWN"]


@dataclass(frozen=True)
class CheckResult:
    """One check on one subject: what ran, what it measured, and the verdicts."""

    id: str
    probe: str
    subject: str
    status: Status = field(metadata={"doc": "ok | error (could not measure) | skip | interrupted"})
    params: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "the parameters the probe ran with"}
    )
    expand: str = "none"
    thresholds: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "the suite's thresholds, absolute and relative limits"}
    )
    timeout: float | None = None
    started: str = ""
    duration: float = 0.0
    reason: str = ""
    hint: str = ""
    measurements: tuple[Measurement, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()

    JSON_EXTRA = {"verdict": {"enum": [v.value for v in Verdict], "description": "the check's worst verdict"}}

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

    @property
    def why(self) -> str:
        """The check's reason, else the first reason of an evaluation with the check's verdict."""
        verdict = self.verdict
        found = [self.reason] + [e.reason for e in self.evaluations if e.verdict is verdict]
        return next(filter(None, found), "")

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
        fields = {k: v for k, v in d.items() if k != "verdict"}
        return codec.decode_fields(cls, fields)


@dataclass(frozen=True)
class SuiteInfo:
    """Which suite ran: its name, file and the file's sha256 (two runs of one suite compare)."""

    name: str
    path: str = ""
    sha256: str = ""
    description: str = ""
    require_baseline: bool = False
    selection: str = field(default="", metadata={"doc": "--only/--skip as given; empty: every check ran"})


@dataclass(frozen=True)
class BaselineInfo:
    """The baseline profile the checks compared with, and why it was chosen."""

    name: str
    path: str = ""
    description: str = ""
    match: dict[str, str] = field(default_factory=dict)
    matched_by: str = field(default="", metadata={"doc": "chosen with --baseline, or what matched"})
    provenance: dict[str, Any] = field(
        default_factory=dict,
        metadata={"doc": "source (datasheet, golden-node, fleet-median...), date, nodes"},
    )


@dataclass(frozen=True)
class NotRun:
    """A check that never started, and why (interrupted, past the deadline, ...)."""

    id: str
    reason: str = ""


@dataclass(frozen=True)
class Record:
    """One run of a suite on one node."""

    schema_version: int
    tool_version: str
    run_id: str
    host: str
    started: str = field(metadata={"doc": "UTC, ISO 8601"})
    ended: str
    suite: SuiteInfo
    baseline: BaselineInfo | None
    inventory: Inventory
    checks: tuple[CheckResult, ...]
    not_run: tuple[NotRun, ...] = ()
    interrupted: str | None = field(default=None, metadata={"doc": "the signal that stopped the run"})
    verdict: RunVerdict = "OK"
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return codec.encode_fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record of this schema version (``migrate`` older ones first); DecodeError naming the
        field that does not fit."""
        return codec.decode_fields(cls, data)

    def not_ok(self) -> list[CheckResult]:
        """The checks that are WARN, FAIL or ERROR."""
        return [c for c in self.checks if c.verdict in (Verdict.WARN, Verdict.FAIL, Verdict.ERROR)]


# ---------------------------------------------------------------------------
# Versions


def migrate(data: dict[str, Any], source: str = "record") -> dict[str, Any]:
    """Bring a record's JSON from an older schema version up to SCHEMA_VERSION (a copy; the
    argument is left as it is); ConfigError for a newer or unknown version."""
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return data
    if version == 1:  # not_run held check ids; the reason was always an interruption
        reason = (
            f"not started: interrupted by {data['interrupted']}" if data.get("interrupted") else "not started"
        )
        not_run = [{"id": str(i), "reason": reason} for i in data.get("not_run") or []]
        return {**data, "schema_version": SCHEMA_VERSION, "not_run": not_run}
    raise ConfigError(
        f"{source}: schema_version {version!r} is not supported (this hpcbench reads 1 to {SCHEMA_VERSION})"
    )


# ---------------------------------------------------------------------------
# The published schema


def record_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a record of SCHEMA_VERSION, generated from the classes."""
    defs: dict[str, Any] = {}
    root = codec.schema(Record, defs)
    defs["Record"]["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {
        "$schema": codec.DRAFT,
        "$id": SCHEMA_ID,
        "title": f"hpcbench result record, schema version {SCHEMA_VERSION}",
        **root,
        "$defs": defs,
    }
