"""An HGX node's network (tests/support/hgx_node.py: 8 compute rails, 2 storage NICs, a management port,
an SR-IOV VF, a NetworkManager-up unplugged port) judged by the bundled suites' network checks:
the healthy node PASSes with default parameters, each planted fault gives its verdict naming the
rail or port."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support import hgx_node
from support.fakenvml import FakeNvml

from hpcbench.core.errors import ProbeSkip
from hpcbench.engine import baselines, judge
from hpcbench.engine.plan import expand
from hpcbench.engine.runner import Outcome
from hpcbench.engine.suite import load
from hpcbench.hw.net import counters, health, reader
from hpcbench.node import collector, nics
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params

HEALTH_CHECKS = ("network", "network_rate", "network_ports", "network_topology")


def raiser(path: Path, n: int, sleep: Any) -> Any:
    """A time.sleep that first raises the counter file ``path`` by ``n`` (errors during the wait)."""

    def raised(seconds: float) -> None:
        path.write_text(f"{int(path.read_text()) + n}\n")
        sleep(seconds)

    return raised


def judged(
    check_id: str, root: Path, tmp: Path, suite: str = "acceptance", bump: tuple[str, str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """subject -> metric (``~`` for the relative evaluation) -> evaluation, and ``_`` -> the result,
    of a bundled check run in-process on the tree ``root`` against the h200 baseline. ``bump``:
    (subject, counter file relative to root, n): the file raised by n between the subject's two
    counter reads."""
    probes = registry.load_all()
    check = next(c for c in load(suite, probes).checks if c.id == check_id)
    spec = probes[check.probe]
    inv = collector.collect(str(root), nvml=FakeNvml())
    jobs = expand(check, spec.cls, inv)
    assert isinstance(jobs, list), jobs
    outcomes = []
    for job in jobs:
        params = build_params(
            spec.cls,
            {**job.params, "root": str(root), **({"interval": 0.01} if "interval" in job.params else {})},
        )
        sleep = reader.time.sleep
        if bump and bump[0] == job.subject:
            reader.time.sleep = raiser(root / bump[1], bump[2], sleep)  # type: ignore[assignment]
        try:
            ms = spec.cls().run(params, ProbeContext(job.subject, inv, str(tmp), 60.0))
            outcomes.append(Outcome.of(job, ms))
        except ProbeSkip as exc:
            outcomes.append(Outcome(job, "skip", reason=str(exc)))
        finally:
            reader.time.sleep = sleep  # type: ignore[assignment]
    results = judge.judge(check, outcomes, baselines.load("h200"), inv)
    return {
        r.subject: {**{e.metric + ("~" if e.kind == "relative" else ""): e for e in r.evaluations}, "_": r}
        for r in results
    }


def node(tmp: Path, *faults: str) -> Path:
    return hgx_node.build(tmp / "root", faults)


def detail(out: dict[str, dict[str, Any]], subject: str, metric: str) -> str:
    """The one-line detail a measurement carries (what a WARN or FAIL quotes)."""
    return str(next(m for m in out[subject]["_"].measurements if m.metric == metric).detail)


def verdicts(out: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {s: e["_"].verdict.value for s, e in out.items()}


def test_the_rails_are_the_rdma_ports_nearest_a_gpu(tmp_path: Path) -> None:
    inv = collector.collect(str(node(tmp_path)), nvml=FakeNvml())
    assert inv.network.rails == hgx_node.RAILS
    # the storage NICs are NIC subjects (health), the VF mlx5_10 and the IPoIB/RoCE netdevs are not
    assert inv.network.nics == (*hgx_node.RAILS, "mlx5_8:1", "mlx5_9:1", "eno1", "eno2")
    vf = next(p for p in inv.network.rdma_ports if p.device == "mlx5_10")
    assert (
        vf.virtual_function
        and not next(p for p in inv.network.rdma_ports if p.device == "mlx5_8").virtual_function
    )
    # without GPUs nothing tells compute from storage: every physical RDMA port is a rail
    ports = nics.rdma_ports(str(tmp_path / "root"))
    assert nics.rails(str(tmp_path / "root"), ports, []) == [*hgx_node.RAILS, "mlx5_8:1", "mlx5_9:1"]


@pytest.mark.parametrize("check_id", HEALTH_CHECKS)
def test_a_healthy_hgx_node_passes_with_default_parameters(check_id: str, tmp_path: Path) -> None:
    out = judged(check_id, node(tmp_path), tmp_path)
    bad = {
        s: [
            (e.metric, e.verdict.value, e.reason)
            for e in r["_"].evaluations
            if e.verdict.value not in ("PASS", "SKIP")
        ]
        for s, r in out.items()
    }
    assert all(v in ("PASS", "SKIP") for v in verdicts(out).values()), bad
    if check_id == "network":
        # the unplugged storage NIC and the NetworkManager-up port without cable are not in use
        assert out["mlx5_9:1"]["link_down"].measured == 0.0
        assert detail(out, "mlx5_9:1", "link_down") == (
            "mlx5_9:1 is not a compute rail and its interface has no address: not in use (DOWN/Polling)"
        )
        assert out["eno2"]["link_down"].measured == 0.0
        assert detail(out, "eno2", "link_down").startswith(
            "eno2 is up without link and has no address and no bond or team: not in use"
        )
        assert out["mlx5_8:1"]["roce_v2_missing"].verdict.value == "PASS"
    if check_id == "network_rate":
        assert set(out) == set(hgx_node.RAILS)  # the 200G storage ports are not compared with the rails
    if check_id == "network_ports":
        ports = out["node"]["rdma_ports_active"]
        assert (ports.measured, ports.expected) == (8.0, 8.0)


def test_a_rail_down_fails_naming_it(tmp_path: Path) -> None:
    root = node(tmp_path, "rail_down")
    out = judged("network", root, tmp_path)
    assert out["mlx5_3:1"]["link_down"].verdict.value == "FAIL"
    assert out["mlx5_3:1"]["link_down"].reason.endswith(
        "mlx5_3:1: state DOWN, physical state Polling: no link partner: check the cable and the switch port"
    )
    assert [s for s, v in verdicts(out).items() if v == "FAIL"] == ["mlx5_3:1"]
    ports = judged("network_ports", root, tmp_path)["node"]["rdma_ports_active"]
    # against the profile's estimated 8 ports: WARN at most (the rail's own link_down FAILs above)
    assert (ports.verdict.value, ports.measured) == ("WARN", 7.0)
    assert (
        "7 of 8 compute rails active" in ports.reason
        and "not active: mlx5_3:1 (DOWN/Polling)" in ports.reason
    )


def test_a_storage_port_in_use_that_is_down_fails(tmp_path: Path) -> None:
    out = judged("network", node(tmp_path, "storage_down"), tmp_path)
    assert out["mlx5_8:1"]["link_down"].verdict.value == "FAIL"
    assert out["mlx5_9:1"]["link_down"].verdict.value == "PASS"  # the one without address stays unused


def test_a_rail_trained_at_x8_fails(tmp_path: Path) -> None:
    out = judged("network", node(tmp_path, "x8"), tmp_path)
    ev = out["mlx5_2:1"]["pcie_degraded"]
    assert ev.verdict.value == "FAIL"
    assert ev.reason.endswith(
        "mlx5_2:1 (0000:4b:00.0): PCIe 32.0 GT/s PCIe x8, below its maximum 32.0 GT/s PCIe x16: reseat or "
        "replace the NIC, or check the slot"
    )
    assert [s for s, v in verdicts(out).items() if v == "FAIL"] == ["mlx5_2:1"]


def test_a_roce_port_without_a_roce_v2_gid_fails(tmp_path: Path) -> None:
    out = judged("network", node(tmp_path, "no_roce_v2"), tmp_path)
    ev = out["mlx5_8:1"]["roce_v2_missing"]
    assert (ev.verdict.value, ev.reason.split(": ", 1)[1]) == (
        "FAIL",
        "mlx5_8:1: no GID of type RoCE v2 (gid_attrs/types)",
    )


def test_a_saturated_counter_is_never_a_pass(tmp_path: Path) -> None:
    out = judged("network", node(tmp_path, "saturated"), tmp_path)
    grew = out["mlx5_4:1"]["counters_grew"]
    assert grew.verdict.value == "FAIL" and grew.measured == 1.0
    assert grew.reason.endswith(
        "symbol_error saturated at 65535: reset it (`perfquery -x -R` or a driver reload) to see new errors"
    )
    assert out["mlx5_4:1"]["counters_over_limit"].verdict.value == "WARN"


def test_a_growing_link_downed_fails_and_its_count_since_boot_warns(tmp_path: Path) -> None:
    root = node(tmp_path, "link_downed")
    counter = "sys/class/infiniband/mlx5_6/ports/1/counters/link_downed"
    out = judged("network", root, tmp_path, bump=("mlx5_6:1", counter, 1))
    grew = out["mlx5_6:1"]["counters_grew"]
    assert grew.verdict.value == "FAIL" and grew.reason.endswith(
        "mlx5_6:1: error counters grown in 0.01 s: link_downed +1"
    )
    assert out["mlx5_6:1"]["counters_over_limit"].verdict.value == "PASS"  # 3 + 1 since boot: within 5
    assert [s for s, v in verdicts(out).items() if v != "PASS"] == ["mlx5_6:1"]
    out = judged("network", root, tmp_path, bump=("mlx5_6:1", counter, 2))  # 4 + 2 = 6 since boot
    over = out["mlx5_6:1"]["counters_over_limit"]
    assert over.verdict.value == "WARN" and over.reason.endswith("the others 100): link_downed 6")


def test_a_half_rate_rail_fails_against_the_baseline_and_the_other_rails(tmp_path: Path) -> None:
    out = judged("network_rate", node(tmp_path, "half_rate"), tmp_path)
    ev, rel = out["mlx5_5:1"]["rdma_rate"], out["mlx5_5:1"]["rdma_rate~"]
    # against the profile's estimated 400 Gb/s: WARN at most; the comparison with the other rails FAILs
    assert (ev.verdict.value, ev.measured, ev.expected) == ("WARN", 200.0, 400.0)
    assert (
        rel.verdict.value == "FAIL"
        and rel.reason == "mlx5_5:1 reaches 50% of the median of the others (400 Gb/s)"
    )
    assert [s for s, v in verdicts(out).items() if v == "FAIL"] == ["mlx5_5:1"]


def test_rate_per_hour_and_event_counters() -> None:
    before = {"symbol_error": 10, "link_downed": 0, "port_rcv_errors": 0}
    after = {"symbol_error": 12, "link_downed": 1, "port_rcv_errors": 1}
    names = ("symbol_error", "link_downed", "port_rcv_errors")
    # 2 symbol errors in 60 s = 120/h, 1 receive error = 60/h; any link_downed counts
    assert health.growth(before, after, names, 60.0, 0.0) == [
        "symbol_error +2 (120/h)",
        "link_downed +1",
        "port_rcv_errors +1 (60/h)",
    ]
    assert health.growth(before, after, names, 60.0, 100.0) == ["symbol_error +2 (120/h)", "link_downed +1"]
    # the narrow counters' own limits since boot; a wide one at error_limit
    assert health.over_limit(
        {"link_downed": 6, "local_link_integrity_errors": 3, "symbol_error": 100},
        names + ("local_link_integrity_errors",),
        100,
    ) == [("link_downed", 6)]
    # rx_missed/rx_fifo are load: read, never judged
    assert (
        "rx_missed_errors" not in counters.ETH_ERROR_COUNTERS
        and "rx_missed_errors" in counters.ETH_OTHER_COUNTERS
    )


def test_hw_counters_are_read_per_rail(tmp_path: Path) -> None:
    root = node(tmp_path)
    values = counters.rdma_counters(str(root), "mlx5_0", 1)
    assert {k for k in values if k.startswith("hw_counters/")} == {
        f"hw_counters/{n}" for n in counters.HW_COUNTERS
    }


def test_link_flaps_in_the_kernel_log_since(tmp_path: Path) -> None:
    from hpcbench.hw.net import flaps

    log = (
        "2026-12-01T08:00:01+00:00 node kernel: mlx5_core 0000:18:00.0 ibp24s0: Link down\n"
        "2026-12-03T09:12:44+00:00 node kernel: mlx5_core 0000:4b:00.0: Port module event: module 0, "
        "Cable unplugged\n"
        "2026-12-03T09:12:50+00:00 node kernel: i40e 0000:04:00.0 eno1: NIC Link is Down\n"
        "2026-12-03T09:13:00+00:00 node kernel: mlx5_core 0000:4b:00.0: Port module event: module 0, "
        "Cable plugged\n"
        "2026-12-03T09:14:00+00:00 node kernel: ibp75s0: lost carrier\n"
    )
    start = datetime(2026, 12, 3, 8, 50, tzinfo=timezone.utc).timestamp()  # the first line is older
    lines = flaps.flap_lines(log, None, start)
    assert [ln.split(": ", 1)[1] for ln in lines] == [
        "mlx5_core 0000:4b:00.0: Port module event: module 0, Cable unplugged",
        "i40e 0000:04:00.0 eno1: NIC Link is Down",
        "ibp75s0: lost carrier",
    ]  # a cable plugged back is no flap
    assert len(flaps.flap_lines(log, None, None)) == 4
    root = node(tmp_path)
    kern = tmp_path / "kern.log"
    kern.write_text(log)
    out = judged("network_topology", root, tmp_path)
    assert out["node"]["link_flaps"].verdict.value == "SKIP"  # a tree is not this node: no log of its own
    from hpcbench.probes.network_topology.probe import NetworkTopology

    params = build_params(NetworkTopology, {"root": str(root), "kernel_log": str(kern), "since": "boot"})
    inv = collector.collect(str(root), nvml=FakeNvml())
    ms = {m.metric: m for m in NetworkTopology().run(params, ProbeContext("node", inv, str(tmp_path), 60))}
    assert ms["link_flaps"].value == 4.0
    assert ms["link_flaps"].detail.startswith("link flaps in the kernel log since boot: 2026-12-01T08")
    assert ms["link_flaps"].detail.endswith("(and 1 more)")


def test_two_gpus_sharing_their_nearest_nic_fail(tmp_path: Path) -> None:
    root = Path(__file__).parent / "fixtures/network/hgx8_wrong_numa"  # mlx5_3 moved to socket 1
    out = judged("network_topology", root, tmp_path)
    ev = out["node"]["gpus_sharing_nic"]
    assert (ev.verdict.value, ev.measured) == ("FAIL", 2.0)
    assert ev.reason.endswith("gpu0 and gpu3 share mlx5_0 as their nearest NIC")
    healthy = judged("network_topology", node(tmp_path), tmp_path)["node"]["gpus_sharing_nic"]
    assert (healthy.verdict.value, healthy.measured) == ("PASS", 0.0)


def test_acs_redirect_between_a_gpu_and_its_nic_fails(tmp_path: Path) -> None:
    from hpcbench.hw.net import acs

    out = judged("network_topology", node(tmp_path, "acs"), tmp_path)
    ev = out["node"]["acs_redirect"]
    assert (ev.verdict.value, ev.measured) == ("FAIL", 1.0)
    assert ev.reason.endswith(
        "ACS P2P redirect on 0000:4a:01.0 between gpu2 and mlx5_2 (ACS control 0x001d): GPUDirect RDMA "
        "goes through the root complex (setpci the ACS control off, or the BIOS's ACS setting)"
    )
    out = judged("network_topology", node(tmp_path), tmp_path)
    healthy = out["node"]["acs_redirect"]
    assert (healthy.verdict.value, healthy.measured) == ("PASS", 0.0)
    # each GPU's switch: its upstream port and the two downstream ports, 8 x 3 bridges
    assert detail(out, "node", "acs_redirect") == (
        "no P2P redirect on the 24 bridge(s) read between the GPUs and their nearest NICs"
    )
    # without root the extended config space reads as 256 bytes: not measured, never a pass
    assert acs.acs_control(bytes(256)) is None
    assert (
        acs.acs_item([("gpu0", "mlx5_0", "PIX", ["0000:16:00.0"])], {"0000:16:00.0": bytes(256)}).value
        is None
    )
