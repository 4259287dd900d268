"""The network_pairs probe (node, under torchrun or srun with one rank per node): see pairs.py."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ConfigError, ProbeError, ProbeSkip
from hpcbench.core.items import Item, missing, to_measurements
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.network_pairs import pairs

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.hw.net import perftest, reader

NAME = "network_pairs"


@dataclass(frozen=True)
class NetworkPairsParams:
    meet: str = field(default="log", metadata={"help": "every node meets log2(N) others (log) or all"})
    duration: float = field(default=5.0, metadata={"help": "seconds of each direction's test (iperf3 -t)"})
    streams: int = field(default=1, metadata={"help": "iperf3 parallel streams (-P)"})
    bitrate: str = field(
        default="", metadata={"help": "cap this node's iperf3 sending rate (-b, e.g. 10G); '' = unlimited"}
    )
    slow_fraction: float = field(
        default=0.8, metadata={"help": "a pair below this fraction of the reference is slow"}
    )
    pairs_port: int = field(default=5201, metadata={"help": "iperf3 listens on this port + the rank"})
    address: str = field(
        default="",
        metadata={"help": "interface or IP others reach this node at; '' = route to MASTER_ADDR"},
    )
    timeout: float = field(default=60.0, metadata={"help": "seconds to wait for the other nodes"})
    transport: str = field(
        default="tcp", metadata={"help": "tcp (iperf3 over the rails' IP) or rdma (ib_write_bw rail to rail)"}
    )
    rails: list[str] = field(
        default_factory=list,
        metadata={
            "help": "the rails, rail i of every node to rail i of the others, all at once: tcp: interfaces "
            "or IPs ([] = the compute rails' interfaces with an IPv4 address, else one address); rdma: "
            "RDMA ports (mlx5_0:1; [] = the compute rails)"
        },
    )
    use_cuda: str = field(default="auto", metadata={"help": "rdma: GPU memory: auto, on, off"})
    rdma_bytes: int = field(default=8388608, metadata={"help": "rdma: ib_write_bw message size (bytes)"})
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )

    def __post_init__(self) -> None:
        check(self.streams >= 1, NAME, "streams", f"must be >= 1, got {self.streams}")
        check(self.duration > 0, NAME, "duration", f"must be > 0 seconds, got {self.duration}")
        check(
            1 <= self.pairs_port <= 65000,
            NAME,
            "pairs_port",
            f"must be a TCP port (1-65000), got {self.pairs_port}",
        )
        check(self.meet in pairs.MEET, NAME, "meet", f"log or all, not {self.meet!r}")
        check(
            0 < self.slow_fraction < 1, NAME, "slow_fraction", f"must be in (0, 1), got {self.slow_fraction}"
        )
        check(self.timeout > 0, NAME, "timeout", f"must be > 0 seconds, got {self.timeout}")
        check(self.transport in ("tcp", "rdma"), NAME, "transport", f"tcp or rdma, not {self.transport!r}")
        check(
            self.use_cuda in ("auto", "on", "off"),
            NAME,
            "use_cuda",
            f"auto, on or off, not {self.use_cuda!r}",
        )
        check(self.rdma_bytes >= 1, NAME, "rdma_bytes", f"must be >= 1, got {self.rdma_bytes}")


class NetworkPairs:
    """Node pairs: TCP bandwidth in rounds, the slow node or link named."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Network pairs: iperf3 both ways between node pairs in rounds, the slow node or link named"
    )
    Params: ClassVar[type] = NetworkPairsParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = (*pairs.METRICS, "counters_grew")
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkPairsParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        settings: dict[str, Any] = {}
        items = self._pairs(params, ctx, settings)
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        convention = "perftest BW average" if params.transport == "rdma" else "iperf3 receiver"
        return to_measurements(items, ctx.subject, settings, convention=convention)

    def _pairs(self, p: NetworkPairsParams, ctx: ProbeContext, settings: dict[str, Any]) -> list[Item]:
        import socket

        from hpcbench.hw.net import procs, reader
        from hpcbench.launch.launcher import from_environ

        try:
            launch = from_environ(os.environ)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
        if launch is None:
            return missing(pairs.METRICS, "network_pairs runs under torchrun or srun, one rank per node")
        if launch.world_size < 2:
            return missing(pairs.METRICS, f"pairs need 2 or more nodes; WORLD_SIZE is {launch.world_size}")
        from hpcbench.launch.rendezvous import RankFailure
        from hpcbench.probes.network_pairs import run

        endpoints: tuple[perftest.Endpoint, ...] = ()
        if p.transport == "rdma":
            rails, endpoints = rdma_rails(p, ctx, settings)
        else:
            procs.require("iperf3")
            rails = tuple(p.rails) or ip_rails(p.root, ctx)
        version = run.local_iperf3_version() if p.transport == "tcp" else None
        cfg = run.PairsConfig(
            p.meet,
            p.duration,
            p.streams,
            p.bitrate,
            p.pairs_port,
            p.address,
            p.timeout,
            ctx.workdir,
            rails,
            run.processes_for(p.streams, version) if p.transport == "tcp" else 1,
            p.transport,
            endpoints,
            p.rdma_bytes,
        )
        try:
            r = reader.Reader(p.root, [])  # the rails' error counters before the traffic
            members, schedule, results, raw = run.run(cfg, launch, socket.gethostname())
        except RankFailure as exc:
            raise ProbeError(f"rank {launch.rank}: {exc}") from None
        names = [m["host"] for m in members]
        analyses = [pairs.analyse(names, res, p.slow_fraction) for res in results]
        settings.update(
            pairs_nodes=names,
            pairs_rounds=[[[names[a], names[b]] for a, b in rnd] for rnd in schedule],
            pairs_gbps=raw,
            pairs_rails=list(rails),
            pairs_addresses={m["host"]: m["addrs"] for m in members},
            pairs_iperf3_processes=cfg.processes,
            pairs_reference_gbps=[a.reference for a in analyses] if rails else analyses[0].reference,
            pairs_summary="; ".join(a.summary for a in analyses),
            pairs_launcher=launch.launcher,
        )
        items = pairs.rail_items(names, results, analyses, launch.rank, list(rails) or ["-"])
        return [*items, traffic_counters(r, rails, settings)]


