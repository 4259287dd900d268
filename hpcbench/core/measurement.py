"""Data that crosses a boundary: measurements, verdicts and check outcomes.

Frozen dataclasses with explicit ``as_dict`` / ``from_dict`` so that the JSON
result record is the only serialisation, and its shape is visible here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.stats import Stats, best, summarize

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) as its text ("nan", "inf", "-inf"): JSON
    has no such numbers, and a record must always be written, whatever a probe saw."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Verdict(str, Enum):
    """The outcome of one check on one subject (and metric)."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"  # could not measure: crash, timeout, missing tool
    SKIP = "SKIP"  # does not apply here
    NOBASELINE = "NOBASELINE"  # measured, nothing to compare with

    def exit_code(self, require_baseline: bool) -> ExitCode:
        if self is Verdict.WARN:
            return ExitCode.WARN
        if self is Verdict.FAIL:
            return ExitCode.FAIL
        if self is Verdict.ERROR:
            return ExitCode.UNKNOWN
        if self is Verdict.NOBASELINE and require_baseline:
            return ExitCode.UNKNOWN
        return ExitCode.OK

    @property
    def severity(self) -> int:
        """The verdict's place in SEVERITY, least severe first: a run's verdict is its worst check's."""
        return SEVERITY.index(self)


#: the one order of verdicts, least severe first: PASS < SKIP < NOBASELINE < WARN < ERROR < FAIL
#: (a proven failure outranks "could not measure", which outranks a shortfall worth a warning)
SEVERITY: tuple[Verdict, ...] = (
    Verdict.PASS,
    Verdict.SKIP,
    Verdict.NOBASELINE,
    Verdict.WARN,
    Verdict.ERROR,
    Verdict.FAIL,
)


