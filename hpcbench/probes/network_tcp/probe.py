"""The network_tcp probe (node): iperf3 to ``peer``, or over loopback as a self-test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeError
from hpcbench.core.items import Item, to_measurements
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured

NAME = "network_tcp"
TCP_METRICS = ("tcp_bw",)
#: beyond a test's duration, how long a server or client may take before it is killed
SLACK_S = 30.0


@dataclass(frozen=True)
class NetworkTcpParams:
    peer: str = field(default="", metadata={"help": "an iperf3 server (host or host:port); '' = loopback"})
    duration: float = field(default=5.0, metadata={"help": "seconds of the test (iperf3 -t)"})
    streams: int = field(default=1, metadata={"help": "iperf3 parallel streams (-P)"})
    bitrate: str = field(default="", metadata={"help": "cap the sending rate (-b, e.g. 10G); '' = unlimited"})

    def __post_init__(self) -> None:
        check(self.streams >= 1, NAME, "streams", f"must be >= 1, got {self.streams}")
        check(self.duration > 0, NAME, "duration", f"must be > 0 seconds, got {self.duration}")


class NetworkTcp:
    """TCP bandwidth (iperf3)."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = "Network TCP: iperf3 bandwidth to a peer, or over loopback as a self-test"
    Params: ClassVar[type] = NetworkTcpParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = TCP_METRICS
    #: under a launch every node writes its own record (the session reads this)
    record_per_node: ClassVar[bool] = True

    def run(self, params: NetworkTcpParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        items, settings = tcp_items(params, ctx.workdir)
        return to_measurements(items, ctx.subject, settings, convention="iperf3 receiver")


def tcp_items(p: Any, workdir: str) -> tuple[list[Item], dict[str, Any]]:
    """iperf3 to ``p.peer`` (an iperf3 server someone runs there), or a loopback self-test."""
    from hpcbench.hw.net import iperf, procs

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
