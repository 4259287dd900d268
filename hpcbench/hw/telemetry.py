"""NVML telemetry sampled in a background thread while a GPU probe runs, and its summary.

What explains a GPU's number: SM and memory clocks, power, temperature, utilization and the
clock event (throttle) reasons NVML reports as a bitmask. ``Sampler`` reads them every
``interval`` seconds through the one NVML seam (``hpcbench.node.nvml``); ``summary(t0, t1)`` gives
min/median/max per field over a time window (one probe case) and the fraction of samples in
which each reason was active, with the names decoded from the bitmask. The summary goes into
the measurement's settings as ``telemetry``; ``throttle_hint`` turns it into the hint a
shortfall gets. Everything but the thread is a pure function.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

#: NVML's clock event reason bits (nvml.h: nvmlClocksEventReason<Name>, formerly
#: nvmlClocksThrottleReason<Name>) and what each means for a number that fell short
REASONS: tuple[tuple[int, str, str], ...] = (
    (0x001, "GpuIdle", "nothing was running on the GPU"),
    (0x002, "ApplicationsClocksSetting", "application clocks are set below the maximum (nvidia-smi -rac)"),
    (0x004, "SwPowerCap", "the GPU ran at its power limit (nvidia-smi -q -d POWER: is the limit lowered?)"),
    (0x008, "HwSlowdown", "hardware slowdown, thermal or power protection (check cooling and power supply)"),
    (0x010, "SyncBoost", "held to the clocks of its sync-boost group"),
    (0x020, "SwThermalSlowdown", "the GPU or its memory ran above its maximum operating temperature"),
    (
        0x040,
        "HwThermalSlowdown",
        "the GPU overheated and hardware cut its clocks (check cooling and airflow)",
    ),
    (0x080, "HwPowerBrakeSlowdown", "an external power brake was asserted (e.g. by the power supply)"),
    (0x100, "DisplayClockSetting", "clocks held by the display clock setting"),
    (0x200, "BoardLimit", "a board-level limit held the clocks"),
    (0x400, "Reliability", "clocks held for reliability (voltage/frequency limits)"),
)
IDLE = "GpuIdle"
_ADVICE = {name: advice for _, name, advice in REASONS}
#: numeric fields of a sample, in the summary's order
FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c", "gpu_util_pct", "mem_util_pct")


def decode_reasons(mask: int) -> list[str]:
    """The names of the bits set in NVML's clock event reasons mask (unknown bits as hex)."""
    names = [name for bit, name, _ in REASONS if mask & bit]
    known = 0
    for bit, _, _ in REASONS:
        known |= bit
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"0x{bit:x}")
            rest &= ~bit
        bit <<= 1
    return names


