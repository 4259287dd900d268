"""PCI devices as sysfs shows them: addresses, vendors and classes, NVIDIA GPUs on the bus, and
where a device sits in the PCIe tree (its path from the host bridge, NUMA node, local CPUs).

Pure functions of text where they can be; the readers take the sysfs folder as a parameter
(``/sys/bus/pci/devices`` on a real node, a fixture tree in tests) and return None where it
cannot be read, never raising for a missing file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

PCI_DEVICES = "/sys/bus/pci/devices"
#: PCI class codes of GPUs: VGA controller, 3D controller (NVSwitches are bridges: not counted)
GPU_PCI_CLASSES = ("0x0300", "0x0302")
NVIDIA_VENDOR = "0x10de"


def read_text(path: str) -> str | None:
    """A sysfs file's text, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def normalize_bus(text: str | None) -> str | None:
    """A PCI address as ``dddd:bb:dd`` in lower case: ``00000000:3B:00.0`` and ``0000:3b:00`` agree."""
    if not text:
        return None
    parts = text.strip().lower().replace("pci:", "").split(":")
    if len(parts) == 2:  # bb:dd
        parts = ["0", *parts]
    if len(parts) < 3:
        return None
    try:
        return f"{int(parts[0], 16):04x}:{int(parts[1], 16):02x}:{int(parts[2].split('.')[0], 16):02x}"
    except ValueError:
        return None


def is_nvidia_gpu(vendor: str, pci_class: str) -> bool:
    """Whether a PCI function (sysfs ``vendor`` and ``class`` text) is an NVIDIA GPU."""
    return vendor.strip().lower() == NVIDIA_VENDOR and pci_class.strip().lower()[:6] in GPU_PCI_CLASSES


def pci_gpus(root: str = PCI_DEVICES) -> list[str] | None:
    """Normalized PCI addresses of the NVIDIA GPUs on the PCI bus (sysfs), whatever the driver
    sees; None when sysfs cannot be read."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    found = []
    for entry in entries:
        vendor, pci_class = read_text(f"{root}/{entry}/vendor"), read_text(f"{root}/{entry}/class")
        if vendor and pci_class and is_nvidia_gpu(vendor, pci_class):
            found.append(normalize_bus(entry) or entry)
    return found


#: PCI class codes (``class`` file, first 4 hex digits) as an operator names the device
CLASS_NAMES = {
    "0x0100": "SCSI controller",
    "0x0104": "RAID controller",
    "0x0106": "SATA controller",
    "0x0107": "SAS controller",
    "0x0108": "NVMe",
    "0x0200": "NIC",
    "0x0207": "InfiniBand NIC",
    "0x0300": "GPU",
    "0x0302": "GPU",
    "0x0600": "host bridge",
    "0x0604": "PCI bridge",
    "0x0680": "bridge",
    "0x0c03": "USB controller",
    "0x1200": "accelerator",
}
#: PCI vendor ids of the hardware found in GPU nodes
VENDOR_NAMES = {
    "0x1000": "Broadcom/LSI",
    "0x1002": "AMD",
    "0x1022": "AMD",
    "0x10de": "NVIDIA",
    "0x1344": "Micron",
    "0x144d": "Samsung",
    "0x14e4": "Broadcom",
    "0x15b3": "Mellanox",
    "0x15b7": "SanDisk/WD",
    "0x1a03": "ASPEED",
    "0x1af4": "virtio",
    "0x1c5c": "SK hynix",
    "0x1d0f": "Amazon",
    "0x1dd8": "AMD Pensando",
    "0x1e0f": "KIOXIA",
    "0x8086": "Intel",
}


def device_kind(vendor: str | None, pci_class: str | None) -> str:
    """What a PCI function is, in an operator's words: GPU, NIC, InfiniBand NIC, NVMe, NVSwitch, ..."""
    code = (pci_class or "").strip().lower()[:6]
    if (vendor or "").strip().lower() == NVIDIA_VENDOR and code == "0x0680":
        return "NVSwitch"
    return CLASS_NAMES.get(code, f"class {code}" if code else "unknown class")


def describe_device(root: str, entry: str) -> str:
    """``0000:18:00.0 (GPU, NVIDIA, driver nvidia)`` from the device's sysfs folder under ``root``."""
    folder = f"{root}/{entry}"
    vendor = (read_text(f"{folder}/vendor") or "").strip().lower()
    kind = device_kind(vendor, read_text(f"{folder}/class"))
    parts = [kind, VENDOR_NAMES.get(vendor, f"vendor {vendor}" if vendor else "unknown vendor")]
    try:
        parts.append(f"driver {os.path.basename(os.readlink(f'{folder}/driver'))}")
    except OSError:
        parts.append("no driver")
    return f"{entry} ({', '.join(parts)})"


