"""iperf3 as a subprocess: the client's argv and a pure parser of its JSON report (``-J``).

The bandwidth is the receiver's: ``end.sum_received.bits_per_second`` / 1e9 (Gb/s), the
"receiver" line iperf3 prints at the end of a TCP test (what arrived, over the receiver's
time). The sender's rate and its retransmits are kept beside it. Tested on the JSON of iperf3
3.1.3, 3.1.6, 3.9 and 3.12 (tests/probes/network/fixtures/network/iperf3/); iperf3 prints ``"error"`` in the
same document when it fails (connection refused, a busy server), which becomes the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class IperfError(Exception):
    """iperf3 measured nothing; the message says why."""


@dataclass(frozen=True)
class TcpResult:
    receiver_bits_per_second: float  # iperf3's own number: end.sum_received.bits_per_second
    receiver_gbps: float
    sender_gbps: float
    retransmits: int | None
    seconds: float
    streams: int
    version: str
    interval_gbps: tuple[float, ...]  # the sum over streams in each reporting interval (sender side)
    cpu_host_percent: float | None
    cpu_remote_percent: float | None


def parse_json(text: str) -> TcpResult:
    """The result of one ``iperf3 -c ... -J`` run."""
    try:
        doc: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        first = text.strip().splitlines()[0][:200] if text.strip() else "no output"
        raise IperfError(f"iperf3 printed no JSON ({exc.msg}): {first}") from None
    start = doc.get("start") or {}
    version = str(start.get("version") or "?")
    if doc.get("error"):
        raise IperfError(f"iperf3 ({version}): {doc['error']}")
    protocol = (start.get("test_start") or {}).get("protocol")
    if protocol not in (None, "TCP"):
        raise IperfError(f"iperf3 ran a {protocol} test; the bandwidth check uses TCP")
    end = doc.get("end") or {}
    received, sent = end.get("sum_received"), end.get("sum_sent")
    if not received or not sent:
        raise IperfError(f"iperf3 ({version}) reported no sum_received/sum_sent: the test did not complete")
    cpu = end.get("cpu_utilization_percent") or {}
    intervals = tuple(
        float(i["sum"]["bits_per_second"]) / 1e9 for i in doc.get("intervals") or [] if "sum" in i
    )
    return TcpResult(
        receiver_bits_per_second=float(received["bits_per_second"]),
        receiver_gbps=float(received["bits_per_second"]) / 1e9,
        sender_gbps=float(sent["bits_per_second"]) / 1e9,
        retransmits=int(sent["retransmits"]) if "retransmits" in sent else None,
        seconds=float(received.get("seconds") or received.get("end") or 0.0),
        streams=int((start.get("test_start") or {}).get("num_streams") or len(end.get("streams") or [])),
        version=version,
        interval_gbps=intervals,
        cpu_host_percent=cpu.get("host_total"),
        cpu_remote_percent=cpu.get("remote_total"),
    )


def client_argv(
    host: str, port: int, duration_s: float, streams: int, bitrate: str, bind: str | None
) -> list[str]:
    """``iperf3 -c HOST -p PORT -t SECONDS -P STREAMS -J [-b BITRATE] [-B BIND]``."""
    argv = ["iperf3", "-c", host, "-p", str(port), "-t", f"{duration_s:g}", "-P", str(streams), "-J"]
    if bitrate:
        argv += ["-b", bitrate]
    if bind:
        argv += ["-B", bind]
    return argv


def server_argv(port: int, bind: str | None) -> list[str]:
    """A one-off server: it serves one test and exits (``-1``)."""
    return ["iperf3", "-s", "-1", "-p", str(port)] + (["-B", bind] if bind else [])
