"""The network_rdma probe: ib_write_bw and ib_read_lat between a port and itself (loopback) or
``peer_device``, ``--use_cuda`` when GPUDirect RDMA works; on a port subject that port, on the node
``device`` (default: the first active port).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpcbench import nics
from hpcbench.errors import ProbeSkip
from hpcbench.hw.items import Item, missing, to_measurements
from hpcbench.hw.net import rdma
from hpcbench.model import Measurement
from hpcbench.probes.base import ProbeContext, Requirement, check

NAME = "network_rdma"


@dataclass(frozen=True)
class NetworkRdmaParams:
    nic: str = field(default="", metadata={"help": "one RDMA port (mlx5_0:1), set by expand = nic"})
    device: str = field(
        default="", metadata={"help": "on the node (nic unset): the port (mlx5_0:1); '' = the first active"}
    )
    peer_device: str = field(
        default="", metadata={"help": "the client's port; '' = the same port (loopback)"}
    )
    ignore: list[str] = field(
        default_factory=list, metadata={"help": "ports left out, as shell patterns (mlx5_8:*)"}
    )
    use_cuda: str = field(default="auto", metadata={"help": "GPU memory (--use_cuda): auto, on, off"})
    rdma_bytes: int = field(default=8388608, metadata={"help": "ib_write_bw message size (bytes)"})
    qps: int = field(default=1, metadata={"help": "ib_write_bw queue pairs"})
    lat_bytes: int = field(default=2, metadata={"help": "ib_read_lat message size (bytes)"})
    lat_iters: int = field(default=10000, metadata={"help": "ib_read_lat iterations"})
    gid_index: int = field(default=-1, metadata={"help": "RoCE GID index (-x); -1 = perftest's choice"})
    rdma_port_base: int = field(
        default=18515, metadata={"help": "perftest's TCP port (the latency test: +1)"}
    )
    duration: float = field(default=5.0, metadata={"help": "seconds of the bandwidth test (ib_write_bw -D)"})
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )

    def __post_init__(self) -> None:
        check(
            self.use_cuda in ("auto", "on", "off"),
            NAME,
            "use_cuda",
            f"auto, on or off, not {self.use_cuda!r}",
        )
        for key in ("rdma_bytes", "qps", "lat_bytes"):
            check(getattr(self, key) >= 1, NAME, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.lat_iters >= 10, NAME, "lat_iters", f"must be >= 10, got {self.lat_iters}")
        check(self.duration > 0, NAME, "duration", f"must be > 0 seconds, got {self.duration}")
        check(
            1 <= self.rdma_port_base <= 65000,
            NAME,
            "rdma_port_base",
            f"must be a TCP port (1-65000), got {self.rdma_port_base}",
        )
        check(bool(self.root), NAME, "root", "must not be empty")


class NetworkRdma:
    """RDMA bandwidth and latency of a port (perftest)."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = "Network RDMA: ib_write_bw and ib_read_lat on an RDMA port (perftest)"
    Params: ClassVar[type] = NetworkRdmaParams
    #: the tools are checked in run: a missing one is an ERROR naming the package
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {"nic": "nic"}
    metrics: ClassVar[tuple[str, ...]] = rdma.RDMA_METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkRdmaParams, ctx: ProbeContext) -> list[Measurement]:
        p = params
        ports = nics.rdma_ports(p.root)
        settings: dict[str, Any] = {"root": p.root}
        ignored = any(fnmatch.fnmatchcase(p.nic, pattern) for pattern in p.ignore)
        if p.nic and ignored:
            raise ProbeSkip(f"{p.nic} is left out (ignore = {list(p.ignore)})")
        subject = p.nic or p.device
        if not subject:
            subject = next(
                (
                    x.subject
                    for x in ports
                    if x.active and not any(fnmatch.fnmatchcase(x.subject, g) for g in p.ignore)
                ),
                "",
            )
        items: list[Item]
        if subject:
            items, extra = rdma.rdma_items(p, p.root, ctx.inventory, ports, subject, ctx.workdir)
            settings.update(extra)
        else:
            why = "no RDMA device on this node" if not ports else "no active RDMA port"
            items = missing(rdma.RDMA_METRICS, why)
        if items and all(i.value is None and not i.error for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention="perftest")
