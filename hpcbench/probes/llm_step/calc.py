"""Pure judgements of a training run: is the loss sane, the step-time statistics, the slowest rank."""

from __future__ import annotations

import math
import statistics
import struct


def loss_problem(losses: list[float], warmup: int, subject: str) -> str | None:
    """Why the run's losses are wrong (the ``sanity`` of its measurements), or None.

    ``losses`` are every step's, the ``warmup`` untimed ones first. A NaN or Inf anywhere is wrong;
    so is a loss that did not fall over the timed steps (the last timed loss not below the first):
    on one fixed batch a healthy optimiser always makes progress.
    """
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        return (
            f"{subject}: the loss is {losses[bad[0]]} at step {bad[0] + 1} of {len(losses)} "
            f"({len(bad)} non-finite step(s))"
        )
    timed = losses[warmup:]
    if len(timed) >= 2 and not timed[-1] < timed[0]:
        return (
            f"{subject}: the loss did not fall over the {len(timed)} timed steps on the fixed batch "
            f"({timed[0]:.6g} at the first, {timed[-1]:.6g} at the last)"
        )
    return None


def json_losses(values: list[float]) -> list[float | str]:
    """Losses for the record: a NaN or Inf as its text ("nan", "inf"), which strict JSON can hold."""
    return [v if math.isfinite(v) else str(v) for v in values]


def float32_bits(value: float) -> str:
    """The IEEE-754 float32 bits of a loss, as 8 hex digits: the first-step digest GPUs must share."""
    return struct.pack(">f", value).hex()


def p95(values: list[float]) -> float:
    """The 95th percentile, linear between the closest ranks (numpy's default, 'inclusive')."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=20, method="inclusive")[-1]


def slowest(rates: list[float]) -> tuple[int, float]:
    """(index of the lowest rate, its fraction of the median of the others)."""
    worst = min(range(len(rates)), key=lambda i: rates[i])
    others = [r for i, r in enumerate(rates) if i != worst]
    ref = statistics.median(others) if others else rates[worst]
    return worst, rates[worst] / ref if ref else 1.0


def majority_outliers(values: list[str]) -> list[int]:
    """Indices whose value differs from the one more than half share ([] without such a majority)."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    top, n = max(counts.items(), key=lambda kv: kv[1])
    if n * 2 <= len(values):
        return []
    return [i for i, v in enumerate(values) if v != top]
