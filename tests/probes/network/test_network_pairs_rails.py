"""network_pairs per rail: three nodes, each in its own network namespace with a management
interface and two rails (``r0``, ``r1``), each rail a bridge of its own in a switch namespace, as a
rail-optimised fabric wires rail i of every node to one leaf. Every rail is paced at 1 Gbit/s and
node-2's ``r1`` at 200 Mbit/s (``tc ... tbf``): the run names node-2 on r1, and only there.

Root only (network namespaces); everything the test creates is removed afterwards and nothing is
added to the host's own namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import TESTS, hgx_node
from support.nodes import run_as_nodes

from hpcbench.hw.net.procs import free_port

NETS = ("mg", "r0", "r1")  # management, rail 0, rail 1: 10.<77+j>.0.<node+1>/24
LINK_DOWNED = "sys/class/infiniband/mlx5_1/ports/1/counters/link_downed"


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture()
def fabric() -> Iterator[list[str]]:
    """Three node namespaces on a switch namespace; node-2's r1 capped; yields the node namespaces."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.fail("these tests need iproute2 (ip, tc) and root: network namespaces")
    tag = f"hb{os.getpid() % 100000}"
    switch, nodes = f"{tag}sw", [f"{tag}n{i}" for i in range(3)]
    made: list[str] = []
    try:
        for ns in (switch, *nodes):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for j, _ in enumerate(NETS):
            ip("-n", switch, "link", "add", f"br{j}", "type", "bridge")
            ip("-n", switch, "link", "set", f"br{j}", "up")
        for i, ns in enumerate(nodes):
            for j, name in enumerate(NETS):
                peer = f"n{i}{name}"
                ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", switch)
                ip("-n", switch, "link", "set", peer, "master", f"br{j}", "up")
                ip("-n", ns, "addr", "add", f"10.{77 + j}.0.{i + 1}/24", "dev", name)
                ip("-n", ns, "link", "set", name, "up")
        # every rail paced at 1 Gbit/s (steady on a busy 2-core VM), node-2's r1 at 200 Mbit/s
        for i, ns in enumerate(nodes):
            for rail in ("r0", "r1"):
                rate = "200mbit" if (i, rail) == (2, "r1") else "1gbit"
                cap = ["netns", "exec", ns, "tc", "qdisc", "add", "dev", rail, "root", "tbf"]
                ip(*cap, "rate", rate, "burst", "1mb", "latency", "50ms")
        yield nodes
    except RuntimeError as exc:
        pytest.fail(f"could not build the namespaces (root and iproute2 needed): {exc}")
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def run_nodes(
    cli: Cli, nodes: list[str], argv: list[str], extra: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    port = free_port()
    runs = []
    for n, ns in enumerate(nodes):
        env = {
            **cli.env,
            "HPCBENCH_LOCK": str(cli.workdir / f"node{n}.lock"),
            "RANK": str(n),
            "WORLD_SIZE": str(len(nodes)),
            "LOCAL_RANK": "0",
            "MASTER_ADDR": "10.77.0.1",
            "MASTER_PORT": str(port),
            **(extra or {}),
        }
        runs.append((["ip", "netns", "exec", ns, "unshare", "--uts"], argv, env))
    return run_as_nodes(cli.workdir, runs, timeout=300)


def record(cli: Cli, host: str) -> dict[str, Any]:
    (path,) = sorted(cli.workdir.glob(f"results/{host}/*.json"))
    return dict(json.loads(path.read_text()))["checks"][0]


def test_a_capped_rail_is_named(cli: Cli, fabric: list[str]) -> None:
    exe = str(Path(sys.executable).parent / "hpcbench")
    argv = [exe, "probe", "network_pairs", "-p", "rails=r0,r1", "-p", "meet=all", "-p", "duration=1", "-q"]
    done = run_nodes(cli, fabric, argv)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]
    checks = {h: record(cli, h) for h in ("node-0", "node-1", "node-2")}
    for host, check in checks.items():
        ms = {m["metric"]: m for m in check["measurements"]}
        s = check["measurements"][0]["settings"]
        assert s["pairs_rails"] == ["r0", "r1"]
        n = int(host[-1]) + 1
        assert s["pairs_addresses"][host] == [f"10.78.0.{n}", f"10.79.0.{n}"]  # each rail its own address
        raw = s["pairs_gbps"]
        # node-2's sending on r1 is paced at 200 Mbit/s; on r0 it is as fast as the others
        assert raw["node-2 -> node-0"]["gbps"][1] < 0.25 < raw["node-2 -> node-0"]["gbps"][0] <= 1.0
        assert 0.25 < raw["node-0 -> node-1"]["gbps"][1] <= 1.0
        if host == "node-2":
            assert ms["slow_node"]["value"] == 1.0
            assert ms["slow_node"]["detail"].startswith("node-2 is slow on r1; r0: reference ")
            mine = [
                min(raw[f"node-2 -> {o}"]["gbps"][1], raw[f"{o} -> node-2"]["gbps"][1])
                for o in ("node-0", "node-1")
            ]
            assert ms["pair_bw"]["value"] == max(mine)  # its best pair on its slowest rail, r1
            assert ms["pair_bw"]["detail"].endswith("the slowest rail is r1")
        else:
            assert ms["slow_node"]["value"] == 0.0 and ms["slow_links"]["value"] == 0.0


