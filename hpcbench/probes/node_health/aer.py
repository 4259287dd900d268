"""PCIe AER (Advanced Error Reporting) counters per device, the device named.

Since Linux 4.19 every PCIe function whose errors the kernel handles (native AER) has three
files under ``/sys/bus/pci/devices/<address>/``, counting since boot:
``aer_dev_correctable`` (RxErr, BadTLP, BadDLLP, Rollover, Timeout, NonFatalErr, CorrIntErr,
HeaderOF, then ``TOTAL_ERR_COR``), ``aer_dev_nonfatal`` and ``aer_dev_fatal`` (Undefined, DLP,
SDES, TLP, FCP, CmpltTO, CmpltAbrt, UnxCmplt, RxOF, MalfTLP, ECRC, UnsupReq, ACSViol,
UncorrIntErr, BlockedTLP, AtomicOpBlocked, TLPBlockedErr, PoisonTLPBlocked, then
``TOTAL_ERR_NONFATAL`` / ``TOTAL_ERR_FATAL``), one ``name count`` per line
(drivers/pci/pcie/aer.c, Documentation/ABI/testing/sysfs-bus-pci-devices-aer_stats).
Older kernels print fewer names; ``parse_counters`` takes whatever lines are there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hpcbench.core.items import Item, missing
from hpcbench.node.pci import describe_device, read_text
from hpcbench.probes.node_health import metrics as names

PCI_DEVICES = "sys/bus/pci/devices"
#: (metric, sysfs file, the kernel's total line, what the count is)
KINDS = (
    ("aer_fatal", "aer_dev_fatal", "TOTAL_ERR_FATAL", "fatal"),
    ("aer_nonfatal", "aer_dev_nonfatal", "TOTAL_ERR_NONFATAL", "non-fatal"),
    ("aer_correctable", "aer_dev_correctable", "TOTAL_ERR_COR", "correctable"),
)
METRICS = names.AER  # the metrics of KINDS, in its order
#: devices named in a detail, the most errors first (a flapping switch can touch dozens)
NAMED = 5


def parse_counters(text: str) -> dict[str, int]:
    """``{"RxErr": 0, ..., "TOTAL_ERR_COR": 3}`` from an ``aer_dev_*`` file; lines that are not
    ``name count`` are ignored."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def total(counters: dict[str, int], total_key: str) -> int:
    """The kernel's TOTAL_ line, else the sum of the named errors."""
    if total_key in counters:
        return counters[total_key]
    return sum(v for k, v in counters.items() if not k.startswith("TOTAL_"))


@dataclass(frozen=True)
class DeviceAer:
    """One PCI function's AER counters since boot: file name -> error name -> count."""

    address: str
    name: str  # "0000:18:00.0 (GPU, NVIDIA, driver nvidia)"
    counters: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, filename: str, total_key: str) -> int:
        return total(self.counters.get(filename, {}), total_key)

    def breakdown(self, filename: str) -> str:
        """``DLP 1, CmpltTO 2``: the named errors that occurred."""
        c = self.counters.get(filename, {})
        return ", ".join(f"{k} {v}" for k, v in c.items() if v and not k.startswith("TOTAL_"))


def read_aer(root: str) -> list[DeviceAer] | None:
    """The AER counters of every PCI function under ``root`` that has them; None when none has."""
    base = os.path.join(root, PCI_DEVICES)
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return None
    out = []
    for entry in entries:
        counters = {}
        for _, filename, _, _ in KINDS:
            text = read_text(f"{base}/{entry}/{filename}")
            if text is not None:
                counters[filename] = parse_counters(text)
        if counters:
            out.append(DeviceAer(entry, describe_device(base, entry), counters))
    return out or None


def items(devices: list[DeviceAer] | None, root: str) -> list[Item]:
    """``aer_fatal``, ``aer_nonfatal``, ``aer_correctable``: sums over the devices, each device with
    errors named with its kind (GPU, NIC, NVMe, ...), vendor, driver and the errors that occurred."""
    if devices is None:
        return missing(
            METRICS,
            f"no PCI device has AER counters ({os.path.join(root, PCI_DEVICES)}/*/aer_dev_* absent: "
            "a VM, a kernel before 4.19, or AER handled by the firmware)",
        )
    out = []
    for metric, filename, total_key, what in KINDS:
        per_device = [(d, d.total(filename, total_key)) for d in devices]
        count = sum(n for _, n in per_device)
        worst = sorted(((d, n) for d, n in per_device if n), key=lambda dn: -dn[1])  # the worst first
        bad = [f"{d.name} {n} ({d.breakdown(filename) or total_key})" for d, n in worst[:NAMED]]
        if len(worst) > NAMED:
            bad.append(f"{len(worst) - NAMED} more device(s)")
        detail = f"{count} {what} PCIe errors since boot on {len(devices)} device(s) with AER"
        out.append(Item(metric, float(count), detail=detail + (f": {'; '.join(bad)}" if bad else "")))
    return out
