"""The node's network ports as sysfs shows them: RDMA ports and physical Ethernet interfaces.

RDMA ports come from ``/sys/class/infiniband/<device>/ports/<n>`` (InfiniBand, or RoCE when the
link layer is Ethernet); network interfaces from ``/sys/class/net``. Each port's PCI address and
NUMA node come from its device link (``hpcbench.node.pci``). ``root`` is the file system root ("/" on
a node, a fixture tree in tests); nothing here raises for a missing or unreadable file.

Which ports are NIC subjects (``nic_subjects``), one per physical port:

- every RDMA port, named ``<device>:<port>`` (``mlx5_0:1``, as perftest's ``-d mlx5_0 -i 1``);
  its netdev (IPoIB ``ibp24s0``, or the RoCE interface) belongs to it and is no subject of its own;
- every physical Ethernet interface (``eth0``, ``eno1``, a bond's slaves) that is not an RDMA
  port's netdev and not an SR-IOV virtual function;
- never a virtual interface (its sysfs device lives under ``/sys/devices/virtual``: ``lo``,
  ``ifb*``, ``veth*``, bridges, bond and VLAN masters, tunnels), which are listed by name only.

The error counters and their readers are ``hpcbench.hw.net.counters``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from hpcbench.node.pci import (
    LEVELS,
    PciPath,
    driver_name,
    numa_node,
    path_of,
    pci_path,
    read_text,
    topo_level,
)

IB_CLASS = "sys/class/infiniband"
NET_CLASS = "sys/class/net"
#: /sys/class/net/<if>/type (ARPHRD_*)
ARPHRD = {1: "ethernet", 32: "infiniband", 772: "loopback"}
#: what a port's physical state means to the one who has to fix it
PHYS_STATE_HINT = {
    "Polling": "no link partner: check the cable and the switch port",
    "Disabled": "the port is disabled (by the subnet manager or an administrator)",
    "Sleep": "the port is asleep",
    "PortConfigurationTraining": "the link is training",
    "LinkErrorRecovery": "the link is recovering from errors",
}


# ---------------------------------------------------------------------------
# Pure parsers: sysfs text in, values out.


def parse_numbered(text: str | None) -> str | None:
    """``state`` or ``phys_state``: ``"4: ACTIVE"`` -> ``"ACTIVE"``, ``"5: LinkUp"`` -> ``"LinkUp"``."""
    value = (text or "").strip()
    if not value:
        return None
    _, sep, name = value.partition(":")
    return name.strip() if sep else value


def parse_rate(text: str | None) -> float | None:
    """A port's ``rate``: ``"400 Gb/sec (4X NDR)"`` -> 400.0 (Gb/s, as ibstat's Rate)."""
    m = re.match(r"\s*([\d.]+)\s*Gb/sec", text or "")
    return float(m.group(1)) if m else None


def parse_speed(text: str | None) -> int | None:
    """An interface's ``speed`` in Mb/s; None when unknown (-1 from a virtual NIC, or unreadable)."""
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


def parse_int(text: str | None, base: int = 10) -> int | None:
    try:
        return int((text or "").strip(), base)
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# What sysfs says about one port or interface.


@dataclass(frozen=True)
class RdmaPort:
    """One port of an RDMA device (an HCA's port, or a RoCE NIC's)."""

    device: str
    port: int
    state: str | None  # ACTIVE, DOWN, INIT, ARMED
    phys_state: str | None  # LinkUp, Polling, Disabled, ...
    rate_gbps: float | None
    rate_text: str | None  # "400 Gb/sec (4X NDR)"
    link_layer: str | None  # InfiniBand | Ethernet
    lid: str | None
    netdevs: tuple[str, ...]
    netdev_mtu: int | None
    netdev_operstate: str | None
    hca_type: str | None
    fw_ver: str | None
    node_guid: str | None
    sys_image_guid: str | None
    board_id: str | None
    pci_address: str | None
    numa_node: int | None
    driver: str | None
    #: an SR-IOV virtual function's RDMA device (its PCI function has ``physfn``): never a subject
    virtual_function: bool = False
    #: its netdev has a global address or a master (bond, team, bridge): in use even when down
    in_use: bool = False
    #: the PCIe link of its function: "32.0 GT/s PCIe" x16, and the most it can train at
    pcie_speed: str | None = None
    pcie_width: int | None = None
    pcie_max_speed: str | None = None
    pcie_max_width: int | None = None
    #: RoCE: whether a GID of type "RoCE v2" is configured (gid_attrs/types); None on InfiniBand
    roce_v2_gid: bool | None = None

    #: as_dict adds the subject name (its JSON Schema)
    JSON_EXTRA: ClassVar[dict[str, Any]] = {"subject": {"type": "string", "description": "device:port"}}

    @property
    def subject(self) -> str:
        return f"{self.device}:{self.port}"

    @property
    def active(self) -> bool:
        """Carrying traffic: ACTIVE with the physical link up."""
        return self.state == "ACTIVE" and self.phys_state == "LinkUp"

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, **asdict(self), "netdevs": list(self.netdevs)}


