"""The robust statistics behind fleet, fleet baselines, compare and history, against values
computed by hand (the arithmetic is in the comments), not only their signs and thresholds.

- modified z-score (Iglewicz and Hoaglin): 0.6745 (x - median) / MAD, oriented so negative is worse;
- robust spread: 1.4826 MAD (the sample stdev when the MAD is 0);
- trimming: rounds of removing |score| > 3.5 until a round removes nothing;
- compare: pooled spread sqrt((s_old^2 + s_new^2) / 2), a change counts beyond 3 x it;
- history: a point is degraded below 95% of the rolling median and beyond 3 x 1.4826 MAD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpcbench.analysis import fleet, fleet_baseline, history, robust

REL = 1e-12


# -- the scores and spreads -------------------------------------------------------------------


def test_robust_score_is_0_6745_times_the_deviation_over_the_mad() -> None:
    # 0.6745 x (90 - 100) / 5 = -1.349
    assert float(robust.robust_score(90, 100, 5, True)) == pytest.approx(-1.349, rel=REL)
    assert float(robust.robust_score(110, 100, 5, True)) == pytest.approx(1.349, rel=REL)
    # lower is better: 0.6745 x (100 - 120) / 5 = -2.698 (higher latency is worse)
    assert float(robust.robust_score(120, 100, 5, False)) == pytest.approx(-2.698, rel=REL)
    # the same scale as the classic z-score for normal data: MAD = 0.6745 sigma, so x = median - 2
    # sigma scores -2
    sigma = 3.0
    assert float(robust.robust_score(100 - 2 * sigma, 100, 0.6745 * sigma, True)) == pytest.approx(-2.0)


def test_mad_and_spread() -> None:
    # median 3; |x - 3| = 2, 1, 0, 1, 97; their median: 1
    assert robust.mad([1, 2, 3, 4, 100]) == 1.0
    # 1.4826 x MAD: median 100, |x - 100| = 0, 1, 1, 0.5, 0.5 -> MAD 0.5 -> 0.7413
    assert robust.spread([100.0, 101.0, 99.0, 100.5, 99.5]) == pytest.approx(0.7413, rel=REL)
    # MAD 0 (four equal values): the sample stdev, mean 5.6, sum of squares 4 x 0.36 + 5.76 = 7.2,
    # / (5 - 1) = 1.8, sqrt = 1.3416...
    assert robust.spread([5.0, 5.0, 5.0, 5.0, 8.0]) == pytest.approx(1.8**0.5, rel=REL)
    assert robust.MAD_TO_SIGMA == 1.4826 and robust.Z_SCALE == 0.6745


def test_performance_ratio_is_below_one_when_worse_in_either_direction() -> None:
    got = robust.performance_ratio([90.0, 125.0], [100.0, 100.0], np.array([True, False]))
    assert list(got) == [0.9, 0.8]  # 90 / 100; latency 125 against 100: 100 / 125


# -- trimming (fleet baselines) ----------------------------------------------------------------

NINE = [100, 101, 99, 102, 98, 100, 104, 110, 160]


def test_trimmed_removes_in_rounds_until_a_round_removes_nothing() -> None:
    # round 1: median 101, |x - 101| = 1 0 2 1 3 1 3 9 59 -> MAD 2; 160 scores 0.6745 x 59 / 2 =
    #   19.9 (out); 110 scores 0.6745 x 9 / 2 = 3.035 (kept: not above 3.5)
    # round 2: 8 left, median 100.5, |x - 100.5| = 0.5 0.5 0.5 1.5 1.5 2.5 3.5 9.5 -> MAD 1.5;
    #   110 now scores 0.6745 x 9.5 / 1.5 = 4.27 (out), 104 scores 1.57 (kept)
    # round 3: 7 left, median 100, MAD 1; 104 scores 0.6745 x 4 = 2.70: nothing removed
    median, keep = robust.trimmed(NINE)
    assert median == 100.0
    assert [v for v, k in zip(NINE, keep, strict=True) if not k] == [110, 160]


def test_trimmed_keeps_a_value_scoring_just_under_the_limit() -> None:
    # median 100, |x - 100| = 0 10 10 12 49 -> MAD 10; 51 scores 0.6745 x 49 / 10 = 3.305 <= 3.5
    median, keep = robust.trimmed([100, 110, 90, 112, 51])
    assert median == 100.0 and keep.all()
    # with k = 3 it goes, and the median of the rest is (100 + 110) / 2
    assert robust.trimmed([100, 110, 90, 112, 51], k=3.0)[0] == 105.0


def test_trimmed_never_leaves_fewer_than_three() -> None:
    median, keep = robust.trimmed([10.0, 10.0, 10.0, 50.0, 90.0])  # MAD 0: everything off the median
    assert median == 10.0 and list(keep) == [True, True, True, False, False]
    assert robust.trimmed([1.0, 50.0, 90.0])[1].all()  # removing 1 and 90 would leave one


def test_fleet_baseline_expected_values_are_the_trimmed_medians() -> None:
    hosts = pd.Series([f"n{i}" for i in range(9)])
    rows = [("gemm", "bf16", v, i) for i, v in enumerate(NINE)]
    rows += [("membw", "triad", v, i) for i, v in enumerate([100, 110, 90, 112, 51])]
    values = pd.DataFrame(
        {
            "check": [r[0] for r in rows],
            "metric": [r[1] for r in rows],
            "value": [float(r[2]) for r in rows],
            "run": [r[3] for r in rows],
            "unit": ["TFLOPS"] * 9 + ["GB/s"] * 5,
            "sane": True,
        }
    )
    expected, removed = fleet_baseline.expected_from_fleet(values, hosts)
    assert expected == {"gemm": {"bf16": (100.0, "TFLOPS", 7)}, "membw": {"triad": (100.0, "GB/s", 5)}}
    assert removed == {"gemm.bf16": ["n7", "n8"]}


# -- fleet scores -------------------------------------------------------------------------------


def _fleet(values: dict[tuple[str, str, bool], list[float]]) -> pd.DataFrame:
    """fleet.score over one value per node (node i = run i) for each (check, metric, higher_is_better)."""
    rows = []
    for (check, metric, hib), vals in values.items():
        for i, v in enumerate(vals):
            rows.append(
                {
                    "run": i, "check": check, "subject": "node", "metric": metric, "unit": "u",
                    "value": v, "higher_is_better": hib, "expected": np.nan, "sane": True,
                }
            )  # fmt: skip
    hosts = max(len(v) for v in values.values())
    runs = pd.DataFrame({"host": [f"n{i}" for i in range(hosts)]})
    scores, _ = fleet.score(pd.DataFrame(rows), runs, fleet.Options())
    return scores.set_index(["check", "metric", "host"])


def test_fleet_scores_ratios_and_flags_by_hand() -> None:
    s = _fleet(
        {
            # median 100, |x - 100| = 0 2 2 1 20 -> MAD 2
            ("gemm", "bf16", True): [100.0, 102.0, 98.0, 101.0, 80.0],
            # median 10.2, |x - 10.2| = 0.2 0.3 0.7 0 3.8 -> MAD 0.3
            ("nvme", "lat", False): [10.0, 10.5, 9.5, 10.2, 14.0],
            # median 100, MAD 10: 51 scores -3.305, within k = 3.5 although its ratio is 0.51
            ("membw", "triad", True): [100.0, 110.0, 90.0, 112.0, 51.0],
        }
    )
    slow = s.loc[("gemm", "bf16", "n4")]
    assert (slow["fleet_median"], slow["mad"], slow["ratio"]) == (100.0, 2.0, 0.8)
    assert slow["score"] == pytest.approx(-6.745, rel=REL) and slow["flagged"]  # 0.6745 x -20 / 2
    assert s.loc[("gemm", "bf16", "n2"), "score"] == pytest.approx(-0.6745, rel=REL)
    lat = s.loc[("nvme", "lat", "n4")]
    assert lat["mad"] == pytest.approx(0.3, rel=REL)
    assert lat["score"] == pytest.approx(0.6745 * (10.2 - 14.0) / 0.3, rel=REL)  # -8.5437
    assert lat["ratio"] == pytest.approx(10.2 / 14.0, rel=REL) and lat["flagged"]  # 0.7286
    assert s.loc[("nvme", "lat", "n2"), "score"] == pytest.approx(0.6745 * 0.7 / 0.3, rel=REL)  # faster
    triad = s.loc[("membw", "triad", "n4")]
    assert triad["score"] == pytest.approx(-3.30505, rel=REL) and triad["ratio"] == 0.51
    assert not triad["flagged"]
    assert list(s.loc[s["flagged"]].index) == [("gemm", "bf16", "n4"), ("nvme", "lat", "n4")]


# -- compare: the noise rule --------------------------------------------------------------------


def test_compare_noise_is_the_pooled_robust_spread() -> None:
    old = [100.0, 101.0, 99.0, 100.5, 99.5]  # median 100, MAD 0.5 -> s = 0.7413
    new = [90.0, 92.0, 88.0, 91.0, 89.0]  # median 90, MAD 1 -> s = 1.4826
    ch = robust.compare_samples(old, new, True)
    # sqrt((0.7413^2 + 1.4826^2) / 2) = sqrt(1.373814225) = 1.17209821..., / the old median 100
    assert ch.noise == pytest.approx(0.011720982147414096, rel=REL)
    assert (ch.old, ch.new, ch.change) == (100.0, 90.0, -0.1)
    assert ch.significant is True and ch.better is False  # 10 > 3 x 1.172, ranges apart
    # lower is better: the same drop is an improvement
    assert robust.compare_samples(old, new, False).better is True


def test_compare_change_within_three_pooled_spreads_is_noise() -> None:
    old = [100.0, 104.0, 96.0, 102.0, 98.0]  # median 100, MAD 2 -> s = 2.9652
    new = [93.0, 93.5, 92.5, 93.2, 92.8]  # median 93, |x - 93| = 0 .5 .5 .2 .2 -> MAD 0.2 -> s = 0.29652
    ch = robust.compare_samples(old, new, True)
    # pooled sqrt((2.9652^2 + 0.29652^2) / 2) = 2.10709...; 3 x = 6.321 < 7: beyond; ranges apart
    pooled = ((2.9652**2 + 0.29652**2) / 2) ** 0.5
    assert ch.noise == pytest.approx(pooled / 100, rel=REL) and ch.significant is True
    near = robust.compare_samples(old, [94.0, 94.5, 93.5, 94.2, 93.8], True)  # 6 < 6.321: noise
    assert near.significant is False and near.why == "|change| <= 3 x noise"


# -- history: degraded against the rolling median -------------------------------------------


def test_history_degraded_needs_five_percent_and_three_robust_spreads() -> None:
    window = [100.0, 104.0, 96.0, 102.0, 98.0]  # median 100, MAD 2 -> 3 x 1.4826 x 2 = 8.8956

    def last(x: float, higher_is_better: bool = True) -> tuple:
        return history.degradation([*window, x], higher_is_better, window=7)[-1]

    assert last(92.0) == (100.0, 0.92, False)  # 8 below: within 8.8956
    assert last(90.0) == (100.0, 0.9, True)  # 10 below, ratio 0.90 < 0.95
    assert last(109.0, False) == (100.0, pytest.approx(100 / 109, rel=REL), True)  # latency 9 above
    # a degraded point stays out of the window: 91 is judged against the same median and MAD (9
    # below: degraded); had 90 joined, the MAD would be 3 (|x - 99| = 1 5 3 3 1 9) and 91 within
    assert history.degradation([*window, 90.0, 91.0], True, window=7)[-1] == (100.0, 0.91, True)
