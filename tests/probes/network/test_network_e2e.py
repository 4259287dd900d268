"""The network probe through the installed CLI: on this VM (eth0 virtio, lo, ifb0/ifb1, no RDMA),
and the pairs mode across "nodes": launcher agents on 127.0.0.1, each in a UTS namespace of its
own (``unshare --uts``: a real host name per node, so each writes its own record, as on a cluster),
with real iperf3 between them and one node slowed on purpose (its iperf3 sends at most 200 Mbit/s:
``-p bitrate=200M``, the test hook) so that it is the node named, and `hpcbench fleet` drains it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support.nodes import run_as_nodes

from hpcbench.core.exitcodes import ExitCode
from hpcbench.hw.net.procs import free_port

SUITE = """name = "network-pairs"
require_baseline = false

[[check]]
id = "pairs"
probe = "network_pairs"
params = { meet = "all", duration = 1.0, timeout = 60.0 }
timeout = 180
[check.absolute]
slow_node = { fail = 0.5 }
slow_links = { warn = 0.5 }
"""


def records(folder: Path) -> list[Path]:
    return sorted(folder.glob("results/*/*.json"))


VM = str(Path(__file__).parent / "fixtures" / "network" / "vm")  # a VM's sysfs: virtio NIC, no RDMA


def test_ports_on_a_vm_tree(cli: Cli) -> None:
    r = cli("probe", "network_ports", "-p", f"root={VM}", "-p", "interval=0", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    assert check["status"] == "ok" and check["subject"] == "node"
    ms = {m["metric"]: m for m in check["measurements"]}
    assert ms["link_down"]["value"] == 0.0
    assert "eth0 up (virtio_net" in ms["link_down"]["detail"]
    assert ms["link_down"]["detail"].endswith("(not NICs: ifb0, ifb1, lo)")
    settings = check["measurements"][0]["settings"]  # the run's settings travel with its first measurement
    assert settings["not_nics"] == ["ifb0", "ifb1", "lo"]
    skipped = {e["metric"]: e for e in check["evaluations"] if e["verdict"] == "SKIP"}
    assert skipped["rdma_ports_active"]["reason"].startswith(
        "not measured: no RDMA device: /sys/class/infiniband"
    )


def test_tcp_over_loopback(cli: Cli) -> None:
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is not installed: apt-get install iperf3 (Debian/Ubuntu) or dnf install iperf3")
    r = cli("probe", "network_tcp", "-p", "duration=1", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    (m,) = check["measurements"]
    assert m["value"] == m["settings"]["tcp_result"]["receiver_bits_per_second"] / 1e9 > 0
    assert m["settings"]["tcp_interface"] == "lo"


def test_topology_without_a_gpu_is_skipped(cli: Cli) -> None:
    r = cli("probe", "network_topology", "-p", f"root={VM}", "-p", "kernel_log=none", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    assert (check["verdict"], check["reason"]) == (
        "SKIP",
        "no GPU on this node; reading the kernel log is turned off (kernel_log = none)",
    )


def test_expand_nic_runs_one_check_per_port_of_this_node(cli: Cli) -> None:
    from hpcbench.node import nics

    r = cli("probe", "network_ports", "--expand", "nic", "-p", "interval=0.2", "--format", "json")
    assert r.returncode in (ExitCode.OK, ExitCode.WARN, ExitCode.FAIL), r.stderr
    found = json.loads(r.stdout)["checks"]
    assert [c["subject"] for c in found] == list(nics.collect("/").nics)
    assert all(c["expand"] == "nic" and c["verdict"] != "ERROR" for c in found)


def test_missing_iperf3_is_an_error_naming_the_package(cli: Cli, tmp_path: Path) -> None:
    cli.env["PATH"] = str(Path(sys.executable).parent)  # the venv: hpcbench, no iperf3
    r = cli("probe", "network_tcp", "--format", "json")
    assert r.returncode == ExitCode.UNKNOWN, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    assert (check["verdict"], check["reason"]) == ("ERROR", "iperf3 not found on PATH")
    assert (
        check["hint"]
        == "install iperf3: apt-get install iperf3 (Debian/Ubuntu) or dnf install iperf3 (RHEL/Rocky)"
    )


def test_bad_parameter_is_a_usage_error(cli: Cli) -> None:
    r = cli("probe", "network_ports", "-p", "interval=-1")
    assert r.returncode == ExitCode.USAGE
    assert r.stderr.count("\n") == 1 and "must be >= 0 seconds" in r.stderr


def test_pairs_without_a_launch_is_not_measured(cli: Cli) -> None:
    r = cli("probe", "network_pairs", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    assert (
        check["verdict"] == "SKIP"
        and check["reason"] == "network_pairs runs under torchrun or srun, one rank per node"
    )


# --- the pairs mode with real launcher agents -------------------------------------------------


def _unshare() -> str:
    exe = shutil.which("unshare")
    probe = (
        subprocess.run([exe or "unshare", "--uts", "true"], capture_output=True, timeout=30) if exe else None
    )
    if probe is None or probe.returncode != 0:
        pytest.fail("these tests give each node its own host name with `unshare --uts` (util-linux, as root)")
    return str(exe)


def start_nodes(
    cli: Cli, argvs: list[list[str]], envs: list[dict[str, str]]
) -> list[subprocess.CompletedProcess[str]]:
    """Run each argv as a node: its own UTS namespace and host name (node-0, node-1, ...), its own lock."""
    unshare = _unshare()
    nodes = [
        ([unshare, "--uts"], argv, {**cli.env, "HPCBENCH_LOCK": str(cli.workdir / f"node{n}.lock"), **env})
        for n, (argv, env) in enumerate(zip(argvs, envs, strict=True))
    ]
    return run_as_nodes(cli.workdir, nodes, timeout=240)


def node_record(folder: Path, host: str) -> dict[str, Any]:
    (path,) = sorted(folder.glob(f"results/{host}/*.json"))
    return dict(json.loads(path.read_text()))


def check_pairs(cli: Cli, launcher: str) -> dict[str, dict[str, Any]]:
    """Each node's record of a 3-node pairs run in which node-2 sends at most 200 Mbit/s."""
    assert sorted(p.parent.name for p in records(cli.workdir)) == ["node-0", "node-1", "node-2"]  # one each
    checks = {h: node_record(cli.workdir, h)["checks"][0] for h in ("node-0", "node-1", "node-2")}
    for host, check in checks.items():
        ms = {m["metric"]: m for m in check["measurements"]}
        settings = check["measurements"][0]["settings"]
        assert (
            settings["pairs_nodes"] == ["node-0", "node-1", "node-2"]
            and settings["pairs_launcher"] == launcher
        )
        assert settings["pairs_rounds"] == [
            [["node-1", "node-2"]],
            [["node-0", "node-2"]],
            [["node-0", "node-1"]],
        ]
        raw = settings["pairs_gbps"]
        assert set(raw) == {f"{a} -> {b}" for a in checks for b in checks if a != b}
        # one address (no rail named): one value per direction
        fast = min(raw["node-0 -> node-1"]["gbps"][0], raw["node-1 -> node-0"]["gbps"][0])
        mine = [
            min(raw[f"{host} -> {o}"]["gbps"][0], raw[f"{o} -> {host}"]["gbps"][0])
            for o in checks
            if o != host
        ]
        assert ms["pair_bw"]["value"] == max(mine)  # the node's best pair, each pair its slower direction
        assert ms["pair_bw"]["unit"] == "Gb/s" and ms["slow_links"]["value"] == 0.0
        if host == "node-2":
            assert ms["slow_node"]["value"] == 1.0
            # its own sending is paced at 200 Mbit/s (-b 200M): about 0.2 Gb/s, far below the others
            assert ms["pair_bw"]["value"] < 0.25 and ms["pair_bw"]["value"] < 0.8 * fast
            assert "node-2 is slow in every pair it is in (with node-0 " in ms["slow_node"]["detail"]
        else:
            assert ms["slow_node"]["value"] == 0.0 and ms["pair_bw"]["value"] == fast
    return checks


