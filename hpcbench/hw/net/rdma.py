"""One RDMA test between two ports: ib_write_bw and ib_read_lat, server then client, as health items.

Shared by the network_rdma probe (a port looped back to itself, or to another port of the node)
and the node pairs over RDMA. Missing tools raise ProbeError with the package to install (ERROR).
"""

from __future__ import annotations

from typing import Any

from hpcbench import nics
from hpcbench.errors import ProbeError
from hpcbench.hw.items import Item, missing
from hpcbench.hw.net import perftest, procs, topology
from hpcbench.node import Inventory

RDMA_METRICS = ("rdma_write_bw", "rdma_read_lat", "rdma_read_lat_p99")
TCP_METRICS = ("tcp_bw",)
#: beyond a test's duration, how long a server or client may take before it is killed
SLACK_S = 30.0


def cuda_choice(
    use_cuda: str, root: str, inventory: Inventory, port: nics.RdmaPort
) -> tuple[int | None, bool, str]:
    """(GPU index for --use_cuda, dma-buf, why) for a port: its nearest GPU when GPUDirect works."""
    if use_cuda == "off":
        return None, False, "host memory (use_cuda = off)"
    gpus = topology.gpu_devices(root, inventory)
    if not gpus:
        if use_cuda == "on":
            raise ProbeError("use_cuda = on but this node has no GPU")
        return None, False, "host memory (no GPU)"
    possible, why = topology.gpudirect_at(root)
    if not possible:
        if use_cuda == "on":
            raise ProbeError(f"use_cuda = on but GPUDirect RDMA is not possible here: {why}")
        return None, False, f"host memory: {why}"
    (nic,) = topology.nic_devices(root, [port])
    gpu = topology.nearest_gpu(nic, gpus)
    assert gpu is not None
    index = int(gpu.name.removeprefix("gpu"))
    return index, "dma-buf" in why, f"GPU {index} memory ({why})"


def rdma_items(
    p: Any, root: str, inventory: Inventory, ports: list[nics.RdmaPort], subject: str, workdir: str
) -> tuple[list[Item], dict[str, Any]]:
    """ib_write_bw and ib_read_lat between ``subject`` (server) and ``p.peer_device`` (client, "": itself)."""
    port = next((x for x in ports if x.subject == subject), None)
    if port is None:
        return missing(RDMA_METRICS, f"{subject} is not an RDMA port"), {}
    if not port.active:
        return missing(RDMA_METRICS, f"{subject} is not active ({port.state}/{port.phys_state})"), {}
    peer = next((x for x in ports if x.subject == p.peer_device), None) if p.peer_device else port
    if peer is None:
        raise ProbeError(
            f"peer_device {p.peer_device!r} is not an RDMA port of this node "
            f"({', '.join(x.subject for x in ports) or 'it has none'})"
        )
    for tool in ("ib_write_bw", "ib_read_lat"):
        procs.require(tool)
    cuda, dmabuf, memory = cuda_choice(p.use_cuda, root, inventory, port)
    server = perftest.Endpoint(port.device, port.port, cuda, dmabuf)
    client = perftest.Endpoint(peer.device, peer.port, cuda, dmabuf)
    seconds = max(1, int(-(-p.duration // 1)))
    path = f"{peer.subject} -> {port.subject}" + (" (loopback)" if peer is port else "")
    settings: dict[str, Any] = {"rdma_path": path, "rdma_memory": memory}
    bw_args = (p.rdma_port_base, p.rdma_bytes, seconds, p.qps, p.gid_index)
    argv_s = perftest.bw_argv(server, *bw_args, None)
    argv_c = perftest.bw_argv(client, *bw_args, "localhost")
    bw = _perftest(argv_s, argv_c, p.rdma_port_base, workdir, seconds + SLACK_S, perftest.parse_bw)
    lat_args = (p.rdma_port_base + 1, p.lat_bytes, p.lat_iters, p.gid_index)
    lat = _perftest(
        perftest.lat_argv(server, *lat_args, None),
        perftest.lat_argv(client, *lat_args, "localhost"),
        p.rdma_port_base + 1,
        workdir,
        SLACK_S * 2,
        perftest.parse_lat,
    )
    settings.update(ib_write_bw=" ".join(argv_c), ib_write_bw_result=vars(bw), ib_read_lat_result=vars(lat))
    what = f"{path}, {memory}"
    return [
        Item(
            "rdma_write_bw",
            bw.bw_average_gbps,
            "Gb/s",
            True,
            f"ib_write_bw {what}: BW average {bw.bw_average_gbps:.4g} Gb/s at {bw.size_bytes} B x {p.qps} QP",
            convention="perftest BW average",
        ),
        Item(
            "rdma_read_lat",
            lat.t_typical_us,
            "us",
            False,
            f"ib_read_lat {what}: t_typical {lat.t_typical_us} us, {lat.size_bytes} B",
            convention="perftest t_typical",
        ),
        Item(
            "rdma_read_lat_p99",
            lat.p99_us,
            "us",
            False,
            f"ib_read_lat {what}: 99% percentile {lat.p99_us} us of {lat.iterations}",
            convention="perftest 99% percentile",
        ),
    ], settings


def _perftest(
    argv_s: list[str], argv_c: list[str], port: int, workdir: str, timeout: float, parse: Any
) -> Any:
    try:
        out_c, out_s, rc = procs.server_client(argv_s, argv_c, port, workdir, timeout, argv_s[0])
    except procs.ToolFailed as exc:
        raise ProbeError(str(exc)) from None
    try:
        return parse(out_c)
    except perftest.PerftestError as client_error:
        try:
            return parse(out_s)
        except perftest.PerftestError:
            pass
        hint = ""
        if "unrecognized option" in str(client_error) and "cuda" in str(client_error):
            hint = "this perftest is built without CUDA: -p use_cuda=off, or a perftest built with CUDA"
        raise ProbeError(f"{argv_c[0]} client (exit {rc}): {client_error}", hint) from None
