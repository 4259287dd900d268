"""The network probe's modes, each turning what it read or ran into health items.

``Reader`` holds what sysfs said at the start (ports, interfaces, the first counter read) so the
second counter read can come after the load tests; every other function runs one mode. Missing
tools raise ProbeError with the package to install (ERROR); a mode that does not apply here
returns items that are not measured, with the reason (SKIP).
"""

from __future__ import annotations

import fnmatch
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from hpcbench.core.errors import ProbeError
from hpcbench.node import nics
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import read_text
from hpcbench.probes.items import Item, missing
from hpcbench.probes.network import health, iperf, perftest, procs, topology

RDMA_METRICS = ("rdma_write_bw", "rdma_read_lat", "rdma_read_lat_p99")
TCP_METRICS = ("tcp_bw",)
#: beyond a test's duration, how long a server or client may take before it is killed
SLACK_S = 30.0
#: PCI classes of adapters that carry RDMA: InfiniBand controllers; Mellanox/NVIDIA Ethernet
IB_CLASS_PREFIX = "0x0207"
MELLANOX = "0x15b3"


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
        names = [p.subject for p in self.ports] + [i.name for i in self.interfaces if nics.is_subject(i)]
        return [s for s in names if not self.ignored(s)]

    def port(self, subject: str) -> nics.RdmaPort | None:
        return next((p for p in self.ports if p.subject == subject), None)

    def interface(self, name: str) -> nics.Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def counters(self, subject: str) -> dict[str, int]:
        port = self.port(subject)
        if port is not None:
            values = nics.rdma_counters(self.root, port.device, port.port)
            if port.link_layer == "Ethernet" and port.netdevs:  # RoCE: its interface's counters too
                values.update(
                    {
                        f"{port.netdevs[0]}.{k}": v
                        for k, v in nics.interface_counters(self.root, port.netdevs[0]).items()
                    }
                )
            return values
        return nics.interface_counters(self.root, subject)

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
            names = tuple(f"{port.netdevs[0]}.{n}" for n in nics.ETH_ERROR_COUNTERS)
            eth = health.counter_items(port.subject, names, before, later, interval, expect.error_limit)
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
        [p for p in r.ports if not r.ignored(p.subject)], per, expect, r.rdma_class_exists(), r.virtual
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


def cuda_choice(
    use_cuda: str, root: str, inventory: Inventory, port: nics.RdmaPort
) -> tuple[int | None, bool, str]:
    """(GPU index for --use_cuda, dma-buf, why) for a port: its nearest GPU when GPUDirect works."""
    if use_cuda == "off":
        return None, False, "host memory (use_cuda = off)"
    gpus = topology.gpu_devices(root, inventory)
    if not gpus:
        if use_cuda == "on":
            raise ProbeError("use_cuda = on but this node has no GPU")
        return None, False, "host memory (no GPU)"
    possible, why = topology.gpudirect_at(root)
    if not possible:
        if use_cuda == "on":
            raise ProbeError(f"use_cuda = on but GPUDirect RDMA is not possible here: {why}")
        return None, False, f"host memory: {why}"
    (nic,) = topology.nic_devices(root, [port])
    gpu = topology.nearest_gpu(nic, gpus)
    assert gpu is not None
    index = int(gpu.name.removeprefix("gpu"))
    return index, "dma-buf" in why, f"GPU {index} memory ({why})"


