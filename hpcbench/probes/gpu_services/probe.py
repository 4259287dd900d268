"""The GPU node's own services (no load, milliseconds): what the clouds' GPU checks test and NHC
leaves to scripts.

Items (node-wide; each a count of what is wrong, the detail naming the GPUs or services):

- ``persistenced_missing``: nvidia-persistenced not running (the driver tears GPUs down between
  jobs without it); ``persistence_off``: GPUs with persistence mode off;
- ``fabric_not_ready``: on NVSwitch systems (HGX/DGX H100, H200, B200) GPUs whose NVML fabric
  state is not COMPLETED with status SUCCESS (``nvmlDeviceGetGpuFabricInfo``): such a GPU cannot
  run NCCL over NVLink; ``fabricmanager_missing``: nv-fabricmanager not running there;
- ``mig_wrong``: GPUs whose MIG mode (current, or a pending change) is not the expected one;
- ``app_clocks_locked``: GPUs whose application clocks differ from their defaults (left set by
  a job or a benchmark);
- ``modules_missing``: kernel modules not loaded (/proc/modules): nvidia, nvidia_uvm, and those
  the site adds (nvidia_peermem for GPUDirect RDMA without dma-buf);
- ``driver_wrong``: the driver version is not the expected one (a shell pattern);
- ``dcgm_missing``: DCGM's nv-hostengine not running, where the site uses DCGM.

Each is SKIP with the reason where it does not apply (no NVSwitch: no fabric; DCGM not asked).
On a node without an NVIDIA GPU the probe is SKIP. The GPU count against the expected one is
gpu_health's ``gpus_missing`` (``expected_gpus``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeSkip
from hpcbench.core.items import Item, to_measurements
from hpcbench.node.pci import pci_gpus, read_text
from hpcbench.probes.base import ProbeContext, Requirement, check, report_progress

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw.procs import Proc

NAME = "gpu_services"
METRICS = (
    "persistenced_missing",
    "persistence_off",
    "fabric_not_ready",
    "fabricmanager_missing",
    "mig_wrong",
    "app_clocks_locked",
    "modules_missing",
    "driver_wrong",
    "dcgm_missing",
)
#: process names as /proc/PID/comm shows them (cut at 15 characters)
PERSISTENCED, FABRICMANAGER, HOSTENGINE = "nvidia-persiste", "nv-fabricmanage", "nv-hostengine"
FABRIC_STATES = {0: "not supported", 1: "not started", 2: "in progress", 3: "completed"}
_NO_DRIVER = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")


@dataclass(frozen=True)
class GpuServicesParams:
    mig: str = field(default="off", metadata={"help": "MIG mode every GPU must be in: off, on, any"})
    fabricmanager: bool = field(
        default=True, metadata={"help": "nv-fabricmanager must run where the GPUs have an NVSwitch fabric"}
    )
    modules: list[str] = field(
        default_factory=lambda: ["nvidia", "nvidia_uvm"],
        metadata={"help": "kernel modules that must be loaded (add nvidia_peermem for GPUDirect RDMA)"},
    )
    driver_version: str = field(default="", metadata={"help": "the driver version (shell pattern); '' = any"})
    dcgm: bool = field(default=False, metadata={"help": "DCGM's nv-hostengine must run"})
    root: str = field(default="/", metadata={"help": "where /proc and /sys are read (tests: a tree)"})

    def __post_init__(self) -> None:
        check(self.mig in ("off", "on", "any"), NAME, "mig", f"off, on or any, not {self.mig!r}")
        check(
            all(m and "/" not in m for m in self.modules),
            NAME,
            "modules",
            "module names, as lsmod shows them",
        )
        check(os.path.isdir(self.root), NAME, "root", f"{self.root!r} is not a folder")


def loaded_modules(text: str) -> set[str]:
    """Module names of /proc/modules."""
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _count(metric: str, wrong: list[str], ok: str) -> Item:
    return Item(metric, float(len(wrong)), detail="; ".join(wrong) if wrong else ok)


def _names(procs: list[Proc] | None) -> set[str] | None:
    return None if procs is None else {p.comm for p in procs}


def process_items(running: set[str] | None, fabric: bool, params: GpuServicesParams) -> list[Item]:
    if running is None:
        return [Item(m, error="proc not readable") for m in ("persistenced_missing", "fabricmanager_missing")]
    out = [
        _count(
            "persistenced_missing",
            [] if PERSISTENCED in running else ["nvidia-persistenced not running"],
            "nvidia-persistenced running",
        )
    ]
    if not fabric:
        out.append(Item("fabricmanager_missing", not_measured="no GPU with an NVSwitch fabric"))
    elif not params.fabricmanager:
        out.append(Item("fabricmanager_missing", not_measured="not asked (fabricmanager = false)"))
    else:
        gone = [] if FABRICMANAGER in running else ["nvidia-fabricmanager not running on an NVSwitch system"]
        out.append(_count("fabricmanager_missing", gone, "nv-fabricmanager running"))
    if params.dcgm:
        out.append(
            _count("dcgm_missing", [] if HOSTENGINE in running else ["nv-hostengine not running"], "running")
        )
    else:
        out.append(Item("dcgm_missing", not_measured="not asked (dcgm = false)"))
    return out


def gpu_items(nv: Any, count: int, params: GpuServicesParams) -> tuple[list[Item], bool]:
    """Persistence, fabric, MIG and application clocks of every GPU; and whether any has a fabric."""
    from hpcbench.node import nvml as seam

    off, fabric_bad, mig_bad, locked = [], [], [], []
    fabric_gpus = 0
    clocks_read = 0
    for i in range(count):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        r = seam.read(nv, nv.nvmlDeviceGetPersistenceMode, h)
        if r.ok and r.value != nv.NVML_FEATURE_ENABLED:
            off.append(f"gpu{i} persistence mode off")
        struct, get = (
            getattr(nv, "c_nvmlGpuFabricInfo_t", None),
            getattr(nv, "nvmlDeviceGetGpuFabricInfo", None),
        )
        info = struct() if struct is not None and get is not None else None  # an older pynvml: no fabric
        r = seam.read(nv, get, h, _byref(info)) if info is not None else seam.Reading(unsupported="no API")
        if r.ok and info is not None and info.state != nv.NVML_GPU_FABRIC_STATE_NOT_SUPPORTED:
            fabric_gpus += 1
            if info.state != nv.NVML_GPU_FABRIC_STATE_COMPLETED or info.status != nv.NVML_SUCCESS:
                state = FABRIC_STATES.get(info.state, str(info.state))
                status = "" if info.status == nv.NVML_SUCCESS else f", status {_error_name(nv, info.status)}"
                fabric_bad.append(f"gpu{i} fabric {state}{status}")
        r = seam.read(nv, nv.nvmlDeviceGetMigMode, h)
        if r.ok and params.mig != "any":
            current, pending = r.value
            want = nv.NVML_DEVICE_MIG_ENABLE if params.mig == "on" else nv.NVML_DEVICE_MIG_DISABLE
            if current != want:
                mig_bad.append(f"gpu{i} MIG {'on' if current == nv.NVML_DEVICE_MIG_ENABLE else 'off'}")
            elif pending != current:
                mig_bad.append(f"gpu{i} MIG change pending a reset")
        elif not r.ok and params.mig == "on":
            mig_bad.append(f"gpu{i} has no MIG")
        app = seam.read(nv, nv.nvmlDeviceGetApplicationsClock, h, nv.NVML_CLOCK_GRAPHICS)
        default = seam.read(nv, nv.nvmlDeviceGetDefaultApplicationsClock, h, nv.NVML_CLOCK_GRAPHICS)
        if app.ok and default.ok:
            clocks_read += 1
            if app.value != default.value:
                locked.append(f"gpu{i} application clock {app.value} MHz, default {default.value} MHz")
    items = [
        _count("persistence_off", off, f"on for all {count} GPUs"),
        _count("fabric_not_ready", fabric_bad, f"completed on all {fabric_gpus} GPUs")
        if fabric_gpus
        else Item(
            "fabric_not_ready", not_measured="no GPU with an NVSwitch fabric (NVML: fabric not supported)"
        ),
        _count("mig_wrong", mig_bad, f"MIG {params.mig} on all {count} GPUs")
        if params.mig != "any"
        else Item("mig_wrong", not_measured="any MIG mode accepted (mig = any)"),
        _count("app_clocks_locked", locked, "application clocks at their defaults")
        if clocks_read
        else Item("app_clocks_locked", not_measured="NVML: application clocks not supported"),
    ]
    return items, fabric_gpus > 0


def _error_name(nv: Any, code: int) -> str:
    """``NVML_ERROR_TIMEOUT`` for 10: the constant's name, as nvml.h spells it."""
    names = [n for n in dir(nv) if n.startswith("NVML_ERROR_") and getattr(nv, n) == code]
    return names[0] if names else f"NVML error {code}"


