"""Measurement + expectation -> verdict: ratios, bands, evaluate, relative checks, hints, judge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hpcbench.core.measurement import Conditions, Measurement, Unmeasured, Verdict
from hpcbench.engine.baselines import Baseline, Expectation
from hpcbench.engine.hints import config_hints, hint_for
from hpcbench.engine.judge import absolute_verdict, band_verdict, evaluate, judge, performance_ratio, relative
from hpcbench.engine.suite import Band, CheckSpec, Relative
from hpcbench.node.inventory import Inventory


def meas(
    value: float,
    metric: str = "triad",
    subject: str = "node",
    *,
    higher: bool = True,
    sanity: str | None = None,
    settings: dict[str, Any] | None = None,
    unit: str = "GB/s",
    threads: int | None = None,
    cpus: tuple[int, ...] = (),
) -> Measurement:
    return Measurement(
        metric=metric,
        value=value,
        unit=unit,
        higher_is_better=higher,
        subject=subject,
        samples=(value, value * 0.99, value * 0.98),
        settings=dict(settings or {}),
        sanity=sanity,
        conditions=Conditions(threads=threads, cpus=cpus),
    )


def baseline(expected: dict[str, dict[str, float]], name: str = "golden") -> Baseline:
    return Baseline(
        name=name,
        path=f"/x/{name}.toml",
        match={"cpu_model": "EPYC"},
        provenance={"source": "golden-node", "date": "2026-01-02", "nodes": 2},
        expected={c: {m: Expectation(v, unit="GB/s") for m, v in ms.items()} for c, ms in expected.items()},
    )


CHECK = CheckSpec(id="membw", probe="cpu_membw")  # thresholds 0.9 / 0.8
BASE = baseline({"membw": {"triad": 100.0}})
HEALTHY: dict[str, Any] = Inventory.from_dict(
    {"cpu": {"model": "EPYC", "threads": 8, "governor": "performance", "governors": ["performance"]}}
)
SLOW_NODE: dict[str, Any] = Inventory.from_dict(
    {"cpu": {"model": "EPYC", "threads": 64, "governor": "powersave", "governors": ["powersave"]}}
)


# ---------------------------------------------------------------------------
# ratios and bands


def test_performance_ratio_higher_is_better() -> None:
    assert performance_ratio(90.0, 100.0, True) == pytest.approx(0.9)
    assert performance_ratio(120.0, 100.0, True) == pytest.approx(1.2)


def test_performance_ratio_lower_is_better() -> None:
    # a latency of 125 us where 100 us is expected is 80% of the expected performance
    assert performance_ratio(125.0, 100.0, False) == pytest.approx(0.8)
    assert performance_ratio(50.0, 100.0, False) == pytest.approx(2.0)
    assert performance_ratio(0.0, 100.0, False) == float("inf")


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [
        (1.5, Verdict.PASS),
        (0.9, Verdict.PASS),  # at the warn limit: not below it
        (0.8999, Verdict.WARN),
        (0.8, Verdict.WARN),  # at the fail limit: not below it
        (0.7999, Verdict.FAIL),
        (0.0, Verdict.FAIL),
    ],
)
def test_band_verdict_boundaries(ratio: float, verdict: Verdict) -> None:
    assert band_verdict(ratio, Band(0.9, 0.8)) is verdict


def test_band_verdict_with_one_limit() -> None:
    assert band_verdict(0.5, Band(0.9, None)) is Verdict.WARN
    assert band_verdict(0.85, Band(None, 0.8)) is Verdict.PASS
    assert band_verdict(0.75, Band(None, 0.8)) is Verdict.FAIL


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (25.0, Verdict.PASS),
        (20.0, Verdict.PASS),
        (15.0, Verdict.WARN),
        (10.0, Verdict.WARN),
        (5.0, Verdict.FAIL),
    ],
)
def test_absolute_verdict_higher_is_better(value: float, verdict: Verdict) -> None:
    assert absolute_verdict(value, Band(warn=20.0, fail=10.0), higher_is_better=True) is verdict


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        (50.0, Verdict.PASS),
        (100.0, Verdict.PASS),
        (150.0, Verdict.WARN),
        (200.0, Verdict.WARN),
        (250.0, Verdict.FAIL),
    ],
)
def test_absolute_verdict_lower_is_better(value: float, verdict: Verdict) -> None:
    assert absolute_verdict(value, Band(warn=100.0, fail=200.0), higher_is_better=False) is verdict


# ---------------------------------------------------------------------------
# evaluate


def test_sanity_failure_beats_a_passing_baseline() -> None:
    e = evaluate(meas(150.0, sanity="avg abs error 1e-3 in a[]"), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.FAIL
    assert e.kind == "sanity"
    assert "wrong result" in e.reason and "avg abs error 1e-3 in a[]" in e.reason
    assert e.hint  # says it is a hardware fault
    assert e.measured == 150.0


def test_sanity_failure_beats_absolute_limits_and_missing_baseline() -> None:
    check = CheckSpec(id="membw", probe="cpu_membw", absolute={"triad": Band(10.0, 5.0)})
    assert evaluate(meas(150.0, sanity="bad"), check, None, HEALTHY).verdict is Verdict.FAIL


def test_baseline_pass() -> None:
    e = evaluate(meas(95.0), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.PASS
    assert e.kind == "baseline"
    assert e.ratio == pytest.approx(0.95)
    assert e.expected == 100.0
    assert e.measured == 95.0
    assert e.unit == "GB/s"
    assert (e.warn, e.fail) == (0.9, 0.8)
    assert "golden" in e.provenance and "golden-node" in e.provenance
    assert e.reason == ""
    assert e.hint == ""


def test_baseline_warn_reason_names_percentages() -> None:
    e = evaluate(meas(85.0), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.WARN
    assert e.ratio == pytest.approx(0.85)
    assert "85%" in e.reason
    assert "90%" in e.reason  # the warn limit it fell below
    assert "100 GB/s" in e.reason


def test_baseline_fail_reason_names_percentages() -> None:
    e = evaluate(meas(60.0), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.FAIL
    assert "60%" in e.reason
    assert "80%" in e.reason


def test_baseline_lower_is_better() -> None:
    check = CheckSpec(id="lat", probe="x")
    base = baseline({"lat": {"p99": 100.0}})
    assert evaluate(meas(105.0, "p99", higher=False, unit="us"), check, base, HEALTHY).verdict is Verdict.PASS
    e = evaluate(meas(150.0, "p99", higher=False, unit="us"), check, base, HEALTHY)
    assert e.verdict is Verdict.FAIL
    assert e.ratio == pytest.approx(100 / 150)


def test_suite_thresholds_are_used() -> None:
    strict = CheckSpec(id="membw", probe="cpu_membw", thresholds=Band(0.99, 0.95))
    e = evaluate(meas(97.0), strict, BASE, HEALTHY)
    assert e.verdict is Verdict.WARN
    assert (e.warn, e.fail) == (0.99, 0.95)
    assert "99%" in e.reason


def test_baseline_wins_over_absolute() -> None:
    check = CheckSpec(id="membw", probe="cpu_membw", absolute={"triad": Band(200.0, 150.0)})
    e = evaluate(meas(95.0), check, BASE, HEALTHY)
    assert e.kind == "baseline"
    assert e.verdict is Verdict.PASS


@pytest.mark.parametrize(
    ("value", "verdict", "words"),
    [
        (25.0, Verdict.PASS, ()),
        (15.0, Verdict.WARN, ("below", "20 GB/s")),
        (5.0, Verdict.FAIL, ("below", "10 GB/s")),
    ],
)
def test_absolute_limits_without_baseline(value: float, verdict: Verdict, words: tuple[str, ...]) -> None:
    check = CheckSpec(id="membw", probe="cpu_membw", absolute={"triad": Band(20.0, 10.0)})
    e = evaluate(meas(value), check, None, HEALTHY)
    assert e.verdict is verdict
    assert e.kind == "absolute"
    assert (e.warn, e.fail) == (20.0, 10.0)
    assert e.expected is None
    for word in words:
        assert word in e.reason


def test_absolute_limit_used_when_baseline_lacks_the_metric() -> None:
    check = CheckSpec(id="membw", probe="cpu_membw", absolute={"copy": Band(20.0, 10.0)})
    e = evaluate(meas(15.0, "copy"), check, BASE, HEALTHY)
    assert e.kind == "absolute"
    assert e.verdict is Verdict.WARN


def test_absolute_lower_is_better_reason_says_above() -> None:
    check = CheckSpec(id="lat", probe="x", absolute={"p99": Band(100.0, 200.0)})
    e = evaluate(meas(150.0, "p99", higher=False, unit="us"), check, None, HEALTHY)
    assert e.verdict is Verdict.WARN
    assert "above" in e.reason


def test_no_baseline() -> None:
    e = evaluate(meas(95.0), CHECK, None, HEALTHY)
    assert e.verdict is Verdict.NOBASELINE
    assert e.kind == "none"
    assert e.measured == 95.0
    assert e.expected is None and e.ratio is None
    assert "baseline" in e.reason


def test_baseline_without_this_check_is_nobaseline() -> None:
    e = evaluate(meas(95.0, "copy"), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.NOBASELINE
    assert "membw.copy" in e.reason
    assert "golden" in e.reason


# ---------------------------------------------------------------------------
# relative


def rel_check(to: str = "median", metrics: tuple[str, ...] | None = None) -> CheckSpec:
    return CheckSpec(
        id="membw_numa",
        probe="cpu_membw",
        expand="numa",
        metrics=metrics,
        relative=Relative(to, Band(0.9, 0.8)),
    )


def per_subject(
    values: dict[str, float], metric: str = "triad", higher: bool = True
) -> dict[str, list[Measurement]]:
    return {s: [meas(v, metric, s, higher=higher)] for s, v in values.items()}


def test_relative_median_flags_one_slow_subject_among_four() -> None:
    out = relative(
        per_subject({"numa0": 100.0, "numa1": 102.0, "numa2": 98.0, "numa3": 70.0}),
        rel_check(),
        Inventory.from_dict({}),
    )
    verdicts = {s: es[0].verdict for s, es in out.items()}
    assert verdicts == {
        "numa0": Verdict.PASS,
        "numa1": Verdict.PASS,
        "numa2": Verdict.PASS,
        "numa3": Verdict.FAIL,
    }
    slow = out["numa3"][0]
    assert slow.kind == "relative"
    assert slow.expected == 100.0  # the median of the others: 100, 102, 98
    assert slow.ratio == pytest.approx(0.7)
    assert "numa3" in slow.reason and "70%" in slow.reason and "median" in slow.reason
    # numa0 against the median of 102, 98, 70 = 98
    assert out["numa0"][0].expected == 98.0
    assert out["numa0"][0].reason == ""


def test_relative_median_warn() -> None:
    out = relative(
        per_subject({"numa0": 100.0, "numa1": 100.0, "numa2": 85.0}), rel_check(), Inventory.from_dict({})
    )
    assert out["numa2"][0].verdict is Verdict.WARN
    assert out["numa0"][0].verdict is Verdict.PASS


def test_relative_best() -> None:
    out = relative(
        per_subject({"gpu0": 100.0, "gpu1": 95.0, "gpu2": 85.0, "gpu3": 75.0}),
        rel_check("best"),
        Inventory.from_dict({}),
    )
    assert [out[s][0].verdict for s in ("gpu0", "gpu1", "gpu2", "gpu3")] == [
        Verdict.PASS,
        Verdict.PASS,
        Verdict.WARN,
        Verdict.FAIL,
    ]
    assert all(out[s][0].expected == 100.0 for s in out)
    assert "best" in out["gpu3"][0].reason


def test_relative_best_lower_is_better() -> None:
    out = relative(
        per_subject({"d0": 10.0, "d1": 20.0}, metric="lat", higher=False),
        rel_check("best"),
        Inventory.from_dict({}),
    )
    assert out["d0"][0].verdict is Verdict.PASS
    assert out["d0"][0].expected == 10.0
    assert out["d1"][0].verdict is Verdict.FAIL
    assert out["d1"][0].ratio == pytest.approx(0.5)


def test_relative_single_subject_is_skip() -> None:
    out = relative(per_subject({"numa0": 100.0}), rel_check(), Inventory.from_dict({}))
    (e,) = out["numa0"]
    assert e.verdict is Verdict.SKIP
    assert e.measured == 100.0
    assert "2 or more" in e.reason


def test_relative_ignores_sanity_failures_and_unselected_metrics() -> None:
    by_subject = per_subject({"numa0": 100.0, "numa1": 100.0})
    by_subject["numa2"] = [meas(10.0, "triad", "numa2", sanity="wrong")]
    for s in by_subject:
        by_subject[s].append(meas(1.0 if s == "numa1" else 100.0, "copy", s))
    out = relative(by_subject, rel_check(metrics=("triad",)), Inventory.from_dict({}))
    assert [e.metric for e in out["numa0"]] == ["triad"]
    assert out["numa0"][0].verdict is Verdict.PASS
    assert out["numa2"] == []  # its wrong result gets no relative verdict (the sanity FAIL covers it)


# ---------------------------------------------------------------------------
# hints


def test_hints_on_warn_name_governor_and_threads() -> None:
    m = meas(85.0, threads=16)
    e = evaluate(m, CHECK, BASE, SLOW_NODE)
    assert e.verdict is Verdict.WARN
    assert "powersave" in e.hint
    assert "fewer threads than cores" in e.hint
    assert "16 threads" in e.hint and "64 CPUs" in e.hint


def test_no_hint_on_pass_even_on_a_misconfigured_node() -> None:
    e = evaluate(meas(99.0, threads=16), CHECK, BASE, SLOW_NODE)
    assert e.verdict is Verdict.PASS
    assert e.hint == ""


def test_no_hint_when_configuration_is_fine() -> None:
    e = evaluate(meas(60.0, threads=8), CHECK, BASE, HEALTHY)
    assert e.verdict is Verdict.FAIL
    assert e.hint == ""


def test_hints_per_numa_node_use_that_nodes_cpus() -> None:
    node1 = meas(1.0, threads=4, cpus=(8, 9, 10, 11, 12, 13, 14, 15))
    assert any("4 threads where 8 CPUs" in h for h in config_hints(node1, SLOW_NODE))
    all_cpus = meas(1.0, threads=8, cpus=tuple(range(8, 16)))
    assert not any("threads" in h for h in config_hints(all_cpus, SLOW_NODE))


def test_other_config_hints() -> None:
    inv = Inventory.from_dict(
        {
            "tunables": {"numa_balancing": 1},
            "numa": {"nodes": [{"id": 0}, {"id": 1}]},
            "memory": {"thp": {"enabled": "never"}},
        }
    )
    hints = config_hints(meas(1.0), inv)
    assert any("numa_balancing" in h for h in hints)
    assert any("huge pages" in h for h in hints)
    assert hint_for(Verdict.NOBASELINE, meas(1.0), inv) == ""
    assert hint_for(Verdict.FAIL, meas(1.0), inv) != ""


def test_relative_shortfall_gets_a_hint() -> None:
    by_subject = {
        s: [meas(v, "triad", s, threads=2)]
        for s, v in {"numa0": 100.0, "numa1": 100.0, "numa2": 50.0}.items()
    }
    out = relative(by_subject, rel_check(), SLOW_NODE)
    assert "powersave" in out["numa2"][0].hint
    assert out["numa0"][0].hint == ""


# ---------------------------------------------------------------------------
# judge


def outcome(
    subject: str,
    status: str = "ok",
    measurements: list[Measurement] | None = None,
    reason: str = "",
    hint: str = "",
    params: dict[str, Any] | None = None,
    unmeasured: list[Unmeasured] | None = None,
) -> SimpleNamespace:
    return SimpleNamespace(
        job=SimpleNamespace(subject=subject, params={"numa_node": 0}),
        status=status,
        started="2026-01-02T03:04:05+00:00",
        duration=1.5,
        reason=reason,
        hint=hint,
        params=params if params is not None else {},
        measurements=measurements or [],
        unmeasured=unmeasured or [],
    )


def test_judge_ok_and_error_outcomes() -> None:
    outcomes = [
        outcome("node", measurements=[meas(95.0), meas(70.0, "copy")], params={"repeats": 10}),
    ]
    check = CheckSpec(id="membw", probe="cpu_membw", timeout=120.0)
    base = baseline({"membw": {"triad": 100.0, "copy": 100.0}})
    (r,) = judge(check, outcomes, base, HEALTHY)
    assert (r.id, r.probe, r.subject, r.status) == ("membw", "cpu_membw", "node", "ok")
    assert r.params == {"repeats": 10}
    assert r.timeout == 120.0
    assert r.duration == 1.5
    assert r.started == "2026-01-02T03:04:05+00:00"
    assert [e.verdict for e in r.evaluations] == [Verdict.PASS, Verdict.FAIL]
    assert r.verdict is Verdict.FAIL
    assert r.thresholds["thresholds"] == {"warn": 0.9, "fail": 0.8}
    assert len(r.measurements) == 2


def test_judge_error_outcome_is_error() -> None:
    err = outcome("node", status="error", reason="timed out after 120 s", hint="raise timeout")
    (r,) = judge(CheckSpec(id="membw", probe="cpu_membw"), [err], BASE, HEALTHY)
    assert r.verdict is Verdict.ERROR
    assert r.reason == "timed out after 120 s"
    assert r.hint == "raise timeout"
    assert r.evaluations == ()
    assert r.params == {"numa_node": 0}  # the job's params when the outcome has none


def test_judge_skip_outcome_is_skip() -> None:
    (r,) = judge(CheckSpec(id="membw", probe="cpu_membw"), [outcome("gpu0", status="skip")], BASE, HEALTHY)
    assert r.verdict is Verdict.SKIP


def test_judge_relative_with_an_erroring_subject() -> None:
    check = rel_check(metrics=("triad",))
    outcomes = [
        outcome("numa0", measurements=[meas(100.0, subject="numa0")]),
        outcome("numa1", measurements=[meas(100.0, subject="numa1")]),
        outcome("numa2", measurements=[meas(60.0, subject="numa2")]),
        outcome("numa3", status="error", reason="crashed: SIGSEGV"),
    ]
    results = {r.subject: r for r in judge(check, outcomes, None, HEALTHY)}
    assert results["numa3"].verdict is Verdict.ERROR
    assert results["numa3"].expand == "numa"
    numa2_kinds = {e.kind: e.verdict for e in results["numa2"].evaluations}
    assert numa2_kinds == {"none": Verdict.NOBASELINE, "relative": Verdict.FAIL}
    assert results["numa2"].verdict is Verdict.FAIL
    assert {e.kind: e.verdict for e in results["numa0"].evaluations}["relative"] is Verdict.PASS


def test_judge_none_of_the_metrics_measured_is_error() -> None:
    check = CheckSpec(id="membw", probe="cpu_membw", metrics=("triad",))
    (r,) = judge(check, [outcome("node", measurements=[meas(90.0, "copy")])], BASE, HEALTHY)
    assert r.verdict is Verdict.ERROR
    assert "triad" in r.evaluations[0].reason


def test_judge_could_not_measure_is_error_beside_the_other_verdicts() -> None:
    """``could_not_measure`` (a tool missing for one item) is ERROR for that metric only: the
    probe's other metrics keep their verdicts, and a FAIL among them still decides the check."""
    unmeasured = [
        Unmeasured("edac_corrected", "not_measured", "no EDAC"),
        Unmeasured("nvme_media_errors", "could_not_measure", "nvme-cli is not on PATH"),
        Unmeasured("unjudged", "could_not_measure", "x"),
    ]
    check = CheckSpec(
        id="node_health",
        probe="node_health",
        metrics=("aer_fatal", "edac_corrected", "nvme_media_errors"),
        absolute={"aer_fatal": Band(None, 0.5)},
    )
    ok = [meas(0.0, "aer_fatal", higher=False, unit="count")]
    (r,) = judge(check, [outcome("node", measurements=ok, unmeasured=unmeasured)], None, HEALTHY)
    got = {e.metric: (e.verdict, e.kind, e.reason) for e in r.evaluations}
    assert got == {
        "aer_fatal": (Verdict.PASS, "absolute", ""),
        "edac_corrected": (Verdict.SKIP, "not_measured", "not measured: no EDAC"),
        "nvme_media_errors": (
            Verdict.ERROR,
            "could_not_measure",
            "could not measure: nvme-cli is not on PATH",
        ),
    }
    assert r.verdict is Verdict.ERROR
    bad = [meas(1.0, "aer_fatal", higher=False, unit="count")]
    (r,) = judge(check, [outcome("node", measurements=bad, unmeasured=unmeasured)], None, HEALTHY)
    assert r.verdict is Verdict.FAIL  # a proven failure outranks "could not measure"


