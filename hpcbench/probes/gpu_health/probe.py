"""GPU health from NVML and the kernel log: no load, a few seconds.

Two scopes, one probe. Per GPU (``gpu`` set, e.g. by ``expand = "gpu"``): ECC mode and
error counts, retired pages, remapped rows, clock event reasons, temperature margin,
power cap, persistence mode, NVLink state and errors, XIDs of this GPU, processes.
Node (``gpu`` unset): the GPU count against ``expected_gpus``, driver and CUDA versions
(NVML, kernel module, libcuda) and firmware versions equal on all GPUs, XIDs on PCI
addresses that belong to no visible GPU (one that fell off the bus), NVML errors.

Each item is a metric (a count, a 0/1 flag, a margin) with a one-line ``detail``; the
suites put absolute thresholds on them, so the verdicts come from checks.py like any
other. A field NVML does not support, or a kernel log we may not read, is listed in
``not_measured`` (SKIP with the reason), never a failure.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core import timeparse
from hpcbench.core.errors import ProbeError, ProbeSkip
from hpcbench.core.items import Item, missing
from hpcbench.core.items import to_measurements as items_to_measurements
from hpcbench.hw import xid
from hpcbench.hw.kernel_log import KernelLog, boot_time, read_kernel_log
from hpcbench.node.pci import PCI_DEVICES, normalize_bus, pci_gpus, read_text
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.gpu_health.read import GPU_METRICS, gpu_items

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement

NAME = "gpu_health"
NODE_METRICS = (
    "nvml_errors",
    "gpu_count",
    "gpus_missing",
    "driver_version_mismatch",
    "firmware_version_mismatch",
    "xid_errors",
)
KERNEL_MODULE_VERSION = "/proc/driver/nvidia/version"
_MODULE_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)")
#: NVML init errors that mean "no NVIDIA GPU driver here", not "the driver is broken"
_NO_DRIVER = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")


@dataclass(frozen=True)
class GpuHealthParams:
    gpu: int | None = field(
        default=None, metadata={"help": "one GPU's health (NVML index); None = the node-wide items"}
    )
    expected_gpus: int = field(
        default=0, metadata={"help": "GPUs this node must have (node scope); 0 = not checked"}
    )
    kernel_log: str = field(
        default="auto",
        metadata={"help": "XID source: auto (journalctl, else dmesg), journalctl, dmesg, none, or a file"},
    )
    xid_since: str = field(
        default="boot", metadata={"help": "count XIDs since: boot, a duration (24h, 7d) or an ISO time"}
    )
    xid_ignore: list[int] = field(
        default_factory=lambda: list(xid.DEFAULT_IGNORE),
        metadata={"help": "XIDs not counted (application errors by default: 13, 31, 43, 45)"},
    )

    def __post_init__(self) -> None:
        check(self.gpu is None or self.gpu >= 0, NAME, "gpu", f"must be >= 0 or None, got {self.gpu}")
        check(self.expected_gpus >= 0, NAME, "expected_gpus", f"must be >= 0, got {self.expected_gpus}")
        check(bool(self.kernel_log.strip()), NAME, "kernel_log", "must not be empty")
        check(all(c >= 0 for c in self.xid_ignore), NAME, "xid_ignore", "XIDs are >= 0")
        try:
            timeparse.since(self.xid_since, now=0.0)
        except ValueError as exc:
            check(False, NAME, "xid_since", str(exc))


def kernel_module_version(text: str | None) -> str | None:
    """The driver version in /proc/driver/nvidia/version (proprietary or open kernel module)."""
    m = _MODULE_VERSION.search(text or "")
    return m.group(1) if m else None


def driver_mismatches(
    nvml_driver: str | None, kernel_driver: str | None, nvml_cuda: str | None, libcuda_cuda: str | None
) -> tuple[list[str], list[str]]:
    """(what disagrees, what was compared): NVML's library against the kernel module, NVML's CUDA
    version against the libcuda this process loads (a forward-compatibility package differs)."""
    bad, compared = [], []
    for what, a, a_name, b, b_name in (
        ("driver", nvml_driver, "NVML library", kernel_driver, "kernel module"),
        ("CUDA", nvml_cuda, "NVML", libcuda_cuda, "libcuda"),
    ):
        if a is None or b is None:
            continue
        if a == b:
            compared.append(f"{what} {a} ({a_name} and {b_name})")
        else:
            bad.append(f"{what}: {a_name} {a}, {b_name} {b}")
    return bad, compared


def firmware_mismatches(gpus: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(what disagrees, how many facts were compared): VBIOS and InfoROM image versions among
    GPUs of the same model."""
    bad, compared = [], 0
    for key, label in (("vbios", "VBIOS"), ("inforom_image", "InfoROM image")):
        by_model: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for g in gpus:
            if g.get(key):
                by_model[str(g.get("name"))][str(g[key])].append(int(g["index"]))
        for model, versions in sorted(by_model.items()):
            compared += 1
            if len(versions) > 1:
                where = "; ".join(
                    f"{v} on GPU {', '.join(map(str, ix))}" for v, ix in sorted(versions.items())
                )
                bad.append(f"{label} differs among {model}: {where}")
    return bad, compared


