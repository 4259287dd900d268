"""The kernel-log kinds that used to pass unseen: real lines of several kernel versions each count
in their kind, and their benign neighbours (the line that says it is over, a cable plugged in, a
slot's capabilities at boot) do not.

Where each line comes from (public reports, quoted as the kernel printed them):
- AMD decoder: a Bulldozer (family 15h) record from a CentOS 7 user's syslog (centosfaq.org,
  "kernel:[Hardware Error]"), a Zen (17h) STATUS line from HPE's advisory a00125537 (Gen10 Plus);
- thermal: erpalma/throttled issues #103 (4.x dmesg, no prefix) and #186 (5.x, "mce: " prefix);
- NVMe removal: Joshua-Riek/ubuntu-rockchip issue #155 (5.10 kern.log);
- PCIe hot-plug: lnls-dig/bpm-gw issue #73 (4.x "pciehp ...:pcie24: slot(6): Link Down event"); the
  5.x+ "pcieport ...: pciehp: Slot(N): Link Down" / "Card not present" lines and the mlx5 error
  lines are written from the kernel's format strings (drivers/pci/hotplug/pciehp_ctrl.c,
  drivers/net/ethernet/mellanox/mlx5/core/events.c and health.c), not captured; the benign
  "Port module event: module 0, Cable plugged" is from geerlingguy/arm-nas issue #16 (6.x).
"""

from __future__ import annotations

import pytest

from hpcbench.probes.node_health import klog

COUNTED = [
    # AMD's decoder: one record, and no "Machine check events logged" line with it
    ("kernel_hw_errors", "Aug 12 10:12:24 fcshome kernel: [Hardware Error]: CPU:2 (15:2:0) "
     "MC2_STATUS[-|CE|MiscV|-|-|-|-|CECC]: 0x98444000010c0176"),
    ("kernel_hw_errors", "[Hardware Error]: CPU:0 (17:31:0) MC255_STATUS[-|CE|-|-|AddrV|-|-|-]"),
    ("kernel_hw_errors", "[Feb22 04:01] CPU5: Core temperature above threshold, cpu clock throttled "
     "(total events = 2081)"),
    ("kernel_hw_errors", "[76747.169399] mce: CPU6: Package temperature above threshold, cpu clock throttled "
     "(total events = 3654)"),
    ("kernel_nvme_timeouts", "May 21 18:07:14 sangje-desktop kernel: [   44.064491] nvme nvme0: "
     "Removing after probe failure status: -19"),
    ("kernel_link_errors", "[Ter Set 19 06:01:41 2017] pciehp 0000:02:05.0:pcie24: slot(6): Link Down event"),
    ("kernel_link_errors", "[ 8821.402101] pcieport 0000:3c:06.0: pciehp: Slot(180): Link Down"),
    ("kernel_link_errors", "[ 8821.402117] pcieport 0000:3c:06.0: pciehp: Slot(180): Card not present"),
    ("kernel_link_errors", "[91023.553010] mlx5_core 0000:3b:00.0: poll_health:801:(pid 0): device's health "
     "compromised - reached miss count"),
    ("kernel_link_errors", "[91024.112870] mlx5_core 0000:3b:00.0: mlx5_health_try_recover:322:(pid 2410): "
     "starting health recovery flow"),
    ("kernel_link_errors", "[  120.338211] mlx5_core 0000:b5:00.0: Port module event[error]: module 0, "
     "Cable error, Bus stuck (I2C or data shorted)"),
    ("kernel_link_errors", "[  301.884102] mlx5_core 0000:b5:00.1: Port module event: module 1, "
     "Cable unplugged"),
]  # fmt: skip

BENIGN = [
    "[Feb22 04:01] CPU1: Core temperature/speed normal",
    "[76747.348389] mce: CPU2: Package temperature/speed normal",
    "[    0.043437] mce: CPU supports 7 MCE banks",
    "Aug 12 10:12:24 fcshome kernel: [Hardware Error]: cache level: L2, tx: DATA, mem-tx: EV",
    "[   11.097374] mlx5_core 0004:01:00.0: Port module event: module 0, Cable plugged",
    "[   11.097626] mlx5_core 0004:01:00.0: mlx5_pcie_event:294:(pid 542): PCIe slot advertised sufficient "
    "power (75W).",
    "[    2.312450] pciehp 0000:00:15.0:pcie004: Slot #160 AttnBtn+ PwrCtrl+ MRL- AttnInd- PwrInd- HotPlug+ "
    "Surprise- Interlock- NoCompl+ LLActRep+",
    "[ 8830.100214] pcieport 0000:3c:06.0: pciehp: Slot(180): Link Up",
    "[ 8830.100220] pcieport 0000:3c:06.0: pciehp: Slot(180): Card present",
    "[    8.010115] nvme nvme0: pci function 0004:41:00.0",
    "[    8.025137] nvme nvme0: 8/0/0 default/read/poll queues",
]


@pytest.mark.parametrize(("metric", "line"), COUNTED, ids=[f"{m}-{i}" for i, (m, _) in enumerate(COUNTED)])
def test_each_real_line_counts_in_its_kind(metric: str, line: str) -> None:
    assert klog.classify(line) == metric


@pytest.mark.parametrize("line", BENIGN)
def test_benign_neighbours_do_not_count(line: str) -> None:
    assert klog.classify(line) is None


def test_an_amd_record_without_the_logged_line_is_a_hardware_error_item() -> None:
    text = "\n".join([*BENIGN, COUNTED[0][1], COUNTED[6][1], COUNTED[7][1]])
    items = {i.metric: i for i in klog.items(klog.scan(text, None, None), "", "since boot")}
    assert items["kernel_hw_errors"].value == 1
    assert "MC2_STATUS" in items["kernel_hw_errors"].detail
    assert items["kernel_link_errors"].value == 2
    assert items["kernel_link_errors"].detail.startswith(
        "2 PCIe link-down or NIC firmware/cable line(s) since boot"
    )
    assert all(
        items[m].value == 0 for m in klog.METRICS if m not in ("kernel_hw_errors", "kernel_link_errors")
    )


def test_the_header_names_are_the_readers_tables() -> None:
    """The probe's header lists its metrics from ``metrics`` (hpcbench list imports no reader);
    each reader's table reports exactly those, in that order."""
    from hpcbench.probes.node_health import aer, edac, nvme, probe
    from hpcbench.probes.node_health import metrics as names

    assert tuple(k[0] for k in aer.KINDS) == names.AER == aer.METRICS
    assert sorted(k.metric for k in klog.KINDS) == sorted(names.KLOG) == sorted(klog.METRICS)
    assert len(set(names.KLOG)) == len(klog.KINDS)
    assert (edac.METRICS, nvme.METRICS) == (names.EDAC, names.NVME)
    assert (*names.EDAC, *names.AER, *names.NVME, *names.KLOG, *names.SYSTEM) == probe.METRICS
