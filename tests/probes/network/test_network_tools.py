"""perftest and iperf3: the parsers on captured output of several versions (every number pinned to
the formula from the printed value), the argv lists, the server/client processes, iperf3 for real
over loopback, and a missing tool as ERROR with the package to install.

perftest's orchestration (the real binaries without a device, and the stand-in) is
tests/test_network_rdma.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from hpcbench.core.errors import ProbeError
from hpcbench.hw.net import iperf, perftest, procs
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.network_rdma.probe import NetworkRdma
from hpcbench.probes.network_tcp.probe import NetworkTcp

FIXTURES = Path(__file__).parent / "fixtures" / "network"
PERFTEST = FIXTURES / "perftest"
IPERF = FIXTURES / "iperf3"
MIB = 2**20 * 8 / 1e9  # Gb/s per MB/sec or MiB/sec of perftest (2**20 bytes per second)


def read(name: str) -> str:
    return (PERFTEST / name).read_text()


# --- perftest ---------------------------------------------------------------------------


def test_bw_v4_5_loopback_interleaved_mb() -> None:
    r = perftest.parse_bw(read("write_bw_4.5_ib_loopback_interleaved_mb.txt"))
    assert (r.size_bytes, r.iterations, r.unit, r.link_type, r.mtu) == (
        8388608,
        20000,
        "MB/sec",
        "IB",
        "4096[B]",
    )
    assert r.bw_average_gbps == 24056.72 * 2**20 * 8 / 1e9
    assert r.bw_peak_gbps == 24056.74 * 2**20 * 8 / 1e9
    assert r.test == "RDMA_Write BW Test"


def test_bw_roce_mb_with_a_cpu_frequency_line_and_units_checked_by_msg_rate() -> None:
    r = perftest.parse_bw(read("write_bw_ofed4.4_roce_client_mb.txt"))
    assert r.bw_average_gbps == 11024.71 * MIB and r.link_type == "Ethernet"
    # perftest's MB is 2**20 bytes: the message rate it prints says the same bandwidth
    assert r.msg_rate_mpps * 1e6 * r.size_bytes * 8 / 1e9 == pytest.approx(r.bw_average_gbps, rel=1e-4)


def test_bw_gbits_and_mib() -> None:
    g = perftest.parse_bw(read("write_bw_post_list_gbits.txt"))
    assert (g.unit, g.bw_average_gbps, g.bw_peak_gbps, g.size_bytes) == ("Gb/sec", 0.48, 0.0, 8)
    assert g.test == "RDMA_Write Post List BW Test"
    m = perftest.parse_bw(read("write_bw_cuda_server_mib.txt"))
    assert (m.unit, m.bw_average_gbps) == ("MiB/sec", 14948.67 * MIB)


def test_latency() -> None:
    r = perftest.parse_lat(read("read_lat_ofed4.4_roce_client.txt"))
    assert (r.t_typical_us, r.p99_us, r.p999_us, r.t_min_us, r.t_max_us) == (2.69, 2.75, 5.50, 2.64, 5.50)
    assert (r.size_bytes, r.iterations, r.link_type, r.test) == (
        2,
        1000,
        "Ethernet",
        "RDMA_Read Latency Test",
    )
    ib = perftest.parse_lat(read("read_lat_mlx4_ib_client.txt"))
    assert (ib.t_typical_us, ib.p99_us, ib.t_avg_us, ib.link_type) == (1.79, 1.88, 1.80, "IB")


def test_perftest_errors() -> None:
    with pytest.raises(perftest.PerftestError, match=r"^Couldn't connect to 192.168.125.211:18515$"):
        perftest.parse_bw(read("write_bw_connect_error.txt"))
    # recorded here: Debian's perftest 4.5 with no RDMA device; its last line is the reason
    with pytest.raises(perftest.PerftestError, match=r"^Unable to find the Infiniband/RoCE device$"):
        perftest.parse_bw(read("write_bw_4.5_no_device.txt"))
    with pytest.raises(perftest.PerftestError, match="no '#bytes #iterations t_min"):
        perftest.parse_lat(read("write_bw_post_list_gbits.txt"))
    with pytest.raises(perftest.PerftestError, match="a duration"):
        perftest.parse_lat(" #bytes        #iterations       t_avg[usec]    tps average\n 2  10  1.0  1.0\n")
    header_only = read("write_bw_post_list_gbits.txt").replace(" 8          224958464", " x")
    with pytest.raises(perftest.PerftestError, match="header but no result line"):
        perftest.parse_bw(header_only)
    unknown = "ib_write_bw: unrecognized option '--use_cuda=0'\n"
    with pytest.raises(perftest.PerftestError, match="unrecognized option '--use_cuda=0'"):
        perftest.parse_bw(unknown)


def test_perftest_argv() -> None:
    gpu = perftest.Endpoint("mlx5_3", 1, cuda=3, dmabuf=True)
    assert perftest.bw_argv(gpu, 18515, 8388608, 5, 2, -1, None) == [
        "ib_write_bw", "-d", "mlx5_3", "-i", "1", "-p", "18515", "-F", "--use_cuda=3", "--use_cuda_dmabuf",
        "-s", "8388608", "-D", "5", "-q", "2", "--report_gbits", "--perform_warm_up",
    ]  # fmt: skip
    host = perftest.Endpoint("mlx5_0")
    assert perftest.lat_argv(host, 18516, 2, 10000, 3, "localhost") == [
        "ib_read_lat", "-d", "mlx5_0", "-i", "1", "-p", "18516", "-F", "-x", "3", "-s", "2", "-n", "10000",
        "localhost",
    ]  # fmt: skip


# --- iperf3 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "streams", "seconds"),
    [
        ("3.1.3_tcp.json", "iperf 3.1.3", 1, 10.001024),
        ("3.1.6_tcp.json", "iperf 3.1.6", 1, 20.000146),
        ("3.9_tcp.json", "iperf 3.9", 1, 10.000272),
        ("3.12_loopback_p2.json", "iperf 3.12", 2, None),
    ],
)
def test_iperf3_versions(name: str, version: str, streams: int, seconds: float | None) -> None:
    text = (IPERF / name).read_text()
    doc = json.loads(text)
    r = iperf.parse_json(text)
    assert r.receiver_gbps == doc["end"]["sum_received"]["bits_per_second"] / 1e9
    assert r.sender_gbps == doc["end"]["sum_sent"]["bits_per_second"] / 1e9
    assert r.retransmits == doc["end"]["sum_sent"]["retransmits"]
    assert (r.version, r.streams) == (version, streams)
    assert len(r.interval_gbps) == len(doc["intervals"])
    if seconds is not None:
        assert r.seconds == seconds


def test_iperf3_pinned_values() -> None:
    assert iperf.parse_json((IPERF / "3.1.3_tcp.json").read_text()).receiver_gbps == 388736097.120548 / 1e9
    assert iperf.parse_json((IPERF / "3.9_tcp.json").read_text()).receiver_gbps == 44042139781.797935 / 1e9


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("3.7_refused.json", "iperf3 (iperf 3.7): error - unable to connect to server: Connection refused"),
        ("3.12_refused.json", "iperf3 (iperf 3.12): unable to connect to server: Connection refused"),
        ("3.9_udp.json", "iperf3 ran a UDP test; the bandwidth check uses TCP"),
    ],
)
def test_iperf3_failures(name: str, message: str) -> None:
    with pytest.raises(iperf.IperfError) as info:
        iperf.parse_json((IPERF / name).read_text())
    assert str(info.value) == message
    with pytest.raises(iperf.IperfError, match="printed no JSON"):
        iperf.parse_json("iperf3: error - unable to start listener for connections: Address already in use\n")


def test_iperf3_argv() -> None:
    assert iperf.client_argv("10.0.0.7", 5203, 1.0, 4, "200M", None) == [
        "iperf3", "-c", "10.0.0.7", "-p", "5203", "-t", "1", "-P", "4", "-J", "-b", "200M",
    ]  # fmt: skip
    assert iperf.server_argv(5203, "10.0.0.3") == ["iperf3", "-s", "-1", "-p", "5203", "-B", "10.0.0.3"]


# --- processes ----------------------------------------------------------------------------


def test_listening_ports_are_read_from_proc() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18012 1\n"
        "   1: 0100007F:1451 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 0 1\n"
    )
    assert procs.listening_ports(text) == {2024}  # 0x07E8 LISTEN; 0x1451 is an established connection
    assert procs.listening_sockets(text) == {2024: {18012}}  # port -> the listening socket's inode
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not procs.is_listening(port)
        s.listen(1)
        assert procs.is_listening(port)
        # tied to a process: this one holds the socket, its parent does not
        assert procs.is_listening(port, pid=os.getpid()) and not procs.is_listening(port, pid=os.getppid())
        assert procs.holder(port) == f"pid {os.getpid()} ({Path('/proc/self/comm').read_text().strip()})"
        with pytest.raises(procs.ToolFailed, match=rf"^port {port} is already held by pid {os.getpid()} "):
            procs.port_free(port)


def test_missing_tools_are_errors_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProbeError) as info:
        procs.require("iperf3")
    assert str(info.value) == "iperf3 not found on PATH"
    assert (
        info.value.hint
        == "install iperf3: apt-get install iperf3 (Debian/Ubuntu) or dnf install iperf3 (RHEL/Rocky)"
    )
    root = str(FIXTURES / "hgx8")
    params = build_params(NetworkRdma, {"root": root, "nic": "mlx5_0:1"})
    with pytest.raises(ProbeError) as info:
        NetworkRdma().run(params, ProbeContext("mlx5_0:1", Inventory.from_dict({}), str(tmp_path), 60))
    assert str(info.value) == "ib_write_bw not found on PATH"
    assert info.value.hint == (
        "install perftest: apt-get install perftest (Debian/Ubuntu) or dnf install perftest (RHEL/Rocky)"
    )


# --- iperf3 for real over loopback ----------------------------------------------------------


def test_tcp_loopback_self_test_with_real_iperf3(tmp_path: Path) -> None:
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is not installed: apt-get install iperf3 (Debian/Ubuntu) or dnf install iperf3")
    params = build_params(NetworkTcp, {"duration": 1.0})
    (m,) = NetworkTcp().run(params, ProbeContext("node", Inventory.from_dict({}), str(tmp_path), 60))
    result = m.settings["tcp_result"]
    assert (m.metric, m.unit, m.convention) == ("tcp_bw", "Gb/s", "iperf3 receiver")
    assert m.value == result["receiver_bits_per_second"] / 1e9 > 0
    assert m.settings["tcp_interface"] == "lo" and result["version"].startswith("iperf 3.")
    assert m.settings["iperf3"].startswith("iperf3 -c 127.0.0.1 -p ") and m.settings["iperf3"].endswith(
        "-t 1 -P 1 -J"
    )
    assert list(tmp_path.iterdir()) == []  # the tools' output files are gone


def test_tcp_to_a_peer_without_a_server_is_an_error(tmp_path: Path) -> None:
    port = procs.free_port()
    params = build_params(NetworkTcp, {"duration": 1.0, "peer": f"127.0.0.1:{port}"})
    with pytest.raises(ProbeError) as info:
        NetworkTcp().run(params, ProbeContext("node", Inventory.from_dict({}), str(tmp_path), 60))
    assert str(info.value).startswith("iperf3 (iperf 3.") and str(info.value).endswith("Connection refused")
    assert info.value.hint == "is an iperf3 server running on the peer (iperf3 -s)?"