@dataclass(frozen=True)
class Interface:
    """One network interface of /sys/class/net that is a physical device."""

    name: str
    kind: str  # ethernet | infiniband | type <n>
    operstate: str | None  # up, down, unknown, lowerlayerdown, ...
    admin_up: bool | None  # IFF_UP in flags: configured up
    carrier: bool | None
    speed_mbps: int | None
    mtu: int | None
    mac: str | None
    driver: str | None
    firmware: str | None
    pci_address: str | None
    numa_node: int | None
    virtual_function: bool
    rdma_port: str | None  # the RDMA port it is the netdev of, e.g. "mlx5_0:1"
    #: the bond, team or bridge it is enslaved to (its ``master`` link)
    master: str | None = None
    #: it has a global address (an IPv4 route of its own in /proc/net/route, or a global IPv6
    #: address in /proc/net/if_inet6)
    has_address: bool = False

    @property
    def in_use(self) -> bool:
        """Carrying traffic someone configured: a global address, or a member of a bond or team.
        NetworkManager leaves unplugged ports administratively up; up alone is not in use."""
        return self.has_address or self.master is not None

    @property
    def rate_gbps(self) -> float | None:
        return self.speed_mbps / 1000 if self.speed_mbps is not None else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strip(root: str, rel: str) -> str | None:
    text = read_text(os.path.join(root, rel))
    return text.strip() if text is not None and text.strip() else None


def _listdir(path: str) -> list[str]:
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])


def _pci(root: str, device_link: str) -> tuple[str | None, int | None, str | None]:
    """(PCI address, NUMA node, driver) of the device a ``device`` link points at."""
    if not os.path.exists(device_link):
        return None, None, None
    path = path_of(os.path.realpath(device_link))
    address = path.address if path else None
    return address, numa_node(root, address) if address else None, driver_name(device_link)


def _netdevs(root: str, device: str, port: int) -> list[str]:
    """The network interfaces of an RDMA device's port (its PCI function's ``net`` folder)."""
    names = _listdir(os.path.join(root, IB_CLASS, device, "device", "net"))
    mine = []
    for name in names:
        dev_port = parse_int(read_text(os.path.join(root, NET_CLASS, name, "dev_port")))
        if dev_port is None or dev_port == port - 1 or len(names) == 1:
            mine.append(name)
    return mine


def addressed(root: str) -> set[str]:
    """Interfaces with a global address: an IPv4 route of their own (/proc/net/route, where the
    kernel puts each address's subnet) or a global-scope IPv6 address (/proc/net/if_inet6)."""
    names = set()
    for line in (read_text(os.path.join(root, "proc/net/route")) or "").splitlines()[1:]:
        fields = line.split()
        if fields:
            names.add(fields[0])
    for line in (read_text(os.path.join(root, "proc/net/if_inet6")) or "").splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[3] == "00":  # scope 0: global
            names.add(fields[5])
    return names


def master_of(root: str, name: str) -> str | None:
    """The bond, team or bridge an interface is enslaved to (its ``master`` link)."""
    link = os.path.join(root, NET_CLASS, name, "master")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def _roce_v2(root: str, port_dir: str) -> bool:
    """Whether a RoCE port has a GID of type RoCE v2 (ports/N/gid_attrs/types/<index>)."""
    folder = os.path.join(root, port_dir, "gid_attrs", "types")
    return any((read_text(os.path.join(folder, n)) or "").strip() == "RoCE v2" for n in _listdir(folder))


