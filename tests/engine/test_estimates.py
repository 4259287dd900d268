"""A baseline value marked ``estimate`` can WARN a node, never FAIL it (the bundled suites and
profiles as shipped)."""

from __future__ import annotations

from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.engine import baselines, judge, suite
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry

INVENTORY = Inventory.from_dict({"cpu": {"model": "test cpu"}, "gpus": {"count": 0, "devices": []}})


def burn_check() -> suite.CheckSpec:
    acceptance = suite.load("acceptance", registry.load_all())
    return next(c for c in acceptance.checks if c.id == "burn")


def sustained(value: float) -> Measurement:
    return Measurement.from_samples("bf16_sustained", [value], "TFLOPS", "gpu0")


def test_the_h200_sustained_value_is_an_estimate() -> None:
    exp = baselines.load("h200").expectation("burn", "bf16_sustained")
    assert exp is not None and exp.estimate and exp.value == 686.0


def test_far_below_an_estimate_is_a_warn_that_says_why_and_what_to_do() -> None:
    check = burn_check()
    assert (check.thresholds.warn, check.thresholds.fail) == (0.95, 0.90)
    ev = judge.evaluate(sustained(500.0), check, baselines.load("h200"), INVENTORY)
    assert ev.verdict is Verdict.WARN
    assert abs(ev.ratio - 500.0 / 686.0) < 1e-12  # 72.9%, far below the fail limit of 90%
    assert ev.reason == (
        "500 TFLOPS is 73% of the expected 686 TFLOPS (below 90%); the expected value is an estimate, "
        "not this site's measurement, so it can WARN but not FAIL: record the site's own from a "
        "known-good node (hpcbench baseline create RECORD... -o FILE)"
    )


def test_between_the_limits_of_an_estimate_is_the_plain_warn() -> None:
    ev = judge.evaluate(sustained(640.0), burn_check(), baselines.load("h200"), INVENTORY)
    assert ev.verdict is Verdict.WARN  # 93.3%: between fail 90% and warn 95%
    assert ev.reason == "640 TFLOPS is 93% of the expected 686 TFLOPS (below 95%)"


def test_a_measured_value_still_fails() -> None:
    measured = baselines.Expectation(686.0, "TFLOPS", "golden node n17", estimate=False)
    base = baselines.load("h200")
    site = baselines.Baseline("site", "", {}, base.provenance, {"burn": {"bf16_sustained": measured}})
    ev = judge.evaluate(sustained(500.0), burn_check(), site, INVENTORY)
    assert ev.verdict is Verdict.FAIL
    assert ev.reason == "500 TFLOPS is 73% of the expected 686 TFLOPS (below 90%)"
