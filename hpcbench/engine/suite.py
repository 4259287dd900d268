"""Suite files: which checks to run, on which subjects, against which thresholds.

A suite file is TOML:

    name = "quick"
    description = "..."
    require_baseline = false        # true: a check without a baseline is UNKNOWN (exit 3)

    [[check]]
    id = "membw"                    # unique; the key baselines use
    probe = "cpu_membw"
    params = { repeats = 10 }       # validated against the probe's parameters
    expand = "none"                 # none | numa | gpu | mount | nic | rail: one run per subject
    metrics = ["triad"]             # which of the probe's metrics get a verdict (default: all)
    thresholds = { warn = 0.90, fail = 0.80 }   # fractions of the baseline's expected value
    absolute = { triad = { warn = 20.0, fail = 10.0 } }  # in the metric's unit; need no baseline
    relative = { to = "median", warn = 0.90, fail = 0.80 }  # each subject against its siblings
                                    # (+ metrics = [...]: only these; default: all the check judges)
    timeout = 120                   # seconds, for each subject's child process

A suite may ``include`` others and change their checks by id (``hpcbench.engine.suite_include``).

Every error names the file, the line and the key, and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.core import tomlfile
from hpcbench.core.errors import ConfigError
from hpcbench.engine import suite_include
from hpcbench.probes import base
from hpcbench.probes.base import build_params
from hpcbench.probes.registry import BrokenProbe, spec_of

#: a check's ``expand``: none, or a kind a probe may expand over
EXPANSIONS = ("none", *base.EXPANSIONS)

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SUITE_KEYS = {"name", "description", "require_baseline", "default_timeout", "check"}
_CHECK_KEYS = {
    "id",
    "probe",
    "description",
    "params",
    "expand",
    "metrics",
    "thresholds",
    "absolute",
    "relative",
    "timeout",
}
DEFAULT_WARN = 0.90
DEFAULT_FAIL = 0.80


@dataclass(frozen=True)
class Band:
    """Warn and fail limits. For fractions: a ratio below them; absolute: a value beyond them.
    ``above`` (fractions of a baseline only): a ratio beyond it is too good to be true, WARN."""

    warn: float | None
    fail: float | None
    above: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        out = {"warn": self.warn, "fail": self.fail}
        if self.above is not None:
            out["above"] = self.above
        return out


@dataclass(frozen=True)
class Relative:
    to: str  # "median" (of the other subjects) or "best" (of all subjects)
    band: Band
    metrics: tuple[str, ...] | None = None  # the metrics compared; None: all the check judges


@dataclass(frozen=True)
class CheckSpec:
    id: str
    probe: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    expand: str = "none"
    metrics: tuple[str, ...] | None = None
    thresholds: Band = Band(DEFAULT_WARN, DEFAULT_FAIL)
    absolute: dict[str, Band] = field(default_factory=dict)
    relative: Relative | None = None
    timeout: float = 300.0
    #: the probe's Params, parsed once from ``params`` when the suite was loaded with its probes
    #: (None without them); the jobs carry it, with their subject's expansion parameter set
    typed: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "probe": self.probe,
            "params": self.params,
            "expand": self.expand,
            "metrics": list(self.metrics) if self.metrics is not None else None,
            "thresholds": self.thresholds.as_dict(),
            "absolute": {k: v.as_dict() for k, v in self.absolute.items()},
            "relative": (
                {
                    "to": self.relative.to,
                    **self.relative.band.as_dict(),
                    **({"metrics": list(self.relative.metrics)} if self.relative.metrics else {}),
                }
                if self.relative
                else None
            ),
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    sha256: str
    checks: tuple[CheckSpec, ...]
    description: str = ""
    require_baseline: bool = False
    #: the checks chosen from the file (--only/--skip), "" when all of them run
    selection: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "description": self.description,
            "require_baseline": self.require_baseline,
            "selection": self.selection,
        }


class _Validator:
    """Type checks with errors that point at the file, line and key."""

    def __init__(self, doc: tomlfile.TomlDoc) -> None:
        self.doc = doc

    def fail(
        self, key: str, message: str, index: int | None = None, check_id: str | None = None
    ) -> ConfigError:
        if index is None:
            return self.doc.error(f"key '{key}'", message, self.doc.line_of(key.split(".")[0]))
        line = self.doc.line_of(key.split(".")[0], "check", index)
        who = f"check[{index}]" + (f" ({check_id!r})" if check_id else "")
        return self.doc.error(f"{who} key '{key}'", message, line)

    def number(
        self, value: Any, key: str, index: int | None, cid: str | None, positive: bool = False
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {value!r}", index, cid)
        if positive and value <= 0:
            raise self.fail(key, f"expected a positive number, got {value!r}", index, cid)
        return float(value)

    def band(
        self,
        value: Any,
        key: str,
        index: int,
        cid: str,
        fraction: bool,
        allowed: tuple[str, ...] = (),
        defaults: bool = False,
    ) -> Band:
        if not isinstance(value, dict):
            raise self.fail(
                key, f"expected a table like {{ warn = 0.9, fail = 0.8 }}, got {value!r}", index, cid
            )
        extra = set(value) - {"warn", "fail", *allowed}
        if extra:
            expected = ", ".join(("warn", "fail", *allowed))
            raise self.fail(f"{key}.{sorted(extra)[0]}", f"unknown key; expected {expected}", index, cid)
        if defaults and "warn" not in value and "fail" not in value:
            value = {**value, "warn": DEFAULT_WARN, "fail": DEFAULT_FAIL}
        warn = self.number(value["warn"], f"{key}.warn", index, cid) if "warn" in value else None
        fail = self.number(value["fail"], f"{key}.fail", index, cid) if "fail" in value else None
        if warn is None and fail is None:
            raise self.fail(key, "expected at least one of warn and fail", index, cid)
        if fraction:
            for name, v in (("warn", warn), ("fail", fail)):
                if v is not None and not 0 < v <= 2:
                    raise self.fail(
                        f"{key}.{name}",
                        f"expected a fraction of the expected value (0 < x <= 2), got {v}",
                        index,
                        cid,
                    )
            if warn is not None and fail is not None and fail > warn:
                raise self.fail(key, f"fail ({fail}) must not be above warn ({warn})", index, cid)
        above = self.number(value["above"], f"{key}.above", index, cid) if "above" in value else None
        if above is not None and not 1 < above <= 100:
            raise self.fail(
                f"{key}.above",
                f"expected a ratio above 1 (e.g. 1.3: 30% better than expected is suspect), got {above}",
                index,
                cid,
            )
        return Band(warn, fail, above)


def parse(
    doc: tomlfile.TomlDoc,
    probe_classes: Mapping[str, Any] | None = None,
    broken: Mapping[str, BrokenProbe] | None = None,
) -> Suite:
    """Validate a parsed suite document. ``probe_classes`` (name -> ProbeSpec or probe class) also
    validates each check's probe, params, expansion and metrics; a probe in ``broken`` is refused
    with its reason. ``include`` is resolved by ``load`` (``hpcbench.engine.suite_include``)."""
    specs = {n: spec_of(c, n) for n, c in (probe_classes or {}).items()}
    broken = broken or {}

    v = _Validator(doc)
    data = doc.data
    for key in data:
        if key not in _SUITE_KEYS:
            raise v.fail(key, f"unknown key; expected one of {', '.join(sorted(_SUITE_KEYS))}")
    name = data.get("name", Path(doc.path).stem)
    if not isinstance(name, str) or not name:
        raise v.fail("name", f"expected a non-empty string, got {name!r}")
    require = data.get("require_baseline", False)
    if not isinstance(require, bool):
        raise v.fail("require_baseline", f"expected true or false, got {require!r}")
    default_timeout = v.number(data.get("default_timeout", 300), "default_timeout", None, None, positive=True)
    raw_checks = data.get("check")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise v.fail("check", "expected one or more [[check]] tables")
    checks: list[CheckSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_checks):
        if not isinstance(raw, dict):
            raise v.fail("check", f"expected [[check]] tables, got {raw!r}")
        cid = raw.get("id") if isinstance(raw.get("id"), str) else None
        for key in raw:
            if key not in _CHECK_KEYS:
                raise v.fail(key, f"unknown key; expected one of {', '.join(sorted(_CHECK_KEYS))}", i, cid)
        if cid is None or not _ID.match(cid):
            raise v.fail(
                "id",
                f"expected an id of lower-case letters, digits, '_', '.', '-', got {raw.get('id')!r}",
                i,
                cid,
            )
        if cid in seen:
            raise v.fail("id", f"duplicate check id {cid!r}", i, cid)
        seen.add(cid)
        probe = raw.get("probe")
        if not isinstance(probe, str) or not probe:
            raise v.fail("probe", f"expected a probe name, got {probe!r}", i, cid)
        params = raw.get("params", {})
        if not isinstance(params, dict):
            raise v.fail("params", f"expected a table of parameters, got {params!r}", i, cid)
        expand = raw.get("expand", "none")
        if expand not in EXPANSIONS:
            raise v.fail("expand", f"expected one of {', '.join(EXPANSIONS)}, got {expand!r}", i, cid)
        metrics = raw.get("metrics")
        if metrics is not None and (
            not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics)
        ):
            raise v.fail("metrics", f"expected a list of metric names, got {metrics!r}", i, cid)
        thresholds = (
            v.band(raw["thresholds"], "thresholds", i, cid, True, allowed=("above",))
            if "thresholds" in raw
            else Band(DEFAULT_WARN, DEFAULT_FAIL)
        )
        absolute_raw = raw.get("absolute", {})
        if not isinstance(absolute_raw, dict):
            raise v.fail(
                "absolute", f"expected a table of metric = {{ warn, fail }}, got {absolute_raw!r}", i, cid
            )
        absolute = {m: v.band(b, f"absolute.{m}", i, cid, False) for m, b in absolute_raw.items()}
        relative = None
        if "relative" in raw:
            rel = raw["relative"]
            to = rel.get("to", "median") if isinstance(rel, dict) else None
            if to not in ("median", "best"):
                raise v.fail("relative.to", f"expected 'median' or 'best', got {to!r}", i, cid)
            rel_metrics = rel.get("metrics")
            if rel_metrics is not None and (
                not isinstance(rel_metrics, list)
                or not rel_metrics
                or not all(isinstance(m, str) for m in rel_metrics)
                or (metrics and any(m not in metrics for m in rel_metrics))
            ):
                raise v.fail(
                    "relative.metrics",
                    f"expected a list of the check's metrics to compare, got {rel_metrics!r}",
                    i,
                    cid,
                )
            band = v.band(
                {k: x for k, x in rel.items() if k != "metrics"}, "relative", i, cid, True, ("to",), True
            )
            relative = Relative(to, band, tuple(rel_metrics) if rel_metrics else None)
            if expand == "none":
                raise v.fail(
                    "relative",
                    "a relative check compares subjects: it needs expand = numa, gpu, mount, nic or rail",
                    i,
                    cid,
                )
        timeout = v.number(raw.get("timeout", default_timeout), "timeout", i, cid, positive=True)
        if probe in broken:
            raise v.fail("probe", f"probe {probe!r} is broken: {broken[probe].describe()}", i, cid)
        if probe_classes is not None:
            if probe not in specs:
                known = ", ".join(sorted(specs)) or "none"
                raise v.fail("probe", f"unknown probe {probe!r}; known probes: {known}", i, cid)
            cls = specs[probe]
            try:
                typed = build_params(cls, params)
            except ConfigError as exc:
                raise v.fail("params", str(exc), i, cid) from None
            if expand != "none" and expand not in cls.expands:
                can = ", ".join(cls.expands) or "nothing"
                raise v.fail(
                    "expand", f"probe {probe!r} cannot expand over {expand!r} (it expands over {can})", i, cid
                )
            if cls.metrics and metrics:
                for m in metrics:
                    if m not in cls.metrics:
                        raise v.fail(
                            "metrics",
                            f"probe {probe!r} has no metric {m!r}; it has {', '.join(cls.metrics)}",
                            i,
                            cid,
                        )
        checks.append(
            CheckSpec(
                id=cid,
                probe=probe,
                params=dict(params),
                description=str(raw.get("description", "")),
                expand=expand,
                metrics=tuple(metrics) if metrics else None,
                thresholds=thresholds,
                absolute=absolute,
                relative=relative,
                timeout=timeout,
                typed=typed if probe_classes is not None else None,
            )
        )
    return Suite(
        name=name,
        path=doc.path,
        sha256=doc.sha256,
        checks=tuple(checks),
        description=str(data.get("description", "")),
        require_baseline=require,
    )


def load(
    name_or_path: str,
    probe_classes: Mapping[str, Any] | None = None,
    broken: Mapping[str, BrokenProbe] | None = None,
    site: Sequence[Path] = (),
) -> Suite:
    """Load and validate a suite by path, or by name in the ``site`` folders, then the bundled ones;
    ConfigError on any problem."""
    path = tomlfile.resolve(name_or_path, "", "suite", site)
    doc = suite_include.expand(tomlfile.read(path, "suite"), site)
    for sub in getattr(doc, "included", ()):  # each included file alone first: its errors name it
        parse(suite_include.expand(tomlfile.read(sub, "suite"), site), probe_classes, broken)
    return parse(doc, probe_classes, broken)


def probe_names(name_or_path: str, site: Sequence[Path] = ()) -> set[str]:
    """The probes a suite (its includes too) names, read without validation: what a run imports."""
    path = tomlfile.resolve(name_or_path, "", "suite", site)
    return suite_include.probe_names(suite_include.expand(tomlfile.read(path, "suite"), site))


def single_check(
    probe: str,
    params: dict[str, Any],
    timeout: float,
    expand: str = "none",
    rules: Suite | None = None,
    typed: Any = None,
) -> Suite:
    """The one-check suite behind ``hpcbench probe NAME``. ``rules``: a suite (the quick suite)
    whose first check of this probe lends its limits (thresholds with ``above``, absolute
    limits), so that counts of errors are judged, not left without a verdict; its relative
    comparison too where it expands over the same subjects."""
    lender = next((c for c in rules.checks if c.probe == probe), None) if rules else None
    check = CheckSpec(id=probe, probe=probe, params=params, expand=expand, timeout=timeout, typed=typed)
    if lender is not None:
        check = CheckSpec(
            id=probe,
            probe=probe,
            params=params,
            expand=expand,
            timeout=timeout,
            description=f"limits of {rules.name}'s check {lender.id}" if rules else "",
            thresholds=lender.thresholds,
            absolute=dict(lender.absolute),
            relative=lender.relative if lender.expand == expand and expand != "none" else None,
            typed=typed,
        )
    return Suite(name=f"probe:{probe}", path="", sha256="", checks=(check,))
