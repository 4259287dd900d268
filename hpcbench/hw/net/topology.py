"""GPU <-> NIC topology from sysfs PCIe paths, as ``nvidia-smi topo -m`` names it, and GPUDirect RDMA.

Levels, nearest first (``nvidia-smi topo -m``'s legend):

- ``PIX``: at most a single PCIe bridge (switch) between the two: both below one switch, or two
  functions of one device;
- ``PXB``: several PCIe bridges, without the host bridge (nested switches);
- ``PHB``: through a PCIe host bridge (different root ports of one root complex);
- ``NODE``: between host bridges within a NUMA node;
- ``SYS``: across the SMP interconnect between NUMA nodes (UPI, Infinity Fabric).

From the two functions' paths (``hpcbench.node.pci.PciPath``): other host bridges -> NODE or SYS by
their NUMA nodes (unknown on both, as a one-node machine reports -1: NODE); the same host bridge
but no shared bridge -> PHB; else the paths below the deepest shared bridge: at most one
downstream port on each side -> PIX (one switch), deeper -> PXB. GPU pairs show their PCIe
level too: NVLink (nvidia-smi's ``NV#``) is not read here.

GPUDirect RDMA is possible when ``nvidia_peermem`` (or Mellanox's older ``nv_peer_mem``) is
loaded, or through dma-buf: the NVIDIA open kernel module on a kernel >= 5.12 (how NCCL and
``perftest --use_cuda_dmabuf`` register GPU memory without nvidia_peermem).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcbench.core.items import Item
from hpcbench.node.pci import LEVELS, PciPath, full_address, local_cpulist, numa_node, pci_path, read_text
from hpcbench.node.pci import topo_level as level

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.node.inventory import Inventory
    from hpcbench.node.nics import RdmaPort

LEGEND = (
    "  X    = Self",
    "  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)",
    "  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges"
    " within a NUMA node",
    "  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)",
    "  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)",
    "  PIX  = Connection traversing at most a single PCIe bridge",
    "  (GPU pairs: their PCIe path; NVLink, nvidia-smi's NV#, is not read here)",
)
METRICS = ("gpus_near_nic", "gpus_without_near_nic", "gpus_sharing_nic", "gpudirect_rdma")
PEER_MODULES = ("nvidia_peermem", "nv_peer_mem")
DMABUF_KERNEL = (5, 12)


@dataclass(frozen=True)
class Device:
    """A GPU or an RDMA NIC in the matrix."""

    column: str  # GPU0, NIC3
    name: str  # gpu0, mlx5_3
    address: str | None
    path: PciPath | None
    numa: int | None
    cpus: str | None


def gpu_devices(root: str, inventory: Inventory) -> list[Device]:
    """The inventory's GPUs (NVML's bus ids) placed in sysfs."""
    out = []
    for d in inventory.gpus.devices:
        address = full_address(d.pci_bus_id)
        out.append(
            Device(
                f"GPU{d.index}",
                f"gpu{d.index}",
                address,
                pci_path(root, address) if address else None,
                numa_node(root, address) if address else None,
                local_cpulist(root, address) if address else None,
            )
        )
    return out


def nic_devices(root: str, ports: list[RdmaPort]) -> list[Device]:
    """One entry per RDMA device (as nvidia-smi's NIC legend), in device order."""
    seen: dict[str, Device] = {}
    for p in ports:
        if p.device in seen:
            continue
        a = p.pci_address
        path = pci_path(root, a) if a else None
        seen[p.device] = Device(
            f"NIC{len(seen)}", p.device, a, path, p.numa_node, local_cpulist(root, a) if a else None
        )
    return list(seen.values())


def between(x: Device, y: Device) -> str:
    if x.path is None or y.path is None:
        return "?"
    return level(x.path, y.path, x.numa, y.numa)


def nearest_gpu(nic: Device, gpus: list[Device]) -> Device | None:
    """The GPU nearest an RDMA NIC (ties: the first GPU); None when there is none."""
    ranked = [(LEVELS.index(lv), i, g) for i, g in enumerate(gpus) if (lv := between(g, nic)) in LEVELS]
    return min(ranked)[2] if ranked else (gpus[0] if gpus else None)


def nearest(gpu: Device, nics: list[Device]) -> tuple[Device, str] | None:
    """The NIC nearest a GPU and its level (ties: the first NIC)."""
    ranked = [(LEVELS.index(lv), i, n, lv) for i, n in enumerate(nics) if (lv := between(gpu, n)) in LEVELS]
    if not ranked:
        return None
    _, _, nic, lv = min(ranked)
    return nic, lv


def render(gpus: list[Device], nics: list[Device]) -> str:
    """The matrix as ``nvidia-smi topo -m`` prints it (columns 8 wide), with its legends."""
    cols = gpus + nics
    head = "\t" + "\t".join(d.column for d in cols) + "\tCPU Affinity\tNUMA Affinity"
    lines = [head.expandtabs(8)]
    for row in cols:
        cells = [" X" if row is col else between(row, col) for col in cols]
        if row in gpus:
            cells += [row.cpus or "N/A", "N/A" if row.numa is None else str(row.numa)]
        lines.append((row.column + "\t" + "\t".join(cells)).expandtabs(8).rstrip())
    lines += ["", "Legend:", "", *LEGEND]
    if nics:
        lines += ["", "NIC Legend:", "", *(f"  {n.column}: {n.name}" for n in nics)]
    return "\n".join(lines)


def near_items(gpus: list[Device], nics: list[Device], near: str) -> list[Item]:
    """``gpus_near_nic`` and ``gpus_without_near_nic``: GPUs with an RDMA NIC at ``near`` or nearer."""
    limit = LEVELS.index(near)
    good, bad = [], []
    for g in gpus:
        found = nearest(g, nics)
        if g.path is None:
            bad.append(f"{g.name} ({g.address or 'no PCI address'}) is not in sysfs")
        elif found is None:
            bad.append(f"{g.name}: no RDMA NIC could be placed")
        elif LEVELS.index(found[1]) <= limit:
            good.append(f"{g.name} {found[0].name} {found[1]}")
        else:
            nic, lv = found
            where = f"NUMA {g.numa}" if g.numa is not None else "NUMA ?"
            nic_where = f"NUMA {nic.numa}" if nic.numa is not None else "NUMA ?"
            bad.append(
                f"{g.name} ({g.address}, {where}) has no RDMA NIC under its PCIe switch: the nearest is "
                f"{nic.name} ({nic.address}, {nic_where}) at {lv}"
            )
    near_text = f"{len(good)} of {len(gpus)} GPUs have an RDMA NIC at {near} or nearer"
    listed = near_text + (f": {', '.join(good)}" if good else "") + (f"; {'; '.join(bad)}" if bad else "")
    return [
        Item("gpus_near_nic", float(len(good)), "GPUs", True, listed),
        Item("gpus_without_near_nic", float(len(bad)), "GPUs", False, "; ".join(bad) or near_text),
    ]


def sharing_item(gpus: list[Device], nics: list[Device]) -> Item:
    """``gpus_sharing_nic``: GPUs whose nearest RDMA NIC is also another GPU's nearest (each GPU of an
    HGX has its own rail; two GPUs on one NIC halve what each can send)."""
    owners: dict[str, list[str]] = {}
    for g in gpus:
        found = nearest(g, nics)
        if found is not None:
            owners.setdefault(found[0].name, []).append(g.name)
    shared = {nic: gs for nic, gs in owners.items() if len(gs) > 1}
    count = sum(len(gs) for gs in shared.values())
    detail = (
        "; ".join(
            f"{' and '.join(gs)} share {nic} as their nearest NIC" for nic, gs in sorted(shared.items())
        )
        or f"each of {len(gpus)} GPUs has a nearest RDMA NIC of its own"
    )
    return Item("gpus_sharing_nic", float(count), "GPUs", False, detail)


def kernel_at_least(release: str | None, wanted: tuple[int, int]) -> bool:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= wanted


def gpudirect(modules: list[str], nvidia_version: str | None, kernel: str | None) -> tuple[bool, str]:
    """(possible, why) from the loaded modules, /proc/driver/nvidia/version and the kernel release."""
    loaded = [m for m in PEER_MODULES if m in modules]
    if loaded:
        return True, f"{loaded[0]} is loaded (GPUDirect RDMA through peer memory)"
    version = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", nvidia_version or "")
    open_module = "Open Kernel Module" in (nvidia_version or "")
    if open_module and kernel_at_least(kernel, DMABUF_KERNEL):
        return True, (
            f"dma-buf: NVIDIA open kernel module {version.group(1) if version else '?'} on kernel {kernel} "
            f"(>= {DMABUF_KERNEL[0]}.{DMABUF_KERNEL[1]}); nvidia_peermem is not loaded"
        )
    module = (
        "no NVIDIA kernel module version (/proc/driver/nvidia/version unreadable)"
        if nvidia_version is None
        else f"the NVIDIA {'open' if open_module else 'proprietary'} kernel module "
        f"{version.group(1) if version else '?'} on kernel {kernel or '?'} offers no dma-buf"
    )
    return False, (
        f"neither nvidia_peermem nor nv_peer_mem is loaded and {module}: GPUDirect RDMA is off "
        "(modprobe nvidia_peermem)"
    )


def loaded_modules(root: str) -> list[str]:
    """Kernel modules loaded: /proc/modules' first column, and the /sys/module folders."""
    names = {
        line.split()[0]
        for line in (read_text(os.path.join(root, "proc/modules")) or "").splitlines()
        if line.split()
    }
    with contextlib.suppress(OSError):
        names |= {n for n in os.listdir(os.path.join(root, "sys/module")) if n in PEER_MODULES}
    return sorted(names)


def gpudirect_at(root: str) -> tuple[bool, str]:
    """``gpudirect`` from what ``root``'s /proc and /sys say."""
    release = (read_text(os.path.join(root, "proc/sys/kernel/osrelease")) or "").strip() or None
    return gpudirect(
        loaded_modules(root), read_text(os.path.join(root, "proc/driver/nvidia/version")), release
    )


def gpudirect_item(root: str) -> Item:
    possible, why = gpudirect_at(root)
    return Item("gpudirect_rdma", 1.0 if possible else 0.0, "flag", True, why)
