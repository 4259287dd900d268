"""The network_rdma probe: ib_write_bw and ib_read_lat between a port and itself (loopback) or
``peer_device``, GPU memory when GPUDirect RDMA works and perftest can (``hpcbench.hw.net.rdma``);
on a port subject that port, on the node ``device`` (default: the first active rail).

``expand = "rail"`` runs every compute rail at once (one perftest pair per rail, concurrently:
the load that finds PCIe-switch and root-complex contention); ``at_once = false`` one after
another; ``expand = "nic"`` every RDMA port, one after another. The port's error counters are
read before and after its traffic: ``counters_grew`` judges what the load provoked, and the
hw_counters (retransmissions, congestion notifications) are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeSkip
from hpcbench.core.items import Item, missing, to_measurements
from hpcbench.hw.net import rdma
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.hw.net import reader

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
    rails: list[str] = field(
        default_factory=list,
        metadata={"help": "the rails of expand = rail (mlx5_0:1, ...); [] = the RDMA ports nearest a GPU"},
    )
    at_once: bool = field(
        default=True, metadata={"help": "expand = rail: every rail at once (false: one after another)"}
    )
    error_limit: int = field(
        default=100, metadata={"help": "counters_over_limit of network_ports (reported)"}
    )
    rate_per_hour: float = field(
        default=0.0, metadata={"help": "error rates during the traffic above this count; 0 = any growth"}
    )
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
    expands: ClassVar[dict[str, str]] = {"nic": "nic", "rail": "nic"}
    metrics: ClassVar[tuple[str, ...]] = (*rdma.RDMA_METRICS, "counters_grew")
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkRdmaParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        import fnmatch

        from hpcbench.hw.net import reader

        p = params
        r = reader.Reader(p.root, list(p.ignore))  # the counters before the traffic
        ports = r.ports
        settings: dict[str, Any] = {"root": p.root}
        ignored = any(fnmatch.fnmatchcase(p.nic, pattern) for pattern in p.ignore)
        if p.nic and ignored:
            raise ProbeSkip(f"{p.nic} is left out (ignore = {list(p.ignore)})")
        subject = p.nic or p.device
        if not subject:
            rails = reader.rails_of(p.root, ports, ctx.inventory, list(p.rails))
            subject = next(
                (x.subject for x in ports if x.active and x.subject in rails and not r.ignored(x.subject)),
                "",
            )
        items: list[Item]
        if subject:
            items, extra = rdma.rdma_items(p, p.root, ctx.inventory, ports, subject, ctx.workdir)
            settings.update(extra)
            if any(i.value is not None for i in items):
                items += around(r, subject, p, settings)
        else:
            why = "no RDMA device on this node" if not ports else "no active RDMA port"
            items = missing(rdma.RDMA_METRICS, why)
        if items and all(i.value is None and not i.error for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention="perftest")


def around(r: reader.Reader, subject: str, p: NetworkRdmaParams, settings: dict[str, Any]) -> list[Item]:
    """``counters_grew`` of the port over its traffic, and its hw_counters' growth (reported)."""
    from hpcbench.hw.net import health, reader

    seconds = time.monotonic() - r.started
    after = {subject: r.counters(subject)}
    before = r.before.get(subject, {})
    settings["counters_before"] = before
    settings["counters_after"] = after[subject]
    settings["hw_counters_grown"] = {
        k.removeprefix("hw_counters/"): after[subject][k] - v
        for k, v in before.items()
        if k.startswith("hw_counters/") and k in after[subject]
    }
    expect = health.Expect(error_limit=p.error_limit, rate_per_hour=p.rate_per_hour)
    found = reader.subject_health(r, subject, after, seconds, expect)
    grew = [i for i in found if i.metric == "counters_grew"]
    return [
        Item(
            i.metric,
            i.value,
            i.unit,
            i.higher_is_better,
            i.detail.replace(" grown in ", " grown during the traffic, "),
        )
        if i.value is not None
        else i
        for i in grew
    ]
