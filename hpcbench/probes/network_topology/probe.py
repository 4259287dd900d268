"""The network_topology probe (node): GPU <-> NIC PCIe levels and GPUDirect RDMA, from sysfs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpcbench import nics
from hpcbench.errors import ProbeSkip
from hpcbench.hw.items import Item, missing, to_measurements
from hpcbench.hw.net import topology
from hpcbench.model import Measurement
from hpcbench.node import Inventory
from hpcbench.probes.base import ProbeContext, Requirement, check

NAME = "network_topology"


@dataclass(frozen=True)
class NetworkTopologyParams:
    near_level: str = field(
        default="PXB", metadata={"help": "a GPU's NIC is near at this level or nearer: PIX or PXB"}
    )
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )

    def __post_init__(self) -> None:
        check(self.near_level in ("PIX", "PXB"), NAME, "near_level", f"PIX or PXB, not {self.near_level!r}")
        check(bool(self.root), NAME, "root", "must not be empty")


def topology_items(
    root: str, inventory: Inventory, ports: list[nics.RdmaPort], near: str
) -> tuple[list[Item], dict[str, Any]]:
    gpus = topology.gpu_devices(root, inventory)
    if not gpus:
        return missing(topology.METRICS, "no GPU on this node"), {}
    nic_devs = topology.nic_devices(root, ports)
    if not nic_devs:
        return missing(topology.METRICS, "no RDMA device: no NIC for the GPUs to use"), {}
    matrix = topology.render(gpus, nic_devs)
    nearest = {
        g.name: {"nic": f[0].name, "level": f[1]} if (f := topology.nearest(g, nic_devs)) else None
        for g in gpus
    }
    items = topology.near_items(gpus, nic_devs, near) + [topology.gpudirect_item(root)]
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
    metrics: ClassVar[tuple[str, ...]] = topology.METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkTopologyParams, ctx: ProbeContext) -> list[Measurement]:
        ports = nics.rdma_ports(params.root)
        items, settings = topology_items(params.root, ctx.inventory, ports, params.near_level)
        settings = {"root": params.root, **settings}
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention="sysfs")
