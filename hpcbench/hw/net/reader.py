"""What the network probes read from sysfs at the start of a run, and the port health it gives.

``Reader`` holds what sysfs said at the start (ports, interfaces, the first counter read) so the
second counter read can come after the load tests; ``subject_health`` and ``node_health`` turn
the two reads into health items (``hpcbench.hw.net.health`` decides). Shared by the
network_ports probe (health alone) and the probes that load the rails (counters around traffic).
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass, field

from hpcbench.core.errors import ProbeError
from hpcbench.core.items import Item
from hpcbench.hw.net import counters, health
from hpcbench.node import nics
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import full_address, read_text

#: PCI classes of adapters that carry RDMA: InfiniBand controllers; Mellanox/NVIDIA Ethernet
IB_CLASS_PREFIX = "0x0207"
MELLANOX = "0x15b3"


def rails_of(
    root: str, ports: list[nics.RdmaPort], inventory: Inventory, override: list[str]
) -> tuple[str, ...]:
    """The compute rails: ``override`` when given (a ``rails`` parameter), else the RDMA ports
    nearest a GPU of the inventory (``hpcbench.node.nics.rails``)."""
    if override:
        return tuple(override)
    gpus = [a for d in inventory.gpus.devices if (a := full_address(d.pci_bus_id))]
    return tuple(nics.rails(root, ports, gpus))


def rdma_adapters_on_pci(root: str) -> list[str]:
    """Physical PCI functions that are RDMA adapters (InfiniBand controllers, Mellanox network
    controllers): to tell 'no RDMA hardware' from 'its RDMA driver is not loaded'."""
    folder = os.path.join(root, "sys/bus/pci/devices")
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        cls = (read_text(os.path.join(folder, entry, "class")) or "").strip().lower()
        vendor = (read_text(os.path.join(folder, entry, "vendor")) or "").strip().lower()
        if os.path.exists(os.path.join(folder, entry, "physfn")):
            continue
        if cls.startswith(IB_CLASS_PREFIX) or (vendor == MELLANOX and cls.startswith("0x02")):
            found.append(entry)
    return found


@dataclass
class Reader:
    """The node's ports at the start of the run, and their first counter read."""

    root: str
    ignore: list[str]
    ports: list[nics.RdmaPort] = field(default_factory=list)
    interfaces: list[nics.Interface] = field(default_factory=list)
    virtual: list[str] = field(default_factory=list)
    before: dict[str, dict[str, int]] = field(default_factory=dict)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.ports = nics.rdma_ports(self.root)
        self.interfaces, self.virtual = nics.interfaces(self.root, ports=self.ports)
        self.started = time.monotonic()
        self.before = {s: self.counters(s) for s in self.subjects()}

    def ignored(self, subject: str) -> bool:
        return any(fnmatch.fnmatchcase(subject, pattern) for pattern in self.ignore)

    def subjects(self) -> list[str]:
        names = [p.subject for p in self.ports if not p.virtual_function]
        names += [i.name for i in self.interfaces if nics.is_subject(i)]
        return [s for s in names if not self.ignored(s)]

    def port(self, subject: str) -> nics.RdmaPort | None:
        return next((p for p in self.ports if p.subject == subject), None)

    def interface(self, name: str) -> nics.Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def counters(self, subject: str) -> dict[str, int]:
        port = self.port(subject)
        if port is not None:
            values = counters.rdma_counters(self.root, port.device, port.port)
            if port.link_layer == "Ethernet" and port.netdevs:  # RoCE: its interface's counters too
                values.update(
                    {
                        f"{port.netdevs[0]}.{k}": v
                        for k, v in counters.interface_counters(self.root, port.netdevs[0]).items()
                    }
                )
            return values
        return counters.interface_counters(self.root, subject)

    def after(self, interval: float) -> dict[str, dict[str, int]] | None:
        """The second counter read, ``interval`` s after the first at least; None when interval is 0."""
        if interval <= 0:
            return None
        time.sleep(max(0.0, self.started + interval - time.monotonic()))
        return {s: self.counters(s) for s in self.before}

    def rdma_class_exists(self) -> bool:
        return os.path.isdir(os.path.join(self.root, nics.IB_CLASS))


def subject_health(
    r: Reader, subject: str, after: dict[str, dict[str, int]] | None, interval: float, expect: health.Expect
) -> list[Item]:
    before = r.before.get(subject, {})
    later = after.get(subject) if after is not None else None
    port = r.port(subject)
    if port is not None:
        items = health.rdma_port_items(port, before, later, interval, expect)
        if port.link_layer == "Ethernet" and port.netdevs:  # RoCE: the interface's error counters count too
            names = tuple(f"{port.netdevs[0]}.{n}" for n in counters.ETH_ERROR_COUNTERS)
            eth = health.counter_items(
                port.subject, names, before, later, interval, expect.error_limit, expect.rate_per_hour
            )
            items = _merge_counts(items, eth)
        return items
    iface = r.interface(subject)
    if iface is None:
        raise ProbeError(
            f"{subject} is not on this node any more (the inventory taken before the run listed it)"
        )
    return health.interface_items(iface, before, later, interval, expect)


def _merge_counts(items: list[Item], more: list[Item]) -> list[Item]:
    """Add the counts of ``more`` to the same metrics in ``items`` (RoCE: IB and Ethernet counters)."""
    extra = {i.metric: i for i in more if i.value is not None}
    out = []
    for item in items:
        add = extra.get(item.metric)
        if add is None or item.value is None:
            out.append(add if item.value is None and add is not None else item)
        else:
            tail = add.detail.split(": ", 1)[-1]
            out.append(
                Item(
                    item.metric,
                    item.value + add.value,
                    item.unit,
                    item.higher_is_better,
                    f"{item.detail}; Ethernet: {tail}",
                )
            )
    return out


def node_health(
    r: Reader, after: dict[str, dict[str, int]] | None, interval: float, expect: health.Expect
) -> list[Item]:
    per = {s: subject_health(r, s, after, interval, expect) for s in r.subjects()}
    items = health.node_items(
        [p for p in r.ports if not r.ignored(p.subject) and not p.virtual_function],
        per,
        expect,
        r.rdma_class_exists(),
        r.virtual,
    )
    if not r.ports:
        adapters = rdma_adapters_on_pci(r.root)
        if adapters:  # RDMA hardware without its driver: 0 active ports is a finding, not "not applicable"
            shown = ", ".join(adapters[:4]) + (" ..." if len(adapters) > 4 else "")
            items = [
                Item(
                    "rdma_ports_active",
                    0.0,
                    "ports",
                    True,
                    f"the PCI bus has {len(adapters)} RDMA adapter function(s) ({shown}) but no RDMA device "
                    "is registered: the RDMA driver (mlx5_ib, ib_core) is not loaded",
                )
                if i.metric == "rdma_ports_active"
                else i
                for i in items
            ]
    return items
