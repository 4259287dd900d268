"""The one seam to NVML (package ``nvidia-ml-py``, module ``pynvml``).

``pynvml`` is imported lazily, inside the functions, so that importing hpcbench
stays fast and works on nodes without the package. Every function takes an
optional ``nvml`` module so tests inject a fake built from the real library's
exception classes and structs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

#: the shared library pynvml loads on Linux
LIBRARY = "libnvidia-ml.so.1"


def load(nvml: Any = None) -> Any:
    """The pynvml module (or the injected one). Raises ImportError when not installed."""
    if nvml is not None:
        return nvml
    import pynvml

    return pynvml


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
