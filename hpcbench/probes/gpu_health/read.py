"""The gpu_health probe's NVML readings, each turned into an Item: a metric's value with a
one-line detail, or why it could not be measured here.

Every call goes through ``hpcbench.node.nvml.read``: NotSupported, NoPermission and
FunctionNotFound make an item *not measured* (never a failure); any other NVML error
(GpuIsLost, Unknown, Timeout, ...) is collected in ``errors`` and becomes the
``nvml_errors`` count, which the suites fail on. Flags are 1.0 (true) or 0.0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcbench.core.items import Item, missing
from hpcbench.hw.gpu_counters import ECC_COUNTERS

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.node import nvml as seam

__all__ = ["GPU_METRICS", "Item", "gpu_items", "missing"]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reason(r: seam.Reading, errors: list[str]) -> str:
    """Why a reading has no value; an NVML error is also counted in ``errors``."""
    if r.error:
        errors.append(r.error)
        return f"NVML error: {r.error}"
    return r.unsupported or "no value"


def ecc_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.hw import gpu_counters as gc

    counters = tuple(c[0] for c in ECC_COUNTERS)
    mode = gc.ecc_mode(nvml, h)
    if not mode.ok:
        return missing(("ecc_enabled", *counters), _reason(mode, errors))
    current, pending = mode.value
    on = gc.ecc_enabled(nvml, mode.value)
    detail = f"ECC {'enabled' if on else 'disabled'}"
    if pending != current:
        detail += (
            f"; {'enabled' if pending == nvml.NVML_FEATURE_ENABLED else 'disabled'} after the next reset"
        )
    items = [Item("ecc_enabled", float(on), "flag", True, detail)]
    if not on:
        return items + missing(counters, "ECC is disabled: the GPU keeps no error counts")
    for metric, etype, ctype in ECC_COUNTERS:
        r = gc.ecc_count(nvml, h, etype, ctype)
        if not r.ok:
            items.append(Item(metric, not_measured=_reason(r, errors)))
            continue
        kind = "uncorrectable" if "UNCORRECTED" in etype else "correctable"
        span = "since the driver loaded" if "VOLATILE" in ctype else "over the GPU's life"
        items.append(Item(metric, float(r.value), detail=f"{r.value} {kind} ECC errors {span}"))
    return items


def retired_pages_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    r = seam.read(nvml, nvml.nvmlDeviceGetRetiredPagesPendingStatus, h)
    if not r.ok:
        why = _reason(r, errors)
        if r.unsupported:
            why += " (GPUs since Ampere remap rows instead of retiring pages)"
        return [Item("retired_pages_pending", not_measured=why)]
    pending = int(r.value) == nvml.NVML_FEATURE_ENABLED
    detail = "a page retirement is pending: reset the GPU (or reboot) to retire it" if pending else ""
    return [Item("retired_pages_pending", float(pending), "flag", False, detail or "no retirement pending")]


def remapped_rows_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.hw import gpu_counters as gc

    r = gc.remapped_rows(nvml, h)
    if not r.ok:
        return missing(("remapped_rows_pending", "remapped_rows_failed"), _reason(r, errors))
    pending, failure = r.value.pending, r.value.failure
    rows = (
        f"{r.value.correctable} rows remapped for correctable and {r.value.uncorrectable} "
        "for uncorrectable errors"
    )
    return [
        Item(
            "remapped_rows_pending",
            float(bool(pending)),
            "flag",
            False,
            rows + ("; remapping pending: reset the GPU" if pending else ""),
        ),
        Item(
            "remapped_rows_failed",
            float(bool(failure)),
            "flag",
            False,
            rows + ("; a remapping FAILED: the GPU needs service" if failure else ""),
        ),
    ]


#: pynvml's clock event reason bits and their nvidia-smi names
CLOCK_REASONS = (
    ("nvmlClocksEventReasonGpuIdle", "idle"),
    ("nvmlClocksEventReasonApplicationsClocksSetting", "applications clocks setting"),
    ("nvmlClocksEventReasonSwPowerCap", "SW power cap"),
    ("nvmlClocksEventReasonHwSlowdown", "HW slowdown"),
    ("nvmlClocksEventReasonSyncBoost", "sync boost"),
    ("nvmlClocksEventReasonSwThermalSlowdown", "SW thermal slowdown"),
    ("nvmlClocksEventReasonHwThermalSlowdown", "HW thermal slowdown"),
    ("nvmlClocksEventReasonHwPowerBrakeSlowdown", "HW power brake slowdown"),
    ("nvmlClocksEventReasonDisplayClockSetting", "display clock setting"),
)
HW_SLOWDOWN = (
    "nvmlClocksEventReasonHwSlowdown",
    "nvmlClocksEventReasonHwThermalSlowdown",
    "nvmlClocksEventReasonHwPowerBrakeSlowdown",
)


def active_reasons(nvml: Any, mask: int) -> list[str]:
    return [name for attr, name in CLOCK_REASONS if mask & int(getattr(nvml, attr))]


def clock_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    r = seam.clock_event_reasons(nvml, h)  # falls back to the older ...ClocksThrottleReasons
    if not r.ok:
        return missing(("hw_slowdown", "sw_thermal_slowdown"), _reason(r, errors))
    mask = int(r.value)
    detail = "active clock event reasons: " + (", ".join(active_reasons(nvml, mask)) or "none")
    hw = any(mask & int(getattr(nvml, a)) for a in HW_SLOWDOWN)
    sw = bool(mask & int(nvml.nvmlClocksEventReasonSwThermalSlowdown))
    return [
        Item("hw_slowdown", float(hw), "flag", False, detail),
        Item("sw_thermal_slowdown", float(sw), "flag", False, detail),
    ]


def temperature_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    temp = seam.read(nvml, nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
    limit = seam.read(
        nvml, nvml.nvmlDeviceGetTemperatureThreshold, h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    )
    for r in (temp, limit):
        if not r.ok:
            return [Item("temperature_margin", not_measured=_reason(r, errors))]
    detail = f"{temp.value} C, slowdown at {limit.value} C"
    return [Item("temperature_margin", float(limit.value - temp.value), "C", True, detail)]


def power_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    enforced = seam.read(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, h)
    default = seam.read(nvml, nvml.nvmlDeviceGetPowerManagementDefaultLimit, h)
    for r in (enforced, default):
        if not r.ok:
            return [Item("power_limit_ratio", not_measured=_reason(r, errors))]
    if not default.value:
        return [Item("power_limit_ratio", not_measured="NVML reports no default power limit")]
    detail = f"enforced power limit {enforced.value / 1000:.0f} W, default {default.value / 1000:.0f} W"
    return [Item("power_limit_ratio", enforced.value / default.value, "ratio", True, detail)]


def persistence_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    r = seam.read(nvml, nvml.nvmlDeviceGetPersistenceMode, h)
    if not r.ok:
        return [Item("persistence_mode", not_measured=_reason(r, errors))]
    on = int(r.value) == nvml.NVML_FEATURE_ENABLED
    detail = (
        "persistence mode on"
        if on
        else (
            "persistence mode off: the driver tears the GPU down when no process uses it "
            "(nvidia-persistenced, or nvidia-smi -pm 1)"
        )
    )
    return [Item("persistence_mode", float(on), "flag", True, detail)]


NVLINK_COUNTERS = (
    ("NVML_NVLINK_ERROR_DL_REPLAY", "replay"),
    ("NVML_NVLINK_ERROR_DL_RECOVERY", "recovery"),
    ("NVML_NVLINK_ERROR_DL_CRC_FLIT", "CRC flit"),
    ("NVML_NVLINK_ERROR_DL_CRC_DATA", "CRC data"),
)


def nvlink_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    states: dict[int, int] = {}
    why = "the GPU reports no NVLink"
    for link in range(int(nvml.NVML_NVLINK_MAX_LINKS)):
        try:
            states[link] = int(nvml.nvmlDeviceGetNvLinkState(h, link))
        except nvml.NVMLError_InvalidArgument:
            continue  # the GPU has no such link
        except nvml.NVMLError as exc:
            if type(exc).__name__ in seam.UNSUPPORTED_ERRORS:
                if link == 0:
                    why = f"NVML: {seam.error_text(exc)}"
                continue
            errors.append(f"nvmlDeviceGetNvLinkState: {seam.error_text(exc)}")
            why = f"NVML error: {errors[-1]}"
            break
    if not states:
        return missing(("nvlink_down", "nvlink_errors"), why)
    down = [link for link, state in states.items() if state != nvml.NVML_FEATURE_ENABLED]
    detail = f"{len(states) - len(down)} of {len(states)} links up" + (
        f"; down: {', '.join(map(str, down))}" if down else ""
    )
    items = [Item("nvlink_down", float(len(down)), detail=detail)]
    total, parts = 0, []
    for link in sorted(set(states) - set(down)):
        counts = []
        for attr, name in NVLINK_COUNTERS:
            r = seam.read(nvml, nvml.nvmlDeviceGetNvLinkErrorCounter, h, link, getattr(nvml, attr))
            if not r.ok:
                return items + [Item("nvlink_errors", not_measured=_reason(r, errors))]
            if r.value:
                counts.append(f"{r.value} {name}")
                total += int(r.value)
        if counts:
            parts.append(f"link {link}: {', '.join(counts)}")
    items.append(Item("nvlink_errors", float(total), detail="; ".join(parts) or "no NVLink errors"))
    return items


def process_items(nvml: Any, h: Any, errors: list[str]) -> list[Item]:
    from hpcbench.node import nvml as seam

    r = seam.device_processes(nvml, h)
    if not r.ok:
        return [Item("processes", not_measured=_reason(r, errors))]
    detail = ", ".join(p.describe() for p in r.value) or "no process uses the GPU"
    return [Item("processes", float(len(r.value)), detail=detail)]


READERS = (
    ecc_items,
    retired_pages_items,
    remapped_rows_items,
    clock_items,
    temperature_items,
    power_items,
    persistence_items,
    nvlink_items,
    process_items,
)


def gpu_items(nvml: Any, index: int, errors: list[str]) -> tuple[list[Item], dict[str, Any]]:
    """Every per-GPU health item of GPU ``index``, and what identifies the GPU (name, bus, UUID)."""
    from hpcbench.node import nvml as seam

    handle = seam.read(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
    if not handle.ok:
        why = _reason(handle, errors)
        return [
            Item(i.metric, not_measured=f"no handle to GPU {index}: {why}") for i in _all_gpu_metrics()
        ], {}
    h = handle.value
    info: dict[str, Any] = {"index": index}
    for key, fn in (
        ("name", nvml.nvmlDeviceGetName),
        ("uuid", nvml.nvmlDeviceGetUUID),
        ("pci", nvml.nvmlDeviceGetPciInfo_v3),
    ):
        r = seam.read(nvml, fn, h)
        if r.error:
            errors.append(r.error)
        info[key] = r.value if r.ok else None
    pci = info.pop("pci")
    info["pci_bus_id"] = _text(pci.busId) if pci is not None else None
    info["name"] = _text(info["name"]) if info["name"] is not None else None
    info["uuid"] = _text(info["uuid"]) if info["uuid"] is not None else None
    items = [item for reader in READERS for item in reader(nvml, h, errors)]
    return items, info


def _all_gpu_metrics() -> list[Item]:
    return [Item(m) for m in GPU_METRICS if m not in ("nvml_errors", "xid_errors")]


#: the per-GPU metrics, in the order they are reported
GPU_METRICS = (
    "nvml_errors",
    "ecc_enabled",
    *(c[0] for c in ECC_COUNTERS),
    "retired_pages_pending",
    "remapped_rows_pending",
    "remapped_rows_failed",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "temperature_margin",
    "power_limit_ratio",
    "persistence_mode",
    "nvlink_down",
    "nvlink_errors",
    "xid_errors",
    "processes",
)
