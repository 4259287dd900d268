"""Node health from the kernel, in seconds and with no load: what NHC checks.

Items (each a count or a value with a one-line detail; the suites put limits on them):
EDAC memory errors per DIMM, PCIe AER errors per device, NVMe SMART (critical warning, media
errors, spare, wear) through nvme-cli, machine checks and other kernel-log errors since boot
or ``since``, memory and online CPUs (judged against the baseline), NUMA memory balance and
expected mounts. Where the node has no such thing (no EDAC, no AER, no NVMe) the items are
``not_measured``: SKIP with the reason, never a failure. nvme-cli missing while NVMe drives
exist is ``could_not_measure``: ERROR with the package to install.

Everything is read under ``root`` (``/`` on a node; a copied or fixture tree in tests), by
the small readers of this package: ``edac``, ``aer``, ``nvme``, ``klog``, ``system``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core import timeparse
from hpcbench.core.items import Item, missing, to_measurements
from hpcbench.hw.kernel_log import boot_time, read_kernel_log
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.node_health import metrics as names

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.probes.node_health import nvme

NAME = "node_health"
SYSTEM_METRICS = names.SYSTEM
#: the readers (aer, edac, klog, nvme) are imported where run() uses them
METRICS = (*names.EDAC, *names.AER, *names.NVME, *names.KLOG, *SYSTEM_METRICS)
_CONVENTIONS = {
    **{m: "EDAC sysfs counters since boot" for m in names.EDAC},
    **{m: "PCIe AER sysfs counters since boot" for m in names.AER},
    **{m: "nvme smart-log (NVMe SMART / health log)" for m in names.NVME},
    **{m: "kernel log lines" for m in names.KLOG},
    "memory_gib": "/proc/meminfo MemTotal, GiB = 2^30 bytes",
    "online_cpus": "/sys/devices/system/cpu/online",
    "cpus_offline": "/sys/devices/system/cpu/present minus online",
    "memory_numa_balance": "smallest / largest NUMA node MemTotal (nodes with CPUs)",
    "mounts_missing": "/proc/self/mounts",
}


@dataclass(frozen=True)
class NodeHealthParams:
    since: str = field(
        default="boot",
        metadata={"help": "kernel-log errors since: boot, a duration (24h, 7d) or an ISO time"},
    )
    kernel_log: str = field(
        default="auto",
        metadata={
            "help": "kernel log source: auto (journalctl, else dmesg), journalctl, dmesg, none, or a file"
        },
    )
    mounts: list[str] = field(
        default_factory=list, metadata={"help": "mount points that must be mounted (each missing one FAILs)"}
    )
    nvme: str = field(default="nvme", metadata={"help": "the nvme-cli command (a name on PATH or a path)"})
    nvme_timeout_s: float = field(
        default=15.0, metadata={"help": "seconds before one nvme smart-log is killed"}
    )
    nvme_smart_logs: str = field(
        default="",
        metadata={
            "help": "a folder of captured 'nvme smart-log -o json' outputs, <controller>.json, read instead"
        },
    )
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read: / on a node, or a captured tree"}
    )

    def __post_init__(self) -> None:
        try:
            timeparse.since(self.since, now=0.0)
        except ValueError as exc:
            check(False, NAME, "since", str(exc))
        check(bool(self.kernel_log.strip()), NAME, "kernel_log", "must not be empty")
        check(bool(self.nvme.strip()), NAME, "nvme", "must not be empty")
        check(self.nvme_timeout_s > 0, NAME, "nvme_timeout_s", f"must be > 0, got {self.nvme_timeout_s}")
        check(os.path.isdir(self.root), NAME, "root", f"{self.root!r} is not a folder")
        check(
            not self.nvme_smart_logs or os.path.isdir(self.nvme_smart_logs),
            NAME,
            "nvme_smart_logs",
            f"{self.nvme_smart_logs!r} is not a folder",
        )
        bad = [m for m in self.mounts if not m.startswith("/")]
        check(not bad, NAME, "mounts", f"mount points are absolute paths, got {bad[0] if bad else ''!r}")


def _span(since: str, start: float | None) -> str:
    from datetime import datetime, timezone

    if start is None:
        return "since boot"
    when = datetime.fromtimestamp(start, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"since {when} ({since})"


def is_this_node(root: str) -> bool:
    return os.path.realpath(root) == "/"


def kernel_items(params: NodeHealthParams, start: float | None, settings: dict[str, Any]) -> list[Item]:
    """The kernel-log counts (``klog``); the log of this node only when ``root`` is this node's."""
    from hpcbench.probes.node_health import klog

    span = _span(params.since, start)
    if params.kernel_log in ("auto", "journalctl", "dmesg") and not is_this_node(params.root):
        return missing(klog.METRICS, f"root is {params.root}, not this node: give kernel_log = <file>")
    log = read_kernel_log(params.kernel_log)
    settings["kernel_log_source"] = log.source
    if log.text is None:
        return klog.items(None, log.unsupported or "no text", span)
    booted = boot_time(os.path.join(params.root, "proc/stat"))
    return klog.items(klog.scan(log.text, booted, start), "", span)


class NodeHealth:
    """EDAC, PCIe AER, NVMe SMART, kernel-log errors, memory, CPUs and mounts: no load, seconds."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "node health (no load): EDAC DIMM errors, PCIe AER, NVMe SMART, kernel-log errors, memory, mounts"
    )
    Params: ClassVar[type] = NodeHealthParams
    #: nvme-cli is needed only where NVMe drives exist: checked by the probe, item by item
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: reads only: run with the run's other no-load checks in one child (hpcbench.engine.batch)
    no_load: ClassVar[bool] = True

    def __init__(self, runner: nvme.Runner | None = None) -> None:
        self.runner = runner  # None: nvme-cli (tests inject one that replays captured output)

    def run(self, params: NodeHealthParams, ctx: ProbeContext) -> list[Measurement]:
        # here, not at the top: `hpcbench list` imports only the header
        from hpcbench.probes.node_health import aer, edac, nvme, system

        root = params.root
        start = timeparse.since(params.since)
        settings: dict[str, Any] = {
            "root": root,
            "since": params.since,
            "since_epoch": start,
            "kernel_log": params.kernel_log,
            "mounts": list(params.mounts),
        }
        runner = self.runner
        if runner is None and params.nvme_smart_logs:
            runner = nvme.replay_from(params.nvme_smart_logs)
            settings["nvme_smart_logs"] = params.nvme_smart_logs
        controllers = edac.read_edac(root)
        if controllers is not None:
            settings["edac"] = [
                {
                    "controller": c.name,
                    "mc_name": c.mc_name,
                    "ce": c.ce,
                    "ue": c.ue,
                    "dimms": [d.__dict__ for d in c.dimms],
                }
                for c in controllers
            ]
        devices = aer.read_aer(root)
        items = [
            *edac.items(controllers, root),
            *aer.items(devices, root),
            *nvme.items(root, params.nvme, runner, params.nvme_timeout_s, settings),
            *kernel_items(params, start, settings),
            system.memory_item(root),
            *system.cpu_items(root),
            system.numa_item(root),
            system.mounts_item(root, list(params.mounts)),
        ]
        return to_measurements(items, ctx.subject, settings, lambda m: _CONVENTIONS[m])