def worst_verdict(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict; SKIP when there is none."""
    if not verdicts:
        return Verdict.SKIP
    return max(verdicts, key=lambda v: v.severity)


@dataclass(frozen=True)
class Conditions:
    """What a measurement ran under that can explain a shortfall: the facts hints read.

    ``threads``: the worker threads it ran; ``cpus``: the CPUs it was confined to (a NUMA node's;
    empty when it had the whole node); ``gpu_clocks_held``: what held the GPU clocks down during
    the run, from its telemetry (empty when nothing did).
    """

    threads: int | None = None
    cpus: tuple[int, ...] = ()
    gpu_clocks_held: str = ""


@dataclass(frozen=True)
class Consensus:
    """A value every subject of one group must agree on (the same GPU model, seed and work give the
    same first-output digest): ``name`` of the value, the ``value``, the ``group`` it belongs to,
    and ``what`` it is in words. The judge's consensus names the odd subject out."""

    name: str
    value: str
    group: str
    what: str = ""


#: why a metric has no value: SKIP (does not apply here) or ERROR (measuring it failed)
UnmeasuredKind = Literal["not_measured", "could_not_measure"]


@dataclass(frozen=True)
class Unmeasured:
    """A metric a probe did not measure, and why: ``not_measured`` (it does not apply here, e.g.
    no NVMe on this node: SKIP) or ``could_not_measure`` (reading it failed where it should have
    worked, e.g. a missing tool: ERROR). Returned by a probe beside its measurements, so the
    reason survives when nothing at all was measured."""

    metric: str
    kind: UnmeasuredKind
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in ("not_measured", "could_not_measure"):
            raise ValueError(f"kind must be not_measured or could_not_measure, not {self.kind!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "kind": self.kind, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unmeasured:
        return cls(metric=str(data["metric"]), kind=data["kind"], reason=str(data["reason"]))


@dataclass(frozen=True)
class Measurement:
    """One metric measured by a probe on one subject.

    ``value`` is the number checks compare; ``statistic`` says which of the
    samples' statistics it is (``best`` or ``median``). ``convention`` names the
    way the work was counted (``STREAM``, ``nccl-tests busbw``, ``fio``).
    ``sanity`` is None when the probe verified its result, else why the
    computed result is wrong (a FAIL of its own, apart from slowness).

    What the judge and the hints read are fields: ``detail`` (quoted by a WARN or FAIL reason),
    ``warnings`` (the probe's own advice, shown as hints of a shortfall), ``conditions`` (facts
    that explain a shortfall) and ``consensus``. ``settings`` is provenance only: what the probe
    used and saw, for a person or an analysis to read; no verdict depends on it.
    """

    metric: str
    value: float
    unit: str
    higher_is_better: bool
    subject: str
    samples: tuple[float, ...]
    statistic: Literal["best", "median"] = "best"
    convention: str = field(default="", metadata={"doc": "how the work was counted: STREAM, fio, ..."})
    settings: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "doc": "provenance: the settings the probe used and what it saw (probe-specific); "
            "no verdict reads it"
        },
    )
    sanity: str | None = field(
        default=None, metadata={"doc": "why the computed result is wrong; null: verified"}
    )
    detail: str = field(default="", metadata={"doc": "the explanation a WARN or FAIL reason quotes"})
    warnings: tuple[str, ...] = field(
        default=(), metadata={"doc": "the probe's own advice, shown as hints of a shortfall"}
    )
    conditions: Conditions = field(
        default=Conditions(), metadata={"doc": "what the measurement ran under that can explain a shortfall"}
    )
    consensus: Consensus | None = field(
        default=None, metadata={"doc": "a value every subject of its group must agree on"}
    )

    #: keys as_dict writes beyond the fields (their JSON Schema)
    JSON_EXTRA: ClassVar[dict[str, Any]] = {
        "best": {"type": "number", "description": "the best sample"},
        "median": {"type": "number"},
        "stats": {
            "type": "object",
            "properties": {
                k: {"type": "integer" if k == "n" else "number"}
                for k in ("n", "median", "mean", "stdev", "min", "max", "cv")
            },
            "required": ["n", "median", "mean", "stdev", "min", "max", "cv"],
            "additionalProperties": False,
        },
    }

    def __post_init__(self) -> None:
        if not _SNAKE.match(self.metric):
            raise ValueError(f"metric name {self.metric!r} is not snake_case")
        if self.statistic not in ("best", "median"):
            raise ValueError(f"statistic must be 'best' or 'median', not {self.statistic!r}")

    @classmethod
    def from_samples(
        cls,
        metric: str,
        samples: list[float],
        unit: str,
        subject: str,
        *,
        higher_is_better: bool = True,
        statistic: str = "best",
        convention: str = "",
        settings: dict[str, Any] | None = None,
        sanity: str | None = None,
        detail: str = "",
        warnings: tuple[str, ...] | list[str] = (),
        conditions: Conditions | None = None,
        consensus: Consensus | None = None,
    ) -> Measurement:
        stats = summarize(samples)
        value = best(samples, higher_is_better) if statistic == "best" else stats.median
        return cls(
            metric=metric,
            value=value,
            unit=unit,
            higher_is_better=higher_is_better,
            subject=subject,
            samples=tuple(float(s) for s in samples),
            statistic=statistic,
            convention=convention,
            settings=dict(settings or {}),
            sanity=sanity,
            detail=detail,
            warnings=tuple(str(w) for w in warnings if w),
            conditions=conditions or Conditions(),
            consensus=consensus,
        )

    @property
    def stats(self) -> Stats:
        return summarize(self.samples)

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "subject": self.subject,
            "statistic": self.statistic,
            "convention": self.convention,
            "best": best(self.samples, self.higher_is_better),
            "median": stats.median,
            "stats": stats.as_dict(),
            "samples": list(self.samples),
            "settings": json_safe(self.settings),
            "sanity": self.sanity,
            "detail": self.detail,
            "warnings": list(self.warnings),
            "conditions": {
                "threads": self.conditions.threads,
                "cpus": list(self.conditions.cpus),
                "gpu_clocks_held": self.conditions.gpu_clocks_held,
            },
            "consensus": None if self.consensus is None else dict(vars(self.consensus)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(
            metric=data["metric"],
            value=float(data["value"]),
            unit=data["unit"],
            higher_is_better=bool(data["higher_is_better"]),
            subject=data["subject"],
            samples=tuple(float(s) for s in data["samples"]),
            statistic=data.get("statistic", "best"),
            convention=data.get("convention", ""),
            settings=dict(data.get("settings", {})),
            sanity=data.get("sanity"),
            detail=str(data.get("detail", "")),
            warnings=tuple(data.get("warnings", ())),
            conditions=Conditions(
                threads=(data.get("conditions") or {}).get("threads"),
                cpus=tuple((data.get("conditions") or {}).get("cpus", ())),
                gpu_clocks_held=(data.get("conditions") or {}).get("gpu_clocks_held", ""),
            ),
            consensus=Consensus(**data["consensus"]) if data.get("consensus") else None,
        )


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one metric of one check on one subject."""

    metric: str
    verdict: Verdict
    measured: float | None = None
    unit: str = ""
    expected: float | None = None
    ratio: float | None = None
    warn: float | None = None
    fail: float | None = None
    kind: Literal[
        "baseline", "absolute", "relative", "consensus", "sanity", "none", "not_measured", "could_not_measure"
    ] = "baseline"
    provenance: str = ""
    reason: str = ""
    hint: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "verdict": self.verdict.value,
            "measured": self.measured,
            "unit": self.unit,
            "expected": self.expected,
            "ratio": self.ratio,
            "warn": self.warn,
            "fail": self.fail,
            "kind": self.kind,
            "provenance": self.provenance,
            "reason": self.reason,
            "hint": self.hint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**{**data, "verdict": Verdict(data["verdict"])})
