"""The metrics node_health reports, by the reader that measures each: the probe's header lists
them from here (``hpcbench list`` imports the header, not the readers), and each reader reports
its own under these names (tests/probes/node_health pins that each reader's table agrees)."""

from __future__ import annotations

EDAC = ("edac_uncorrected", "edac_corrected")
#: in the order of ``aer.KINDS``
AER = ("aer_fatal", "aer_nonfatal", "aer_correctable")
NVME = (
    "nvme_critical_warnings",
    "nvme_media_errors",
    "nvme_spare_below_threshold",
    "nvme_percent_used",
    "nvme_smart_errors",
)
#: the kernel log's kinds, in the order they are reported
KLOG = (
    "kernel_hw_errors",
    "kernel_hung_tasks",
    "kernel_lockups",
    "kernel_io_errors",
    "kernel_nvme_timeouts",
    "kernel_fs_errors",
    "kernel_oom_kills",
    "kernel_link_errors",
)
SYSTEM = ("memory_gib", "online_cpus", "cpus_offline", "memory_numa_balance", "mounts_missing")
