"""The inventory as typed data: what this node is, as every record stores it.

``hpcbench.node.collector.collect`` fills these classes from procfs/sysfs and NVML; the runner hands
them to each probe (``ProbeContext.inventory``); checks, hints, baselines and reports read
their attributes. ``Inventory.from_dict`` reads the JSON form back (a record's ``inventory``,
a probe child's job file), a missing section or field taking its default, so records from
before a field existed still load. Inside hpcbench the inventory is this one type everywhere; its JSON
form is decoded once, where it arrives (the child's job, a record).
A fact that could not be read is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpcbench.core import codec
from hpcbench.node.nics import Network


@dataclass(frozen=True)
class Cpu:
    model: str | None = "unknown"
    vendor: str | None = "unknown"
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None
    llc_bytes: int | None = field(default=None, metadata={"doc": "last-level cache, summed over instances"})
    governor: str | None = field(default=None, metadata={"doc": "cpufreq governor of CPU 0"})
    governors: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumaNode:
    id: int = 0
    cpus: tuple[int, ...] = ()
    memory_bytes: int | None = None


@dataclass(frozen=True)
class Numa:
    nodes: tuple[NumaNode, ...] = ()


@dataclass(frozen=True)
class HugePages:
    total: int = 0
    free: int = 0
    size_bytes: int | None = None


@dataclass(frozen=True)
class Thp:
    enabled: str | None = None
    defrag: str | None = None


@dataclass(frozen=True)
class Memory:
    total_bytes: int | None = None
    hugepages: HugePages = HugePages()
    thp: Thp = Thp()


@dataclass(frozen=True)
class OsInfo:
    kernel: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML lists it; ``error`` says why its fields are empty (e.g. GPU is lost)."""

    index: int = 0
    name: str | None = None
    pci_device_id: str | None = field(default=None, metadata={"doc": "NVML's PCI device id, 0x233510DE"})
    pci_bus_id: str | None = None
    serial: str | None = None
    uuid: str | None = None
    memory_bytes: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Gpus:
    count: int = 0
    reason: str | None = field(default=None, metadata={"doc": "why there is no GPU (count 0)"})
    driver_version: str | None = None
    cuda_version: str | None = None
    devices: tuple[GpuDevice, ...] = ()
    pci_nvidia_gpus: int | None = field(
        default=None, metadata={"doc": "NVIDIA GPUs on the PCI bus (sysfs), where NVML lists none"}
    )


@dataclass(frozen=True)
class BlockDevice:
    name: str = ""
    model: str | None = None
    size_bytes: int | None = None
    rotational: bool = False
    removable: bool = False


@dataclass(frozen=True)
class Mount:
    mountpoint: str = ""
    device: str = ""
    fstype: str = ""
    options: str = ""

    @property
    def read_only(self) -> bool:
        return "ro" in self.options.split(",")


@dataclass(frozen=True)
class Storage:
    block_devices: tuple[BlockDevice, ...] = ()
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """What this node is: CPU, NUMA, memory, GPUs, disks, network ports, versions and tunables."""

    hostname: str = ""
    collected_at: str = ""
    cpu: Cpu = Cpu()
    numa: Numa = Numa()
    memory: Memory = Memory()
    tunables: dict[str, int | None] = field(default_factory=dict, metadata={"doc": "e.g. numa_balancing"})
    os: OsInfo = OsInfo()
    versions: dict[str, str | None] = field(
        default_factory=dict, metadata={"doc": "hpcbench, python, torch, nvidia_ml_py"}
    )
    gpus: Gpus = Gpus()
    storage: Storage = Storage()
    network: Network = Network()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (a record's ``inventory``)."""
        return codec.encode_fields(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inventory:
        """The JSON form read back; DecodeError (a ValueError) naming the field that does not fit."""
        return codec.decode_fields(cls, data)

    @property
    def numa_nodes(self) -> tuple[NumaNode, ...]:
        """The NUMA nodes, or one node 0 with every CPU where sysfs lists none."""
        return self.numa.nodes or (NumaNode(0, (), self.memory.total_bytes),)
