"""What the burn watches on a GPU besides its own output: NVML telemetry sampled through the run,
and the error counters (ECC, row remapping, PCIe replays) and XIDs of the GPU read before and after.

On the CPU device (or a GPU NVML does not list) nothing is watched and the settings say why; a
counter or log this node cannot give is *not measured* (SKIP for that metric), never a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hpcbench.core.items import Item, missing
from hpcbench.hw import counter_watch, telemetry, throttle, xid
from hpcbench.hw import gpu_counters as gc
from hpcbench.node import nvml as seam
from hpcbench.node.pci import normalize_bus
from hpcbench.probes.burn import calc


class Watch:
    """``begin()`` before the burn, ``window(t0, t1)`` for a progress line, ``end()`` after it,
    then ``items(t0, t1)`` and ``settings()``. ``index`` None: nothing to watch (``why_none``)."""

    def __init__(
        self,
        index: int | None,
        bus: str | None,
        *,
        interval: float,
        kernel_log: str = "auto",
        xid_ignore: tuple[int, ...] = (),
        nvml: Any = None,
        clock: Callable[[], float] = time.monotonic,
        why_none: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.bus = normalize_bus(bus) if bus else None
        self.kernel_log = kernel_log
        self.xid_ignore = tuple(xid_ignore)
        self.nvml = nvml
        self.why_none = why_none
        self.sampler = telemetry.Sampler(index, interval, nvml=nvml, why_none=why_none, clock=clock)
        self.before: gc.Counters | str = why_none
        self.after: gc.Counters | str = why_none
        self.violations_before: dict[str, throttle.Violation | str] = {}
        self._last_violations: dict[str, throttle.Violation | str] = {}
        self.violations_after: dict[str, throttle.Violation | str] = {}
        self.xids = xid.XidWatch(self.bus, kernel_log, wall=wall)
        self.xids_new: list[xid.XidEvent] | str = why_none

    @property
    def active(self) -> bool:
        return self.index is not None

    def begin(self) -> None:
        if not self.active:
            return
        self._last_violations = {}
        self.before = self._counters()
        self.violations_before = self._last_violations
        self.xids.begin()
        self.sampler.start()

    def timed(self) -> None:
        """The timed run starts (after the warm-up): read the throttle counters it is measured from."""
        if not self.active or isinstance(self.before, str):
            return
        self._last_violations = {}
        self._counters()
        self.violations_before = self._last_violations

    def end(self) -> None:
        if not self.active:
            return
        self.sampler.take()  # the state at the very end
        self.sampler.stop()
        self._last_violations = {}
        self.after = self._counters()
        self.violations_after = self._last_violations
        self.xids_new = self.xids.end()

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """SM clock median, temperature and power max over a window (for its progress line)."""
        s = self.sampler.summary(t0, t1)
        out = {}
        for key, field, stat in (
            ("sm_clock_median_mhz", "sm_clock_mhz", "median"),
            ("temperature_max_c", "temperature_c", "max"),
            ("power_median_w", "power_w", "median"),
        ):
            if isinstance(s.get(field), dict):
                out[key] = s[field][stat]
        return out

    def _counters(self) -> gc.Counters | str:
        """The error counters now (and, as ``violations_*``, the throttle counters)."""
        assert self.index is not None
        try:
            with seam.session(self.nvml) as nv:
                handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, self.index)
                if not handle.ok:
                    return f"NVML cannot open GPU {self.index}: {handle.error or handle.unsupported}"
                self._last_violations = throttle.read_violations(nv, handle.value)
                return gc.snapshot(nv, handle.value)
        except ImportError:
            return "NVML unavailable: nvidia-ml-py (pynvml) is not installed"
        except Exception as exc:  # pynvml's NVMLError subclasses
            if not type(exc).__name__.startswith("NVMLError"):
                raise
            return f"NVML unavailable: {seam.error_text(exc)}"

    def xid_item(self) -> Item:
        """``xid_new``: XIDs of this GPU logged during the burn (``xid.XidWatch``: one log source,
        the run's start time)."""
        return counter_watch.xid_item(self.xids_new, self.bus, self.xid_ignore, "the burn")

    def items(self, t0: float, t1: float) -> list[Item]:
        """Every watched metric of the run between ``t0`` and ``t1`` (sampler clock); [] when inactive."""
        if not self.active:
            return []
        tel = self.run_telemetry(t0, t1)
        counted = throttle.violation_seconds(self.violations_before, self.violations_after)
        items = calc.telemetry_items(tel, counted) if tel is not None else []
        if tel is None:
            why = self.sampler.summary().get("reason") or "no telemetry"
            items = missing((*calc.TELEMETRY_METRICS, *calc.REASON_METRICS), why)
        if isinstance(self.before, str) or isinstance(self.after, str):
            why = self.before if isinstance(self.before, str) else self.after
            items += missing(tuple(calc.DELTA_METRICS), str(why))
        else:
            items += calc.delta_items(gc.deltas(self.before, self.after))
        items.append(self.xid_item())
        return items

    def unwatched(self) -> list[Item]:
        """Every watched metric as not measured, with why (a GPU NVML does not list)."""
        return missing(calc.WATCH_METRICS, self.why_none or "not watched")

    def run_telemetry(self, t0: float, t1: float) -> calc.RunTelemetry | None:
        if self.sampler.reason:
            return None
        return calc.run_telemetry(self.sampler.samples(), t0, t1, self.sampler.limits)

    def telemetry_summary(self, t0: float, t1: float) -> dict[str, Any]:
        """The run's telemetry summary (``hpcbench.hw.telemetry``), or why there is none."""
        if not self.active:
            return telemetry.unavailable(self.why_none)
        tel = self.run_telemetry(t0, t1)
        return {**self.sampler.summary(t0, t1), **(tel.as_dict() if tel else {})}

    def settings(self, t0: float, t1: float) -> dict[str, Any]:
        if not self.active:
            return {"telemetry": self.telemetry_summary(t0, t1)}
        out: dict[str, Any] = {
            "telemetry": self.telemetry_summary(t0, t1),
            "counters_before": self.before if isinstance(self.before, str) else self.before.as_dict(),
            "counters_after": self.after if isinstance(self.after, str) else self.after.as_dict(),
            "violation_seconds": throttle.violation_seconds(self.violations_before, self.violations_after),
            "kernel_log": self.kernel_log,
            "xid_ignore": list(self.xid_ignore),
        }
        return out
