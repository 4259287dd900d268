"""An HGX H100/H200 node's network sysfs, written into a folder at test time, with planted faults.

Built with the writers of tests/probes/network/fixtures/network/build_sysfs.py (the kernel's file formats and
its symlink layout: /sys/class/* and /sys/bus/pci/devices/* are links into /sys/devices/...):

- 8 compute rails: ConnectX-7 NDR InfiniBand ``mlx5_0``..``mlx5_7``, each below its GPU's PCIe
  switch (PIX), PCIe Gen5 x16, with hw_counters;
- 2 storage NICs on root ports of their own (no GPU near): ConnectX-7 as RoCE 200 GbE,
  ``mlx5_8`` (``ens6np0``, in use: it has an address, a RoCE v2 GID) and ``mlx5_9`` (``ens7np0``,
  no cable, no address: DOWN/Polling, not in use), and an SR-IOV virtual function of mlx5_8
  (``mlx5_10``, netdev ``ens6v0``) that is no subject;
- the management port ``eno1`` (1 GbE, an address) and ``eno2``: NetworkManager left it up
  (IFF_UP) with no cable and no address;
- ``lo`` virtual; ``nvidia_peermem`` loaded.

Faults (``faults``): ``rail_down`` (mlx5_3 DOWN/Polling), ``x8`` (mlx5_2 trained at PCIe x8 of
x16), ``saturated`` (mlx5_4's symbol_error at 65535), ``link_downed`` (mlx5_6's link_downed 3 since
boot), ``half_rate`` (mlx5_5 at 200 Gb/s HDR), ``storage_down`` (mlx5_8, which is in use, down),
``no_roce_v2`` (mlx5_8 without a RoCE v2 GID), ``acs`` (P2P request and completion redirect on
the switch port above GPU 2; the others' ACS has source validation and upstream forwarding only).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "probes" / "network" / "fixtures" / "network"
_spec = importlib.util.spec_from_file_location("build_sysfs", FIXTURES / "build_sysfs.py")
assert _spec and _spec.loader
b: Any = importlib.util.module_from_spec(_spec)
sys.modules["build_sysfs"] = b
_spec.loader.exec_module(b)

FAULTS = ("rail_down", "x8", "saturated", "link_downed", "half_rate", "storage_down", "no_roce_v2", "acs")
RAILS = tuple(f"mlx5_{i}:1" for i in range(8))
HW_COUNTERS = {
    "out_of_sequence": 0,
    "packet_seq_err": 0,
    "local_ack_timeout_err": 0,
    "rnr_nak_retry_err": 0,
    "roce_adp_retrans": 0,
    "np_cnp_sent": 0,
    "rp_cnp_handled": 0,
}


def _pcie(function: Path, width: int = 16) -> None:
    for key, value in (
        ("current_link_speed", "32.0 GT/s PCIe"),
        ("max_link_speed", "32.0 GT/s PCIe"),
        ("current_link_width", str(width)),
        ("max_link_width", "16"),
    ):
        b.write(function / key, value)


def _acs_config(control: int) -> bytes:
    """A bridge's 4096-byte config space with one extended capability, ACS (id 0x000D, version 1,
    no next) at 0x100, its control register at 0x106 (PCIe base spec 7.7.11)."""
    space = bytearray(4096)
    struct.pack_into("<IHH", space, 0x100, 0x000D | (1 << 16), 0x005F, control)
    return bytes(space)


def build(root: Path, faults: tuple[str, ...] = ()) -> Path:
    """Write the node into ``root`` (emptied first); returns ``root``."""
    unknown = [f for f in faults if f not in FAULTS]
    assert not unknown, unknown
    nics = b.hgx_nics()
    if "rail_down" in faults:
        nics[3] = replace(
            nics[3], port=b.Port(state="1: DOWN", phys_state="2: Polling", rate="10 Gb/sec (4X SDR)")
        )
    if "saturated" in faults:
        nics[4] = replace(nics[4], port=b.Port(counters={"symbol_error": 65535}))
    if "link_downed" in faults:
        nics[6] = replace(nics[6], port=b.Port(counters={"link_downed": 3}))
    if "half_rate" in faults:
        nics[5] = replace(nics[5], port=b.Port(rate="200 Gb/sec (4X HDR)"))
    b.hgx(root, nics, modules=("nvidia_peermem", "mlx5_ib", "nvidia"))
    sysfs = root / "sys"
    for i, bus in enumerate(b.GPU_BUSES):  # the PCIe switch of each GPU: upstream and downstream ports
        us = next((sysfs / "devices").glob(f"pci*/0000:{bus - 4:02x}:01.0/0000:{bus - 3:02x}:00.0"))
        for bridge in (us, us / f"0000:{bus - 2:02x}:00.0", us / f"0000:{bus - 2:02x}:01.0"):
            redirect = "acs" in faults and i == 2 and bridge.name.endswith(":01.0")
            (bridge / "config").write_bytes(_acs_config(0x001D if redirect else 0x0011))
    for i, nic in enumerate(nics):
        fn = Path(str((sysfs / "class/infiniband" / nic.name / "device").resolve()))
        _pcie(fn, 8 if ("x8" in faults and i == 2) else 16)
        for key, value in HW_COUNTERS.items():
            b.write(sysfs / "class/infiniband" / nic.name / "ports/1/hw_counters" / key, str(value))
    # storage: two ConnectX-7 RoCE ports on root ports of their own, socket 0 and 1
    t = b.Tree.__new__(b.Tree)
    t.root, t.sys = root, sysfs
    routes = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    for k, (name, netdev, numa, bus) in enumerate(
        (("mlx5_8", "ens6np0", 0, 0x2A), ("mlx5_9", "ens7np0", 1, 0xAA))
    ):
        down = name == "mlx5_9" or ("storage_down" in faults and name == "mlx5_8")
        port = b.Port(
            state="1: DOWN" if down else "4: ACTIVE",
            phys_state="2: Polling" if down else "5: LinkUp",
            rate="200 Gb/sec (4X HDR)",
            link_layer="Ethernet",
        )
        nic = b.Nic(
            name,
            netdev,
            f"946d:ae03:0050:08{k:02x}",
            port,
            pci_class="0x020000",
            netdev_mtu=9000,
            netdev_type=1,
        )
        rp = t.bridge(sysfs / "devices" / f"pci0000:{bus - 1:02x}" / f"0000:{bus - 1:02x}:01.0")
        fn = t.function(
            rp / f"0000:{bus:02x}:00.0", "0x15b3", nic.pci_device, nic.pci_class, numa, "mlx5_core"
        )
        t.rdma(fn, nic)
        _pcie(fn)
        gids = sysfs / "class/infiniband" / name / "ports/1/gid_attrs/types"
        b.write(gids / "0", "IB/RoCE v1")
        if not ("no_roce_v2" in faults and name == "mlx5_8"):
            b.write(gids / "1", "RoCE v2")
        for key, value in HW_COUNTERS.items():
            b.write(sysfs / "class/infiniband" / name / "ports/1/hw_counters" / key, str(value))
        if name == "mlx5_8":
            routes.append(f"{netdev}\t0010A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0")
            vf = t.function(
                fn.parent / f"0000:{bus:02x}:00.2", "0x15b3", "0x101e", "0x020000", numa, "mlx5_core"
            )
            b.link(vf / "physfn", fn)
            vf_nic = b.Nic(
                "mlx5_10",
                "ens6v0",
                "946d:ae03:0050:0810",
                b.Port(rate="200 Gb/sec (4X HDR)", link_layer="Ethernet"),
                pci_class="0x020000",
                netdev_type=1,
            )
            t.rdma(vf, vf_nic)
    # management: eno1 with an address; eno2 up (NetworkManager) without cable or address
    routes.append("eno1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0")
    eno2 = sysfs / "class/net/eno2"
    for key, value in (("flags", "0x1003"), ("operstate", "down"), ("carrier", "0")):
        b.write(Path(str(eno2.resolve())) / key, value)
    b.write(root / "proc/net/route", "\n".join(routes))
    return root


if __name__ == "__main__":  # write a tree for a manual run: tests/support/hgx_node.py DIR [FAULT ...]
    build(Path(sys.argv[1]), tuple(sys.argv[2:]))
