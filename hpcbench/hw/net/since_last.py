"""Error-counter growth since the previous health run: the counters read once now, compared with
the reading the last run kept in the state folder (``hpcbench.hw.state``), then kept for the next.
Nothing sleeps. The first run, and the first after a reboot (counters start again from 0), has
nothing to compare with: its growth item is SKIP with that reason."""

from __future__ import annotations

import time
from pathlib import Path

from hpcbench.hw import state
from hpcbench.hw.kernel_log import boot_time


def previous_and_now(
    subject: str, now: dict[str, int], folder: str, proc_stat: str = "/proc/stat"
) -> tuple[dict[str, int] | None, float, str]:
    """(the previous run's counters or None, seconds since then, why there are none); keeps ``now``."""
    where = Path(folder) if folder else state.default_dir()
    name = f"network-counters-{subject}"
    booted = boot_time(proc_stat)
    t = time.time()
    try:
        before = state.load(where, name)
        state.save(where, name, state.Reading(t, booted, dict(now)))
    except state.StateError as exc:
        return None, 0.0, str(exc)
    if before is None:
        return None, 0.0, "the first reading: nothing kept by a previous health run to compare with"
    if booted is not None and before.time < booted:
        return None, 0.0, "the first reading since the node booted (its counters started again)"
    return {k: int(v) for k, v in before.values.items()}, max(t - before.time, 0.0), ""