def libcuda_version() -> str | None:
    """The CUDA version of the libcuda.so.1 this process would load (cuDriverGetVersion), or None.

    CUDA-only: no GPU is touched (cuDriverGetVersion needs no cuInit).
    """
    import ctypes

    from hpcbench.node import nvml as seam

    try:
        lib = ctypes.CDLL("libcuda.so.1")
        value = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(value)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return seam.cuda_version(value.value)


def xid_item(events: list[xid.XidEvent] | None, log: KernelLog, ignore: list[int], where: str) -> Item:
    """The ``xid_errors`` count of ``events`` (XIDs in ``ignore`` listed but not counted)."""
    if events is None:
        return Item("xid_errors", not_measured=f"kernel log not readable: {log.unsupported}")
    counted = [e for e in events if e.code not in ignore]
    ignored = [e for e in events if e.code in ignore]
    detail = (xid.describe(counted) or "no XID") + f" {where}"
    if ignored:
        detail += f" (not counted: {xid.describe(ignored)})"
    return Item("xid_errors", float(len(counted)), detail=detail)


def to_measurements(items: list[Item], subject: str, settings: dict[str, Any]) -> list[Measurement]:
    """Measurements of the items with a value; the first also carries ``settings`` and the
    ``not_measured`` items with their reasons."""
    return items_to_measurements(
        items, subject, settings, lambda metric: "kernel log" if metric == "xid_errors" else "NVML"
    )


