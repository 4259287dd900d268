"""The network probe: port health, GPU<->NIC topology, RDMA and TCP bandwidth, node pairs.

Modes (``modes``), each adding its metrics:

- ``health`` (seconds, no load): per port (``nic`` set, as ``expand = "nic"`` does) its rate,
  link state, mismatches with the parameters and error counters read before and after the run;
  on the node (``nic`` unset) the number of active RDMA ports and each count summed over the ports.
- ``topology`` (node): each GPU's nearest RDMA NIC by PCIe path, the ``nvidia-smi topo -m``
  matrix (in the settings), and whether GPUDirect RDMA is possible.
- ``rdma``: ib_write_bw and ib_read_lat between a port and itself (loopback) or ``peer_device``,
  ``--use_cuda`` when GPUDirect RDMA works; on a port subject that port, on the node ``device``.
- ``tcp`` (node): iperf3 to ``peer``, or over loopback as a self-test.
- ``pairs`` (node, under torchrun or srun with one rank per node): every node meets others in
  rounds; the node or link that is slow in every pair it is in is named; each node reports its own.

With ``expand = "nic"`` the node modes (topology, tcp, pairs) are left out of each port's run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpcbench.errors import ConfigError, ProbeError, ProbeSkip
from hpcbench.hw.items import Item, missing, to_measurements
from hpcbench.launch import from_environ
from hpcbench.model import Measurement
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.network import health, modes, pairs, procs, since_last, topology

NAME = "network"
MODES = ("health", "topology", "rdma", "tcp", "pairs")
PORT_MODES = ("health", "rdma")
METRICS = tuple(
    dict.fromkeys(
        (
            *health.PORT_METRICS,
            *health.NODE_METRICS,
            *topology.METRICS,
            *modes.RDMA_METRICS,
            *modes.TCP_METRICS,
            *pairs.METRICS,
        )
    )
)


@dataclass(frozen=True)
class NetworkParams:
    modes: list[str] = field(
        default_factory=lambda: ["health", "topology", "tcp"],
        metadata={"help": "what to run: health, topology, rdma, tcp, pairs"},
    )
    nic: str = field(
        default="", metadata={"help": "one port (mlx5_0:1, eth0), set by expand = nic; '' = the node"}
    )
    ignore: list[str] = field(
        default_factory=list, metadata={"help": "ports left out, as shell patterns (mlx5_8:*, eno2)"}
    )
    interval: float = field(
        default=2.0, metadata={"help": "seconds between the two counter reads (at least); 0 = read once"}
    )
    error_limit: int = field(default=100, metadata={"help": "an error counter above this since boot counts"})
    expected_ports: int = field(
        default=0, metadata={"help": "active RDMA ports the node must have; 0 = not checked"}
    )
    expected_rate_gbps: float = field(
        default=0.0, metadata={"help": "rate every RDMA port must reach (Gb/s); 0 = not checked"}
    )
    expected_mtu: int = field(
        default=0, metadata={"help": "MTU of every RoCE port and Ethernet interface; 0 = not checked"}
    )
    near_level: str = field(
        default="PXB", metadata={"help": "a GPU's NIC is near at this level or nearer: PIX or PXB"}
    )
    device: str = field(
        default="", metadata={"help": "rdma on the node: the port (mlx5_0:1); '' = the first active"}
    )
    peer_device: str = field(
        default="", metadata={"help": "rdma: the client's port; '' = the same port (loopback)"}
    )
    use_cuda: str = field(default="auto", metadata={"help": "rdma: GPU memory (--use_cuda): auto, on, off"})
    rdma_bytes: int = field(default=8388608, metadata={"help": "ib_write_bw message size (bytes)"})
    qps: int = field(default=1, metadata={"help": "ib_write_bw queue pairs"})
    lat_bytes: int = field(default=2, metadata={"help": "ib_read_lat message size (bytes)"})
    lat_iters: int = field(default=10000, metadata={"help": "ib_read_lat iterations"})
    gid_index: int = field(default=-1, metadata={"help": "RoCE GID index (-x); -1 = perftest's choice"})
    rdma_port_base: int = field(
        default=18515, metadata={"help": "perftest's TCP port (the latency test: +1)"}
    )
    duration: float = field(
        default=5.0, metadata={"help": "seconds of each bandwidth test (ib_write_bw -D, iperf3 -t)"}
    )
    peer: str = field(
        default="", metadata={"help": "tcp: an iperf3 server (host or host:port); '' = loopback"}
    )
    streams: int = field(default=1, metadata={"help": "iperf3 parallel streams (-P)"})
    bitrate: str = field(
        default="", metadata={"help": "cap this node's iperf3 sending rate (-b, e.g. 10G); '' = unlimited"}
    )
    meet: str = field(default="log", metadata={"help": "pairs: every node meets log2(N) others (log) or all"})
    slow_fraction: float = field(
        default=0.8, metadata={"help": "pairs: a pair below this fraction of the reference is slow"}
    )
    pairs_port: int = field(default=5201, metadata={"help": "pairs: iperf3 listens on this port + the rank"})
    address: str = field(
        default="",
        metadata={"help": "pairs: interface or IP others reach this node at; '' = route to MASTER_ADDR"},
    )
    timeout: float = field(default=60.0, metadata={"help": "pairs: seconds to wait for the other nodes"})
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )
    since_last_run: bool = field(
        default=False,
        metadata={
            "help": "health, interval 0: counters_grew against the previous run's reading (state folder)"
        },
    )
    state_dir: str = field(default="", metadata={"help": "since_last_run's folder; '' = the state folder"})

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        check(bool(self.modes), NAME, "modes", f"name at least one of {', '.join(MODES)}")
        check(not bad, NAME, "modes", f"unknown mode {bad[0] if bad else ''!r}; known: {', '.join(MODES)}")
        check(self.interval >= 0, NAME, "interval", f"must be >= 0 seconds, got {self.interval}")
        check(self.error_limit >= 0, NAME, "error_limit", f"must be >= 0, got {self.error_limit}")
        check(self.expected_ports >= 0, NAME, "expected_ports", f"must be >= 0, got {self.expected_ports}")
        check(
            self.expected_rate_gbps >= 0,
            NAME,
            "expected_rate_gbps",
            f"must be >= 0, got {self.expected_rate_gbps}",
        )
        check(self.expected_mtu >= 0, NAME, "expected_mtu", f"must be >= 0, got {self.expected_mtu}")
        check(self.near_level in ("PIX", "PXB"), NAME, "near_level", f"PIX or PXB, not {self.near_level!r}")
        check(
            self.use_cuda in ("auto", "on", "off"),
            NAME,
            "use_cuda",
            f"auto, on or off, not {self.use_cuda!r}",
        )
        for key in ("rdma_bytes", "qps", "lat_bytes", "streams"):
            check(getattr(self, key) >= 1, NAME, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.lat_iters >= 10, NAME, "lat_iters", f"must be >= 10, got {self.lat_iters}")
        check(self.duration > 0, NAME, "duration", f"must be > 0 seconds, got {self.duration}")
        for key in ("rdma_port_base", "pairs_port"):
            value = getattr(self, key)
            check(1 <= value <= 65000, NAME, key, f"must be a TCP port (1-65000), got {value}")
        check(self.meet in pairs.MEET, NAME, "meet", f"log or all, not {self.meet!r}")
        check(
            0 < self.slow_fraction < 1, NAME, "slow_fraction", f"must be in (0, 1), got {self.slow_fraction}"
        )
        check(self.timeout > 0, NAME, "timeout", f"must be > 0 seconds, got {self.timeout}")
        check(bool(self.root), NAME, "root", "must not be empty")


class Network:
    """NIC health, GPU<->NIC topology, RDMA and TCP bandwidth, node pairs."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Network: RDMA/Ethernet port health, GPU<->NIC topology, perftest and iperf3 bandwidth, node pairs"
    )
    Params: ClassVar[type] = NetworkParams
    #: the tools are checked by the modes that use them (health needs none)
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {"nic": "nic"}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    @staticmethod
    def no_load_for(params: Mapping[str, Any]) -> bool:
        """Health and topology read sysfs only; read once (interval 0) they end in milliseconds and
        run in the run's one no-load child (``hpcbench.batch``); the other modes load the network."""
        modes = params.get("modes", ["health", "topology", "tcp"])
        return set(modes) <= {"health", "topology"} and float(params.get("interval", 2.0)) == 0

    def run(self, params: NetworkParams, ctx: ProbeContext) -> list[Measurement]:
        reader = modes.Reader(params.root, list(params.ignore))
        expect = health.Expect(
            params.expected_rate_gbps, params.expected_mtu, params.expected_ports, params.error_limit
        )
        settings: dict[str, Any] = {"modes": list(params.modes), "root": params.root}
        items: list[Item] = []
        if params.nic:
            items += self._port(params, ctx, reader, expect, settings)
        else:
            items += self._node(params, ctx, reader, expect, settings)
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention=health.CONVENTION)

    def _port(
        self,
        p: NetworkParams,
        ctx: ProbeContext,
        r: modes.Reader,
        expect: health.Expect,
        settings: dict[str, Any],
    ) -> list[Item]:
        if r.ignored(p.nic):
            raise ProbeSkip(f"{p.nic} is left out (ignore = {list(p.ignore)})")
        left_out = [m for m in p.modes if m not in PORT_MODES]
        if left_out:
            settings["left_out"] = f"{', '.join(left_out)}: node modes, run with expand = none"
        port, iface = r.port(p.nic), r.interface(p.nic)
        if port is None and iface is None:
            raise ProbeError(
                f"{p.nic} is not on this node any more (the inventory taken before the run listed it)"
            )
        settings["port"] = port.as_dict() if port else iface.as_dict() if iface else None
        items: list[Item] = []
        if "rdma" in p.modes:
            found, extra = modes.rdma_items(p, p.root, ctx.inventory, r.ports, p.nic, ctx.workdir)
            items += found
            settings.update(extra)
        if "health" in p.modes:
            after, interval = r.after(p.interval), p.interval
            if p.since_last_run and after is None:  # the previous run's reading is "before"
                now = r.before.get(p.nic, {})
                stat = os.path.join(p.root, "proc/stat")
                prev, interval, why = since_last.previous_and_now(p.nic, now, p.state_dir, stat)
                settings["counters_since_last_run"] = why or f"{interval:.0f} s since the previous reading"
                if prev is not None:
                    r.before[p.nic], after = prev, {p.nic: now}
            settings["counters_before"] = r.before.get(p.nic, {})
            settings["counters_after"] = (after or {}).get(p.nic)
            found = modes.subject_health(r, p.nic, after, interval, expect)
            if p.since_last_run and after is None:  # say why there is no growth to judge
                why = settings["counters_since_last_run"]
                found = [
                    Item(i.metric, not_measured=why) if i.metric == "counters_grew" else i for i in found
                ]
            items = found + items
        return items

    def _node(
        self,
        p: NetworkParams,
        ctx: ProbeContext,
        r: modes.Reader,
        expect: health.Expect,
        settings: dict[str, Any],
    ) -> list[Item]:
        items: list[Item] = []
        settings["ports"] = [x.as_dict() for x in r.ports] + [i.as_dict() for i in r.interfaces]
        settings["not_nics"] = r.virtual
        if "topology" in p.modes:
            found, extra = modes.topology_items(p.root, ctx.inventory, r.ports, p.near_level)
            items += found
            settings.update(extra)
        if "rdma" in p.modes:
            subject = p.device or next(
                (x.subject for x in r.ports if x.active and not r.ignored(x.subject)), ""
            )
            if subject:
                found, extra = modes.rdma_items(p, p.root, ctx.inventory, r.ports, subject, ctx.workdir)
            else:
                why = "no RDMA device on this node" if not r.ports else "no active RDMA port"
                found, extra = missing(modes.RDMA_METRICS, why), {}
            items += found
            settings.update(extra)
        if "tcp" in p.modes:
            found, extra = modes.tcp_items(p, ctx.workdir)
            items += found
            settings.update(extra)
        if "pairs" in p.modes:
            items += self._pairs(p, ctx, settings)
        if "health" in p.modes:
            after = r.after(p.interval)
            settings["counters_before"] = r.before
            settings["counters_after"] = after
            items = modes.node_health(r, after, p.interval, expect) + items
        return items

    def _pairs(self, p: NetworkParams, ctx: ProbeContext, settings: dict[str, Any]) -> list[Item]:
        try:
            launch = from_environ(os.environ)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
        if launch is None:
            return missing(pairs.METRICS, "pairs mode runs under torchrun or srun, one rank per node")
        if launch.world_size < 2:
            return missing(pairs.METRICS, f"pairs need 2 or more nodes; WORLD_SIZE is {launch.world_size}")
        from hpcbench.hw.rendezvous import RankFailure
        from hpcbench.probes.network import pairs_run

        cfg = pairs_run.PairsConfig(
            p.meet, p.duration, p.streams, p.bitrate, p.pairs_port, p.address, p.timeout, ctx.workdir
        )
        procs.require("iperf3")
        try:
            members, schedule, results, raw = pairs_run.run(cfg, launch, modes.hostname())
        except RankFailure as exc:
            raise ProbeError(f"rank {launch.rank}: {exc}") from None
        names = [m["host"] for m in members]
        analysis = pairs.analyse(names, results, p.slow_fraction)
        settings.update(
            pairs_nodes=names,
            pairs_rounds=[[[names[a], names[b]] for a, b in rnd] for rnd in schedule],
            pairs_gbps=raw,
            pairs_reference_gbps=analysis.reference,
            pairs_summary=analysis.summary,
            pairs_launcher=launch.launcher,
        )
        return pairs.node_items(names, results, analysis, launch.rank)
