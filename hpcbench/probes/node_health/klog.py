"""Kernel-log errors: machine checks, hung tasks, lockups, I/O, NVMe and file-system errors, OOM kills,
PCIe links going down and NIC firmware/cable events.

``scan`` is pure: it classifies every line of a kernel log (read by ``hw.kernel_log``:
journalctl, dmesg or a file) into at most one kind, first match wins in the order of
``KINDS``, and keeps for each kind the number of lines and the first one. Lines older than
``start`` are left out; lines whose time is unknown are kept (they cannot be excluded).

It counts *lines* in the kernel's own words, not events: one machine check may print a
record line and a "Machine check events logged" line. What is deliberately not counted:
user-space crashes (``segfault at``, ``traps: ... general protection fault``, the ``Code:``
line after them) are a program's bug, not the node's; I/O errors on optical and floppy
drives (``sr0``: a BMC's virtual media) are not the node's storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcbench.core.items import Item, missing
from hpcbench.hw.kernel_log import line_time
from hpcbench.probes.node_health import metrics as names

_QUOTE_CHARS = 240


@dataclass(frozen=True)
class Kind:
    metric: str
    what: str  # "hung task", in the reason: "2 hung task lines since boot"
    patterns: tuple[re.Pattern[str], ...]


def _p(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


#: classification order (a line counts once, in the first kind it matches)
KINDS = (
    Kind(
        "kernel_hw_errors",
        "machine-check / hardware-error",
        _p(
            # an MCE record: "mce: [Hardware Error]: CPU 3: Machine Check: 0 Bank 7: ..."
            r"Machine Check(?: Exception)?: [0-9a-fA-F]+ Bank \d+",
            r"Machine check events logged",  # corrected MCEs handed to mcelog/rasdaemon
            r"\[Hardware Error\]: Hardware error from APEI",  # a firmware-first (GHES) error record
            r"\bEDAC (?:\w+ )?MC\d+: \d+ (?:CE|UE)\b",  # EDAC's decoded DRAM error
            r"\bMemory failure: 0x[0-9a-f]+:",  # a page poisoned and offlined
            r"\bUncorrected hardware memory error",
            # AMD's decoder (edac_mce_amd), one STATUS line per record, often without a "Machine
            # check events logged" line: "[Hardware Error]: CPU:2 (15:2:0) MC2_STATUS[-|CE|...]: 0x9844..."
            r"\[Hardware Error\]: .*\bMC\d+_STATUS\[",
            # CPU thermal throttling (the "temperature/speed normal" line that follows is not counted)
            r"\bCPU\d+: (?:Core|Package) temperature above threshold, cpu clock throttled",
        ),
    ),
    Kind(
        "kernel_link_errors",
        "PCIe link-down or NIC firmware/cable",
        _p(
            # PCIe hot-plug: a slot's link went down or its card vanished (surprise removal);
            # 5.x+ "pcieport 0000:3c:06.0: pciehp: Slot(180): Link Down",
            # 4.x "pciehp 0000:02:05.0:pcie24: slot(6): Link Down event"
            r"\bpciehp\b.*\b[Ss]lot\([^)]*\): (?:Link Down|Card not present)",
            # mlx5 firmware health: the poll found the device unhealthy, or a recovery ran
            r"\bmlx5_core \S+: .*(?:device's health compromised|health recovery flow|Health issue observed)",
            # mlx5 module/cable events that are errors (a cable plugged is not)
            r"\bmlx5_core \S+: Port module event\[error\]",
            r"\bmlx5_core \S+: Port module event: module \d+, Cable unplugged",
        ),
    ),
    Kind(
        "kernel_nvme_timeouts",
        "NVMe timeout",
        _p(
            # 5.x "I/O 12 QID 4 timeout, aborting", 6.x "I/O tag 418 (f1a2) opcode 0x1 (Write) QID 3 timeout"
            r"\bnvme nvme\d+: I/O (?:tag )?\d+ .*\btimeout\b",
            r"\bnvme nvme\d+: controller is down; will reset",
            r"\bnvme nvme\d+: Device not ready; aborting",
            r"\bnvme nvme\d+: Removing after probe failure",  # the controller is gone from the bus
        ),
    ),
    Kind(
        "kernel_fs_errors",
        "file-system error",
        _p(
            r"\bEXT4-fs error\b",
            r"\bEXT4-fs \([^)]+\): Remounting filesystem read-only",
            r"\bAborting journal on device\b",
            r"\bXFS \([^)]+\): (?:Corruption|Metadata corruption|Internal error|metadata I/O error|"
            r"[Ll]og I/O [Ee]rror|Filesystem has been shut down|xfs_do_force_shutdown)",
            r"\bBTRFS (?:error|critical) \(device",
        ),
    ),
    Kind(
        "kernel_io_errors",
        "block I/O error",
        _p(
            # "blk_update_request: I/O error, dev sda, sector 1", "print_req_error: ...", 5.x+ bare
            r"\bI/O error, dev (?!sr\d|fd\d)\S+, sector\b",
            r"\b(?:critical )?(?:medium|target|nexus|transport|protection|space allocation) error, "
            r"dev (?!sr\d|fd\d)\S+, sector\b",
            r"\bBuffer I/O error on dev(?:ice)? (?!sr\d|fd\d)\S+",
        ),
    ),
    Kind("kernel_hung_tasks", "hung task", _p(r"\bINFO: task .+:\d+ blocked for more than \d+ seconds")),
    Kind(
        "kernel_lockups",
        "soft/hard lockup or RCU stall",
        _p(
            r"\bBUG: soft lockup - CPU#\d+ stuck for",
            r"\bWatchdog detected hard LOCKUP on cpu",
            r"\brcu_\w+ (?:self-)?detected stalls?\b",
        ),
    ),
    Kind("kernel_oom_kills", "OOM kill", _p(r"(?i)\bout of memory: kill(?:ed)? process \d+")),
)
#: the metrics in the order they are reported
METRICS = names.KLOG


@dataclass(frozen=True)
class Found:
    """The lines of one kind: how many, and the first (what an operator reads first)."""

    count: int
    first: str
    first_time: float | None


def classify(line: str) -> str | None:
    """The metric a kernel log line counts in, or None (most lines)."""
    for kind in KINDS:
        if any(p.search(line) for p in kind.patterns):
            return kind.metric
    return None


def scan(text: str, booted: float | None, start: float | None) -> dict[str, Found]:
    """Every kind's lines in ``text`` at or after ``start`` (epoch seconds; None: all)."""
    counts: dict[str, int] = {}
    first: dict[str, tuple[str, float | None]] = {}
    for line in text.splitlines():
        metric = classify(line)
        if metric is None:
            continue
        when = line_time(line, booted)
        if start is not None and when is not None and when < start:
            continue
        counts[metric] = counts.get(metric, 0) + 1
        first.setdefault(metric, (line.strip(), when))
    return {m: Found(n, *first[m]) for m, n in counts.items()}


def _quote(line: str) -> str:
    return line if len(line) <= _QUOTE_CHARS else line[: _QUOTE_CHARS - 3] + "..."


def items(found: dict[str, Found] | None, why_unreadable: str, span: str) -> list[Item]:
    """One count per kind; the detail quotes the first line. ``span``: "since boot", "since ..."."""
    if found is None:
        return missing(METRICS, f"kernel log not readable: {why_unreadable}")
    what = {k.metric: k.what for k in KINDS}
    out = []
    for metric in METRICS:
        f = found.get(metric)
        if f is None:
            out.append(Item(metric, 0.0, detail=f"no {what[metric]} line {span}"))
        else:
            out.append(
                Item(
                    metric,
                    float(f.count),
                    detail=f"{f.count} {what[metric]} line(s) {span}; first: {_quote(f.first)}",
                )
            )
    return out
