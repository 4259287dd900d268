"""Health items: a metric's value on one subject with a one-line detail, or why it was not measured.

Probes that report counts and flags (gpu_health, network) build a list of items and turn it into
measurements here: each item with a value becomes a Measurement whose settings carry its
``detail`` (quoted by a WARN or FAIL reason); the first also carries the probe's settings and the
``not_measured`` reasons of the items without a value (SKIP for those metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcbench.model import Measurement


@dataclass(frozen=True)
class Item:
    """One health item on one subject: a value, or ``not_measured`` with the reason."""

    metric: str
    value: float | None = None
    unit: str = "count"
    higher_is_better: bool = False
    detail: str = ""
    not_measured: str = ""
    #: the measurement's convention; "" takes the one to_measurements is given
    convention: str = ""


def missing(metrics: tuple[str, ...] | list[str], why: str) -> list[Item]:
    return [Item(m, not_measured=why) for m in metrics]


def to_measurements(
    items: list[Item], subject: str, settings: dict[str, Any], convention: str = ""
) -> list[Measurement]:
    """Measurements of the items with a value; the first also carries ``settings`` and the
    ``not_measured`` items with their reasons."""
    absent = {i.metric: i.not_measured for i in items if i.value is None}
    out = []
    for item in (i for i in items if i.value is not None):
        s: dict[str, Any] = {"detail": item.detail}
        if not out:
            s.update(settings, not_measured=absent)
        out.append(
            Measurement.from_samples(
                item.metric,
                [item.value],
                item.unit,
                subject,
                higher_is_better=item.higher_is_better,
                convention=item.convention or convention,
                settings=s,
            )
        )
    return out
