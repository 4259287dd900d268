"""GPU <-> NIC topology: nvidia-smi topo -m's levels from sysfs PCIe paths, the matrix, the nearest
NIC of each GPU, GPUDirect RDMA; on the HGX fixture (GPUs at the PCI addresses NVML reports on a
real 8 x H200 node, tests/support/fakenvml.py) and its variant with a NIC on the other socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakenvml import FakeNvml

from hpcbench.core.errors import ProbeSkip
from hpcbench.engine import baselines, judge
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.engine.suite import load
from hpcbench.hw.net import topology
from hpcbench.node import collector, nics
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import PciPath
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.network_topology.probe import NetworkTopology

FIXTURES = Path(__file__).parent / "fixtures" / "network"
HGX = str(FIXTURES / "hgx8")
WRONG = str(FIXTURES / "hgx8_wrong_numa")


def p(host: str, *chain: str) -> PciPath:
    return PciPath(host, chain)


@pytest.mark.parametrize(
    ("a", "b", "numa", "expected"),
    [
        # GPU and NIC on two downstream ports of one switch
        (p("pci0000:15", "RP", "US", "DS1", "GPU"), p("pci0000:15", "RP", "US", "DS2", "NIC"), (0, 0), "PIX"),
        # two functions of one device (a dual-port NIC)
        (p("pci0000:15", "RP", "US", "DS", "F0"), p("pci0000:15", "RP", "US", "DS", "F1"), (0, 0), "PIX"),
        # the GPU behind a second switch below the first
        (
            p("h", "RP", "US1", "DS1a", "US2", "DS2a", "GPU"),
            p("h", "RP", "US1", "DS1b", "NIC"),
            (0, 0),
            "PXB",
        ),
        # two root ports of one host bridge
        (p("pci0000:00", "RP1", "GPU"), p("pci0000:00", "RP2", "NIC"), (0, 0), "PHB"),
        # two host bridges of one NUMA node, of two, of a machine that reports none
        (p("pci0000:15", "RP", "GPU"), p("pci0000:37", "RP", "NIC"), (0, 0), "NODE"),
        (p("pci0000:15", "RP", "GPU"), p("pci0000:97", "RP", "NIC"), (0, 1), "SYS"),
        (p("pci0000:15", "RP", "GPU"), p("pci0000:97", "RP", "NIC"), (None, None), "NODE"),
        (p("h", "RP", "X"), p("h", "RP", "X"), (0, 0), "X"),
    ],
)
def test_levels(a: PciPath, b: PciPath, numa: tuple[int | None, int | None], expected: str) -> None:
    assert topology.level(a, b, *numa) == expected
    assert topology.level(b, a, numa[1], numa[0]) == expected  # symmetric


def gpus_and_nics(root: str) -> tuple[list[topology.Device], list[topology.Device]]:
    inv = collector.collect(root, nvml=FakeNvml())
    return topology.gpu_devices(root, inv), topology.nic_devices(root, nics.rdma_ports(root))


def test_matrix_like_nvidia_smi_topo() -> None:
    gpus, nic_devs = gpus_and_nics(HGX)
    lines = topology.render(gpus, nic_devs).splitlines()
    header = (
        [f"GPU{i}" for i in range(8)]
        + [f"NIC{i}" for i in range(8)]
        + ["CPU", "Affinity", "NUMA", "Affinity"]
    )
    assert lines[0].split() == header
    assert [lines[0].index(c) for c in ("GPU0", "GPU1", "NIC0", "CPU Affinity")] == [8, 16, 72, 136]  # 8 wide
    gpu0 = (
        ["GPU0", "X"]
        + ["NODE"] * 3
        + ["SYS"] * 4
        + ["PIX"]
        + ["NODE"] * 3
        + ["SYS"] * 4
        + ["0-55,112-167", "0"]
    )
    assert lines[1].split() == gpu0
    nic4 = ["NIC4"] + ["SYS"] * 4 + ["PIX"] + ["NODE"] * 3 + ["SYS"] * 4 + ["X"] + ["NODE"] * 3
    assert lines[13].split() == nic4
    assert "  PIX  = Connection traversing at most a single PCIe bridge" in lines
    assert lines[-8:] == [f"  NIC{i}: mlx5_{i}" for i in range(8)]


def test_every_gpu_of_the_hgx_has_its_nic_under_its_switch() -> None:
    gpus, nic_devs = gpus_and_nics(HGX)
    near, without = topology.near_items(gpus, nic_devs, "PXB")
    assert near.value == 8.0 and without.value == 0.0
    assert near.detail.startswith(
        "8 of 8 GPUs have an RDMA NIC at PXB or nearer: gpu0 mlx5_0 PIX, gpu1 mlx5_1 PIX"
    )
    assert [topology.nearest(g, nic_devs)[1] for g in gpus] == ["PIX"] * 8  # type: ignore[index]


def test_a_nic_on_the_other_socket_is_named_with_what_the_gpu_has_instead() -> None:
    gpus, nic_devs = gpus_and_nics(WRONG)
    near, without = topology.near_items(gpus, nic_devs, "PXB")
    assert (near.value, without.value) == (7.0, 1.0)
    expected = (
        "gpu3 (0000:5d:00.0, NUMA 0) has no RDMA NIC under its PCIe switch: the nearest is mlx5_0 "
        "(0000:18:00.0, NUMA 0) at NODE"
    )
    assert without.detail == expected
    assert near.detail.endswith("; " + expected)
    matrix = topology.render(gpus, nic_devs).splitlines()
    assert matrix[4].startswith(
        "GPU3    NODE    NODE    NODE     X      SYS     SYS     SYS     SYS     NODE    NODE    NODE    SYS"
    )
    mlx5_3 = next(p for p in nics.rdma_ports(WRONG) if p.device == "mlx5_3")
    assert (mlx5_3.pci_address, mlx5_3.numa_node) == ("0000:e9:00.0", 1)


def test_gpudirect() -> None:
    assert topology.gpudirect_item(HGX).value == 1.0
    assert (
        topology.gpudirect_item(HGX).detail == "nvidia_peermem is loaded (GPUDirect RDMA through peer memory)"
    )
    dmabuf = topology.gpudirect_item(str(FIXTURES / "gdr_dmabuf"))
    assert dmabuf.value == 1.0 and dmabuf.detail == (
        "dma-buf: NVIDIA open kernel module 570.124.06 on kernel 6.8.0-45-generic (>= 5.12); nvidia_peermem "
        "is not loaded"
    )
    off = topology.gpudirect_item(str(FIXTURES / "gdr_off"))
    assert off.value == 0.0 and off.detail == (
        "neither nvidia_peermem nor nv_peer_mem is loaded and the NVIDIA proprietary kernel module "
        "535.161.08 on kernel 5.15.0-91-generic offers no dma-buf: GPUDirect RDMA is off "
        "(modprobe nvidia_peermem)"
    )
    open_old_kernel = topology.gpudirect(
        [], "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.1", "5.4.0"
    )
    assert open_old_kernel[0] is False
    assert topology.gpudirect(["nv_peer_mem"], None, None) == (
        True,
        "nv_peer_mem is loaded (GPUDirect RDMA through peer memory)",
    )
    assert topology.kernel_at_least("5.12.0", (5, 12)) and not topology.kernel_at_least("5.11.9", (5, 12))


def run_topology(root: str, tmp: Path, nvml: FakeNvml) -> list:
    inv = collector.collect(root, nvml=nvml)
    params = build_params(NetworkTopology, {"root": root})
    return NetworkTopology().run(params, ProbeContext("node", inv, str(tmp), 60.0))


def test_nightly_topology_check_warns_on_the_gpu_without_a_near_nic(tmp_path: Path) -> None:
    suite = load("nightly", registry.load_all())
    check = next(c for c in suite.checks if c.id == "network_topology")
    ms = run_topology(WRONG, tmp_path, FakeNvml())
    assert ms[0].settings["topology"].splitlines()[0].startswith("        GPU0")
    assert ms[0].settings["nearest_nic"]["gpu3"] == {"nic": "mlx5_0", "level": "NODE"}
    outcome = Outcome.of(Job(check, "node", {}), ms)
    (result,) = judge.judge(check, [outcome], baselines.load("h200"), Inventory.from_dict({}))
    by = {e.metric: e for e in result.evaluations}
    # the h200 profile's 8 GPUs near a NIC is an estimate: WARN at most against it
    assert (by["gpus_near_nic"].verdict.value, by["gpus_near_nic"].ratio) == ("WARN", 7 / 8)
    assert "gpu3 (0000:5d:00.0, NUMA 0) has no RDMA NIC under its PCIe switch" in by["gpus_near_nic"].reason
    assert by["gpus_near_nic"].reason.endswith("(hpcbench baseline create RECORD... -o FILE)")
    assert by["gpus_without_near_nic"].verdict.value == "WARN"
    assert by["gpudirect_rdma"].verdict.value == "PASS"
    ok = judge.judge(
        check,
        [Outcome.of(Job(check, "node", {}), run_topology(HGX, tmp_path, FakeNvml()))],
        baselines.load("h200"),
        Inventory.from_dict({}),
    )
    assert ok[0].verdict.value == "PASS"


def test_no_gpu_is_a_skip(tmp_path: Path) -> None:
    import pynvml

    with pytest.raises(ProbeSkip, match="no GPU on this node"):
        run_topology(HGX, tmp_path, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
