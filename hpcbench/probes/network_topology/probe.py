"""The network_topology probe (node): GPU <-> NIC PCIe levels, a nearest NIC of its own per GPU,
GPUDirect RDMA, from sysfs; and link flaps in the kernel log since ``since``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core import timeparse
from hpcbench.core.errors import ProbeSkip
from hpcbench.core.items import Item, missing, to_measurements
from hpcbench.hw.kernel_log import boot_time, read_kernel_log
from hpcbench.hw.net import topology
from hpcbench.node.pci import device_dir
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.node import nics
    from hpcbench.node.inventory import Inventory

NAME = "network_topology"


@dataclass(frozen=True)
class NetworkTopologyParams:
    near_level: str = field(
        default="PXB", metadata={"help": "a GPU's NIC is near at this level or nearer: PIX or PXB"}
    )
    since: str = field(
        default="boot", metadata={"help": "link flaps since: boot, a duration (24h, 7d) or an ISO time"}
    )
    kernel_log: str = field(
        default="auto", metadata={"help": "auto (journalctl, else dmesg), journalctl, dmesg, none or a file"}
    )
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )

    def __post_init__(self) -> None:
        try:
            timeparse.since(self.since, now=0.0)
        except ValueError as exc:
            check(False, NAME, "since", str(exc))
        check(self.near_level in ("PIX", "PXB"), NAME, "near_level", f"PIX or PXB, not {self.near_level!r}")
        check(bool(self.root), NAME, "root", "must not be empty")


def topology_items(
    root: str, inventory: Inventory, ports: list[nics.RdmaPort], near: str
) -> tuple[list[Item], dict[str, Any]]:

    gpus = topology.gpu_devices(root, inventory)
    if not gpus:
        return missing((*topology.METRICS, "acs_redirect"), "no GPU on this node"), {}
    nic_devs = topology.nic_devices(root, ports)
    if not nic_devs:
        return missing((*topology.METRICS, "acs_redirect"), "no RDMA device: no NIC for the GPUs to use"), {}
    matrix = topology.render(gpus, nic_devs)
    nearest = {
        g.name: {"nic": f[0].name, "level": f[1]} if (f := topology.nearest(g, nic_devs)) else None
        for g in gpus
    }
    items = topology.near_items(gpus, nic_devs, near) + [
        topology.sharing_item(gpus, nic_devs),
        topology.gpudirect_item(root),
        acs_of(root, gpus, nic_devs),
    ]
    return items, {"topology": matrix, "nearest_nic": nearest, "near_level": near}


class NetworkTopology:
    """GPU <-> RDMA NIC topology and GPUDirect RDMA."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Network topology: each GPU's nearest RDMA NIC (nvidia-smi topo -m levels) and GPUDirect RDMA"
    )
    Params: ClassVar[type] = NetworkTopologyParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = (*topology.METRICS, "acs_redirect", "link_flaps")
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True
    #: reads sysfs and the kernel log only: runs with the run's other no-load checks in one child
    no_load: ClassVar[bool] = True

    def run(self, params: NetworkTopologyParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        from hpcbench.node import nics

        ports = nics.rdma_ports(params.root)
        items, settings = topology_items(params.root, ctx.inventory, ports, params.near_level)
        settings = {"root": params.root, **settings}
        items.append(flaps(params, settings))
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention="sysfs")


def flaps(p: NetworkTopologyParams, settings: dict[str, Any]) -> Item:
    """``link_flaps`` since ``p.since``; the log of this node only when ``root`` is this node's."""
    from hpcbench.hw.net.flaps import flap_item, flap_lines

    start = timeparse.since(p.since)
    span = "since boot" if start is None else f"since {p.since}"
    if p.kernel_log in ("auto", "journalctl", "dmesg") and os.path.realpath(p.root) != "/":
        return Item("link_flaps", not_measured=f"root is {p.root}, not this node: give kernel_log = <file>")
    log = read_kernel_log(p.kernel_log)
    settings["kernel_log_source"] = log.source
    if log.text is None:
        return Item("link_flaps", not_measured=log.unsupported or "no kernel log")
    booted = boot_time(os.path.join(p.root, "proc/stat"))
    return flap_item(flap_lines(log.text, booted, start), span)


def acs_of(root: str, gpus: list[topology.Device], nic_devs: list[topology.Device]) -> Item:
    """``acs_redirect`` on the bridges between each GPU and its nearest NIC."""
    from hpcbench.hw.net import acs

    paths, configs = [], {}
    for g in gpus:
        found = topology.nearest(g, nic_devs)
        if found is None or g.path is None or found[0].path is None or not g.address:
            continue
        bridges = acs.bridges_between(g.path, found[0].path)
        paths.append((g.name, found[0].name, found[1], bridges))
        for b in bridges:  # an ancestor of the GPU's folder or of the NIC's
            if b not in configs:
                configs[b] = acs.read_config(device_dir(root, g.address), b) or (
                    acs.read_config(device_dir(root, found[0].address), b) if found[0].address else None
                )
    return acs.acs_item(paths, configs)
