"""Measurement + expectation -> verdict. Pure functions: no I/O, no hardware.

Ratios are always "performance ratios": measured / expected where higher is
better, expected / measured where lower is better, so a ratio below the warn
or fail fraction is always a shortfall.

What a probe returns takes part through typed fields, never through its settings (provenance):
a measurement's ``detail`` (its one-line explanation, e.g. which XIDs or which NVLink links) is
appended to the reason of a WARN or FAIL; each ``Unmeasured`` entry the probe returned becomes a
SKIP evaluation (``not_measured``: does not apply here, e.g. a field NVML does not support) or an
ERROR (``could_not_measure``: measuring failed where it should have worked, e.g. the tool is
missing) for the metrics the check judges, while the others keep their own verdicts; a
measurement's ``consensus`` asks for a node-level comparison of a value every subject should
share (the burn probe's digest of its first output): see ``consensus``.
"""

from __future__ import annotations

import statistics
from typing import Any

from hpcbench.core.measurement import Consensus, Evaluation, Measurement, Unmeasured, Verdict
from hpcbench.engine.baselines import Baseline
from hpcbench.engine.hints import hint_for
from hpcbench.engine.record import CheckResult
from hpcbench.engine.suite import Band, CheckSpec
from hpcbench.node.inventory import Inventory


def performance_ratio(measured: float, expected: float, higher_is_better: bool) -> float:
    if higher_is_better:
        return measured / expected
    return expected / measured if measured else float("inf")


def band_verdict(ratio: float, band: Band) -> Verdict:
    """PASS, WARN or FAIL for a performance ratio against fractional limits; WARN too beyond
    ``above`` (better than the hardware should do: a cache measured, or a wrong baseline)."""
    if band.fail is not None and ratio < band.fail:
        return Verdict.FAIL
    if band.warn is not None and ratio < band.warn:
        return Verdict.WARN
    if band.above is not None and ratio > band.above:
        return Verdict.WARN
    return Verdict.PASS


#: why a shortfall against an estimated expectation is a WARN, and what makes it a FAIL
ESTIMATE_NOTE = (
    "the expected value is an estimate, not this site's measurement, so it can WARN but not FAIL: "
    "record the site's own from a known-good node (hpcbench baseline create RECORD... -o FILE)"
)

TOO_GOOD_HINT = (
    "more than this hardware should reach: a cache answered (STREAM arrays that fit in the cache, "
    "storage read through the page cache), or the baseline was recorded on slower hardware"
)


def too_good_reason(m: Measurement, expected: float, unit: str, ratio: float, above: float) -> str:
    """``61 GB/s is above the expected 45 GB/s by 35% (limit 30%): measured from a cache, or the
    baseline is wrong?`` (``below ... (better)`` for a metric where lower is better)."""
    side = "above" if m.higher_is_better else "below"
    by = ratio - 1 if m.higher_is_better else 1 - 1 / ratio
    limit = above - 1 if m.higher_is_better else 1 - 1 / above
    return (
        f"{_fmt(m.value, m.unit)} is {side} the expected {_fmt(expected, unit)} by {by:.0%} "
        f"(limit {limit:.0%}): measured from a cache, or the baseline is wrong?"
    )


def absolute_verdict(value: float, band: Band, higher_is_better: bool) -> Verdict:
    """PASS, WARN or FAIL for a value against absolute limits in its own unit."""

    def beyond(limit: float | None) -> bool:
        if limit is None:
            return False
        return value < limit if higher_is_better else value > limit

    if beyond(band.fail):
        return Verdict.FAIL
    if beyond(band.warn):
        return Verdict.WARN
    return Verdict.PASS


