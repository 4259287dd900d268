"""Pure helpers of the burn probe: windows of throughput, the stability numbers, the bit-for-bit
comparison of an output with the first one and its one-line reason, the telemetry of a run, the
counter deltas as items, and which CPUs carry the host load.

Formulas (each pinned by a test):

- a window's TFLOPS = 2·m·n·k · iterations in the window / the window's seconds / 1e12;
- warm-up = the first minute, or the first third of runs shorter than three minutes;
- sustained TFLOPS = the median of the windows that start after the warm-up;
- stability = the worst of those windows / their median;
- droop = the rate over the last span / the rate over the first span after the warm-up, span =
  min(60 s, a third of the run), a window belonging to the span its midpoint falls in (rate = the
  windows' FLOPs / their seconds): below 1 the GPU slowed as it heated. The first span is the one
  after the warm-up (a GPU still at its cold boost clock in its first minute would make every
  heat-soaked GPU droop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpcbench.core.items import Item, missing
from hpcbench.hw import counter_watch

#: the warm-up and the droop's span: a minute, or a third of a shorter run
SPAN_S = 60.0
#: how many differing elements a reason lists by offset
FIRST_OFFSETS = 5


def tflops(flops_per_iteration: int, iterations: int, seconds: float) -> float:
    return flops_per_iteration * iterations / seconds / 1e12


@dataclass(frozen=True)
class Window:
    """Throughput over one window: seconds since the burn began, iterations finished in it."""

    index: int
    start: float
    end: float
    iterations: int
    tflops: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_s": round(self.start, 3),
            "end_s": round(self.end, 3),
            "iterations": self.iterations,
            "tflops": self.tflops,
        }


class Windows:
    """Batches of iterations, each ending at a time (seconds since the start), grouped into windows
    of at least ``window_s``: a window closes at the first batch end ``window_s`` or more after it
    opened, so its seconds are those of the batches in it. ``finish`` closes the last one; a
    remainder shorter than half a window joins the window before it."""

    def __init__(self, window_s: float, flops_per_iteration: int) -> None:
        self.window_s = window_s
        self.flops = flops_per_iteration
        self.closed: list[Window] = []
        self._start = 0.0
        self._iterations = 0

    def add(self, t: float, iterations: int) -> Window | None:
        """A batch of ``iterations`` ended at ``t``; the window it closed, if any."""
        self._iterations += iterations
        if t - self._start < self.window_s:
            return None
        return self._close(t)

    def _close(self, t: float) -> Window:
        seconds = max(t - self._start, 1e-9)
        w = Window(
            len(self.closed), self._start, t, self._iterations, tflops(self.flops, self._iterations, seconds)
        )
        self.closed.append(w)
        self._start, self._iterations = t, 0
        return w

    def finish(self, t: float) -> list[Window]:
        if t > self._start and self._iterations:
            if t - self._start < self.window_s / 2 and self.closed:
                last = self.closed.pop()
                iterations = last.iterations + self._iterations
                seconds = max(t - last.start, 1e-9)
                self.closed.append(
                    Window(last.index, last.start, t, iterations, tflops(self.flops, iterations, seconds))
                )
            else:
                self._close(t)
        return list(self.closed)


def span(duration_s: float) -> float:
    """The warm-up left out of the sustained figure, and the droop's first and last span."""
    return min(SPAN_S, duration_s / 3)


@dataclass(frozen=True)
class Stability:
    sustained: float
    stability: float
    droop: float | None
    sustained_windows: tuple[int, ...]
    worst_window: int
    first_windows: tuple[int, ...] = ()
    last_windows: tuple[int, ...] = ()


def rate(windows: list[Window]) -> float:
    seconds = sum(w.seconds for w in windows)
    return sum(w.tflops * w.seconds for w in windows) / seconds if seconds > 0 else 0.0


