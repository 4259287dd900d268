"""Data that crosses a boundary: measurements, verdicts and check outcomes.

Frozen dataclasses with explicit ``as_dict`` / ``from_dict`` so that the JSON
result record is the only serialisation, and its shape is visible here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.stats import Stats, best, summarize

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


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
class Measurement:
    """One metric measured by a probe on one subject.

    ``value`` is the number checks compare; ``statistic`` says which of the
    samples' statistics it is (``best`` or ``median``). ``convention`` names the
    way the work was counted (``STREAM``, ``nccl-tests busbw``, ``fio``).
    ``sanity`` is None when the probe verified its result, else why the
    computed result is wrong (a FAIL of its own, apart from slowness).
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
            "doc": "the settings the probe used (probe-specific); checks read 'detail' (the reason's "
            "explanation), 'not_measured' (metric -> why it does not apply here: SKIP) and "
            "'could_not_measure' (metric -> why measuring it failed: ERROR)"
        },
    )
    sanity: str | None = field(
        default=None, metadata={"doc": "why the computed result is wrong; null: verified"}
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
            "settings": self.settings,
            "sanity": self.sanity,
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
