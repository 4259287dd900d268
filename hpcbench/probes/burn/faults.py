"""What the burn reports when a CUDA error ends it, and its watched items as measurements.

A CUDA error in the middle of a burn (XID 79: the GPU fell off the bus; 94/95: a contained or
uncontained ECC error; torch's ``CUDA error: uncorrectable ECC error encountered``) would lose the
counters read after it. Here they are kept: when the error's text or the counters blame the GPU
(``hw.counter_watch.fault_reason``) the burn is a FAIL of ``sanity`` with that evidence, plus each
counter's own verdict; otherwise the error is raised again and stays the probe's ERROR.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hpcbench.core.items import Item, to_measurements
from hpcbench.core.measurement import Measurement, Unmeasured
from hpcbench.hw import counter_watch
from hpcbench.probes.burn import calc
from hpcbench.probes.burn.watch import Watch


def watch_measurements(items: list[Item], subject: str) -> list[Measurement | Unmeasured]:
    """The watched items as measurements, with what to do about each (``calc.ADVICE``) as their
    warnings, and an Unmeasured entry for each NVML or the log could not give."""
    advised = [replace(i, warnings=(calc.ADVICE[i.metric],)) if i.metric in calc.ADVICE else i for i in items]
    return to_measurements(advised, subject, {}, lambda m: "kernel log" if m == "xid_new" else "NVML")


def measurements(
    device: dict[str, Any],
    dtype: str,
    duration_s: float,
    subject: str,
    watch: Watch,
    started: float,
    ended: float,
    fault: BaseException,
    convention: str,
) -> list[Measurement | Unmeasured]:
    """The burn's measurements after ``fault`` ended it: a sanity FAIL with the counters read after
    it when they (or the error's text) blame the GPU; else ``fault`` is raised again."""
    items = watch.items(started, ended) if watch.active else []
    where = f"the burn, {max(ended - started, 0):.0f} s into its {duration_s:g} s"
    reason = counter_watch.fault_reason(subject, fault, where, items)
    if reason is None:
        raise fault
    settings: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        **watch.settings(started, ended),
        "stopped_by": " ".join(str(fault).split())[:300],
    }
    main = Measurement.from_samples(
        f"{dtype}_sustained",
        [0.0],
        "TFLOPS",
        subject,
        statistic="median",
        convention=convention,
        settings=settings,
        sanity=reason,
        detail=f"no throughput: {reason}",
    )
    return [main, *watch_measurements(items, subject)]
