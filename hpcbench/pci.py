"""PCI devices as sysfs shows them: addresses, vendors and classes, NVIDIA GPUs on the bus.

Pure functions of text where they can be; the readers take the sysfs folder as a parameter
(``/sys/bus/pci/devices`` on a real node, a fixture tree in tests) and return None where it
cannot be read, never raising for a missing file.
"""

from __future__ import annotations

import os

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
