"""Health items: a metric's value with a one-line detail, or why it could not be measured.

The health probes (gpu_health, node_health, burn's counters, the network's ports) read many small
facts; each becomes an Item, and ``to_measurements`` is the one conversion of Items into what a
probe returns: a Measurement (with its ``detail`` and ``warnings``) for each item with a value,
an ``Unmeasured`` entry for each without one (``not_measured``: SKIP; ``error``: ERROR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where built: Item alone is what probes' helpers import
    from hpcbench.core.measurement import Measurement, Unmeasured


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
    #: advice shown as a hint when this item is judged WARN or FAIL
    warnings: tuple[str, ...] = ()


def missing(metrics: tuple[str, ...] | list[str], why: str) -> list[Item]:
    """Items that are not measured here, all for one reason (SKIP)."""
    return [Item(m, not_measured=why) for m in metrics]


def failed(metrics: tuple[str, ...] | list[str], why: str) -> list[Item]:
    """Items that could not be measured, all for one reason (ERROR)."""
    return [Item(m, error=why) for m in metrics]


def unmeasured(items: list[Item]) -> list[Unmeasured]:
    """The items without a value, as Unmeasured entries (an item with ``error``: could not
    measure; otherwise not measured here)."""
    from hpcbench.core.measurement import Unmeasured

    return [
        Unmeasured(i.metric, "could_not_measure", i.error)
        if i.error
        else Unmeasured(i.metric, "not_measured", i.not_measured or "no value")
        for i in items
        if i.value is None
    ]


def to_measurements(
    items: list[Item], subject: str, settings: dict[str, Any], convention: str | Callable[[str], str] = ""
) -> list[Measurement | Unmeasured]:
    """A Measurement for each item with a value (the first also carries ``settings``, the
    provenance of the whole reading), then an Unmeasured entry for each item without one.
    ``convention``: where the values come from, one text or ``convention(metric)`` per metric."""
    from hpcbench.core.measurement import Measurement

    named = convention if callable(convention) else (lambda _metric: convention)
    out: list[Measurement | Unmeasured] = []
    for item in (i for i in items if i.value is not None):
        out.append(
            Measurement.from_samples(
                item.metric,
                [item.value],
                item.unit,
                subject,
                higher_is_better=item.higher_is_better,
                convention=item.convention or named(item.metric),
                settings=dict(settings) if not out else {},
                detail=item.detail,
                warnings=item.warnings,
            )
        )
    return out + unmeasured(items)