def fleet_status(cli: Cli) -> dict[str, str]:
    r = cli("fleet", "results", "--min-nodes", "3", "--format", "json")
    assert r.returncode in (0, 1, 2), r.stderr
    data = json.loads(r.stdout)
    (fleet,) = data["suites"]
    return {n["host"]: n["status"] for n in fleet["node_status"]}


def test_three_torchrun_agents_name_the_slow_node_and_fleet_drains_it(cli: Cli) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    port = free_port()
    argvs = []
    for n in range(3):
        argv = [
            torchrun, "--nnodes", "3", "--nproc-per-node", "1", "--node-rank", str(n),
            "--master-addr", "127.0.0.1", "--master-port", str(port),
            "-m", "hpcbench", "probe", "network_pairs",
            "-p", "meet=all", "-p", "duration=1", "-q",
        ]  # fmt: skip
        argvs.append(argv + (["-p", "bitrate=200M"] if n == 2 else []))  # the test hook: node-2 is slow
    done = start_nodes(cli, argvs, [{}, {}, {}])
    # no limits in a single probe: every node exits 0 (a worker exiting non-zero is a failure to torchrun)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]
    check_pairs(cli, "torchrun")
    # the outlier among the nodes' records: node-2's best pair is far below the others'
    assert fleet_status(cli) == {"node-0": "OK", "node-1": "OK", "node-2": "DRAIN"}


def test_three_srun_style_nodes_fail_the_slow_one(cli: Cli) -> None:
    """srun's way: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the batch script, rank 0 hosts the store;
    a suite puts limits on slow_node, so the slow node's record is FAIL and it exits 2."""
    suite = cli.workdir / "pairs.toml"
    suite.write_text(SUITE)
    slow = cli.workdir / "pairs-slow.toml"
    slow.write_text(SUITE.replace("duration = 1.0,", 'duration = 1.0, bitrate = "200M",'))
    exe = str(Path(sys.executable).parent / "hpcbench")
    port = free_port()
    argvs = [[exe, "run", str(slow if n == 2 else suite), "-q"] for n in range(3)]
    envs = [
        {
            "RANK": str(n),
            "WORLD_SIZE": "3",
            "LOCAL_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        for n in range(3)
    ]
    done = start_nodes(cli, argvs, envs)
    assert [d.returncode for d in done] == [ExitCode.OK, ExitCode.OK, ExitCode.FAIL], [
        d.stderr[-2000:] for d in done
    ]
    checks = check_pairs(cli, "env")
    # pair_bw has no baseline here (NOBASELINE, exit 0): slow_node's limit fails node-2 alone
    assert [checks[h]["verdict"] for h in ("node-0", "node-1", "node-2")] == [
        "NOBASELINE",
        "NOBASELINE",
        "FAIL",
    ]
    reason = next(e["reason"] for e in checks["node-2"]["evaluations"] if e["metric"] == "slow_node")
    assert reason.startswith("1 flag is above the suite's absolute limit 0.5 flag: reference ")
    assert done[2].stdout.startswith("hpcbench network-pairs: FAIL: pairs/node (") and done[0].stdout == ""
    assert fleet_status(cli)["node-2"] == "DRAIN"
