"""The network_ports probe: port health from sysfs, no load (seconds).

Per port (``nic`` set, as ``expand = "nic"`` does) its rate, link state, mismatches with the
parameters and error counters read before and after ``interval``; on the node (``nic`` unset)
the number of active RDMA ports and each count summed over the ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeError, ProbeSkip
from hpcbench.core.items import Item, to_measurements
from hpcbench.hw.net import health
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured

NAME = "network_ports"
METRICS = tuple(dict.fromkeys((*health.PORT_METRICS, *health.NODE_METRICS)))


@dataclass(frozen=True)
class NetworkPortsParams:
    nic: str = field(
        default="", metadata={"help": "one port (mlx5_0:1, eth0), set by expand = nic; '' = the node"}
    )
    ignore: list[str] = field(
        default_factory=list, metadata={"help": "ports left out, as shell patterns (mlx5_8:*, eno2)"}
    )
    interval: float = field(
        default=2.0, metadata={"help": "seconds between the two counter reads (at least); 0 = read once"}
    )
    error_limit: int = field(
        default=100,
        metadata={"help": "a wide error counter above this since boot counts (narrow ones: less)"},
    )
    rate_per_hour: float = field(
        default=0.0,
        metadata={"help": "symbol/receive/Ethernet errors count above this rate per hour; 0 = any growth"},
    )
    rails: list[str] = field(
        default_factory=list,
        metadata={"help": "the compute rails (mlx5_0:1, ...); [] = the RDMA ports nearest a GPU"},
    )
    expected_ports: int = field(
        default=0, metadata={"help": "active RDMA ports the node must have; 0 = not checked"}
    )
    expected_rate_gbps: float = field(
        default=0.0, metadata={"help": "rate every RDMA port must reach (Gb/s); 0 = not checked"}
    )
    expected_mtu: int = field(
        default=0, metadata={"help": "MTU of every RoCE port and Ethernet interface; 0 = not checked"}
    )
    root: str = field(
        default="/", metadata={"help": "where /sys and /proc are read (a container's host mount)"}
    )
    since_last_run: bool = field(
        default=False,
        metadata={"help": "interval 0: counters_grew against the previous run's reading (state folder)"},
    )
    state_dir: str = field(default="", metadata={"help": "since_last_run's folder; '' = the state folder"})

    def __post_init__(self) -> None:
        check(self.interval >= 0, NAME, "interval", f"must be >= 0 seconds, got {self.interval}")
        check(self.error_limit >= 0, NAME, "error_limit", f"must be >= 0, got {self.error_limit}")
        check(self.rate_per_hour >= 0, NAME, "rate_per_hour", f"must be >= 0, got {self.rate_per_hour}")
        check(self.expected_ports >= 0, NAME, "expected_ports", f"must be >= 0, got {self.expected_ports}")
        check(
            self.expected_rate_gbps >= 0,
            NAME,
            "expected_rate_gbps",
            f"must be >= 0, got {self.expected_rate_gbps}",
        )
        check(self.expected_mtu >= 0, NAME, "expected_mtu", f"must be >= 0, got {self.expected_mtu}")
        check(bool(self.root), NAME, "root", "must not be empty")


class NetworkPorts:
    """RDMA/Ethernet port health: link, rate, MTU, error counters."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Network ports: RDMA/Ethernet link state, rate, MTU and error counters (sysfs, no load)"
    )
    Params: ClassVar[type] = NetworkPortsParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {"nic": "nic", "rail": "nic"}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    @staticmethod
    def no_load_for(params: Mapping[str, Any]) -> bool:
        """Read once (interval 0) it reads sysfs in milliseconds and runs in the run's one no-load
        child (``hpcbench.engine.batch``); with an interval it waits between two reads."""
        return float(params.get("interval", 2.0)) == 0

    def run(self, params: NetworkPortsParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        from hpcbench.hw.net import reader, since_last

        p = params
        r = reader.Reader(p.root, list(p.ignore))
        rails = reader.rails_of(p.root, r.ports, ctx.inventory, list(p.rails))
        expect = health.Expect(
            p.expected_rate_gbps, p.expected_mtu, p.expected_ports, p.error_limit, p.rate_per_hour, rails
        )
        settings: dict[str, Any] = {"root": p.root, "rails": list(rails)}
        items: list[Item]
        if p.nic:
            if r.ignored(p.nic):
                raise ProbeSkip(f"{p.nic} is left out (ignore = {list(p.ignore)})")
            port, iface = r.port(p.nic), r.interface(p.nic)
            if port is None and iface is None:
                raise ProbeError(
                    f"{p.nic} is not on this node any more (the inventory taken before the run listed it)"
                )
            settings["port"] = port.as_dict() if port else iface.as_dict() if iface else None
            after, interval = r.after(p.interval), p.interval
            why = ""
            if p.since_last_run and after is None:  # the previous run's reading is "before"
                now = r.before.get(p.nic, {})
                stat = os.path.join(p.root, "proc/stat")
                prev, interval, why = since_last.previous_and_now(p.nic, now, p.state_dir, stat)
                settings["counters_since_last_run"] = why or f"{interval:.0f} s since the previous reading"
                if prev is not None:
                    r.before[p.nic], after = prev, {p.nic: now}
            settings["counters_before"] = r.before.get(p.nic, {})
            settings["counters_after"] = (after or {}).get(p.nic)
            items = reader.subject_health(r, p.nic, after, interval, expect)
            if p.since_last_run and after is None:  # say why there is no growth to judge
                items = [
                    Item(i.metric, not_measured=why) if i.metric == "counters_grew" else i for i in items
                ]
        else:
            settings["ports"] = [x.as_dict() for x in r.ports] + [i.as_dict() for i in r.interfaces]
            settings["not_nics"] = r.virtual
            after = r.after(p.interval)
            settings["counters_before"] = r.before
            settings["counters_after"] = after
            items = reader.node_health(r, after, p.interval, expect)
        if items and all(i.value is None for i in items):
            raise ProbeSkip("; ".join(dict.fromkeys(i.not_measured for i in items)))
        return to_measurements(items, ctx.subject, settings, convention=health.CONVENTION)