def ip_rails(root: str, ctx: ProbeContext) -> tuple[str, ...]:
    """The interfaces of the compute rails (IPoIB, RoCE) that carry an IPv4 address; () when none
    does (then one address, the route to MASTER_ADDR, carries the test)."""
    from hpcbench.hw.net import reader
    from hpcbench.node import nics
    from hpcbench.probes.network_pairs.run import interface_ipv4

    ports = nics.rdma_ports(root)
    rails = reader.rails_of(root, ports, ctx.inventory, [])
    names = [p.netdevs[0] for p in ports if p.subject in rails and p.netdevs]
    return tuple(n for n in names if interface_ipv4(n))


def rdma_rails(
    p: NetworkPairsParams, ctx: ProbeContext, settings: dict[str, Any]
) -> tuple[tuple[str, ...], tuple[perftest.Endpoint, ...]]:
    """The RDMA rails (``p.rails`` or the compute rails) and perftest's endpoint on each: GPU
    memory where GPUDirect and this perftest can (hpcbench.hw.net.rdma), else host memory."""
    from hpcbench.hw.net import perftest, procs, rdma, reader
    from hpcbench.node import nics

    procs.require("ib_write_bw")
    ports = nics.rdma_ports(p.root)
    rails = reader.rails_of(p.root, ports, ctx.inventory, list(p.rails))
    caps = rdma.capabilities("ib_write_bw")
    endpoints, memory = [], {}
    for name in rails:
        port = next((x for x in ports if x.subject == name), None)
        if port is None:
            raise ProbeError(f"rail {name} is not an RDMA port of this node")
        m = rdma.choose_memory(
            p.use_cuda,
            p.root,
            ctx.inventory,
            port,
            caps,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        endpoints.append(perftest.Endpoint(port.device, port.port, m.cuda, m.dmabuf, m.bus_id))
        memory[name] = m.text
    settings["pairs_rdma_memory"] = memory
    return tuple(rails), tuple(endpoints)


def traffic_counters(r: reader.Reader, rails: tuple[str, ...], settings: dict[str, Any]) -> Item:
    """``counters_grew`` over the pairs' traffic, summed over this node's RDMA ports that carried
    it (the rails' ports; a TCP rail's interface counts through the port it is the netdev of)."""
    from hpcbench.hw.net import health, reader

    owner = {n: p.subject for p in r.ports for n in p.netdevs}
    subjects = [owner.get(x, x) for x in rails]
    subjects = [x for x in dict.fromkeys(subjects) if r.port(x) is not None]
    if not subjects:
        return Item("counters_grew", not_measured="no RDMA port carried the pairs' traffic here")
    seconds = time.monotonic() - r.started
    after = {x: r.counters(x) for x in subjects}
    settings["pairs_counters_before"] = {x: r.before.get(x, {}) for x in subjects}
    settings["pairs_counters_after"] = after
    grew = [
        i
        for x in subjects
        for i in reader.subject_health(r, x, after, seconds, health.Expect())
        if i.metric == "counters_grew" and i.value is not None
    ]
    bad = [i.detail for i in grew if i.value]
    detail = "; ".join(bad) or f"none on {', '.join(subjects)} during the pairs' traffic"
    return Item("counters_grew", sum(i.value or 0.0 for i in grew), detail=detail)