def _byref(obj: Any) -> Any:
    import ctypes

    return ctypes.byref(obj)


class GpuServices:
    """nvidia-persistenced, persistence mode, NVSwitch fabric, MIG, clocks, modules, driver, DCGM."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "the GPU node's services (no load): persistenced, fabric manager and state, MIG, clocks, modules"
    )
    Params: ClassVar[type] = GpuServicesParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    no_load: ClassVar[bool] = True

    def __init__(self, nvml: Any = None, pci_root: str | None = None) -> None:
        self.nvml = nvml
        self.pci_root = pci_root

    def run(self, params: GpuServicesParams, ctx: ProbeContext) -> list[Measurement]:
        import fnmatch

        from hpcbench.hw.procs import processes
        from hpcbench.node import nvml as seam

        root = params.root
        report_progress(ctx, "NVML")
        nvml_items: list[Item] = []
        fabric = False
        driver = ""
        try:
            with seam.session(self.nvml) as nv:
                count = int(nv.nvmlDeviceGetCount())
                driver = str(seam.read(nv, nv.nvmlSystemGetDriverVersion).value or "")
                nvml_items, fabric = gpu_items(nv, count, params)
        except ImportError as exc:
            nvml_error = f"NVML unavailable: {exc}"
            count = 0
        except Exception as exc:
            name = type(exc).__name__
            if not name.startswith("NVMLError"):
                raise
            nvml_error = f"NVML: {seam.error_text(exc)}"
            count = 0
            on_pci = pci_gpus(self.pci_root or os.path.join(root, "sys/bus/pci/devices"))
            if name in _NO_DRIVER and not on_pci:
                raise ProbeSkip(f"no NVIDIA GPU on this node ({nvml_error})") from None
            nvml_items = [Item(m, error=nvml_error) for m in METRICS[1:6] if m != "fabricmanager_missing"]
        else:
            nvml_error = ""
        if not count and not nvml_error:
            raise ProbeSkip("no NVIDIA GPU on this node (NVML counts none)")
        modules_text = read_text(os.path.join(root, "proc/modules"))
        if modules_text is None:
            modules = Item("modules_missing", error="proc/modules not readable")
        else:
            have = loaded_modules(modules_text)
            gone = [f"module {m} not loaded" for m in params.modules if m not in have]
            modules = _count("modules_missing", gone, f"loaded: {', '.join(params.modules)}")
        if not params.driver_version:
            drv = Item("driver_wrong", not_measured="no expected driver version (driver_version)")
        elif not driver:
            drv = Item("driver_wrong", error=nvml_error or "NVML gave no driver version")
        else:
            bad = (
                []
                if fnmatch.fnmatchcase(driver, params.driver_version)
                else [f"driver {driver}, expected {params.driver_version}"]
            )
            drv = _count("driver_wrong", bad, f"driver {driver}")
        items = [
            *process_items(_names(processes(root)), fabric, params),
            *nvml_items,
            modules,
            drv,
        ]
        settings: dict[str, Any] = {"root": root, "driver_version": driver, "nvswitch_fabric": fabric}
        order = {m: k for k, m in enumerate(METRICS)}
        items.sort(key=lambda i: order[i.metric])
        return to_measurements(items, ctx.subject, settings, "NVML, /proc/modules and the processes of /proc")