def stability(windows: list[Window], duration_s: float) -> Stability:
    """Sustained TFLOPS, stability and droop of a run's windows (the module's formulas)."""
    import statistics

    if not windows:
        raise ValueError("no window was measured")
    warm = span(duration_s)
    after = [w for w in windows if w.start >= warm - 1e-9] or windows[-1:]
    median = statistics.median(w.tflops for w in after)
    worst = min(after, key=lambda w: w.tflops)
    end = windows[-1].end
    first = [w for w in windows if warm <= (w.start + w.end) / 2 < 2 * warm]
    last = [w for w in windows if (w.start + w.end) / 2 > end - warm]
    droop = None
    if len(windows) >= 2:
        first = first or after[:1]
        last = last or windows[-1:]
        base = rate(first)
        droop = rate(last) / base if base > 0 else None
    return Stability(
        sustained=median,
        stability=worst.tflops / median if median > 0 else 0.0,
        droop=droop,
        sustained_windows=tuple(w.index for w in after),
        worst_window=worst.index,
        first_windows=tuple(w.index for w in first),
        last_windows=tuple(w.index for w in last),
    )


# ---------------------------------------------------------------------------
# Silent data corruption: each output against the GPU's own first one, bit for bit.

#: the integer dtype of the same width as each output dtype (fp8's output is bf16)
BITS = {"bfloat16": "int16", "float16": "int16", "float32": "int32", "float64": "int64"}


@dataclass(frozen=True)
class Mismatch:
    """How an output differs from the reference: elements whose bits differ, of how many, and the
    first few (flat offset, bits found, bits expected)."""

    differ: int
    total: int
    first: tuple[tuple[int, int, int], ...] = ()


def compare(torch: Any, reference: Any, output: Any, first: int = FIRST_OFFSETS) -> Mismatch:
    """Compare two outputs of one GEMM bit for bit, on their device; changes neither."""
    name = str(reference.dtype).removeprefix("torch.")
    as_int = getattr(torch, BITS[name])
    ref = reference.reshape(-1).view(as_int)
    out = output.reshape(-1).view(as_int)
    bad = ref != out
    differ = int(bad.sum().item())
    found: tuple[tuple[int, int, int], ...] = ()
    if differ:
        mask = (1 << (8 * ref.element_size())) - 1  # the bits as unsigned numbers
        offsets = bad.nonzero().reshape(-1)[:first]
        got, want = out[offsets].tolist(), ref[offsets].tolist()
        found = tuple(
            (int(o), int(g) & mask, int(e) & mask)
            for o, g, e in zip(offsets.tolist(), got, want, strict=True)
        )
    return Mismatch(differ, int(ref.numel()), found)


