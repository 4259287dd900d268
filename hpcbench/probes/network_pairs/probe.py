"""The network_pairs probe (node, under torchrun or srun with one rank per node): see pairs.py."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpcbench.errors import ConfigError, ProbeError, ProbeSkip
from hpcbench.hw.items import Item, missing, to_measurements
from hpcbench.hw.net import procs
from hpcbench.launch import from_environ
from hpcbench.model import Measurement
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.network_pairs import pairs

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


class NetworkPairs:
    """Node pairs: TCP bandwidth in rounds, the slow node or link named."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Network pairs: iperf3 both ways between node pairs in rounds, the slow node or link named"
    )
    Params: ClassVar[type] = NetworkPairsParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = pairs.METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkPairsParams, ctx: ProbeContext) -> list[Measurement]:
        settings: dict[str, Any] = {}
        items = self._pairs(params, ctx, settings)
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention="iperf3 receiver")

    def _pairs(self, p: NetworkPairsParams, ctx: ProbeContext, settings: dict[str, Any]) -> list[Item]:
        try:
            launch = from_environ(os.environ)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
        if launch is None:
            return missing(pairs.METRICS, "network_pairs runs under torchrun or srun, one rank per node")
        if launch.world_size < 2:
            return missing(pairs.METRICS, f"pairs need 2 or more nodes; WORLD_SIZE is {launch.world_size}")
        from hpcbench.hw.rendezvous import RankFailure
        from hpcbench.probes.network_pairs import run

        cfg = run.PairsConfig(
            p.meet, p.duration, p.streams, p.bitrate, p.pairs_port, p.address, p.timeout, ctx.workdir
        )
        procs.require("iperf3")
        try:
            members, schedule, results, raw = run.run(cfg, launch, socket.gethostname())
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
