"""Port health from sysfs: link state, rate, MTU and error counters. Pure decisions, no I/O.

Every function takes what ``hpcbench.node.nics`` read (ports, interfaces, counter snapshots) and returns
health items (``hpcbench.core.items.Item``): a count or a rate with a one-line detail that a WARN
or FAIL quotes, or why the item was not measured here (SKIP). The suites put absolute limits on
the counts; the rates are compared with the baseline and with the sibling ports.

- ``link_down``: a compute rail (``hpcbench.node.nics.rails``) that is not ACTIVE with its physical
  link up; another RDMA port (storage, management) or an Ethernet interface that is down while in
  use: a global address, or a member of a bond or team. A port nobody uses is not counted: an
  interface administratively down, or up without link and without an address (NetworkManager
  leaves unplugged managed ports up), an unused storage NIC polling for a cable.
- ``rdma_rate`` / ``eth_rate``: the port's rate in Gb/s (RDMA: sysfs ``rate`` as ibstat's Rate;
  Ethernet: ``speed`` Mb/s / 1000); 0 for a port that is down (nothing usable). A NIC that
  reports no speed (a virtio NIC's -1) is not measured, never a failure.
- ``mismatches``: what differs from the parameters: an RDMA port below ``expected_rate_gbps``, a
  port of Ethernet link layer whose MTU is not ``expected_mtu``, fewer active RDMA ports than
  ``expected_ports`` (node).
- ``counters_grew``: error counters that went up between the two reads (``interval`` s apart,
  or around a load test): any increment of ``link_downed``, ``link_error_recovery``, the 4-bit
  ``local_link_integrity_errors`` and ``excessive_buffer_overrun_errors`` and ``carrier_changes``;
  the other errors (symbol, receive, discards, Ethernet rx/tx/CRC) as a rate per hour above
  ``rate_per_hour`` (0: any growth). A counter at its maximum (``IB_COUNTER_BITS``) counts too: it
  can show no new error until it is reset, so it is never a PASS. rx_missed_errors and
  rx_fifo_errors (host load) and the hw_counters are read and reported, never judged.
- ``pcie_degraded``: an RDMA port whose PCIe link trained below its maximum speed or width (a
  rail at x8 of x16 halves what GPUDirect RDMA can move); not measured where sysfs has no link.
- ``roce_v2_missing``: a RoCE port in use without a GID of type RoCE v2 (NCCL and perftest over
  routed RoCE need one).
- ``counters_over_limit``: error counters whose count since boot (or the last reset) is above
  their limit (``BOOT_LIMITS`` for the narrow counters, ``error_limit`` for the others); a
  saturated one is said so, with how to reset it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcbench.core.items import Item
from hpcbench.hw.net.counters import ETH_ERROR_COUNTERS, IB_ERROR_COUNTERS, saturated

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.node.nics import Interface, RdmaPort

PATH_METRICS = ("pcie_degraded", "roce_v2_missing")
PORT_METRICS = (
    "rdma_rate",
    "eth_rate",
    "link_down",
    "mismatches",
    "counters_grew",
    "counters_over_limit",
    *PATH_METRICS,
)
NODE_METRICS = (
    "rdma_ports_active",
    "link_down",
    "mismatches",
    "counters_grew",
    "counters_over_limit",
    *PATH_METRICS,
)
CONVENTION = "sysfs"
#: what a state other than ACTIVE means
STATE_HINT = {
    "INIT": "the link is up but no subnet manager has configured the port (is opensm or UFM running?)",
    "ARMED": "the subnet manager has not activated the port yet",
    "DOWN": "no link",
}


@dataclass(frozen=True)
class Expect:
    """What the parameters expect; 0 is 'not checked'."""

    rate_gbps: float = 0.0
    mtu: int = 0
    ports: int = 0
    error_limit: int = 100
    rate_per_hour: float = 0.0
    #: the compute rails; None: every RDMA port is judged as one
    rails: tuple[str, ...] | None = None

    def is_rail(self, subject: str) -> bool:
        return self.rails is None or subject in self.rails


#: counters each of whose increments is an event that counts: a link that went down or retrained,
#: a 4-bit counter (max 15) that moved at all, an interface's carrier lost
EVENT_COUNTERS = (
    "link_downed",
    "link_error_recovery",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
    "carrier_changes",
)
#: since-boot limits of the narrow counters (the others: ``error_limit``)
BOOT_LIMITS = {
    "link_downed": 5,
    "link_error_recovery": 5,
    "local_link_integrity_errors": 3,
    "excessive_buffer_overrun_errors": 3,
}
RESET = "reset it (`perfquery -x -R` or a driver reload) to see new errors"


def base_name(counter: str) -> str:
    """``ens1f0np0.rx_errors`` -> ``rx_errors`` (a RoCE port's interface counters are prefixed)."""
    return counter.rsplit(".", 1)[-1]


def grown(before: dict[str, int], after: dict[str, int], names: Iterable[str]) -> list[tuple[str, int]]:
    """(counter, increase) of each error counter that went up between two reads."""
    return [(n, after[n] - before[n]) for n in names if n in before and n in after and after[n] > before[n]]


def growth(
    before: dict[str, int], after: dict[str, int], names: Iterable[str], seconds: float, rate_per_hour: float
) -> list[str]:
    """What counts as growth between two reads ``seconds`` apart, one phrase per counter: a
    saturated counter (it can no longer show growth), any increment of an event counter, or an
    error rate above ``rate_per_hour``."""
    out = []
    for n in names:
        if n not in before or n not in after:
            continue
        if saturated(base_name(n), after[n]):
            out.append(f"{n} saturated at {after[n]}: {RESET}")
            continue
        d = after[n] - before[n]
        if d <= 0:
            continue
        if base_name(n) in EVENT_COUNTERS:
            out.append(f"{n} +{d}")
            continue
        rate = d * 3600.0 / seconds if seconds > 0 else float("inf")
        if rate > rate_per_hour:
            out.append(f"{n} +{d} ({rate:.0f}/h)" if rate >= 10 else f"{n} +{d} ({rate:.3g}/h)")
    return out


def over_limit(values: dict[str, int], names: Iterable[str], limit: int) -> list[tuple[str, int]]:
    """(counter, value) of each error counter above its limit: ``BOOT_LIMITS`` for the narrow
    counters (or ``limit`` when lower), ``limit`` for the others."""
    return [
        (n, values[n]) for n in names if values.get(n, 0) > min(limit, BOOT_LIMITS.get(base_name(n), limit))
    ]


def counter_items(
    who: str,
    names: tuple[str, ...],
    before: dict[str, int],
    after: dict[str, int] | None,
    interval: float,
    limit: int,
    rate_per_hour: float = 0.0,
) -> list[Item]:
    """``counters_grew`` (between the two reads, ``interval`` s apart) and ``counters_over_limit``
    (since boot or the last reset) over the error counters ``names``."""
    present = [n for n in names if n in before]
    if not present:
        why = f"{who}: no error counter can be read"
        return [Item("counters_grew", not_measured=why), Item("counters_over_limit", not_measured=why)]
    items = []
    if after is None:
        items.append(Item("counters_grew", not_measured="interval = 0: the counters were read once"))
    else:
        up = growth(before, after, present, interval, rate_per_hour)
        items.append(
            Item(
                "counters_grew",
                float(len(up)),
                detail=f"{who}: error counters grown in {interval:.3g} s: {', '.join(up) or 'none'}",
            )
        )
    latest = after if after is not None else before
    high = over_limit(latest, present, limit)
    parts = [
        f"{n} {v}"
        + (f" (saturated: the real count is higher; {RESET})" if saturated(base_name(n), v) else "")
        for n, v in high
    ]
    items.append(
        Item(
            "counters_over_limit",
            float(len(high)),
            detail=f"{who}: error counters above their limits since boot or reset (link_downed and "
            f"link_error_recovery 5, the 4-bit ones 3, the others {limit}): {', '.join(parts) or 'none'}",
        )
    )
    return items


def describe_port(p: RdmaPort) -> str:
    """E.g. ``mlx5_5:1 InfiniBand ACTIVE/LinkUp 200 Gb/sec (4X HDR), MT4129 fw 28.39.1002, ...``."""
    numa = "?" if p.numa_node is None else p.numa_node
    return (
        f"{p.subject} {p.link_layer or '?'} {p.state or '?'}/{p.phys_state or '?'} "
        f"{p.rate_text or 'rate ?'}, {p.hca_type or '?'} fw {p.fw_ver or '?'}, "
        f"{p.pci_address or '?'} NUMA {numa}"
    )


def port_down_reason(p: RdmaPort) -> str:
    """Why a port is not carrying traffic, with what to look at."""
    from hpcbench.node.nics import PHYS_STATE_HINT

    why = [f"state {p.state or '?'}, physical state {p.phys_state or '?'}"]
    hint = PHYS_STATE_HINT.get(p.phys_state or "") or STATE_HINT.get(p.state or "")
    if p.phys_state == "LinkUp" and p.state in STATE_HINT:
        hint = STATE_HINT[p.state or ""]
    if p.link_layer == "Ethernet" and p.netdev_operstate not in (None, "up"):
        hint = f"its interface {', '.join(p.netdevs)} is {p.netdev_operstate}"
    return f"{p.subject}: " + "; ".join(why) + (f": {hint}" if hint else "")


def rdma_port_items(
    p: RdmaPort, before: dict[str, int], after: dict[str, int] | None, interval: float, expect: Expect
) -> list[Item]:
    """The health items of one RDMA port (``after`` None: one read only)."""
    if not p.active and not expect.is_rail(p.subject) and not p.in_use:
        unused = (
            f"{p.subject} is not a compute rail and its interface has no address: not in use "
            f"({p.state or '?'}/{p.phys_state or '?'})"
        )
        return [
            Item("rdma_rate", not_measured=unused),
            Item("link_down", 0.0, detail=unused),
            Item("eth_rate", not_measured=f"{p.subject} is an RDMA port: its rate is rdma_rate"),
            Item("mismatches", not_measured=unused),
            *counter_items(p.subject, IB_ERROR_COUNTERS, before, after, interval, expect.error_limit),
        ]
    items = [
        Item(
            "rdma_rate",
            p.rate_gbps if p.active and p.rate_gbps is not None else 0.0,
            "Gb/s",
            True,
            describe_port(p),
        ),
        Item(
            "link_down",
            0.0 if p.active else 1.0,
            detail=f"{p.subject}: ACTIVE, LinkUp" if p.active else port_down_reason(p),
        ),
        Item("eth_rate", not_measured=f"{p.subject} is an RDMA port: its rate is rdma_rate"),
    ]
    if p.active and p.rate_gbps is None:
        items[0] = Item("rdma_rate", not_measured=f"{p.subject}: rate {p.rate_text!r} is not in Gb/sec")
    bad, checked = [], []
    if expect.rate_gbps:
        checked.append("expected_rate_gbps")
        if p.active and p.rate_gbps is not None and p.rate_gbps < expect.rate_gbps:
            bad.append(
                f"rate {p.rate_gbps:g} Gb/s ({p.rate_text}) below the expected {expect.rate_gbps:g} Gb/s"
            )
    if expect.mtu and p.link_layer == "Ethernet":
        checked.append("expected_mtu")
        if p.netdev_mtu is not None and p.netdev_mtu != expect.mtu:
            bad.append(f"MTU {p.netdev_mtu} of {', '.join(p.netdevs)}, expected {expect.mtu}")
    items.append(_mismatch_item(p.subject, bad, checked))
    items += path_items(p)
    return items + counter_items(
        p.subject, IB_ERROR_COUNTERS, before, after, interval, expect.error_limit, expect.rate_per_hour
    )


def path_items(p: RdmaPort) -> list[Item]:
    """``pcie_degraded`` and ``roce_v2_missing`` of one RDMA port."""
    if p.pcie_width is None or p.pcie_max_width is None:
        pcie = Item("pcie_degraded", not_measured=f"{p.subject}: sysfs shows no PCIe link width")
    else:
        now = f"{p.pcie_speed or '?'} x{p.pcie_width}"
        best = f"{p.pcie_max_speed or '?'} x{p.pcie_max_width}"
        low = p.pcie_width < p.pcie_max_width or (
            p.pcie_speed is not None and p.pcie_max_speed is not None and p.pcie_speed != p.pcie_max_speed
        )
        pcie = Item(
            "pcie_degraded",
            1.0 if low else 0.0,
            detail=f"{p.subject} ({p.pci_address}): PCIe {now}"
            + (f", below its maximum {best}: reseat or replace the NIC, or check the slot" if low else ""),
        )
    if p.roce_v2_gid is None:
        gid = Item("roce_v2_missing", not_measured=f"{p.subject} is InfiniBand: no RoCE GID")
    else:
        gid = Item(
            "roce_v2_missing",
            0.0 if p.roce_v2_gid else 1.0,
            detail=f"{p.subject}: "
            + (
                "a RoCE v2 GID is configured" if p.roce_v2_gid else "no GID of type RoCE v2 (gid_attrs/types)"
            ),
        )
    return [pcie, gid]


def interface_items(
    i: Interface, before: dict[str, int], after: dict[str, int] | None, interval: float, expect: Expect
) -> list[Item]:
    """The health items of one physical Ethernet interface."""
    state = (
        f"{i.name} {i.operstate or '?'} ({i.driver or '?'}, {i.pci_address or 'no PCI address'}, MTU {i.mtu})"
    )
    if i.admin_up is False:
        unused = f"{i.name} is administratively down (not configured): not in use"
        return [
            Item("eth_rate", not_measured=unused),
            Item("rdma_rate", not_measured=f"{i.name} is an Ethernet interface, not an RDMA port"),
            Item("link_down", 0.0, detail=unused),
            Item("mismatches", not_measured=unused),
            Item("counters_grew", not_measured=unused),
            Item("counters_over_limit", not_measured=unused),
        ]
    up = i.operstate == "up" or (i.operstate == "unknown" and i.carrier is True)
    if not up and not i.in_use:
        unused = (
            f"{i.name} is up without link and has no address and no bond or team: not in use "
            "(NetworkManager leaves unplugged ports up)"
        )
        return [
            Item("eth_rate", not_measured=unused),
            Item("rdma_rate", not_measured=f"{i.name} is an Ethernet interface, not an RDMA port"),
            Item("link_down", 0.0, detail=unused),
            Item("mismatches", not_measured=unused),
            *counter_items(i.name, ETH_ERROR_COUNTERS, before, after, interval, expect.error_limit),
        ]
    if not up:
        rate = Item("eth_rate", 0.0, "Gb/s", True, f"{state}: configured up but no link (carrier lost)")
    elif i.speed_mbps is None:
        rate = Item(
            "eth_rate",
            not_measured=f"{i.name} ({i.driver or '?'}) reports no link speed (-1), as virtual NICs do",
        )
    else:
        rate = Item("eth_rate", i.speed_mbps / 1000, "Gb/s", True, f"{state} at {i.speed_mbps} Mb/s")
    down = Item("link_down", 0.0 if up else 1.0, detail=state + ("" if up else ": configured up but no link"))
    bad, checked = [], []
    if expect.mtu:
        checked.append("expected_mtu")
        if i.mtu is not None and i.mtu != expect.mtu:
            bad.append(f"MTU {i.mtu}, expected {expect.mtu}")
    not_rdma = Item("rdma_rate", not_measured=f"{i.name} is an Ethernet interface, not an RDMA port")
    items = [rate, not_rdma, down, _mismatch_item(i.name, bad, checked)]
    return items + counter_items(
        i.name, ETH_ERROR_COUNTERS, before, after, interval, expect.error_limit, expect.rate_per_hour
    )


def _mismatch_item(who: str, bad: list[str], checked: list[str]) -> Item:
    if not checked:
        return Item(
            "mismatches",
            not_measured="nothing expected of this port (expected_rate_gbps, expected_mtu unset)",
        )
    return Item(
        "mismatches",
        float(len(bad)),
        detail=f"{who}: " + ("; ".join(bad) or f"as expected ({', '.join(checked)})"),
    )


def node_items(
    ports: list[RdmaPort],
    per_subject: dict[str, list[Item]],
    expect: Expect,
    rdma_class: bool,
    not_nics: list[str],
) -> list[Item]:
    """The node's summary: active RDMA ports, and each count summed over the subjects with the
    details of the subjects that contribute. ``rdma_class``: /sys/class/infiniband exists."""
    items = []
    others = [p for p in ports if not expect.is_rail(p.subject)]
    ports = [p for p in ports if expect.is_rail(p.subject)]
    active = [p for p in ports if p.active]
    if ports:
        down = [f"{p.subject} ({p.state}/{p.phys_state})" for p in ports if not p.active]
        rates = sorted({p.rate_text or "?" for p in active})
        what = "RDMA ports" if expect.rails is None else "compute rails"
        detail = f"{len(active)} of {len(ports)} {what} active" + (f" ({', '.join(rates)})" if rates else "")
        if others:
            detail += "; other RDMA ports (health only): " + ", ".join(
                f"{p.subject} {p.state or '?'}/{p.phys_state or '?'} {p.rate_text or ''}".rstrip()
                for p in others
            )
        items.append(
            Item(
                "rdma_ports_active",
                float(len(active)),
                "ports",
                True,
                detail + (f"; not active: {', '.join(down)}" if down else ""),
            )
        )
    else:
        why = (
            "no RDMA port: /sys/class/infiniband has no device"
            if rdma_class
            else "no RDMA device: /sys/class/infiniband does not exist (no InfiniBand/RoCE adapter, or its "
            "RDMA driver such as mlx5_ib is not loaded)"
        )
        items.append(Item("rdma_ports_active", not_measured=why))
    extra = []
    if expect.ports and len(active) < expect.ports:
        extra.append(f"{len(active)} active RDMA ports, expected {expect.ports}")
    for metric in ("link_down", "mismatches", "counters_grew", "counters_over_limit", *PATH_METRICS):
        found = [
            (s, i)
            for s, its in per_subject.items()
            for i in its
            if i.metric == metric and i.value is not None
        ]
        bad = [i.detail for _, i in found if i.value]
        total = sum(i.value or 0.0 for _, i in found)
        if metric == "mismatches":
            if not expect.ports and not found:
                why = "nothing expected (expected_ports, expected_rate_gbps, expected_mtu unset)"
                items.append(Item(metric, not_measured=why))
                continue
            bad, total = extra + bad, total + len(extra)
        elif not found:
            reasons = sorted(
                {i.not_measured for its in per_subject.values() for i in its if i.metric == metric}
            )
            default = "no RDMA port on this node" if metric in PATH_METRICS else "no NIC on this node"
            items.append(Item(metric, not_measured="; ".join(reasons) or default))
            continue
        if bad:
            detail = "; ".join(bad)
        elif metric == "link_down":
            detail = "all up: " + "; ".join(i.detail for _, i in found)
        else:
            detail = f"none on {', '.join(s for s, _ in found) or 'any port'}"
        if metric == "link_down" and not_nics:
            detail += f" (not NICs: {', '.join(not_nics)})"
        items.append(Item(metric, total, detail=detail))
    return items
