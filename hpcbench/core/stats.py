"""Sample statistics and stability warnings (kept apart, as pyperf does)."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Stats:
    """Statistics of a list of repeat samples."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    cv: float  # stdev / mean; 0 when the mean is 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: list[float] | tuple[float, ...]) -> Stats:
    """Median, mean, sample standard deviation, extremes and coefficient of variation."""
    if not samples:
        raise ValueError("no samples")
    values = [float(v) for v in samples]
    if any(math.isnan(v) or math.isinf(v) for v in values):
        raise ValueError("samples contain NaN or infinity")
    mean = statistics.fmean(values)
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stats(
        n=len(values),
        median=statistics.median(values),
        mean=mean,
        stdev=stdev,
        min=min(values),
        max=max(values),
        cv=stdev / mean if mean else 0.0,
    )


def best(samples: list[float] | tuple[float, ...], higher_is_better: bool) -> float:
    """The best sample: the largest where higher is better, else the smallest."""
    return max(samples) if higher_is_better else min(samples)


def fastest(times: dict[str, list[float]], prefer: str | None = None) -> str:
    """The name whose timings (seconds per call) have the shortest median; ``prefer`` on a tie, else
    the first name. Names without timings are left out; ValueError when none has any."""
    medians = {name: statistics.median(ts) for name, ts in times.items() if ts}
    if not medians:
        raise ValueError("no timings")
    order = {name: i for i, name in enumerate(medians)}
    return min(medians, key=lambda name: (medians[name], name != prefer, order[name]))


def stability_warnings(stats: Stats) -> list[str]:
    """pyperf-style warnings: the samples are too noisy to trust a small difference."""
    warnings: list[str] = []
    if stats.n < 3:
        warnings.append(f"only {stats.n} sample(s): too few to judge stability")
    if stats.mean and stats.cv > 0.10:
        warnings.append(f"unstable: stdev is {stats.cv:.0%} of the mean (over 10%)")
    if stats.mean:
        for label, value in (("min", stats.min), ("max", stats.max)):
            off = abs(value - stats.mean) / abs(stats.mean)
            if off > 0.5:
                warnings.append(f"{label} is {off:.0%} away from the mean (over 50%)")
    return warnings
