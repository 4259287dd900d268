"""Seconds a GPU's clocks were held down during a test, from what NVML counts itself where it can.

- **Counters.** ``nvmlDeviceGetViolationStatus(device, policy)`` returns an
  ``nvmlViolationTime_t``: ``referenceTime`` (a timestamp, microseconds) and ``violationTime``
  (nanoseconds the clocks were held below the requested ones by that policy, cumulative since
  the driver loaded). Read before and after the timed run, their difference is the run's time at
  the power cap (``NVML_PERF_POLICY_POWER``; pynvml defines the field
  ``NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP`` as that policy's counter), however short each
  episode. The thermal policy is not mapped to one reason by nvml.h, and the field ids of the
  other reasons' counters changed between NVML headers (251-253 in one, 269-271 in a later one),
  so they are not read: an id from the installed pynvml could name another field on the node's
  driver.
- **Runs of samples.** The other reasons (HwSlowdown, HwThermalSlowdown, the power brake,
  SwThermalSlowdown) come from the sampled clock event reasons, counting only runs of consecutive
  samples (two or more) that held the reason for at least ``MIN_RUN_S``: nvml.h notes that HW slowdown "may
  also be reported during PState or clock change", so one 0.2 s sample is not a GPU held down,
  and 2 s of it is.

Pure functions, but ``read_violations`` (one NVML call per policy through the seam's ``read``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcbench.hw.telemetry import decode_reasons
from hpcbench.node import nvml as seam

#: a run of consecutive samples with a reason counts when it held the reason this long
MIN_RUN_S = 1.0
#: ... and spans this many samples in a row: one sample says nothing of how long a reason held
MIN_RUN_SAMPLES = 2
#: metric -> (the pynvml constant of its perf policy, its value in nvml.h)
POLICIES: dict[str, tuple[str, int]] = {"sw_power_cap_s": ("NVML_PERF_POLICY_POWER", 0)}


@dataclass(frozen=True)
class Violation:
    """One ``nvmlViolationTime_t``: reference time (us) and cumulative violation time (ns)."""

    reference_us: int
    violation_ns: int


def read_violations(nv: Any, handle: Any) -> dict[str, Violation | str]:
    """metric -> the policy's cumulative violation time now, or why NVML gave none."""
    out: dict[str, Violation | str] = {}
    for metric, (name, value) in POLICIES.items():
        got = seam.read(nv, nv.nvmlDeviceGetViolationStatus, handle, getattr(nv, name, value))
        if got.ok:
            out[metric] = Violation(int(got.value.referenceTime), int(got.value.violationTime))
        else:
            out[metric] = got.error or f"nvmlDeviceGetViolationStatus: {got.unsupported}"
    return out


def violation_seconds(
    before: dict[str, Violation | str], after: dict[str, Violation | str]
) -> dict[str, float | str]:
    """metric -> seconds of violation between the two reads (ns / 1e9), or why not known. A counter
    that went backwards (the driver reloaded) is not a duration."""
    out: dict[str, float | str] = {}
    for metric in POLICIES:
        b, a = before.get(metric, "not read"), after.get(metric, "not read")
        if isinstance(b, str) or isinstance(a, str):
            out[metric] = b if isinstance(b, str) else str(a)
        elif a.violation_ns < b.violation_ns:
            out[metric] = "the violation counter went backwards (driver reloaded?)"
        else:
            out[metric] = (a.violation_ns - b.violation_ns) / 1e9
    return out


def held_seconds(
    samples: list[tuple[float, dict[str, Any]]], end: float, reason: str, min_run_s: float = MIN_RUN_S
) -> float:
    """Seconds ``reason`` (a name of ``telemetry.REASONS``) held in runs of ``MIN_RUN_SAMPLES`` or
    more consecutive samples lasting at least ``min_run_s``: a sample holds until the next one (the
    last until ``end``); a sample without that reason, or whose reasons were not read, ends a run."""
    total = 0.0
    run, count = 0.0, 0
    for i, (t, values) in enumerate(samples):
        until = samples[i + 1][0] if i + 1 < len(samples) else end
        mask = values.get("reasons")
        if mask is not None and reason in decode_reasons(int(mask)):
            run, count = run + max(until - t, 0.0), count + 1
            continue
        total += run if run >= min_run_s and count >= MIN_RUN_SAMPLES else 0.0
        run, count = 0.0, 0
    return total + (run if run >= min_run_s and count >= MIN_RUN_SAMPLES else 0.0)