def rdma_ports(root: str = "/") -> list[RdmaPort]:
    """Every port of every RDMA device; [] when there is no /sys/class/infiniband."""
    out = []
    with_address = addressed(root)
    for device in _listdir(os.path.join(root, IB_CLASS)):
        base = f"{IB_CLASS}/{device}"
        address, numa, driver = _pci(root, os.path.join(root, base, "device"))
        vf = os.path.exists(os.path.join(root, base, "device", "physfn"))
        fn = f"{base}/device"
        for port_name in _listdir(os.path.join(root, base, "ports")):
            if not port_name.isdigit():
                continue
            port = int(port_name)
            p = f"{base}/ports/{port}"
            rate_text = _strip(root, f"{p}/rate")
            netdevs = _netdevs(root, device, port)
            first = netdevs[0] if netdevs else None
            out.append(
                RdmaPort(
                    device=device,
                    port=port,
                    state=parse_numbered(read_text(os.path.join(root, p, "state"))),
                    phys_state=parse_numbered(read_text(os.path.join(root, p, "phys_state"))),
                    rate_gbps=parse_rate(rate_text),
                    rate_text=rate_text,
                    link_layer=_strip(root, f"{p}/link_layer"),
                    lid=_strip(root, f"{p}/lid"),
                    netdevs=tuple(netdevs),
                    netdev_mtu=parse_int(read_text(os.path.join(root, NET_CLASS, first, "mtu")))
                    if first
                    else None,
                    netdev_operstate=_strip(root, f"{NET_CLASS}/{first}/operstate") if first else None,
                    hca_type=_strip(root, f"{base}/hca_type"),
                    fw_ver=_strip(root, f"{base}/fw_ver"),
                    node_guid=_strip(root, f"{base}/node_guid"),
                    sys_image_guid=_strip(root, f"{base}/sys_image_guid"),
                    board_id=_strip(root, f"{base}/board_id"),
                    pci_address=address,
                    numa_node=numa,
                    driver=driver,
                    virtual_function=vf,
                    in_use=any(n in with_address or master_of(root, n) for n in netdevs),
                    pcie_speed=_strip(root, f"{fn}/current_link_speed"),
                    pcie_width=parse_int(read_text(os.path.join(root, fn, "current_link_width"))),
                    pcie_max_speed=_strip(root, f"{fn}/max_link_speed"),
                    pcie_max_width=parse_int(read_text(os.path.join(root, fn, "max_link_width"))),
                    roce_v2_gid=_roce_v2(root, p) if _strip(root, f"{p}/link_layer") == "Ethernet" else None,
                )
            )
    return out


def is_virtual(root: str, name: str) -> bool:
    """Whether an interface is virtual: its sysfs folder is under /sys/devices/virtual (lo, ifb, veth,
    bridges, bond and VLAN masters, tunnels); a physical one has a ``device`` link."""
    real = os.path.realpath(os.path.join(root, NET_CLASS, name))
    return "/devices/virtual/" in real or not os.path.exists(os.path.join(root, NET_CLASS, name, "device"))


def interfaces(
    root: str = "/", firmware: Callable[[str], str | None] | None = None, ports: list[RdmaPort] | None = None
) -> tuple[list[Interface], list[str]]:
    """(physical interfaces, names of the virtual ones). ``firmware(name)`` reads an interface's
    firmware version (``ethtool_firmware`` on a live node); ``ports`` are the RDMA ports, to mark
    their netdevs (read when not given)."""
    owner = {n: p.subject for p in (rdma_ports(root) if ports is None else ports) for n in p.netdevs}
    with_address = addressed(root)
    physical, virtual = [], []
    for name in _listdir(os.path.join(root, NET_CLASS)):
        if is_virtual(root, name):
            virtual.append(name)
            continue
        rel = f"{NET_CLASS}/{name}"
        device_link = os.path.join(root, rel, "device")
        address, numa, driver = _pci(root, device_link)
        arphrd = parse_int(read_text(os.path.join(root, rel, "type")))
        flags = parse_int(read_text(os.path.join(root, rel, "flags")), 16)
        carrier = parse_int(read_text(os.path.join(root, rel, "carrier")))
        physical.append(
            Interface(
                name=name,
                kind=ARPHRD.get(arphrd or -1, f"type {arphrd}"),
                operstate=_strip(root, f"{rel}/operstate"),
                admin_up=bool(flags & 1) if flags is not None else None,
                carrier=bool(carrier) if carrier is not None else None,
                speed_mbps=parse_speed(read_text(os.path.join(root, rel, "speed"))),
                mtu=parse_int(read_text(os.path.join(root, rel, "mtu"))),
                mac=_strip(root, f"{rel}/address"),
                driver=driver,
                firmware=firmware(name) if firmware else None,
                pci_address=address,
                numa_node=numa,
                virtual_function=os.path.exists(os.path.join(device_link, "physfn")),
                rdma_port=owner.get(name),
                master=master_of(root, name),
                has_address=name in with_address,
            )
        )
    return physical, virtual


def is_subject(iface: Interface) -> bool:
    """Whether a physical interface is a NIC subject of its own (see the module docstring)."""
    return iface.kind == "ethernet" and iface.rdma_port is None and not iface.virtual_function


# ---------------------------------------------------------------------------
# The inventory's view, and the subjects of the ``nic`` expansion.