# ---------------------------------------------------------------------------
# too good to be true: thresholds.above


ABOVE = CheckSpec(id="membw", probe="cpu_membw", thresholds=Band(0.9, 0.8, above=1.3))


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [(1.30, Verdict.PASS), (1.31, Verdict.WARN), (0.85, Verdict.WARN), (5.0, Verdict.WARN)],
)
def test_band_verdict_above(ratio: float, verdict: Verdict) -> None:
    assert band_verdict(ratio, Band(0.9, 0.8, above=1.3)) is verdict
    assert band_verdict(5.0, Band(0.9, 0.8)) is Verdict.PASS  # no upper bound unless asked


def test_above_the_expected_value_is_a_warning_with_the_numbers() -> None:
    e = evaluate(meas(135.0), ABOVE, BASE, HEALTHY)
    assert e.verdict is Verdict.WARN and e.ratio == 1.35
    assert e.reason == (
        "135 GB/s is above the expected 100 GB/s by 35% (limit 30%): measured from a cache, "
        "or the baseline is wrong?"
    )
    assert "a cache answered" in e.hint


def test_above_for_a_metric_where_lower_is_better() -> None:
    """A latency 50% of the expected is a ratio of 2 in performance terms: 50% below, suspect."""
    base = baseline({"membw": {"lat": 100.0}})
    e = evaluate(meas(50.0, "lat", higher=False, unit="us"), ABOVE, base, HEALTHY)
    assert e.verdict is Verdict.WARN and e.ratio == 2.0
    assert e.reason.startswith("50 us is below the expected 100 GB/s by 50% (limit 23%)")
    assert evaluate(meas(80.0, "lat", higher=False, unit="us"), ABOVE, base, HEALTHY).verdict is Verdict.PASS