def _fmt(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".strip()


def _with_detail(reason: str, m: Measurement) -> str:
    return f"{reason}: {m.detail}" if reason and m.detail else reason


#: an Unmeasured entry's kind -> (the verdict, how the reason starts)
UNMEASURED: dict[str, tuple[Verdict, str]] = {
    "not_measured": (Verdict.SKIP, "not measured"),
    "could_not_measure": (Verdict.ERROR, "could not measure"),
}


def unmeasured(entries: list[Unmeasured], check: CheckSpec) -> list[Evaluation]:
    """One evaluation for each judged metric the probe did not measure: SKIP for
    ``not_measured`` (does not apply here), ERROR for ``could_not_measure``; one per metric (the
    first reason given for it)."""
    first: dict[str, Unmeasured] = {}
    for u in entries:
        first.setdefault(u.metric, u)
    out = []
    for metric, u in sorted(first.items()):
        if check.metrics is None or metric in check.metrics:
            verdict, prefix = UNMEASURED[u.kind]
            out.append(
                Evaluation(metric=metric, verdict=verdict, kind=u.kind, reason=f"{prefix}: {u.reason}")
            )
    return out


def evaluate(m: Measurement, check: CheckSpec, baseline: Baseline | None, inventory: Inventory) -> Evaluation:
    """The verdict on one measurement: sanity first, then the baseline, then absolute limits."""
    common = {"metric": m.metric, "measured": m.value, "unit": m.unit}
    if m.sanity:
        return Evaluation(
            **common,
            verdict=Verdict.FAIL,
            kind="sanity",
            reason=f"wrong result: {m.sanity}",
            hint="a wrong answer is a hardware fault (silent data corruption), not slowness",
        )
    exp = baseline.expectation(check.id, m.metric) if baseline else None
    if exp is not None and baseline is not None:
        ratio = performance_ratio(m.value, exp.value, m.higher_is_better)
        verdict = band_verdict(ratio, check.thresholds)
        reason = hint = ""
        above = check.thresholds.above
        if verdict is Verdict.WARN and above is not None and ratio > above:
            reason, hint = too_good_reason(m, exp.value, exp.unit or m.unit, ratio, above), TOO_GOOD_HINT
        elif verdict is not Verdict.PASS:
            limit = check.thresholds.fail if verdict is Verdict.FAIL else check.thresholds.warn
            reason = _with_detail(
                f"{_fmt(m.value, m.unit)} is {ratio:.0%} of the expected "
                f"{_fmt(exp.value, exp.unit or m.unit)}"
                f" (below {limit:.0%})",
                m,
            )
            if exp.estimate and verdict is Verdict.FAIL:  # a guess never fails a node
                verdict, reason = Verdict.WARN, f"{reason}; {ESTIMATE_NOTE}"
        return Evaluation(
            **common,
            verdict=verdict,
            expected=exp.value,
            ratio=ratio,
            warn=check.thresholds.warn,
            fail=check.thresholds.fail,
            kind="baseline",
            provenance=baseline.provenance_text(exp),
            reason=reason,
            hint=hint or hint_for(verdict, m, inventory),
        )
    band = check.absolute.get(m.metric)
    if band is not None:
        verdict = absolute_verdict(m.value, band, m.higher_is_better)
        reason = ""
        if verdict is not Verdict.PASS:
            limit = band.fail if verdict is Verdict.FAIL else band.warn
            side = "below" if m.higher_is_better else "above"
            reason = _with_detail(
                f"{_fmt(m.value, m.unit)} is {side} the suite's absolute limit {_fmt(limit or 0, m.unit)}", m
            )
        return Evaluation(
            **common,
            verdict=verdict,
            warn=band.warn,
            fail=band.fail,
            kind="absolute",
            provenance="suite absolute limit",
            reason=reason,
            hint=hint_for(verdict, m, inventory),
        )
    reason = (
        f"baseline {baseline.name!r} has no {check.id}.{m.metric}"
        if baseline
        else "no baseline for this node"
    )
    return Evaluation(**common, verdict=Verdict.NOBASELINE, kind="none", reason=reason)


def selected(measurements: list[Measurement], check: CheckSpec) -> list[Measurement]:
    """The measurements a check judges: those of its metrics (all, when it names none)."""
    if check.metrics is None:
        return list(measurements)
    return [m for m in measurements if m.metric in check.metrics]


def relative(
    by_subject: dict[str, list[Measurement]], check: CheckSpec, inventory: Inventory
) -> dict[str, list[Evaluation]]:
    """Each subject against its siblings (no baseline needed): subject -> evaluations.

    ``to = "median"`` compares with the median of the *other* subjects;
    ``to = "best"`` with the best subject. Fewer than two subjects: SKIP. ``relative.metrics``
    limits the comparison to those metrics.
    """
    assert check.relative is not None
    out: dict[str, list[Evaluation]] = {s: [] for s in by_subject}
    metrics = sorted({m.metric for ms in by_subject.values() for m in selected(ms, check)})
    if check.relative.metrics is not None:  # the suite compares only these (e.g. throughput, not counts)
        metrics = [m for m in metrics if m in check.relative.metrics]
    for metric in metrics:
        values = {
            s: m
            for s, ms in by_subject.items()
            for m in selected(ms, check)
            if m.metric == metric and not m.sanity
        }
        if len(values) < 2:
            for s in values:
                out[s].append(
                    Evaluation(
                        metric=metric,
                        verdict=Verdict.SKIP,
                        measured=values[s].value,
                        unit=values[s].unit,
                        kind="relative",
                        reason=f"relative check needs 2 or more subjects; this node has {s} only",
                    )
                )
            continue
        for s, m in values.items():
            others = [o.value for name, o in values.items() if name != s]
            if check.relative.to == "best":
                pool = [o.value for o in values.values()]
                ref = max(pool) if m.higher_is_better else min(pool)
                label = "the best subject"
            else:
                ref = statistics.median(others)
                label = "the median of the others"
            ratio = performance_ratio(m.value, ref, m.higher_is_better)
            verdict = band_verdict(ratio, check.relative.band)
            reason = ""
            if verdict is not Verdict.PASS:
                reason = f"{s} reaches {ratio:.0%} of {label} ({_fmt(ref, m.unit)})"
            out[s].append(
                Evaluation(
                    metric=metric,
                    verdict=verdict,
                    measured=m.value,
                    unit=m.unit,
                    expected=ref,
                    ratio=ratio,
                    warn=check.relative.band.warn,
                    fail=check.relative.band.fail,
                    kind="relative",
                    provenance=f"relative to {label}",
                    reason=reason,
                    hint=hint_for(verdict, m, inventory),
                )
            )
    return out


def consensus(by_subject: dict[str, list[Measurement]]) -> dict[str, list[Evaluation]]:
    """Subjects that must agree, against each other: subject -> evaluations.

    A measurement's ``consensus`` (name, value, group, what) says that every
    subject of the same ``group`` (e.g. GPUs of one model running the same computation) must
    report the same ``value``. Within a group of two or more, a value more than half of them
    report is the reference: a subject with another value FAILs, named; the others PASS. Without
    such a majority (a tie) every subject WARNs: which one is wrong cannot be told. A subject
    alone in its group gets no evaluation.
    """
    groups: dict[tuple[str, str], dict[str, Consensus]] = {}
    for subject, ms in by_subject.items():
        for m in ms:
            c = m.consensus
            if c is not None:
                groups.setdefault((c.name, c.group), {})[subject] = c
                break
    out: dict[str, list[Evaluation]] = {}
    for (name, group), members in groups.items():
        if len(members) < 2:
            continue
        counts: dict[str, int] = {}
        for c in members.values():
            counts[c.value] = counts.get(c.value, 0) + 1
        top, top_n = max(counts.items(), key=lambda kv: kv[1])
        n = len(members)
        for subject, c in members.items():
            value, what = c.value, c.what or name
            if top_n * 2 > n and value == top:
                ev = Evaluation(
                    metric=name,
                    verdict=Verdict.PASS,
                    kind="consensus",
                    provenance=f"{what} equal on {top_n} of {n} subjects ({group})",
                )
            elif top_n * 2 > n:
                ev = Evaluation(
                    metric=name,
                    verdict=Verdict.FAIL,
                    kind="consensus",
                    reason=f"{subject}: {what} ({value[:12]}) differs from the one {top_n} of {n} subjects "
                    f"computed ({top[:12]}; {group})",
                    hint="identical GPUs given identical inputs must compute identical bits: this one "
                    "computes a different answer (silent data corruption); drain it and have it replaced",
                )
            else:
                ev = Evaluation(
                    metric=name,
                    verdict=Verdict.WARN,
                    kind="consensus",
                    reason=f"{subject}: {what} ({value[:12]}) is one of {len(counts)} different values among "
                    f"{n} subjects ({group}); no majority tells which is wrong",
                    hint="rerun the burn; compare with the same check on a healthy node of this model",
                )
            out.setdefault(subject, []).append(ev)
    return out


def judge(
    check: CheckSpec, outcomes: list[Any], baseline: Baseline | None, inventory: Inventory
) -> list[CheckResult]:
    """CheckResults (one per subject) for a check's outcomes, with every verdict decided.

    ``outcomes`` are the runner's: objects with job.subject, status, started, duration,
    reason, hint, params and measurements.
    """
    by_subject = {o.job.subject: o.measurements for o in outcomes if o.status == "ok"}
    rel = relative(by_subject, check, inventory) if check.relative else {}
    agree = consensus(by_subject)
    spec = check.as_dict()
    results = []
    for o in outcomes:
        evaluations: list[Evaluation] = []
        if o.status == "ok":
            judged = selected(o.measurements, check)
            evaluations = [evaluate(m, check, baseline, inventory) for m in judged]
            evaluations += rel.get(o.job.subject, [])
            evaluations += agree.get(o.job.subject, [])
            missing = unmeasured(o.unmeasured, check)
            evaluations += missing
            if not judged and not missing:
                evaluations = [
                    Evaluation(
                        metric="-",
                        verdict=Verdict.ERROR,
                        kind="none",
                        reason=f"the probe measured none of the metrics {spec['metrics']}",
                    )
                ]
        results.append(
            CheckResult(
                id=check.id,
                probe=check.probe,
                subject=o.job.subject,
                status=o.status,
                params=o.params or o.job.params,
                expand=check.expand,
                thresholds={k: spec[k] for k in ("thresholds", "absolute", "relative")},
                timeout=check.timeout,
                started=o.started,
                duration=o.duration,
                reason=o.reason,
                hint=o.hint,
                measurements=tuple(o.measurements),
                evaluations=tuple(evaluations),
            )
        )
    return results