def ethtool_firmware(name: str) -> str | None:
    """An interface's firmware version from the kernel (ETHTOOL_GDRVINFO, as ``ethtool -i``);
    None when the driver has none or the call is not supported (``lo``)."""
    import ctypes
    import fcntl
    import socket
    import struct

    info = ctypes.create_string_buffer(196)  # struct ethtool_drvinfo
    struct.pack_into("I", info, 0, 0x00000003)  # ETHTOOL_GDRVINFO
    ifreq = bytearray(struct.pack("16sP", name.encode()[:15], ctypes.addressof(info)).ljust(40, b"\0"))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), 0x8946, ifreq)  # SIOCETHTOOL
    except OSError:
        return None
    version = info.raw[68:100].split(b"\0", 1)[0].decode(errors="replace").strip()
    return version or None


@dataclass(frozen=True)
class Network:
    """The inventory's ``network``: RDMA ports, physical interfaces, the virtual ones by name,
    ``nics``: the subjects of the ``nic`` expansion, and ``rails``: those of the ``rail`` expansion
    (see ``rails``)."""

    rdma_ports: tuple[RdmaPort, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    virtual_interfaces: tuple[str, ...] = ()
    nics: tuple[str, ...] = ()
    rails: tuple[str, ...] = ()


#: a GPU's rail is an RDMA NIC at this level or nearer (below its PCIe switch, or nested switches)
RAIL_LEVEL = "PXB"


def rails(root: str, ports: list[RdmaPort], gpu_addresses: list[str]) -> list[str]:
    """The compute rails: the ports of each GPU's nearest RDMA device (the first at the nearest
    level), when that is at ``RAIL_LEVEL`` or nearer, in port order. SR-IOV virtual functions are
    never rails. With no GPU, or no RDMA device near any GPU, every physical RDMA port is one
    (a CPU node's or a PCIe-GPU node's fabric ports: nothing tells compute from storage there)."""
    physical = [p for p in ports if not p.virtual_function]
    devices: dict[str, tuple[PciPath | None, int | None]] = {}
    for p in physical:
        if p.device not in devices:
            devices[p.device] = (pci_path(root, p.pci_address) if p.pci_address else None, p.numa_node)
    chosen: set[str] = set()
    limit = LEVELS.index(RAIL_LEVEL)
    for address in gpu_addresses:
        gpu_path = pci_path(root, address)
        if gpu_path is None:
            continue
        gpu_numa = numa_node(root, address)
        ranked = [
            (LEVELS.index(lv), i, name)
            for i, (name, (path, numa)) in enumerate(devices.items())
            if path is not None and (lv := topo_level(gpu_path, path, gpu_numa, numa)) in LEVELS
        ]
        if ranked and min(ranked)[0] <= limit:
            chosen.add(min(ranked)[2])
    if not chosen:
        return [p.subject for p in physical]
    return [p.subject for p in physical if p.device in chosen]


def collect(root: str = "/", gpu_addresses: list[str] | None = None) -> Network:
    """The node's ports for the inventory (see Network); ``gpu_addresses``: the GPUs' PCI
    addresses (the inventory's), to find the rails."""
    ports = rdma_ports(root)
    firmware = ethtool_firmware if os.path.realpath(root) == "/" else None
    physical, virtual = interfaces(root, firmware=firmware, ports=ports)
    return Network(
        rdma_ports=tuple(ports),
        interfaces=tuple(physical),
        virtual_interfaces=tuple(virtual),
        nics=tuple(
            [p.subject for p in ports if not p.virtual_function] + [i.name for i in physical if is_subject(i)]
        ),
        rails=tuple(rails(root, ports, gpu_addresses or [])),
    )


def summary_lines(network: Network) -> list[str]:
    """One line per NIC subject for ``hpcbench inventory``."""
    lines = []
    for p in network.rdma_ports:
        where = f"{p.pci_address or '?'}, NUMA {_numa(p.numa_node)}"
        lines.append(
            f"NIC: {p.subject} {p.link_layer or '?'} {p.state or '?'}"
            f"/{p.phys_state or '?'} {p.rate_text or 'rate ?'}, {p.hca_type or '?'} "
            f"fw {p.fw_ver or '?'}, {where}"
        )
    for i in network.interfaces:
        if i.kind != "ethernet" or i.rdma_port or i.virtual_function:
            continue
        speed = f"{i.speed_mbps / 1000:g} Gb/s" if i.speed_mbps else "speed unknown"
        lines.append(
            f"NIC: {i.name} Ethernet {i.operstate or '?'}, {speed}, MTU {i.mtu}, "
            f"{i.driver or '?'}"
            + (f" fw {i.firmware}" if i.firmware else "")
            + f", {i.pci_address or '?'}, NUMA {_numa(i.numa_node)}"
        )
    if network.virtual_interfaces:
        lines.append(f"Virtual interfaces (not NICs): {', '.join(network.virtual_interfaces)}")
    return lines


def _numa(node: Any) -> str:
    return "?" if node is None else str(node)