# ---------------------------------------------------------------------------
# Where a device sits: its path through the PCIe tree, NUMA node and local CPUs.
# ``root`` is the file system root ("/" on a node, a fixture tree in tests).

_ADDRESS = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_HOST_BRIDGE = re.compile(r"^pci[0-9a-f]{4,8}:[0-9a-f]{2}$")


def full_address(text: str | None) -> str | None:
    """A PCI function as ``dddd:bb:dd.f`` in lower case: NVML's ``00000000:19:00.0`` -> ``0000:19:00.0``."""
    bus = normalize_bus(text)
    if bus is None or text is None:
        return None
    _, dot, function = text.strip().rpartition(".")
    try:
        return f"{bus}.{int(function, 16) if dot else 0}"
    except ValueError:
        return None


@dataclass(frozen=True)
class PciPath:
    """A PCI function's place in the tree: its host bridge and the functions from the root port down.

    ``chain`` ends with the function itself: ``("0000:15:01.0", "0000:16:00.0", "0000:17:01.0",
    "0000:19:00.0")`` is a GPU behind a PCIe switch (upstream port 16:00.0, downstream port 17:01.0).
    """

    host_bridge: str
    chain: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.chain[-1]


def path_of(sysfs_path: str) -> PciPath | None:
    """The PciPath of a resolved sysfs path (``/sys/devices/pci0000:15/0000:15:01.0/.../0000:19:00.0``,
    or a path below a PCI function, such as a network interface's); None when no PCI function is in it."""
    parts = [p for p in sysfs_path.split("/") if p]
    for i, part in enumerate(parts):
        if _HOST_BRIDGE.match(part):
            chain: list[str] = []
            for p in parts[i + 1 :]:
                if not _ADDRESS.match(p):
                    break
                chain.append(p)
            return PciPath(part, tuple(chain)) if chain else None
    return None


def device_dir(root: str, address: str) -> str:
    return os.path.join(root, "sys/bus/pci/devices", address)


def pci_path(root: str, address: str) -> PciPath | None:
    """The PciPath of a PCI function from sysfs (``sys/bus/pci/devices/<address>`` resolved)."""
    path = device_dir(root, address)
    if not os.path.exists(path):
        return None
    return path_of(os.path.realpath(path))


def _int_or_none(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def numa_node(root: str, address: str) -> int | None:
    """The NUMA node sysfs gives a PCI function; None when unknown (the kernel's -1, or unreadable)."""
    value = _int_or_none(read_text(os.path.join(device_dir(root, address), "numa_node")))
    return value if value is not None and value >= 0 else None


def local_cpulist(root: str, address: str) -> str | None:
    """The CPUs near a PCI function (its ``local_cpulist``), e.g. ``0-55,112-167``."""
    text = read_text(os.path.join(device_dir(root, address), "local_cpulist"))
    return text.strip() if text and text.strip() else None


def driver_name(device_path: str) -> str | None:
    """The driver bound to a device folder (the name its ``driver`` link points at)."""
    link = os.path.join(device_path, "driver")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link)) or None


#: nvidia-smi topo -m's levels, nearest first
LEVELS = ("X", "PIX", "PXB", "PHB", "NODE", "SYS")


def topo_level(a: PciPath, b: PciPath, numa_a: int | None, numa_b: int | None) -> str:
    """The ``nvidia-smi topo -m`` level between two PCI functions (hpcbench.hw.net.topology's
    docstring tells the levels): other host bridges -> NODE or SYS by NUMA node; the same host
    bridge but no shared bridge -> PHB; below one switch -> PIX; nested switches -> PXB."""
    if a.chain == b.chain:
        return "X"
    if a.host_bridge != b.host_bridge:
        if numa_a is None and numa_b is None:
            return "NODE"
        return "NODE" if numa_a == numa_b else "SYS"
    shared = 0
    for x, y in zip(a.chain, b.chain, strict=False):
        if x != y:
            break
        shared += 1
    if shared == 0:
        return "PHB"
    below_a, below_b = len(a.chain) - shared, len(b.chain) - shared
    return "PIX" if below_a <= 2 and below_b <= 2 else "PXB"