def sample_values(readings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """NVML readings (``nvml.telemetry_sample``) as numbers, and the errors met (field -> text)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, reading in readings.items():
        if reading.error:
            errors[key] = reading.error
        if not reading.ok:
            continue
        value = reading.value
        if key == "power_mw":
            values["power_w"] = float(value) / 1000.0
        elif key == "utilization":
            values["gpu_util_pct"] = float(value.gpu)
            values["mem_util_pct"] = float(value.memory)
        elif key == "clocks_event_reasons":
            values["reasons"] = int(value)
        else:
            values[key] = float(value)
    return values, errors


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Min, median and max of each field over ``samples``, and each reason's fraction of them."""
    out: dict[str, Any] = {"samples": len(samples)}
    for name in FIELDS:
        vals = [float(s[name]) for s in samples if s.get(name) is not None]
        if vals:
            out[name] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    masks = [int(s["reasons"]) for s in samples if s.get("reasons") is not None]
    counts: dict[str, int] = {}
    for mask in masks:
        for name in decode_reasons(mask):
            counts[name] = counts.get(name, 0) + 1
    out["throttle_reasons"] = {name: round(c / len(masks), 3) for name, c in sorted(counts.items())}
    out["reasons_read"] = bool(masks)
    return out


def reason_seconds(samples: list[tuple[float, dict[str, Any]]], end: float) -> dict[str, float]:
    """Seconds each clock event reason was active over timed samples ``(t, values)``, oldest first:
    a sample's reasons are taken to hold from its time until the next sample's (the last one's
    until ``end``). Time covered by samples whose reasons could not be read is ``unread``."""
    out: dict[str, float] = {}
    for i, (t, values) in enumerate(samples):
        until = samples[i + 1][0] if i + 1 < len(samples) else end
        span = max(until - t, 0.0)
        if values.get("reasons") is None:
            out["unread"] = out.get("unread", 0.0) + span
            continue
        for name in decode_reasons(int(values["reasons"])):
            out[name] = out.get(name, 0.0) + span
    return out


def linear_slope(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(t, value)`` points, in value units per second; None with fewer
    than two points or no spread in time."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var


def throttle_hint(telemetry: Any) -> str:
    """The hint for a shortfall while the clocks were held down: each reason seen (GpuIdle aside),
    how often, what it means, and the clocks, power and temperature that go with it."""
    if not isinstance(telemetry, dict):
        return ""
    reasons = telemetry.get("throttle_reasons") or {}
    seen = sorted(((f, n) for n, f in reasons.items() if n != IDLE and f), reverse=True)
    if not seen:
        return ""
    parts = [
        f"{name} in {frac:.0%} of samples ({_ADVICE.get(name, 'unknown reason bit')})" for frac, name in seen
    ]
    context = []
    sm = telemetry.get("sm_clock_mhz")
    if sm:
        limit = telemetry.get("sm_clock_max_mhz")
        context.append(f"SM clock median {sm['median']:.0f} MHz" + (f" of max {limit:.0f}" if limit else ""))
    power = telemetry.get("power_w")
    if power:
        limit = telemetry.get("power_limit_w")
        context.append(f"power max {power['max']:.0f} W" + (f" of limit {limit:.0f} W" if limit else ""))
    temp = telemetry.get("temperature_c")
    if temp:
        context.append(f"temperature max {temp['max']:.0f} C")
    tail = f" [{', '.join(context)}]" if context else ""
    return "GPU clocks were held down during the run: " + "; ".join(parts) + tail


def unavailable(reason: str) -> dict[str, Any]:
    """The telemetry entry of a run that could not be sampled, and why."""
    return {"source": None, "reason": reason}


class Sampler:
    """Samples one GPU through NVML every ``interval`` seconds in a daemon thread.

    ``with Sampler(index, 0.1) as s: ... s.summary(t0, t1)`` (times of ``clock``, by default
    ``time.monotonic``; tests replay a trace with a clock of their own). When
    NVML cannot be used (no pynvml, no driver, no such GPU) nothing is sampled and every
    summary says why. ``nvml`` injects a module for tests (else ``hpcbench.node.nvml.load()``).
    """

    def __init__(
        self,
        index: int | None,
        interval: float,
        nvml: Any = None,
        why_none: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.interval = interval
        self._nvml = nvml
        self._clock = clock
        self._mod: Any = None
        self._handle: Any = None
        self._samples: list[tuple[float, dict[str, Any]]] = []
        self._errors: dict[str, str] = {}
        self._limits: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reason = why_none if index is None else ""
        if index is not None and interval <= 0:
            self.reason = "telemetry off (telemetry_interval = 0)"

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.reason or self.index is None:
            return
        from hpcbench.node import nvml as seam

        try:
            mod = seam.load(self._nvml)
            mod.nvmlInit()
        except ImportError:
            self.reason = "NVML unavailable: nvidia-ml-py (pynvml) is not installed"
            return
        except Exception as exc:  # pynvml's NVMLError subclasses, e.g. LibraryNotFound
            if not type(exc).__name__.startswith("NVMLError"):
                raise
            self.reason = f"NVML unavailable: {seam.error_text(exc)}"
            return
        handle = seam.read(mod, mod.nvmlDeviceGetHandleByIndex, self.index)
        if not handle.ok:
            self.reason = f"NVML cannot open GPU {self.index}: {handle.error or handle.unsupported}"
            with contextlib.suppress(Exception):
                mod.nvmlShutdown()
            return
        self._mod, self._handle = mod, handle.value
        limits = seam.telemetry_limits(mod, self._handle)
        if limits["sm_clock_max_mhz"].ok:
            self._limits["sm_clock_max_mhz"] = float(limits["sm_clock_max_mhz"].value)
        if limits["power_limit_mw"].ok:
            self._limits["power_limit_w"] = float(limits["power_limit_mw"].value) / 1000.0
        self.take()
        self._thread = threading.Thread(target=self._loop, name="hpcbench-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.take()

    def take(self) -> None:
        """Read one sample now."""
        if self._mod is None:
            return
        from hpcbench.node import nvml as seam

        values, errors = sample_values(seam.telemetry_sample(self._mod, self._handle))
        with self._lock:
            self._samples.append((self._clock(), values))
            self._errors.update(errors)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.interval + 5)
            self._thread = None
        if self._mod is not None:
            with contextlib.suppress(Exception):
                self._mod.nvmlShutdown()
            self._mod = None

    @property
    def limits(self) -> dict[str, float]:
        """The maximum SM clock and enforced power limit read at the start (where NVML gave them)."""
        return dict(self._limits)

    def samples(self, t0: float | None = None, t1: float | None = None) -> list[tuple[float, dict[str, Any]]]:
        """The timed samples ``(t, values)`` taken between ``t0`` and ``t1`` (all when not given)."""
        lo = t0 if t0 is not None else float("-inf")
        hi = t1 if t1 is not None else float("inf")
        with self._lock:
            return [(t, dict(v)) for t, v in self._samples if lo <= t <= hi]

    def summary(self, t0: float | None = None, t1: float | None = None) -> dict[str, Any]:
        """The summary of the samples taken between ``t0`` and ``t1`` (all when not given); when
        none fell inside (a case shorter than the interval), the sample nearest to ``t1``."""
        if self.reason:
            return unavailable(self.reason)
        with self._lock:
            samples = list(self._samples)
            errors = dict(self._errors)
        lo = t0 if t0 is not None else float("-inf")
        hi = t1 if t1 is not None else float("inf")
        chosen = [v for t, v in samples if lo <= t <= hi]
        nearest = False
        if not chosen and samples:
            chosen = [min(samples, key=lambda s: abs(s[0] - hi))[1]]
            nearest = True
        out: dict[str, Any] = {"source": "nvml", "gpu": self.index, "interval_s": self.interval}
        out.update(summarize(chosen))
        out.update(self._limits)
        if nearest:
            out["nearest_sample"] = True
        if errors:
            out["errors"] = errors
        return out