class GpuHealth:
    """NVML health items per GPU (expand = "gpu") or node-wide: no load, seconds."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "GPU health (no load): ECC, row remapping, XIDs, throttling, temperature, power cap, NVLink, count"
    )
    Params: ClassVar[type] = GpuHealthParams
    #: no "gpu" requirement: a node whose driver died must still fail its GPU count
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {"gpu": "gpu"}
    metrics: ClassVar[tuple[str, ...]] = tuple(dict.fromkeys((*NODE_METRICS, *GPU_METRICS)))
    #: reads only: run with the run's other no-load checks in one child (hpcbench.engine.batch)
    no_load: ClassVar[bool] = True

    def __init__(self, nvml: Any = None, pci_root: str = PCI_DEVICES) -> None:
        self.nvml = nvml  # None: pynvml (tests inject a fake)
        self.pci_root = pci_root

    def run(self, params: GpuHealthParams, ctx: ProbeContext) -> list[Measurement]:
        start = timeparse.since(params.xid_since)
        settings: dict[str, Any] = {
            "kernel_log": params.kernel_log,
            "xid_since": params.xid_since,
            "xid_since_epoch": start,
            "xid_ignore": list(params.xid_ignore),
        }
        if params.gpu is None:
            items = self._node(params, start, settings)
        else:
            items = self._gpu(params, ctx, start, settings)
        return to_measurements(items, ctx.subject, settings)

    def _xids(
        self, params: GpuHealthParams, start: float | None, settings: dict[str, Any]
    ) -> tuple[Any, Any]:

        log = read_kernel_log(params.kernel_log)
        settings["kernel_log_source"] = log.source
        if log.text is None:
            return None, log
        return xid.since(xid.parse_kernel_log(log.text, boot_time()), start), log

    def _gpu(
        self, params: GpuHealthParams, ctx: ProbeContext, start: float | None, settings: dict[str, Any]
    ) -> list[Item]:
        from hpcbench.node import nvml as seam

        assert params.gpu is not None
        errors: list[str] = []
        try:
            with seam.session(self.nvml) as nv:
                items, info = gpu_items(nv, params.gpu, errors)
                settings["driver_version"] = seam.read(nv, nv.nvmlSystemGetDriverVersion).value
        except ImportError as exc:
            raise ProbeError(f"NVML unavailable: {exc}") from None
        except Exception as exc:
            if type(exc).__name__.startswith("NVMLError"):
                raise ProbeError(f"NVML: {seam.error_text(exc)}") from None
            raise
        settings["gpu"] = info
        bus = info.get("pci_bus_id")
        if bus is None:  # no handle: the inventory (taken before the run) still knows its address
            devices = ctx.inventory.gpus.devices
            bus = next((d.pci_bus_id for d in devices if d.index == params.gpu), None)
        mine = normalize_bus(bus)
        events, log = self._xids(params, start, settings)
        if events is not None:
            events = [e for e in events if e.bus is not None and e.bus == mine]
        where = f"on PCI {mine}" if mine else "(the GPU's PCI address is unknown)"
        nvml_errors = Item("nvml_errors", float(len(errors)), detail="; ".join(errors) or "no NVML error")
        return [nvml_errors, *items, xid_item(events, log, params.xid_ignore, where)]

    def _node(self, params: GpuHealthParams, start: float | None, settings: dict[str, Any]) -> list[Item]:
        from hpcbench.node import nvml as seam

        errors: list[str] = []
        gpus: list[dict[str, Any]] = []
        unavailable = ""
        driver = cuda = None
        rm_mismatch = ""
        try:
            with seam.session(self.nvml) as nv:
                count = seam.read(nv, nv.nvmlDeviceGetCount)
                if not count.ok:
                    raise ProbeError(f"NVML cannot count the GPUs: {count.error or count.unsupported}")
                driver = seam.read(nv, nv.nvmlSystemGetDriverVersion).value
                cuda = seam.cuda_version(seam.read(nv, nv.nvmlSystemGetCudaDriverVersion_v2).value)
                gpus = [self._identity(nv, i, errors) for i in range(int(count.value))]
        except ImportError as exc:
            unavailable = f"NVML unavailable: {exc}"
        except ProbeError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            if name == "NVMLError_LibRmVersionMismatch":
                rm_mismatch = f"NVML library and kernel module versions differ ({exc})"
                unavailable = f"NVML: {seam.error_text(exc)}"
            elif name in _NO_DRIVER:
                unavailable = f"NVML unavailable: {seam.error_text(exc)}"
            elif name.startswith("NVMLError"):
                raise ProbeError(f"NVML: {seam.error_text(exc)}") from None
            else:
                raise
        on_pci = pci_gpus(self.pci_root)
        # the suite's count, else the PCI bus's (sysfs may list none in a container: then NVML's own)
        expected = params.expected_gpus or max(len(on_pci or []), len(gpus))
        if unavailable and not expected and not rm_mismatch:
            raise ProbeSkip(f"no GPU on this node ({unavailable})")
        settings.update(
            gpus=gpus, driver_version=driver, cuda_version=cuda, nvml=unavailable or "ok", pci_gpus=on_pci
        )
        items = [Item("nvml_errors", float(len(errors)), detail="; ".join(errors) or "no NVML error")]
        names = ", ".join(sorted({str(g.get("name")) for g in gpus})) or unavailable
        items.append(Item("gpu_count", float(len(gpus)), "count", True, f"{len(gpus)} GPU(s): {names}"))
        if expected:
            items.append(self._missing_item(gpus, expected, params.expected_gpus, on_pci, unavailable))
        else:
            items += missing(("gpus_missing",), "expected_gpus is 0 and sysfs lists no NVIDIA GPU")
        kernel = kernel_module_version(read_text(KERNEL_MODULE_VERSION))
        bad, compared = driver_mismatches(driver, kernel, cuda, libcuda_version())
        if rm_mismatch:
            bad.insert(0, rm_mismatch)
        if bad or compared:
            detail = "; ".join(bad) if bad else "equal: " + ", ".join(compared)
            items.append(Item("driver_version_mismatch", float(len(bad)), detail=detail))
        else:
            items += missing(("driver_version_mismatch",), "no two driver or CUDA versions to compare")
        fw_bad, fw_compared = firmware_mismatches(gpus)
        if fw_compared:
            detail = "; ".join(fw_bad) or "VBIOS and InfoROM versions equal on GPUs of the same model"
            items.append(Item("firmware_version_mismatch", float(len(fw_bad)), detail=detail))
        else:
            items += missing(("firmware_version_mismatch",), "no firmware versions to compare")
        events, log = self._xids(params, start, settings)
        visible = {normalize_bus(g.get("pci_bus_id")) for g in gpus}
        if events is not None:
            events = [e for e in events if e.bus is None or e.bus not in visible]
        items.append(xid_item(events, log, params.xid_ignore, "on PCI addresses of no visible GPU"))
        return items

    @staticmethod
    def _missing_item(
        gpus: list[dict[str, Any]], expected: int, given: int, on_pci: list[str] | None, unavailable: str
    ) -> Item:
        """``gpus_missing``: GPUs expected (the suite's count, else the PCI bus's) that NVML does not see."""
        whose = "expected by the suite" if given else "NVIDIA GPUs on the PCI bus"
        if not given and not on_pci:
            whose = "sysfs lists none: as many as NVML sees"
        detail = f"{len(gpus)} of {expected} GPUs ({whose}) visible to NVML"
        seen = {normalize_bus(g.get("pci_bus_id")) for g in gpus}
        lost = [a for a in on_pci or [] if a not in seen]
        if lost and len(gpus) < expected:
            detail += f"; not seen by NVML: {', '.join(lost)}"
        if unavailable:
            detail += f" ({unavailable})"
        return Item("gpus_missing", float(max(expected - len(gpus), 0)), detail=detail)

    @staticmethod
    def _identity(nv: Any, index: int, errors: list[str]) -> dict[str, Any]:
        """Index, name, PCI address and firmware versions of one GPU (node scope)."""
        from hpcbench.node import nvml as seam

        entry: dict[str, Any] = {"index": index}
        handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, index)
        if not handle.ok:
            if handle.error:
                errors.append(f"GPU {index}: {handle.error}")
            return entry
        for key, fn in (
            ("name", nv.nvmlDeviceGetName),
            ("pci", nv.nvmlDeviceGetPciInfo_v3),
            ("vbios", nv.nvmlDeviceGetVbiosVersion),
            ("inforom_image", nv.nvmlDeviceGetInforomImageVersion),
        ):
            r = seam.read(nv, fn, handle.value)
            if r.error:
                errors.append(f"GPU {index}: {r.error}")
            entry[key] = r.value if r.ok else None
        pci = entry.pop("pci")
        entry["pci_bus_id"] = (
            pci.busId.decode()
            if pci is not None and isinstance(pci.busId, bytes)
            else (str(pci.busId) if pci is not None else None)
        )
        for key in ("name", "vbios", "inforom_image"):
            if isinstance(entry.get(key), bytes):
                entry[key] = entry[key].decode(errors="replace")
        return entry
