"""The one seam to NVML (package ``nvidia-ml-py``, module ``pynvml``).

``pynvml`` is imported lazily, inside the functions, so that importing hpcbench
stays fast and works on nodes without the package. Every function takes an
optional ``nvml`` module so tests inject a fake built from the real library's
exception classes and structs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hpcbench.core.errors import ConfigError

#: the shared library pynvml loads on Linux
LIBRARY = "libnvidia-ml.so.1"
#: ``module:factory`` to use instead of pynvml in every process of a run (the runner's children
#: inherit it): tests put their fake NVML (tests/support/fakenvml.py) there; never set on a real node
ENV_MODULE = "HPCBENCH_NVML_MODULE"


def load(nvml: Any = None) -> Any:
    """The pynvml module (or the injected one). Raises ImportError when not installed."""
    if nvml is not None:
        return nvml
    override = os.environ.get(ENV_MODULE, "").strip()
    if override:
        return _load_override(override)
    import pynvml

    return pynvml


def _load_override(spec: str) -> Any:
    """``module`` or ``module:attribute`` (a callable attribute is called): the NVML to use."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        if attr:
            obj = getattr(obj, attr)
            obj = obj() if callable(obj) else obj
    except Exception as exc:
        raise ConfigError(f"{ENV_MODULE}={spec}: cannot load it: {type(exc).__name__}: {exc}") from None
    return obj


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _field(nvml: Any, fn: Callable[[], Any]) -> Any:
    """fn(), or None when NVML says the field is not supported or not permitted here."""
    try:
        return fn()
    except (nvml.NVMLError_NotSupported, nvml.NVMLError_NoPermission):
        return None


def _system_field(nvml: Any, fn: Callable[[], Any]) -> Any:
    """fn(), or None on any NVML error: a node-wide fact we can do without."""
    try:
        return fn()
    except nvml.NVMLError:
        return None


def cuda_version(value: int | None) -> str | None:
    """NVML's CUDA driver version integer as text: 12080 -> '12.8'."""
    if not value:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def _empty(reason: str) -> dict[str, Any]:
    return {"count": 0, "reason": reason, "driver_version": None, "cuda_version": None, "devices": []}