def rdma_items(
    p: Any, root: str, inventory: Inventory, ports: list[nics.RdmaPort], subject: str, workdir: str
) -> tuple[list[Item], dict[str, Any]]:
    """ib_write_bw and ib_read_lat between ``subject`` (server) and ``p.peer_device`` (client, "": itself)."""
    port = next((x for x in ports if x.subject == subject), None)
    if port is None:
        return missing(RDMA_METRICS, f"{subject} is not an RDMA port"), {}
    if not port.active:
        return missing(RDMA_METRICS, f"{subject} is not active ({port.state}/{port.phys_state})"), {}
    peer = next((x for x in ports if x.subject == p.peer_device), None) if p.peer_device else port
    if peer is None:
        raise ProbeError(
            f"peer_device {p.peer_device!r} is not an RDMA port of this node "
            f"({', '.join(x.subject for x in ports) or 'it has none'})"
        )
    for tool in ("ib_write_bw", "ib_read_lat"):
        procs.require(tool)
    cuda, dmabuf, memory = cuda_choice(p.use_cuda, root, inventory, port)
    server = perftest.Endpoint(port.device, port.port, cuda, dmabuf)
    client = perftest.Endpoint(peer.device, peer.port, cuda, dmabuf)
    seconds = max(1, int(-(-p.duration // 1)))
    path = f"{peer.subject} -> {port.subject}" + (" (loopback)" if peer is port else "")
    settings: dict[str, Any] = {"rdma_path": path, "rdma_memory": memory}
    bw_args = (p.rdma_port_base, p.rdma_bytes, seconds, p.qps, p.gid_index)
    argv_s = perftest.bw_argv(server, *bw_args, None)
    argv_c = perftest.bw_argv(client, *bw_args, "localhost")
    bw = _perftest(argv_s, argv_c, p.rdma_port_base, workdir, seconds + SLACK_S, perftest.parse_bw)
    lat_args = (p.rdma_port_base + 1, p.lat_bytes, p.lat_iters, p.gid_index)
    lat = _perftest(
        perftest.lat_argv(server, *lat_args, None),
        perftest.lat_argv(client, *lat_args, "localhost"),
        p.rdma_port_base + 1,
        workdir,
        SLACK_S * 2,
        perftest.parse_lat,
    )
    settings.update(ib_write_bw=" ".join(argv_c), ib_write_bw_result=vars(bw), ib_read_lat_result=vars(lat))
    what = f"{path}, {memory}"
    return [
        Item(
            "rdma_write_bw",
            bw.bw_average_gbps,
            "Gb/s",
            True,
            f"ib_write_bw {what}: BW average {bw.bw_average_gbps:.4g} Gb/s at {bw.size_bytes} B x {p.qps} QP",
            convention="perftest BW average",
        ),
        Item(
            "rdma_read_lat",
            lat.t_typical_us,
            "us",
            False,
            f"ib_read_lat {what}: t_typical {lat.t_typical_us} us, {lat.size_bytes} B",
            convention="perftest t_typical",
        ),
        Item(
            "rdma_read_lat_p99",
            lat.p99_us,
            "us",
            False,
            f"ib_read_lat {what}: 99% percentile {lat.p99_us} us of {lat.iterations}",
            convention="perftest 99% percentile",
        ),
    ], settings


def _perftest(
    argv_s: list[str], argv_c: list[str], port: int, workdir: str, timeout: float, parse: Any
) -> Any:
    try:
        out_c, out_s, rc = procs.server_client(argv_s, argv_c, port, workdir, timeout, argv_s[0])
    except procs.ToolFailed as exc:
        raise ProbeError(str(exc)) from None
    try:
        return parse(out_c)
    except perftest.PerftestError as client_error:
        try:
            return parse(out_s)
        except perftest.PerftestError:
            pass
        hint = ""
        if "unrecognized option" in str(client_error) and "cuda" in str(client_error):
            hint = "this perftest is built without CUDA: -p use_cuda=off, or a perftest built with CUDA"
        raise ProbeError(f"{argv_c[0]} client (exit {rc}): {client_error}", hint) from None


def tcp_items(p: Any, workdir: str) -> tuple[list[Item], dict[str, Any]]:
    """iperf3 to ``p.peer`` (an iperf3 server someone runs there), or a loopback self-test."""
    procs.require("iperf3")
    host, _, port_text = p.peer.partition(":")
    if host:
        port = int(port_text or 5201)
        argv = iperf.client_argv(host, port, p.duration, p.streams, p.bitrate, None)
        client = procs.start(argv, workdir, "iperf3-client")
        try:
            out = procs.wait(client, p.duration + SLACK_S, "client")
        except procs.ToolFailed as exc:
            raise ProbeError(str(exc)) from None
        finally:
            client.stop()
        where = f"to {p.peer}"
    else:
        port = procs.free_port()
        argv = iperf.client_argv("127.0.0.1", port, p.duration, p.streams, p.bitrate, None)
        try:
            out, _, _ = procs.server_client(
                iperf.server_argv(port, "127.0.0.1"), argv, port, workdir, p.duration + SLACK_S, "iperf3"
            )
        except procs.ToolFailed as exc:
            raise ProbeError(str(exc)) from None
        where = "over loopback (lo, 127.0.0.1): a self-test of this host's TCP stack and iperf3, no NIC"
    try:
        r = iperf.parse_json(out)
    except iperf.IperfError as exc:
        raise ProbeError(
            str(exc), "is an iperf3 server running on the peer (iperf3 -s)?" if host else ""
        ) from None
    detail = (
        f"iperf3 {where}: receiver {r.receiver_gbps:.4g} Gb/s, sender {r.sender_gbps:.4g} Gb/s, "
        f"{r.streams} stream(s), {r.seconds:.3g} s, {r.retransmits} retransmits"
    )
    settings = {
        "iperf3": " ".join(argv),
        "iperf3_version": r.version,
        "tcp_interface": "lo" if not host else "",
        "tcp_result": vars(r),
    }
    return [Item("tcp_bw", r.receiver_gbps, "Gb/s", True, detail, convention="iperf3 receiver")], settings


def hostname() -> str:
    return socket.gethostname()
