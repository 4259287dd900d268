"""Health items: a metric's value with a one-line detail, or why it could not be measured.

The health probes (gpu_health, node_health) read many small facts; each becomes an Item and
the Items become Measurements whose settings carry what checks.py needs: ``detail`` (quoted by
a WARN or FAIL reason), ``not_measured`` (metric -> why it does not apply here: SKIP) and
``could_not_measure`` (metric -> why reading it failed, e.g. a missing tool: ERROR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from hpcbench.core.measurement import Measurement


@dataclass(frozen=True)
class Item:
    """One health item on one subject: a value, or why there is none.

    ``not_measured``: the item does not apply or cannot be read here (SKIP);
    ``error``: reading it failed where it should have worked, e.g. a tool is missing (ERROR).
    """

    metric: str
    value: float | None = None
    unit: str = "count"
    higher_is_better: bool = False
    detail: str = ""
    _: KW_ONLY  # the rest by name only: two probes' positional calls once put a convention into error
    not_measured: str = ""
    error: str = ""
    #: how this value was counted, where it differs from the probe's (``to_measurements``'s)
    convention: str = ""


def missing(metrics: tuple[str, ...] | list[str], why: str) -> list[Item]:
    """Items that are not measured here, all for one reason (SKIP)."""
    return [Item(m, not_measured=why) for m in metrics]


def failed(metrics: tuple[str, ...] | list[str], why: str) -> list[Item]:
    """Items that could not be measured, all for one reason (ERROR)."""
    return [Item(m, error=why) for m in metrics]


def to_measurements(
    items: list[Item], subject: str, settings: dict[str, Any], convention: str | Callable[[str], str] = ""
) -> list[Measurement]:
    """Measurements of the items with a value; the first also carries ``settings`` and the
    items without a value (``not_measured``, ``could_not_measure``) with their reasons.
    ``convention``: where the values come from, one text or ``convention(metric)`` per metric."""
    named = convention if callable(convention) else (lambda _metric: convention)
    absent = {i.metric: i.not_measured or "no value" for i in items if i.value is None and not i.error}
    errors = {i.metric: i.error for i in items if i.value is None and i.error}
    out = []
    for item in (i for i in items if i.value is not None):
        s: dict[str, Any] = {"detail": item.detail}
        if not out:
            s.update(settings, not_measured=absent)
            if errors:
                s["could_not_measure"] = errors
        out.append(
            Measurement.from_samples(
                item.metric,
                [item.value],
                item.unit,
                subject,
                higher_is_better=item.higher_is_better,
                convention=item.convention or named(item.metric),
                settings=s,
            )
        )
    return out