def _device(nvml: Any, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": index,
        "name": None,
        "pci_device_id": None,
        "pci_bus_id": None,
        "serial": None,
        "uuid": None,
        "memory_bytes": None,
        "error": None,
    }
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _field(nvml, lambda: nvml.nvmlDeviceGetName(handle))
        pci = _field(nvml, lambda: nvml.nvmlDeviceGetPciInfo_v3(handle))
        serial = _field(nvml, lambda: nvml.nvmlDeviceGetSerial(handle))
        uuid = _field(nvml, lambda: nvml.nvmlDeviceGetUUID(handle))
        memory = _field(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    except nvml.NVMLError as exc:  # e.g. GpuIsLost: keep the slot, say why it is empty
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    entry["name"] = _text(name) if name is not None else None
    if pci is not None:
        entry["pci_device_id"] = f"0x{int(pci.pciDeviceId):08X}"
        entry["pci_bus_id"] = _text(pci.busId)
    entry["serial"] = _text(serial) if serial else None
    entry["uuid"] = _text(uuid) if uuid else None
    entry["memory_bytes"] = int(memory.total) if memory is not None else None
    return entry


def gpu_inventory(nvml: Any = None) -> dict[str, Any]:
    """The node's NVIDIA GPUs as the inventory's ``gpus`` dict; never raises for a missing GPU.

    ``count`` is 0 with a one-line ``reason`` when pynvml is not installed, the
    NVML library is not found or the driver is not loaded. A field a device
    does not support (or we may not read) is None.
    """
    try:
        nvml = load(nvml)
    except ImportError:
        return _empty("NVML unavailable: nvidia-ml-py (pynvml) is not installed")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError_LibraryNotFound:
        return _empty(f"NVML unavailable: {LIBRARY} not found")
    except nvml.NVMLError as exc:
        return _empty(f"NVML unavailable: {type(exc).__name__}: {exc}")
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            return _empty(f"NVML error counting devices: {type(exc).__name__}: {exc}")
        driver = _system_field(nvml, nvml.nvmlSystemGetDriverVersion)
        cuda = _system_field(nvml, nvml.nvmlSystemGetCudaDriverVersion_v2)
        return {
            "count": count,
            "reason": None if count else "NVML reports no GPU",
            "driver_version": _text(driver) if driver is not None else None,
            "cuda_version": cuda_version(cuda),
            "devices": [_device(nvml, i) for i in range(count)],
        }
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


# ---------------------------------------------------------------------------
# Readings for the GPU probes (gpu_health, gpu_membw, pcie) and the runner's busy-GPU check.
# A field NVML does not support here (or we may not read) is ``unsupported``, never an error;
# any other NVML error (GpuIsLost, Unknown, Timeout, ...) is an ``error``.

#: NVML errors that mean "this field is not available here", not "this GPU is broken"
UNSUPPORTED_ERRORS = ("NVMLError_NotSupported", "NVMLError_NoPermission", "NVMLError_FunctionNotFound")


@dataclass(frozen=True)
class Reading:
    """One NVML value, or why there is none."""

    value: Any = None
    unsupported: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.unsupported is None and self.error is None


def error_text(exc: BaseException) -> str:
    """NVML's message (``GPU is lost``), with the error's name when that says more."""
    name, message = type(exc).__name__.removeprefix("NVMLError_"), str(exc)
    return message if message.replace(" ", "").lower() == name.lower() else f"{name} ({message})"


def read(nvml: Any, fn: Callable[..., Any], *args: Any) -> Reading:
    """fn(*args) as a Reading: NotSupported, NoPermission and FunctionNotFound are unsupported."""
    try:
        return Reading(fn(*args))
    except nvml.NVMLError as exc:
        if type(exc).__name__ in UNSUPPORTED_ERRORS:
            return Reading(unsupported=f"NVML: {error_text(exc)}")
        return Reading(error=f"{getattr(fn, '__name__', 'NVML')}: {error_text(exc)}")


@contextlib.contextmanager
def session(nvml: Any = None) -> Iterator[Any]:
    """nvmlInit ... nvmlShutdown around a block; yields the module. NVML's errors propagate."""
    mod = load(nvml)
    mod.nvmlInit()
    try:
        yield mod
    finally:
        with contextlib.suppress(mod.NVMLError):
            mod.nvmlShutdown()


def mask_to_ids(words: Sequence[int], bits: int = 64) -> list[int]:
    """The set bits of NVML's affinity bitmask (an array of 64-bit words, lowest first)."""
    return [w * bits + b for w, word in enumerate(words) for b in range(bits) if int(word) >> b & 1]


def cpu_affinity(nvml: Any, handle: Any, ncpus: int) -> Reading:
    """The CPUs NVML says are local to the GPU (nvmlDeviceGetCpuAffinity)."""
    r = read(nvml, nvml.nvmlDeviceGetCpuAffinity, handle, max(1, (ncpus + 63) // 64))
    return Reading(mask_to_ids(list(r.value))) if r.ok else r


def memory_affinity(nvml: Any, handle: Any, nnodes: int) -> Reading:
    """The NUMA nodes NVML says are local to the GPU (nvmlDeviceGetMemoryAffinity, node scope)."""
    words = max(1, (nnodes + 63) // 64)
    r = read(nvml, nvml.nvmlDeviceGetMemoryAffinity, handle, words, nvml.NVML_AFFINITY_SCOPE_NODE)
    return Reading(mask_to_ids(list(r.value))) if r.ok else r


def peak_memory_gbps(max_mem_clock_mhz: float, bus_width_bits: int) -> float:
    """Theoretical memory bandwidth, GB/s (1e9): max memory clock x bus width x 2 (double data rate)."""
    return max_mem_clock_mhz * 1e6 * bus_width_bits / 8 * 2 / 1e9


def memory_peak(nvml: Any, handle: Any) -> Reading:
    """{max_mem_clock_mhz, bus_width_bits, peak_gbps} from nvmlDeviceGetMaxClockInfo(MEM) and bus width."""
    clock = read(nvml, nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM)
    width = read(nvml, nvml.nvmlDeviceGetMemoryBusWidth, handle)
    for r in (clock, width):
        if not r.ok:
            return r
    if not clock.value or not width.value:
        return Reading(unsupported=f"NVML reports memory clock {clock.value} MHz, bus {width.value} bits")
    return Reading(
        {
            "max_mem_clock_mhz": int(clock.value),
            "bus_width_bits": int(width.value),
            "peak_gbps": peak_memory_gbps(clock.value, int(width.value)),
        }
    )


#: name -> the pynvml function giving it, for pcie_link()
_PCIE_FIELDS = {
    "curr_gen": "nvmlDeviceGetCurrPcieLinkGeneration",
    "curr_width": "nvmlDeviceGetCurrPcieLinkWidth",
    "max_gen": "nvmlDeviceGetMaxPcieLinkGeneration",
    "max_width": "nvmlDeviceGetMaxPcieLinkWidth",
    "gpu_max_gen": "nvmlDeviceGetGpuMaxPcieLinkGeneration",
}


def pcie_link(nvml: Any, handle: Any) -> dict[str, Reading]:
    """Current and maximum PCIe link generation and width (max: what GPU and slot can both do)."""
    return {name: read(nvml, getattr(nvml, fn), handle) for name, fn in _PCIE_FIELDS.items()}


@dataclass(frozen=True)
class GpuProcess:
    """A process holding a context on a GPU."""

    pid: int
    name: str
    used_bytes: int | None  # None: NVML cannot say (e.g. under some virtualisation)

    def describe(self) -> str:
        """``pid 4242 (python3) uses 70000 MiB``."""
        used = "?" if self.used_bytes is None else str(self.used_bytes // 2**20)
        return f"pid {self.pid} ({self.name}) uses {used} MiB"


def _process_name(nvml: Any, pid: int) -> str:
    r = read(nvml, nvml.nvmlSystemGetProcessName, pid)
    if r.ok and r.value:
        return os.path.basename(_text(r.value))
    try:  # another container's process: NVML may not see its name, /proc may
        with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
            return fh.read().strip() or "?"
    except OSError:
        return "?"


def device_processes(nvml: Any, handle: Any) -> Reading:
    """Compute and graphics processes on a GPU, merged by pid: Reading of list[GpuProcess]."""
    found: dict[int, int | None] = {}
    for fn in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
        r = read(nvml, fn, handle)
        if not r.ok:
            return r
        for p in r.value:
            used = getattr(p, "usedGpuMemory", None)
            known = [x for x in (found.get(int(p.pid)), used) if x is not None]
            found[int(p.pid)] = max(known) if known else None
    return Reading([GpuProcess(pid, _process_name(nvml, pid), used) for pid, used in sorted(found.items())])


def gpu_processes(indices: Sequence[int], nvml: Any = None) -> dict[int, list[GpuProcess]]:
    """GPU index -> the processes using it. A GPU whose processes cannot be read is left out;
    without NVML the answer is empty (nothing known to be busy)."""
    try:
        with session(nvml) as mod:
            out: dict[int, list[GpuProcess]] = {}
            for index in indices:
                handle = read(mod, mod.nvmlDeviceGetHandleByIndex, index)
                procs = device_processes(mod, handle.value) if handle.ok else handle
                if procs.ok:
                    out[index] = procs.value
            return out
    except ImportError:
        return {}
    except Exception as exc:  # NVML's init failed (no driver): nothing can be known to be busy
        if type(exc).__name__.startswith("NVMLError"):
            return {}
        raise


# ---------------------------------------------------------------------------
# Telemetry of the GPU compute probes (gemm, attention): hpcbench/telemetry.py samples these in a
# background thread while a probe runs.


def clock_event_reasons(nvml: Any, handle: Any) -> Reading:
    """Why the clocks are held down, as NVML's bitmask: nvmlDeviceGetCurrentClocksEventReasons
    (NVML 12.2+ and nvidia-ml-py 12.535+), else its older name ...ClocksThrottleReasons."""
    new = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    old = getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    r = Reading(unsupported="this pynvml has no clock event (throttle) reasons")
    for fn in (new, old):
        if fn is None:
            continue
        r = read(nvml, fn, handle)
        if not r.unsupported:  # a value, or a real error (GpuIsLost): asking again would not help
            return r
    return r  # unsupported under both names (e.g. FunctionNotFound from an older driver)


def telemetry_sample(nvml: Any, handle: Any) -> dict[str, Reading]:
    """One reading of what explains a GPU's speed: clocks, power, temperature, utilization, reasons."""
    return {
        "sm_clock_mhz": read(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        "mem_clock_mhz": read(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        "power_mw": read(nvml, nvml.nvmlDeviceGetPowerUsage, handle),
        "temperature_c": read(nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        "utilization": read(nvml, nvml.nvmlDeviceGetUtilizationRates, handle),
        "clocks_event_reasons": clock_event_reasons(nvml, handle),
    }


def telemetry_limits(nvml: Any, handle: Any) -> dict[str, Reading]:
    """The limits the samples are read against: the maximum SM clock and the enforced power limit."""
    return {
        "sm_clock_max_mhz": read(nvml, nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM),
        "power_limit_mw": read(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle),
    }