def test_rdma_rail_to_rail_names_the_slow_rail(cli: Cli, fabric: list[str], tmp_path: Path) -> None:
    """ib_write_bw from rail i of each node to rail i of the others, through the perftest stand-in
    (its out-of-band TCP exchange crosses the namespaces as perftest's does; it measures nothing):
    node-2's client on mlx5_1 replays half the bandwidth of the others (derived from the capture)."""
    fixtures = Path(__file__).parent / "fixtures" / "network"
    captured = fixtures / "perftest" / "write_bw_4.5_ib_loopback_interleaved_mb.txt"
    slow = tmp_path / "slow.txt"
    slow.write_text(captured.read_text().replace("24056.74", "12028.37").replace("24056.72", "12028.36"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "ib_write_bw"
    exe.write_text(f"#!{sys.executable}\n" + (fixtures / "replay_perftest.py").read_text())
    exe.chmod(0o755)
    root = hgx_node.build(tmp_path / "root")
    extra = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": f"{cli.env['PYTHONPATH']}{os.pathsep}{TESTS}",
        "HPCBENCH_NVML_MODULE": "support.fakenvml:FakeNvml",
        "REPLAY_PERFTEST_LOG": str(tmp_path / "argv.log"),
        "REPLAY_PERFTEST_FIXTURES": str(fixtures / "perftest"),
        "REPLAY_PERFTEST_HELP": str(fixtures / "perftest" / "help_4.5_ib_write_bw.txt"),
        "REPLAY_PERFTEST_OUTPUT_IB_WRITE_BW": str(captured),
        "REPLAY_PERFTEST_SLOW": "node-2:mlx5_1",
        "REPLAY_PERFTEST_SLOW_OUTPUT": str(slow),
        # each server's traffic raises mlx5_1's link_downed (one tree stands for every node's sysfs)
        "REPLAY_PERFTEST_BUMP": f"{(root / LINK_DOWNED).resolve()}:1",
    }
    hb = str(Path(sys.executable).parent / "hpcbench")
    argv = [
        hb, "probe", "network_pairs", "-p", "transport=rdma", "-p", "rails=mlx5_0:1,mlx5_1:1",
        "-p", f"root={root}", "-p", "meet=all", "-p", "duration=1", "-q",
    ]  # fmt: skip
    done = run_nodes(cli, fabric, argv, extra)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]
    log = (tmp_path / "argv.log").read_text().splitlines()
    # rail i to rail i: every client on mlx5_1 connects out of band to the peer's management address
    clients = [
        ln for ln in log if ln.startswith("ib_write_bw -d mlx5_1") and ln.split()[-1].startswith("10.")
    ]
    assert len(clients) == 6 and all(ln.split()[-1].startswith("10.77.0.") for ln in clients)
    checks = {h: record(cli, h) for h in ("node-0", "node-1", "node-2")}
    for host, check in checks.items():
        ms = {m["metric"]: m for m in check["measurements"]}
        s = check["measurements"][0]["settings"]
        assert s["pairs_rdma_memory"] == {
            r: "host (this perftest has no CUDA support: its --help lists no --use_cuda)"
            for r in ("mlx5_0:1", "mlx5_1:1")
        }
        assert ms["pair_bw"]["convention"] == "perftest BW average"
        # the rails' error counters read before and after the pairs' traffic
        grew = ms["counters_grew"]
        assert grew["value"] == 1.0 and grew["detail"].startswith("mlx5_1:1: error counters grown in ")
        assert "link_downed +" in grew["detail"]
        raw = s["pairs_gbps"]
        gbps = 24056.72 * 2**20 * 8 / 1e9
        assert raw["node-0 -> node-1"]["gbps"] == [gbps, gbps]
        assert raw["node-2 -> node-0"]["gbps"] == [gbps, gbps / 2]  # node-2's sending on mlx5_1
        if host == "node-2":
            # half the reference (0.5 < slow_fraction 0.8) in both its pairs on mlx5_1, not on mlx5_0
            assert ms["slow_node"]["value"] == 1.0
            assert ms["slow_node"]["detail"].startswith("node-2 is slow on mlx5_1:1; mlx5_0:1: ")
            assert ms["pair_bw"]["value"] == gbps / 2
        else:
            assert ms["slow_node"]["value"] == 0.0
