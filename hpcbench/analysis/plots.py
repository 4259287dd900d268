"""The report's plots (matplotlib, Agg, no display), each returned as a base64 PNG."""

from __future__ import annotations

import base64
import io
from typing import Any

RED = "#c62828"
GREY = "#546e7a"
BLUE = "#1565c0"
AMBER = "#ef6c00"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.fonttype": "none",
        }
    )
    return plt


def _png(fig: Any) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def cutoff(median: float, mad: float, higher_is_better: bool, k: float, min_deviation: float) -> float:
    """The value beyond which a node is a slow outlier (both the score and the ratio rule)."""
    z_room = k * mad / 0.6745
    if higher_is_better:
        return min(median - z_room, median * (1 - min_deviation))
    return max(median + z_room, median / (1 - min_deviation))


def distribution(group: Any, metric_row: Any, k: float, min_deviation: float, label_limit: int = 8) -> str:
    """One metric across the fleet: a jittered strip of every value, flagged values in red."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.4, 1.8))
    values = group["value"].to_numpy(dtype=float)
    flagged = group["flagged"].to_numpy(dtype=bool)
    rng = np.random.default_rng(0)
    y = rng.uniform(-0.35, 0.35, size=len(values))
    ax.scatter(values[~flagged], y[~flagged], s=10, color=GREY, alpha=0.45, linewidths=0, label="nodes")
    ax.scatter(values[flagged], y[flagged], s=28, color=RED, label="flagged", zorder=3)
    med = float(metric_row.median)
    ax.axvline(med, color=BLUE, lw=1.2, label=f"fleet median {med:,.4g}")
    if metric_row.scored:
        cut = cutoff(med, float(metric_row.mad), bool(metric_row.higher_is_better), k, min_deviation)
        ax.axvline(cut, color=AMBER, lw=1, ls="--", label=f"outlier cutoff {cut:,.4g}")
    exp = metric_row.expected
    if exp == exp and exp is not None:  # not NaN
        ax.axvline(float(exp), color="black", lw=0.8, ls=":", label=f"baseline {float(exp):,.4g}")
    # one label per node at its worst flagged value: "host" or "host/gpu3" or "host (8 GPUs)"
    scores = group["score"].to_numpy(dtype=float)
    hosts = group["host"].astype(str).to_numpy()
    subjects = group["subject"].astype(str).to_numpy()
    seen: dict[str, list[int]] = {}
    for i in np.argsort(scores):
        if flagged[i]:
            seen.setdefault(hosts[i], []).append(int(i))
    for n, (host, idx) in enumerate(list(seen.items())[:label_limit]):
        i = idx[0]
        if len(idx) > 1:
            name = f"{host} ({len(idx)} {'GPUs' if subjects[i].startswith('gpu') else 'subjects'})"
        else:
            name = host if subjects[i] == "node" else f"{host}/{subjects[i]}"
        ax.annotate(
            name,
            (values[i], y[i]),
            xytext=(5, 8 if n % 2 else -12),
            textcoords="offset points",
            fontsize=7.5,
            color=RED,
        )
    ax.set_yticks([])
    ax.set_ylim(-0.6, 0.6)
    direction = "higher is better" if metric_row.higher_is_better else "lower is better"
    ax.set_xlabel(f"{metric_row.unit} ({direction})")
    ax.set_title(
        f"{metric_row.check} / {metric_row.pool} / {metric_row.metric}: {int(metric_row.nodes)} nodes, "
        f"{int(metric_row.values)} values, {int(metric_row.flagged)} flagged",
        loc="left",
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)
    return _png(fig)


def node_ratios(rows: Any, host: str, min_deviation: float) -> str:
    """One node: each check and metric's measured / expected, against the fleet median and the baseline."""
    import numpy as np

    plt = _plt()
    labels = list(dict.fromkeys(f"{r.check} / {r.pool} / {r.metric}" for r in rows.itertuples()))
    pos = {name: i for i, name in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(7.0, 0.22 * len(labels) + 0.9))
    y = np.array([pos[f"{r.check} / {r.pool} / {r.metric}"] for r in rows.itertuples()], dtype=float)
    fleet = rows["ratio"].to_numpy(dtype=float)
    base = rows["baseline_ratio"].to_numpy(dtype=float)
    flagged = rows["flagged"].to_numpy(dtype=bool)
    ax.axvspan(0, 1 - min_deviation, color=RED, alpha=0.06)
    ax.axvline(1.0, color=BLUE, lw=1)
    ax.scatter(fleet[~flagged], y[~flagged], s=14, color=GREY, label="vs fleet median", zorder=3)
    ax.scatter(fleet[flagged], y[flagged], s=22, color=RED, label="vs fleet median (flagged)", zorder=4)
    has_base = np.isfinite(base)
    if has_base.any():
        ax.scatter(
            base[has_base],
            y[has_base] + 0.22,
            s=16,
            marker="D",
            facecolors="none",
            edgecolors="black",
            linewidths=0.7,
            label="vs baseline",
            zorder=3,
        )
    finite = np.concatenate([fleet[np.isfinite(fleet)], base[has_base]])
    lo = min(0.7, float(finite.min()) - 0.03) if finite.size else 0.7
    hi = max(1.1, float(finite.max()) + 0.03) if finite.size else 1.1
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.7)
    ax.set_xlabel("measured / expected (performance ratio: below 1 is worse)")
    ax.set_title(f"{host}: measured against expected", loc="left")
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.62 / (0.22 * len(labels) + 0.9)),
        ncol=3,
        frameon=False,
    )
    return _png(fig)
