"""Robust statistics for analysis: median absolute deviation, outlier scores, noise rules.

Pure functions on numpy arrays; no I/O.

- **Robust score** (Iglewicz and Hoaglin's modified z-score): ``0.6745 (x - median) / MAD``;
  about the classic z-score for normal data, but a few outliers move neither the median nor
  the MAD. Oriented so that negative is worse: for a lower-is-better metric the sign flips.
- **Noise rule** for two sets of repeat samples: the change of the median is beyond the noise
  when it exceeds ``k`` times the pooled robust spread, ``sqrt((s_old^2 + s_new^2) / 2)`` with
  ``s = 1.4826 MAD`` (the stdev when the MAD is 0), and the sample ranges do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal data
Z_SCALE = 0.6745  # 1 / MAD_TO_SIGMA


def mad(values: Any) -> float:
    import numpy as np

    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return float("nan")
    return float(np.median(np.abs(a - np.median(a))))


def performance_ratio(value: Any, reference: Any, higher_is_better: Any) -> Any:
    """value / reference where higher is better, reference / value where lower is; arrays too."""
    import numpy as np

    value = np.asarray(value, dtype=float)
    reference = np.asarray(reference, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(higher_is_better, value / reference, reference / value)


def robust_score(value: Any, median: Any, mad_: Any, higher_is_better: Any) -> Any:
    """The oriented modified z-score (negative = worse); +-inf where the MAD is 0 and x differs."""
    import numpy as np

    value, median, mad_ = (np.asarray(a, dtype=float) for a in (value, median, mad_))
    diff = np.where(higher_is_better, value - median, median - value)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = Z_SCALE * diff / mad_
    return np.where(diff == 0, 0.0, z)


def trimmed(values: Any, k: float = 3.5, max_rounds: int = 20) -> tuple[float, Any]:
    """The median after removing outliers iteratively (|score| > k, both sides), and the kept mask.

    Each round recomputes the median and MAD of what is left and removes what lies beyond;
    it stops when a round removes nothing, or when fewer than 3 values would remain.
    """
    import numpy as np

    a = np.asarray(values, dtype=float)
    keep = np.isfinite(a)
    for _ in range(max_rounds):
        kept = a[keep]
        if kept.size < 3:
            break
        med = np.median(kept)
        spread = np.median(np.abs(kept - med))
        beyond = (a != med) if spread == 0 else (Z_SCALE * np.abs(a - med) / spread > k)
        out = keep & beyond
        if not out.any() or (keep & ~out).sum() < 3:
            break
        keep &= ~out
    return float(np.median(a[keep])) if keep.any() else float("nan"), keep


@dataclass(frozen=True)
class Change:
    """The change between two sets of repeat samples of one metric."""

    old: float  # median of the old samples
    new: float
    change: float  # (new - old) / old
    better: bool  # the change is an improvement (direction-aware)
    noise: float  # pooled robust spread, as a fraction of the old median
    significant: bool | None  # None: too few samples to tell
    why: str


def spread(samples: Any) -> float:
    """Robust standard deviation of repeat samples: 1.4826 MAD, the stdev when the MAD is 0."""
    import numpy as np

    a = np.asarray(samples, dtype=float)
    s = MAD_TO_SIGMA * mad(a)
    if s == 0 and a.size > 1:
        s = float(np.std(a, ddof=1))
    return s


def compare_samples(
    old: Any, new: Any, higher_is_better: bool, k: float = 3.0, min_samples: int = 3
) -> Change:
    """Whether the new samples differ from the old beyond their noise (see the module's rule)."""
    import numpy as np

    a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    mo, mn = float(np.median(a)), float(np.median(b))
    change = (mn - mo) / mo if mo else float("inf") if mn else 0.0
    better = (mn > mo) if higher_is_better else (mn < mo)
    if a.size < min_samples or b.size < min_samples:
        return Change(mo, mn, change, better, float("nan"), None, f"fewer than {min_samples} samples")
    pooled = float(np.sqrt((spread(a) ** 2 + spread(b) ** 2) / 2))
    noise = pooled / abs(mo) if mo else float("inf")
    overlap = a.max() >= b.min() and b.max() >= a.min()
    beyond = abs(mn - mo) > k * pooled
    if beyond and not overlap:
        why = f"|change| > {k:g} x noise and the sample ranges do not overlap"
    elif overlap:
        why = "the sample ranges overlap"
    else:
        why = f"|change| <= {k:g} x noise"
    return Change(mo, mn, change, better, noise, bool(beyond and not overlap), why)
