"""Port health: the pure decisions (hpcbench/hw/net/health.py) on the fixture trees, then the probe
run in-process on them and judged by the bundled suites' checks and baselines, so every number
and reason an operator reads is pinned: a port down, a port at half rate, counters that rose
between the two reads, counters over the limit (one saturated), an MTU mismatch, a VM."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.fakenvml import FakeNvml
from support.results import measured, reasons

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.core.items import Item
from hpcbench.engine import baselines, judge
from hpcbench.engine.plan import expand
from hpcbench.engine.runner import Outcome
from hpcbench.engine.suite import load
from hpcbench.hw.net import counters, health
from hpcbench.node import collector, nics
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.network_pairs.probe import NetworkPairs
from hpcbench.probes.network_ports.probe import NetworkPorts as Network
from hpcbench.probes.network_topology.probe import NetworkTopology

FIXTURES = Path(__file__).parent / "fixtures" / "network"


def tree(name: str) -> str:
    return str(FIXTURES / name)


def by_metric(items: list[Item]) -> dict[str, Item]:
    return {i.metric: i for i in items}


def port_items(root: str, subject: str, after_root: str | None = None, **expect: Any) -> dict[str, Item]:
    port = next(p for p in nics.rdma_ports(root) if p.subject == subject)
    before = counters.rdma_counters(root, port.device, port.port)
    after = counters.rdma_counters(after_root, port.device, port.port) if after_root else None
    return by_metric(health.rdma_port_items(port, before, after, 2.0, health.Expect(**expect)))


def test_healthy_port() -> None:
    items = port_items(tree("hgx8"), "mlx5_0:1", tree("hgx8"))
    assert items["rdma_rate"].value == 400.0 and items["rdma_rate"].unit == "Gb/s"
    assert items["rdma_rate"].detail == (
        "mlx5_0:1 InfiniBand ACTIVE/LinkUp 400 Gb/sec (4X NDR), MT4129 fw 28.39.1002, 0000:18:00.0 NUMA 0"
    )
    assert items["link_down"].value == 0.0
    assert items["counters_grew"].value == 0.0 and items["counters_over_limit"].value == 0.0
    assert (
        items["mismatches"].value is None
        and "expected_rate_gbps, expected_mtu unset" in items["mismatches"].not_measured
    )
    assert items["eth_rate"].value is None  # an RDMA port's rate is rdma_rate


def test_port_down() -> None:
    items = port_items(tree("hgx8_port_down"), "mlx5_3:1")
    assert items["link_down"].value == 1.0
    assert items["link_down"].detail == (
        "mlx5_3:1: state DOWN, physical state Polling: no link partner: check the cable and the switch port"
    )
    assert items["rdma_rate"].value == 0.0  # nothing usable: the sysfs rate of a down port is meaningless
    # symbol_error 65535 (> 100, saturated at 16 bits), link_downed 7 (> its own limit 5),
    # link_error_recovery 4 (<= 5)
    assert items["counters_over_limit"].value == 2.0
    assert items["counters_over_limit"].detail == (
        "mlx5_3:1: error counters above their limits since boot or reset (link_downed and "
        "link_error_recovery 5, the 4-bit ones 3, the others 100): symbol_error 65535 (saturated: the real "
        "count is higher; reset it (`perfquery -x -R` or a driver reload) to see new errors), link_downed 7"
    )
    assert items["counters_grew"].not_measured == "interval = 0: the counters were read once"
    low = port_items(tree("hgx8_port_down"), "mlx5_3:1", error_limit=3)["counters_over_limit"]
    assert low.value == 3.0 and "link_error_recovery 4" in low.detail  # error_limit lowers the narrow limits


def test_port_at_half_rate() -> None:
    items = port_items(tree("hgx8_half_rate"), "mlx5_5:1", rate_gbps=400.0)
    assert items["rdma_rate"].value == 200.0
    assert items["mismatches"].value == 1.0
    assert items["mismatches"].detail == (
        "mlx5_5:1: rate 200 Gb/s (200 Gb/sec (4X HDR)) below the expected 400 Gb/s"
    )
    ok = port_items(tree("hgx8_half_rate"), "mlx5_4:1", rate_gbps=400.0)["mismatches"]
    assert ok.value == 0.0 and ok.detail == "mlx5_4:1: as expected (expected_rate_gbps)"


def test_counters_rising_between_the_two_reads() -> None:
    grew = port_items(tree("hgx8"), "mlx5_2:1", tree("hgx8_counters_after"))["counters_grew"]
    assert grew.value == 2.0  # symbol_error 0 -> 12, link_downed 0 -> 1
    # 12 symbol errors in 2 s: 12 * 3600 / 2 = 21600 per hour; link_downed counts at any increment
    assert grew.detail == "mlx5_2:1: error counters grown in 2 s: symbol_error +12 (21600/h), link_downed +1"
    # only traffic (port_xmit_data) moved on mlx5_0: no error counter grew
    assert port_items(tree("hgx8"), "mlx5_0:1", tree("hgx8_counters_after"))["counters_grew"].value == 0.0
    eno1 = next(i for i in nics.interfaces(tree("hgx8"))[0] if i.name == "eno1")
    before = counters.interface_counters(tree("hgx8"), "eno1")
    after = counters.interface_counters(tree("hgx8_counters_after"), "eno1")
    items = by_metric(health.interface_items(eno1, before, after, 1.0, health.Expect()))
    assert items["counters_grew"].value == 2.0  # rx_errors and rx_crc_errors +3; rx_dropped is not judged
    assert items["counters_grew"].detail == (
        "eno1: error counters grown in 1 s: rx_errors +3 (10800/h), rx_crc_errors +3 (10800/h)"
    )
    assert health.grown({"a": 5, "b": 1}, {"a": 4, "b": 1}, ["a", "b"]) == []  # a reset is no growth


def test_ethernet_interfaces() -> None:
    physical, _ = nics.interfaces(tree("hgx8"))
    eno1, eno2 = (next(i for i in physical if i.name == n) for n in ("eno1", "eno2"))
    items = by_metric(health.interface_items(eno1, {}, None, 0.0, health.Expect(mtu=9000)))
    assert items["eth_rate"].value == 10000 / 1000  # speed Mb/s -> Gb/s
    assert items["mismatches"].value == 1.0 and items["mismatches"].detail == "eno1: MTU 1500, expected 9000"
    assert items["rdma_rate"].not_measured == "eno1 is an Ethernet interface, not an RDMA port"
    unused = by_metric(health.interface_items(eno2, {}, None, 0.0, health.Expect()))
    assert unused["link_down"].value == 0.0  # nobody configured it: not in use, not a failure
    assert unused["link_down"].detail == "eno2 is administratively down (not configured): not in use"
    assert unused["eth_rate"].value is None and unused["counters_grew"].value is None
    # configured up (IFF_UP) but no carrier, with an address: in use and down
    lost = nics.Interface(
        "ens2", "ethernet", "down", True, False, None, 1500, None, "ice", None, "0000:31:00.0", 0, False,
        None, has_address=True,
    )  # fmt: skip
    items = by_metric(health.interface_items(lost, {}, None, 0.0, health.Expect()))
    assert items["link_down"].value == 1.0 and items["eth_rate"].value == 0.0
    assert items["link_down"].detail == "ens2 down (ice, 0000:31:00.0, MTU 1500): configured up but no link"
    # a bond member is in use too; up without link, address or bond (NetworkManager's unplugged port): not
    bonded = replace(lost, has_address=False, master="bond0")
    assert by_metric(health.interface_items(bonded, {}, None, 0.0, health.Expect()))["link_down"].value == 1.0
    unplugged = replace(lost, has_address=False)
    items = by_metric(health.interface_items(unplugged, {}, None, 0.0, health.Expect()))
    assert items["link_down"].value == 0.0 and items["eth_rate"].value is None


def test_virtio_nic_with_unknown_speed_is_not_a_failure() -> None:
    (eth0,) = [i for i in nics.interfaces(tree("vm"))[0] if i.name == "eth0"]
    items = by_metric(health.interface_items(eth0, {}, None, 0.0, health.Expect()))
    assert items["link_down"].value == 0.0
    assert items["eth_rate"].value is None
    assert (
        items["eth_rate"].not_measured == "eth0 (virtio_net) reports no link speed (-1), as virtual NICs do"
    )


def test_roce_mtu_and_link_layer() -> None:
    items = port_items(tree("roce2"), "mlx5_1:1", mtu=9000)
    assert items["rdma_rate"].value == 100.0
    assert items["mismatches"].value == 1.0 and items["mismatches"].detail == (
        "mlx5_1:1: MTU 1500 of ens1f1np1, expected 9000"
    )
    assert port_items(tree("roce2"), "mlx5_0:1", mtu=9000)["mismatches"].value == 0.0
    # an InfiniBand port's MTU is the subnet's (not in sysfs): expected_mtu does not apply to it
    assert port_items(tree("hgx8"), "mlx5_0:1", mtu=9000)["mismatches"].value is None


def test_states_other_than_down_say_what_to_look_at() -> None:
    base = nics.rdma_ports(tree("hgx8"))[0]
    init = nics.RdmaPort(**{**base.__dict__, "state": "INIT", "phys_state": "LinkUp"})
    assert health.port_down_reason(init) == (
        "mlx5_0:1: state INIT, physical state LinkUp: the link is up but no subnet manager has configured "
        "the port (is opensm or UFM running?)"
    )
    disabled = nics.RdmaPort(**{**base.__dict__, "state": "DOWN", "phys_state": "Disabled"})
    assert health.port_down_reason(disabled).endswith(
        "the port is disabled (by the subnet manager or an administrator)"
    )


# --- the probe in-process on the fixture trees, judged by the bundled suites -----------------


def results(root: str, subject: str = "node", tmp: Path | None = None, **params: Any) -> list[Any]:
    values = {"interval": 0.0, "root": root, **params}
    if subject != "node":
        values["nic"] = subject
    p = build_params(Network, values)
    inv = replace(Inventory(), network=nics.collect(root))
    return Network().run(p, ProbeContext(subject, inv, str(tmp or "."), 60.0))


def run(root: str, subject: str = "node", tmp: Path | None = None, **params: Any) -> dict[str, Any]:
    """metric -> measurement of the metrics measured."""
    return {m.metric: m for m in measured(results(root, subject, tmp, **params))}


def unmeasured_of(root: str, subject: str = "node", **params: Any) -> dict[str, str]:
    """metric -> why it was not measured."""
    return reasons(results(root, subject, **params))


def judged(check_id: str, root: str, baseline: str | None, tmp: Path) -> dict[str, dict[str, Any]]:
    """subject -> metric -> evaluation of a bundled quick/nightly check run on a fixture tree."""
    probes = registry.load_all()
    suite = next(
        s for s in (load(n, probes) for n in ("quick", "nightly")) if any(c.id == check_id for c in s.checks)
    )
    check = next(c for c in suite.checks if c.id == check_id)
    inv = collector.collect(root, nvml=FakeNvml())
    jobs = expand(check, Network, inv)
    assert isinstance(jobs, list)
    outcomes = []
    for job in jobs:
        params = build_params(Network, {**job.params, "root": root, "interval": 0.01})
        try:
            ms = Network().run(params, ProbeContext(job.subject, inv, str(tmp), 60.0))
            outcomes.append(Outcome.of(job, ms))
        except ProbeSkip as exc:
            outcomes.append(Outcome(job, "skip", reason=str(exc)))
    chosen = baselines.load(baseline) if baseline else None
    results = judge.judge(check, outcomes, chosen, inv)
    return {
        r.subject: {**{e.metric + ("~" if e.kind == "relative" else ""): e for e in r.evaluations}, "_": r}
        for r in results
    }


def test_half_rate_port_fails_against_its_siblings_and_warns_against_the_estimate(tmp_path: Path) -> None:
    out = judged("network_rate", tree("hgx8_half_rate"), "h200", tmp_path)
    bad = out["mlx5_5:1"]["rdma_rate"]
    # the h200 profile's 400 Gb/s is marked estimate (the system's NICs, not the GPU's): WARN at most
    assert (bad.verdict.value, bad.measured, bad.expected, bad.ratio) == ("WARN", 200.0, 400.0, 200.0 / 400.0)
    assert bad.reason == (
        "200 Gb/s is 50% of the expected 400 Gb/s (below 99%): mlx5_5:1 InfiniBand ACTIVE/LinkUp 200 Gb/sec "
        "(4X HDR), MT4129 fw 28.39.1002, 0000:ba:00.0 NUMA 1; the expected value is an estimate, not this "
        "site's measurement, so it can WARN but not FAIL: record the site's own from a known-good node "
        "(hpcbench baseline create RECORD... -o FILE)"
    )
    assert out["mlx5_5:1"]["_"].verdict.value == "FAIL"  # the comparison with its siblings fails it
    rel = out["mlx5_5:1"]["rdma_rate~"]
    assert (
        rel.verdict.value == "FAIL"
        and rel.reason == "mlx5_5:1 reaches 50% of the median of the others (400 Gb/s)"
    )
    assert (
        out["mlx5_4:1"]["rdma_rate"].verdict.value == "PASS"
        and out["mlx5_4:1"]["rdma_rate~"].verdict.value == "PASS"
    )
    # the check runs on the compute rails alone (expand = "rail"): no Ethernet interface is compared
    assert sorted(out) == [f"mlx5_{i}:1" for i in range(8)]


def test_port_down_fails_the_health_check_and_warns_on_the_port_count(tmp_path: Path) -> None:
    out = judged("network", tree("hgx8_port_down"), None, tmp_path)
    down = out["mlx5_3:1"]["link_down"]
    assert down.verdict.value == "FAIL" and down.measured == 1.0
    assert down.reason == (
        "1 count is above the suite's absolute limit 0.5 count: mlx5_3:1: state DOWN, physical state "
        "Polling: no link partner: check the cable and the switch port"
    )
    assert out["mlx5_3:1"]["counters_over_limit"].verdict.value == "WARN"
    assert out["mlx5_2:1"]["_"].verdict.value == "PASS"
    assert out["eno2"]["link_down"].verdict.value == "PASS"  # not configured: not in use
    ports = judged("network_ports", tree("hgx8_port_down"), "h200", tmp_path)["node"]["rdma_ports_active"]
    # against the h200 profile's estimated 8 ports: WARN at most (the port's own link_down FAILs)
    assert (ports.verdict.value, ports.measured, ports.expected, ports.ratio) == ("WARN", 7.0, 8.0, 7 / 8)
    assert ports.reason.startswith(
        "7 ports is 88% of the expected 8 ports (below 99%): 7 of 8 compute rails active "
        "(400 Gb/sec (4X NDR)); not active: mlx5_3:1 (DOWN/Polling); the expected value is an estimate, "
        "not this site's measurement"
    )


def test_healthy_hgx_passes_every_network_check(tmp_path: Path) -> None:
    for check_id in ("network", "network_rate", "network_ports"):
        for subject, evals in judged(check_id, tree("hgx8"), "h200", tmp_path).items():
            verdict = evals["_"].verdict.value
            assert verdict in ("PASS", "SKIP"), (check_id, subject, evals["_"].evaluations)


def test_node_summary(tmp_path: Path) -> None:
    ms = run(tree("hgx8_port_down"), expected_ports=8, expected_rate_gbps=400.0)
    assert ms["rdma_ports_active"].value == 7.0 and ms["rdma_ports_active"].unit == "ports"
    assert ms["link_down"].value == 1.0
    assert ms["link_down"].detail == (
        "mlx5_3:1: state DOWN, physical state Polling: no link partner: check the cable and the switch port "
        "(not NICs: docker0, lo)"
    )
    assert ms["mismatches"].value == 1.0  # the port count; the down port's rate is not also a mismatch
    assert ms["mismatches"].detail == "7 active RDMA ports, expected 8"
    assert ms["counters_over_limit"].value == 2.0  # symbol_error (saturated) and link_downed 7 > 5
    first = next(iter(ms.values()))
    assert [p.get("subject", p.get("name")) for p in first.settings["ports"]][:2] == ["mlx5_0:1", "mlx5_1:1"]
    assert first.settings["not_nics"] == ["docker0", "lo"]


def test_ignore_leaves_ports_out(tmp_path: Path) -> None:
    ms = run(tree("hgx8_port_down"), ignore=["mlx5_3:*"])
    assert ms["rdma_ports_active"].value == 7.0 and ms["link_down"].value == 0.0
    with pytest.raises(ProbeSkip, match=r"mlx5_3:1 is left out \(ignore = \['mlx5_\*'\]\)"):
        run(tree("hgx8_port_down"), "mlx5_3:1", ignore=["mlx5_*"])


def test_this_vm_skips_rdma_with_the_reason(tmp_path: Path) -> None:
    ms = run(tree("vm"))
    assert ms["link_down"].value == 0.0
    assert ms["link_down"].detail.startswith("all up: eth0 up (virtio_net, 0000:00:03.0, MTU ")
    assert ms["link_down"].detail.endswith("(not NICs: ifb0, ifb1, lo)")
    assert unmeasured_of(tree("vm"))["rdma_ports_active"] == (
        "no RDMA device: /sys/class/infiniband does not exist (no InfiniBand/RoCE adapter, or its RDMA "
        "driver such as mlx5_ib is not loaded)"
    )


def test_rdma_hardware_without_its_driver_is_zero_ports_not_a_skip(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(tree("hgx8"), root, symlinks=True)
    shutil.rmtree(root / "sys/class/infiniband")
    ms = run(str(root), tmp=tmp_path)
    assert ms["rdma_ports_active"].value == 0.0
    assert ms["rdma_ports_active"].detail == (
        "the PCI bus has 8 RDMA adapter function(s) (0000:18:00.0, 0000:3a:00.0, 0000:4b:00.0, "
        "0000:5c:00.0 ...) but no RDMA device is registered: the RDMA driver (mlx5_ib, ib_core) is not loaded"
    )


def test_parameters_are_validated() -> None:
    with pytest.raises(ParamError, match="must be >= 0 seconds"):
        build_params(Network, {"interval": -1.0})
    with pytest.raises(ParamError, match="PIX or PXB"):
        build_params(NetworkTopology, {"near_level": "NODE"})
    with pytest.raises(ParamError, match="must be in \\(0, 1\\)"):
        build_params(NetworkPairs, {"slow_fraction": 1.5})
