"""Sample statistics, the best sample, and stability warnings."""

from __future__ import annotations

import math

import pytest

from hpcbench.core.stats import Stats, best, stability_warnings, summarize


def test_summarize_even_count() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.median == pytest.approx(2.5)
    assert s.mean == pytest.approx(2.5)
    # sample (n-1) standard deviation
    assert s.stdev == pytest.approx(math.sqrt(5 / 3))
    assert s.min == 1.0
    assert s.max == 4.0
    assert s.cv == pytest.approx(math.sqrt(5 / 3) / 2.5)


def test_summarize_odd_count_median_is_middle_value() -> None:
    s = summarize([10, 30, 20])
    assert s.median == 20.0
    assert s.mean == pytest.approx(20.0)
    assert s.stdev == pytest.approx(10.0)
    assert s.cv == pytest.approx(0.5)


def test_summarize_accepts_tuple_and_ints() -> None:
    s = summarize((5, 5, 5))
    assert isinstance(s.mean, float)
    assert s.stdev == 0.0
    assert s.cv == 0.0


def test_summarize_single_sample() -> None:
    s = summarize([42.0])
    assert s == Stats(n=1, median=42.0, mean=42.0, stdev=0.0, min=42.0, max=42.0, cv=0.0)


def test_summarize_zero_mean_gives_zero_cv() -> None:
    s = summarize([-1.0, 1.0])
    assert s.mean == 0.0
    assert s.cv == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_summarize_rejects_nan_and_infinity(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        summarize([1.0, bad, 3.0])


def test_summarize_rejects_no_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_as_dict_has_every_field() -> None:
    d = summarize([1.0, 3.0]).as_dict()
    assert d == {
        "n": 2,
        "median": 2.0,
        "mean": 2.0,
        "stdev": pytest.approx(math.sqrt(2)),
        "min": 1.0,
        "max": 3.0,
        "cv": pytest.approx(math.sqrt(2) / 2),
    }


def test_best_higher_and_lower_is_better() -> None:
    samples = [3.0, 9.0, 1.0, 5.0]
    assert best(samples, higher_is_better=True) == 9.0
    assert best(samples, higher_is_better=False) == 1.0


def test_stable_samples_have_no_warning() -> None:
    assert stability_warnings(summarize([100.0, 101.0, 99.0, 100.5, 99.5])) == []


def test_noisy_samples_warn_about_cv() -> None:
    warnings = stability_warnings(summarize([60.0, 100.0, 140.0, 80.0, 120.0]))
    assert any("unstable" in w and "over 10%" in w for w in warnings), warnings


def test_cv_just_under_ten_percent_is_stable() -> None:
    s = summarize([91.0, 100.0, 109.0])  # stdev 9, cv 0.09
    assert s.cv < 0.10
    assert not any("unstable" in w for w in stability_warnings(s))


def test_outlier_far_from_mean_warns_about_extreme() -> None:
    # many identical samples and one huge outlier: max is far from the mean
    warnings = stability_warnings(summarize([10.0] * 9 + [100.0]))
    assert any(w.startswith("max is") and "over 50%" in w for w in warnings), warnings
    assert not any(w.startswith("min is") for w in warnings)


def test_too_few_samples_warn() -> None:
    warnings = stability_warnings(summarize([100.0, 100.0]))
    assert warnings == ["only 2 sample(s): too few to judge stability"]


def test_fastest_is_the_shortest_median_with_a_preferred_name_on_ties() -> None:
    from hpcbench.core.stats import fastest

    assert fastest({"a": [3.0, 1.0, 2.0], "b": [1.5, 1.5, 9.0]}) == "b"
    assert fastest({"a": [1.0], "b": [1.0]}) == "a"
    assert fastest({"a": [1.0], "b": [1.0]}, prefer="b") == "b"
    assert fastest({"a": [], "b": [5.0]}) == "b"
    with pytest.raises(ValueError):
        fastest({"a": []})


def test_a_measurement_whose_settings_hold_nan_still_writes_strict_json() -> None:
    """A probe that saw a NaN (a diverging loss) in its provenance must not lose the record."""
    import json

    from hpcbench.core.measurement import Measurement

    m = Measurement.from_samples(
        "x", [1.0], "u", "node", settings={"loss": float("nan"), "trace": [1.0, float("inf"), -float("inf")]}
    )
    data = json.loads(json.dumps(m.as_dict(), allow_nan=False))
    assert data["settings"] == {"loss": "nan", "trace": [1.0, "inf", "-inf"]}
