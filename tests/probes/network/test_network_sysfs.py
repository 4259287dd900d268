"""The node's network ports from sysfs (hpcbench.node.nics, hpcbench.node.pci) on the fixture trees of
tests/probes/network/fixtures/network/ (README there): an 8-GPU 8-NIC HGX-style host and its faulty variants,
a RoCE host, and this CI VM's own tree (captured). Also the inventory and the ``nic`` expansion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.fakenvml import FakeNvml

from hpcbench.engine.plan import Unrunnable, expand
from hpcbench.engine.suite import CheckSpec
from hpcbench.hw.net import counters
from hpcbench.node import collector, nics
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import PciPath, full_address, local_cpulist, numa_node, path_of, pci_path

FIXTURES = Path(__file__).parent / "fixtures" / "network"
HGX = str(FIXTURES / "hgx8")
VM = str(FIXTURES / "vm")
ROCE = str(FIXTURES / "roce2")


def test_parsers() -> None:
    assert nics.parse_numbered("4: ACTIVE\n") == "ACTIVE"
    assert nics.parse_numbered("5: LinkUp") == "LinkUp"
    assert nics.parse_numbered("2: Polling") == "Polling"
    assert nics.parse_numbered("") is None and nics.parse_numbered(None) is None
    assert nics.parse_rate("400 Gb/sec (4X NDR)\n") == 400.0
    assert nics.parse_rate("53.125 Gb/sec (1X HDR)") == 53.125
    assert nics.parse_rate("junk") is None
    assert nics.parse_speed("10000\n") == 10000
    assert nics.parse_speed("-1") is None  # virtio, or a down link: unknown, not zero
    assert nics.parse_speed(None) is None
    assert nics.parse_int("0x1003", 16) == 0x1003
    assert counters.saturated("symbol_error", 65535) and not counters.saturated("symbol_error", 65534)
    assert counters.saturated("link_downed", 255) and not counters.saturated("port_xmit_data", 2**64 - 1)


def test_pci_paths() -> None:
    assert full_address("00000000:19:00.0") == "0000:19:00.0"  # NVML's bus id
    assert full_address("0000:3B:00.1") == "0000:3b:00.1"
    assert full_address("nonsense") is None
    assert path_of("/sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/0000:17:01.0/0000:19:00.0") == PciPath(
        "pci0000:15", ("0000:15:01.0", "0000:16:00.0", "0000:17:01.0", "0000:19:00.0")
    )
    # below a function (a virtio NIC's netdev): the function is the last address
    assert path_of("/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0") == PciPath(
        "pci0000:00", ("0000:00:03.0",)
    )
    assert path_of("/sys/devices/virtual/net/lo") is None
    gpu0 = pci_path(HGX, "0000:19:00.0")
    assert gpu0 is not None and gpu0.chain[-1] == "0000:19:00.0" and gpu0.host_bridge == "pci0000:15"
    assert numa_node(HGX, "0000:9b:00.0") == 1 and local_cpulist(HGX, "0000:9b:00.0") == "56-111,168-223"
    assert numa_node(VM, "0000:00:03.0") is None  # the kernel's -1 on a one-node VM


def test_hgx_rdma_ports() -> None:
    ports = nics.rdma_ports(HGX)
    assert [p.subject for p in ports] == [f"mlx5_{i}:1" for i in range(8)]
    p0 = ports[0]
    assert (p0.state, p0.phys_state, p0.rate_gbps, p0.rate_text, p0.link_layer) == (
        "ACTIVE",
        "LinkUp",
        400.0,
        "400 Gb/sec (4X NDR)",
        "InfiniBand",
    )
    assert (p0.hca_type, p0.fw_ver, p0.node_guid, p0.driver) == (
        "MT4129",
        "28.39.1002",
        "946d:ae03:0050:0770",
        "mlx5_core",
    )
    assert (p0.pci_address, p0.numa_node, p0.netdevs, p0.netdev_mtu) == (
        "0000:18:00.0",
        0,
        ("ibp24s0",),
        4092,
    )
    assert p0.active and ports[7].numa_node == 1


def test_hgx_interfaces_and_subjects() -> None:
    physical, virtual = nics.interfaces(HGX)
    by_name = {i.name: i for i in physical}
    assert virtual == ["docker0", "lo"]
    assert by_name["ibp24s0"].kind == "infiniband" and by_name["ibp24s0"].rdma_port == "mlx5_0:1"
    eno1, eno2 = by_name["eno1"], by_name["eno2"]
    assert (eno1.kind, eno1.operstate, eno1.admin_up, eno1.speed_mbps, eno1.rate_gbps) == (
        "ethernet",
        "up",
        True,
        10000,
        10.0,
    )
    assert (eno1.driver, eno1.pci_address, eno1.numa_node, eno1.mtu) == ("i40e", "0000:04:00.0", 0, 1500)
    assert (eno2.operstate, eno2.admin_up, eno2.carrier, eno2.speed_mbps) == ("down", False, None, None)
    assert nics.is_subject(eno1) and not nics.is_subject(by_name["ibp24s0"])
    assert list(nics.collect(HGX).nics) == [f"mlx5_{i}:1" for i in range(8)] + ["eno1", "eno2"]


def test_this_vm_captured() -> None:
    """The CI VM: eth0 a virtio NIC whose speed is -1, lo and ifb0/ifb1 virtual, no infiniband class."""
    section = nics.collect(VM)
    assert section.rdma_ports == () and section.virtual_interfaces == ("ifb0", "ifb1", "lo")
    assert section.nics == ("eth0",)
    (eth0,) = section.interfaces
    assert (eth0.driver, eth0.speed_mbps, eth0.pci_address, eth0.kind) == (
        "virtio_net",
        None,
        "0000:00:03.0",
        "ethernet",
    )
    assert nics.summary_lines(section) == [
        f"NIC: eth0 Ethernet up, speed unknown, MTU {eth0.mtu}, virtio_net, 0000:00:03.0, NUMA ?",
        "Virtual interfaces (not NICs): ifb0, ifb1, lo",
    ]


def test_roce_ports_own_their_interfaces() -> None:
    ports = nics.rdma_ports(ROCE)
    assert [(p.subject, p.link_layer, p.netdevs, p.netdev_mtu, p.rate_gbps) for p in ports] == [
        ("mlx5_0:1", "Ethernet", ("ens1f0np0",), 9000, 100.0),
        ("mlx5_1:1", "Ethernet", ("ens1f1np1",), 1500, 100.0),
    ]
    section = nics.collect(ROCE)
    assert section.nics == ("mlx5_0:1", "mlx5_1:1", "eno1")  # the RoCE netdevs are their ports
    assert section.virtual_interfaces == ("bond0", "lo")


def test_counters() -> None:
    c = counters.rdma_counters(str(FIXTURES / "hgx8_port_down"), "mlx5_3", 1)
    assert (c["symbol_error"], c["link_downed"], c["link_error_recovery"]) == (65535, 7, 4)
    eno1 = counters.interface_counters(HGX, "eno1")
    assert eno1["rx_dropped"] == 4127 and eno1["carrier_changes"] == 2 and eno1["rx_crc_errors"] == 0
    assert counters.rdma_counters(HGX, "mlx5_9", 1) == {}  # no such device: nothing, no exception


def test_inventory_lists_the_nics(tmp_path: Path) -> None:
    data = collector.collect(HGX, nvml=FakeNvml())
    assert data.network.nics[:2] == ("mlx5_0:1", "mlx5_1:1")
    assert data.as_dict()["network"]["nics"][:2] == ["mlx5_0:1", "mlx5_1:1"]  # as the record keeps it
    lines = collector.summary_lines(data)
    mlx5_5 = "NIC: mlx5_5:1 InfiniBand ACTIVE/LinkUp 400 Gb/sec (4X NDR), MT4129 fw 28.39.1002, 0000:ba:00.0"
    assert f"{mlx5_5}, NUMA 1" in lines
    assert "NIC: eno1 Ethernet up, 10 Gb/s, MTU 1500, i40e, 0000:04:00.0, NUMA 0" in lines
    assert "Virtual interfaces (not NICs): docker0, lo" in lines


def test_nic_expansion(tmp_path: Path) -> None:
    class Probe:
        expands = {"nic": "nic"}

    check = CheckSpec(id="network", probe="network_ports", params={"interval": 1.0}, expand="nic")
    jobs = expand(check, Probe, replace(Inventory(), network=nics.collect(HGX)))
    assert isinstance(jobs, list)
    assert [j.subject for j in jobs] == [f"mlx5_{i}:1" for i in range(8)] + ["eno1", "eno2"]
    assert jobs[3].params == {"interval": 1.0, "nic": "mlx5_3:1"}
    none = expand(check, Probe, replace(Inventory(), network=nics.collect(str(tmp_path))))
    assert none == Unrunnable("skip", "no RDMA port and no physical Ethernet interface on this node")


@pytest.mark.parametrize(
    "tree", ["hgx8", "hgx8_port_down", "hgx8_half_rate", "hgx8_wrong_numa", "roce2", "vm"]
)
def test_every_tree_reads_without_error(tree: str) -> None:
    section = nics.collect(str(FIXTURES / tree))
    assert section.nics, tree