@dataclass(frozen=True)
class Corruption:
    """One verification that found differing elements."""

    at_s: float
    iteration: int
    mismatch: Mismatch

    def as_dict(self, columns: int) -> dict[str, Any]:
        return {
            "at_s": round(self.at_s, 3),
            "iteration": self.iteration,
            "differ": self.mismatch.differ,
            "total": self.mismatch.total,
            "first": [
                {"row": o // columns, "col": o % columns, "found": f"0x{g:x}", "expected": f"0x{e:x}"}
                for o, g, e in self.mismatch.first
            ],
        }


def seconds(t: float) -> str:
    """``312 s``; ``4.2 s`` under ten seconds."""
    return f"{t:.0f} s" if t >= 10 else f"{t:.1f} s"


def corruption_reason(subject: str, found: list[Corruption], checks: int, columns: int) -> str | None:
    """``gpu3: 2 of 67,108,864 elements differ from its first result at 312 s (iteration 41,377)``,
    the first offsets, and how many other verifications found differences; None when none did."""
    if not found:
        return None
    c = found[0]
    m = c.mismatch
    where = ", ".join(f"y[{o // columns}, {o % columns}] (0x{g:x}, was 0x{e:x})" for o, g, e in m.first)
    more = f"{m.differ - len(m.first):,} more" if m.differ > len(m.first) else ""
    text = (
        f"{subject}: {m.differ:,} of {m.total:,} elements differ from its first result at {seconds(c.at_s)} "
        f"(iteration {c.iteration:,}); first at {where}" + (f" and {more}" if more else "")
    )
    if len(found) > 1:
        text += f"; {len(found)} of {checks:,} verifications found differences"
    return text


# ---------------------------------------------------------------------------
# Telemetry over the run (NVML samples, timed).

#: metric -> the NVML clock event reason it counts the seconds of
REASON_METRICS = {
    "hw_slowdown_s": "HwSlowdown",
    "hw_thermal_slowdown_s": "HwThermalSlowdown",
    "power_brake_s": "HwPowerBrakeSlowdown",
    "sw_thermal_slowdown_s": "SwThermalSlowdown",
    "sw_power_cap_s": "SwPowerCap",
}


@dataclass(frozen=True)
class RunTelemetry:
    """What NVML said over the whole run."""

    seconds: float
    samples: int
    sm_clock_median: float | None = None
    sm_clock_min: float | None = None
    sm_clock_max_limit: float | None = None
    temperature_max: float | None = None
    temperature_slope: float | None = None  # C per minute, over the last half of the run
    power_median: float | None = None
    power_limit: float | None = None
    reason_seconds: dict[str, float] = field(default_factory=dict)
    reasons_read: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def run_telemetry(
    samples: list[tuple[float, dict[str, Any]]], t0: float, t1: float, limits: dict[str, float]
) -> RunTelemetry:
    """Clock, temperature, power and throttle seconds over the samples taken in [t0, t1]."""
    import statistics

    from hpcbench.hw import telemetry as tm  # the NVML sampler's code: not for `hpcbench list`
    from hpcbench.hw import throttle  # imports the telemetry: only when a run is summed up

    inside = [(t, v) for t, v in samples if t0 <= t <= t1]

    def values(key: str) -> list[float]:
        return [float(v[key]) for _, v in inside if v.get(key) is not None]

    sm, temp, power = values("sm_clock_mhz"), values("temperature_c"), values("power_w")
    half = t0 + (t1 - t0) / 2
    late = [
        (t, float(v["temperature_c"])) for t, v in inside if t >= half and v.get("temperature_c") is not None
    ]
    slope = tm.linear_slope(late)
    # a reason counts in runs of consecutive samples of >= 1 s (hw.throttle), never one sample
    held = {name: throttle.held_seconds(inside, t1, name) for name in REASON_METRICS.values()}
    return RunTelemetry(
        seconds=t1 - t0,
        samples=len(inside),
        sm_clock_median=statistics.median(sm) if sm else None,
        sm_clock_min=min(sm) if sm else None,
        sm_clock_max_limit=limits.get("sm_clock_max_mhz"),
        temperature_max=max(temp) if temp else None,
        temperature_slope=slope * 60 if slope is not None else None,
        power_median=statistics.median(power) if power else None,
        power_limit=limits.get("power_limit_w"),
        reason_seconds={metric: round(held[name], 3) for metric, name in REASON_METRICS.items()},
        reasons_read=any(v.get("reasons") is not None for _, v in inside),
    )


def telemetry_items(t: RunTelemetry, counted: dict[str, float | str] | None = None) -> list[Item]:
    """The telemetry metrics of a run, each with the numbers a WARN or FAIL quotes. ``counted``:
    reason metric -> seconds NVML's own violation counter gave over the run (``hw.throttle``),
    preferred to the sampled runs where there is a number."""
    from hpcbench.hw import throttle  # imports the telemetry: only when a run is summed up

    if not t.samples:
        why = "NVML gave no sample during the run"
        return missing((*TELEMETRY_METRICS, *REASON_METRICS), why)
    limit = f" of max {t.sm_clock_max_limit:.0f}" if t.sm_clock_max_limit else ""
    items = []
    if t.sm_clock_median is not None and t.sm_clock_min is not None:
        clock = f"SM clock median {t.sm_clock_median:.0f} MHz, min {t.sm_clock_min:.0f}{limit}"
        items += [
            Item("sm_clock_median", t.sm_clock_median, "MHz", True, clock),
            Item("sm_clock_min", t.sm_clock_min, "MHz", True, clock),
        ]
    else:
        items += missing(("sm_clock_median", "sm_clock_min"), "NVML gave no SM clock")
    if t.temperature_max is not None:
        slope = (
            f", {t.temperature_slope:+.2f} C/min over the last half"
            if t.temperature_slope is not None
            else ""
        )
        items.append(
            Item("temperature_max", t.temperature_max, "C", False, f"max {t.temperature_max:.0f} C{slope}")
        )
    else:
        items.append(Item("temperature_max", not_measured="NVML gave no temperature"))
    if t.temperature_slope is not None:
        detail = (
            f"temperature {t.temperature_slope:+.2f} C/min over the last half (max {t.temperature_max:.0f} C)"
        )
        items.append(Item("temperature_slope", t.temperature_slope, "C/min", False, detail))
    else:
        items.append(
            Item("temperature_slope", not_measured="fewer than two temperature samples in the last half")
        )
    if t.power_median is not None:
        of = (
            f" of the {t.power_limit:.0f} W limit ({t.power_median / t.power_limit:.0%})"
            if t.power_limit
            else ""
        )
        items.append(Item("power_median", t.power_median, "W", True, f"median {t.power_median:.0f} W{of}"))
    else:
        items.append(Item("power_median", not_measured="NVML gave no power reading"))
    for metric, name in REASON_METRICS.items():
        if not t.reasons_read:
            items.append(Item(metric, not_measured="NVML gave no clock event reasons"))
            continue
        by_counter = (counted or {}).get(metric)
        if isinstance(by_counter, float):
            secs = round(by_counter, 3)
            detail = f"{name} held the clocks for {secs:.1f} s of the {t.seconds:.0f} s burn (NVML's counter)"
        else:
            secs = t.reason_seconds.get(metric, 0.0)
            detail = f"{name} active for {secs:.1f} s of the {t.seconds:.0f} s burn"
            detail += f", in runs of {throttle.MIN_RUN_S:g} s or more"
        if secs and t.sm_clock_min is not None:
            detail += f" (SM clock min {t.sm_clock_min:.0f} MHz{limit}"
            detail += f", max {t.temperature_max:.0f} C)" if t.temperature_max is not None else ")"
        items.append(Item(metric, secs, "s", False, detail))
    return items


#: the counters' changes as items: one implementation for every test that loads a GPU
DELTA_METRICS = counter_watch.DELTA_METRICS
delta_items = counter_watch.delta_items


#: what to do about each watched metric when a suite judges it WARN or FAIL (shown as the hint)
ADVICE = {
    "hw_slowdown_s": "hardware slowdown: thermal or power protection cut the clocks under load; "
    "check cooling, fans and the power supplies (nvidia-smi -q -d PERFORMANCE)",
    "power_brake_s": "an external power brake was asserted under full load: check the power supplies "
    "and the node's power budget (all GPUs and CPUs drawing at once)",
    "hw_thermal_slowdown_s": "the GPU overheated and hardware cut its clocks: "
    "check airflow, fans, inlet temperature",
    "sw_thermal_slowdown_s": "the driver lowered the clocks for GPU or memory temperature: check cooling",
    "xid_new": "look the XID up in NVIDIA's XID catalogue; drain the GPU if it repeats under load",
    "ecc_uncorrectable_new": "uncorrectable memory errors under load: drain the GPU, reset it "
    "(row remapping) and rerun memtest; have it replaced if they come back",
    "ecc_correctable_new": "correctable memory errors under load: watch the GPU (hpcbench memtest); "
    "many mean a weakening memory cell",
    "remapped_rows_new": "a memory row was remapped under load: reset the GPU to activate it, rerun memtest",
    "remap_failure_new": "a row remapping failed: the GPU has no spare rows left and needs service",
    "pcie_replay_new": "PCIe link retransmissions under load: reseat the GPU or its riser, check the slot "
    "(lspci -vv: LnkSta, AER)",
}

TELEMETRY_METRICS = (
    "sm_clock_median",
    "sm_clock_min",
    "temperature_max",
    "temperature_slope",
    "power_median",
)
#: every metric the burn reads from NVML and the kernel log (none on the CPU device)
WATCH_METRICS = (*TELEMETRY_METRICS, *REASON_METRICS, *DELTA_METRICS, "xid_new")


# ---------------------------------------------------------------------------
# Host load: which CPUs run STREAM triad and GEMM loops beside the GPUs.


def host_load_cpus(allowed: list[int], feeders: int, share: int, shares: int) -> list[int]:
    """The CPUs of share ``share`` (of ``shares``, one per GPU child) that run the host load: the
    allowed CPUs but the first ``feeders`` (left to the processes that feed the GPUs), dealt out
    round-robin among the shares, so the children of one node take disjoint CPUs."""
    free = sorted(allowed)[max(feeders, 0) :]
    if shares < 1 or not 0 <= share < shares:
        raise ValueError(f"share {share} of {shares}")
    return free[share::shares]
