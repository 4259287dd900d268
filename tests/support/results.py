"""What a probe's ``run`` returned, split: its measurements, and the metrics it did not measure."""

from __future__ import annotations

from collections.abc import Sequence

from hpcbench.core.measurement import Measurement, Unmeasured


def measured(results: Sequence[Measurement | Unmeasured]) -> list[Measurement]:
    return [m for m in results if isinstance(m, Measurement)]


def unmeasured(results: Sequence[Measurement | Unmeasured]) -> dict[str, Unmeasured]:
    """metric -> its Unmeasured entry (the first, as the judge takes it)."""
    out: dict[str, Unmeasured] = {}
    for u in results:
        if isinstance(u, Unmeasured):
            out.setdefault(u.metric, u)
    return out


def reasons(results: Sequence[Measurement | Unmeasured], kind: str = "not_measured") -> dict[str, str]:
    """metric -> why, for the entries of one kind (``not_measured`` or ``could_not_measure``)."""
    return {m: u.reason for m, u in unmeasured(results).items() if u.kind == kind}
