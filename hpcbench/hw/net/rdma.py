"""One RDMA test between two ports: ib_write_bw and ib_read_lat, server then client, as health items.

Shared by the network_rdma probe (a port looped back to itself, or to another port of the node)
and the node pairs over RDMA. Before it runs, perftest's ``--help`` says what the binary can do
(``perftest.parse_help``): GPU memory where GPUDirect RDMA works and the binary has CUDA, host
memory otherwise with the reason in the record (``memory: host (this perftest has no CUDA
support)``), never an ERROR for that unless ``use_cuda = on`` demands GPU memory. The GPU is
named by PCI address (``--use_cuda_bus_id``) where perftest has it, else by its CUDA device
number (``perftest.cuda_ordinal``: not the NVML index). Both sides run pinned to the NIC's local
CPUs. A missing tool raises ProbeError naming the package (ERROR).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcbench.core.errors import ProbeError
from hpcbench.core.items import Item, missing
from hpcbench.node.pci import full_address, local_cpulist

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.hw.net import perftest
    from hpcbench.node import nics
    from hpcbench.node.inventory import Inventory

RDMA_METRICS = ("rdma_write_bw", "rdma_read_lat", "rdma_read_lat_p99")
#: beyond a test's duration, how long a server or client may take before it is killed
SLACK_S = 30.0
HELP_TIMEOUT_S = 10.0
NO_CUDA_HINT = (
    "a perftest built with CUDA (linux-rdma/perftest with CUDA_H_PATH, or the MLNX_OFED/DOCA one) "
    "measures from GPU memory; -p use_cuda=off accepts host memory"
)


def capabilities(tool: str) -> perftest.Capabilities:
    """What ``tool --help`` announces (perftest exits 1 after its help: the text is what counts)."""
    import subprocess

    from hpcbench.hw.net import perftest

    try:
        done = subprocess.run(
            [tool, "--help"], capture_output=True, text=True, timeout=HELP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return perftest.Capabilities(False, False, False)
    return perftest.parse_help(done.stdout + done.stderr)


@dataclass(frozen=True)
class Memory:
    """The memory perftest registers: a GPU's (by CUDA number or bus id) or the host's, and why."""

    cuda: int | None
    bus_id: str | None
    dmabuf: bool
    text: str  # "host (this perftest has no CUDA support)", "GPU 3 (0000:3b:00.0) ..."

    @property
    def on_gpu(self) -> bool:
        return self.cuda is not None or self.bus_id is not None


def choose_memory(
    use_cuda: str,
    root: str,
    inventory: Inventory,
    port: nics.RdmaPort,
    caps: perftest.Capabilities,
    visible: str | None,
) -> Memory:
    """Where the port's test buffers live (see the module docstring); ProbeError only when
    ``use_cuda = on`` asks for GPU memory that cannot be had."""
    from hpcbench.hw.net import perftest, topology

    def host(why: str) -> Memory:
        if use_cuda == "on":
            raise ProbeError(f"use_cuda = on but {why}", NO_CUDA_HINT if "perftest" in why else "")
        return Memory(None, None, False, f"host ({why})")

    if use_cuda == "off":
        return Memory(None, None, False, "host (use_cuda = off)")
    gpus = topology.gpu_devices(root, inventory)
    if not gpus:
        return host("no GPU on this node")
    possible, why = topology.gpudirect_at(root)
    if not possible:
        return host(why)
    if not caps.cuda:
        return host("this perftest has no CUDA support: its --help lists no --use_cuda")
    dmabuf = "dma-buf" in why
    if dmabuf and not caps.cuda_dmabuf:
        return host(
            "GPUDirect RDMA is possible here through dma-buf only and this perftest has no --use_cuda_dmabuf"
        )
    (nic,) = topology.nic_devices(root, [port])
    gpu = topology.nearest_gpu(nic, gpus)
    assert gpu is not None
    where = f"{gpu.name} ({gpu.address})"
    if caps.cuda_bus_id and gpu.address:
        return Memory(None, gpu.address, dmabuf, f"GPU: {where} by --use_cuda_bus_id; {why}")
    uuids = {
        d.uuid: address for d in inventory.gpus.devices if d.uuid and (address := full_address(d.pci_bus_id))
    }
    ordinal, how = perftest.cuda_ordinal(gpu.address or "", [g.address or "" for g in gpus], visible, uuids)
    if ordinal is None:
        return host(f"{where} has no CUDA device number here: {how}")
    return Memory(ordinal, None, dmabuf, f"GPU: {where} as CUDA device {ordinal} ({how}); {why}")


def local_cpus(root: str, port: nics.RdmaPort) -> frozenset[int] | None:
    """The NIC's local CPUs this process may use (its cgroup's share); None: no pinning."""
    from hpcbench.node.collector import parse_cpulist

    text = local_cpulist(root, port.pci_address) if port.pci_address else None
    if not text:
        return None
    allowed = os.sched_getaffinity(0)
    near = frozenset(c for c in parse_cpulist(text) if c in allowed)
    return near or None


def rdma_items(
    p: Any, root: str, inventory: Inventory, ports: list[nics.RdmaPort], subject: str, workdir: str
) -> tuple[list[Item], dict[str, Any]]:
    """ib_write_bw and ib_read_lat between ``subject`` (server) and ``p.peer_device`` (client, "": itself)."""
    from hpcbench.hw.net import perftest, procs

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
    caps = capabilities("ib_write_bw")
    memory = choose_memory(p.use_cuda, root, inventory, port, caps, os.environ.get("CUDA_VISIBLE_DEVICES"))
    server = perftest.Endpoint(port.device, port.port, memory.cuda, memory.dmabuf, memory.bus_id)
    client = perftest.Endpoint(peer.device, peer.port, memory.cuda, memory.dmabuf, memory.bus_id)
    cpus = local_cpus(root, port)
    seconds = max(1, int(-(-p.duration // 1)))
    path = f"{peer.subject} -> {port.subject}" + (" (loopback)" if peer is port else "")
    settings: dict[str, Any] = {
        "rdma_path": path,
        "rdma_memory": memory.text,
        "perftest_capabilities": vars(caps),
        "rdma_cpus": sorted(cpus) if cpus else None,
    }
    bw_args = (p.rdma_port_base, p.rdma_bytes, seconds, p.qps, p.gid_index)
    argv_s = perftest.bw_argv(server, *bw_args, None)
    argv_c = perftest.bw_argv(client, *bw_args, "localhost")
    bw = run_pair(argv_s, argv_c, p.rdma_port_base, workdir, seconds + SLACK_S, perftest.parse_bw, cpus)
    # ib_read_lat from host memory: the latency is the NIC's and the link's; GPU memory is the
    # bandwidth test's question
    lat_s = perftest.Endpoint(port.device, port.port)
    lat_c = perftest.Endpoint(peer.device, peer.port)
    lat_args = (p.rdma_port_base + 1, p.lat_bytes, p.lat_iters, p.gid_index)
    lat = run_pair(
        perftest.lat_argv(lat_s, *lat_args, None),
        perftest.lat_argv(lat_c, *lat_args, "localhost"),
        p.rdma_port_base + 1,
        workdir,
        SLACK_S * 2,
        perftest.parse_lat,
        cpus,
    )
    settings.update(ib_write_bw=" ".join(argv_c), ib_write_bw_result=vars(bw), ib_read_lat_result=vars(lat))
    return [
        Item(
            "rdma_write_bw",
            bw.bw_average_gbps,
            "Gb/s",
            True,
            f"ib_write_bw {path}, memory: {memory.text}: BW average {bw.bw_average_gbps:.4g} Gb/s at "
            f"{bw.size_bytes} B x {p.qps} QP",
            convention="perftest BW average",
        ),
        Item(
            "rdma_read_lat",
            lat.t_typical_us,
            "us",
            False,
            f"ib_read_lat {path}, host memory: t_typical {lat.t_typical_us} us, {lat.size_bytes} B",
            convention="perftest t_typical",
        ),
        Item(
            "rdma_read_lat_p99",
            lat.p99_us,
            "us",
            False,
            f"ib_read_lat {path}, host memory: 99% percentile {lat.p99_us} us of {lat.iterations}",
            convention="perftest 99% percentile",
        ),
    ], settings


def run_pair(
    argv_s: list[str],
    argv_c: list[str],
    port: int,
    workdir: str,
    timeout: float,
    parse: Any,
    cpus: frozenset[int] | None = None,
) -> Any:
    """A perftest server and its client; the parsed result, else ProbeError with the error line
    of whichever side printed one (the client's first, then the server's)."""
    from hpcbench.hw.net import perftest, procs

    try:
        out_c, out_s, rc = procs.server_client(
            argv_s, argv_c, port, workdir, timeout, argv_s[0], perftest.error_line, cpus
        )
    except procs.ToolFailed as exc:
        raise ProbeError(str(exc)) from None
    try:
        return parse(out_c)
    except perftest.PerftestError as client_error:
        try:
            return parse(out_s)
        except perftest.PerftestError:
            pass
        reason = perftest.error_line(out_c) or perftest.error_line(out_s) or str(client_error)
        side = "client" if perftest.error_line(out_c) or not perftest.error_line(out_s) else "server"
        raise ProbeError(f"{argv_c[0]} {side} (client exit {rc}): {reason}") from None
