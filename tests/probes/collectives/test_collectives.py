"""collectives end to end: real multi-process gloo ranks on 127.0.0.1, through the installed CLI.

Small sweeps (up to a few KiB) so that each run costs seconds on a 2-core node.
Failures are injected with the ranks' test hook HPCBENCH_TEST_COLLECTIVES_FAULT
(RANK:kill|stop|corrupt:STAGE): a rank really dies (SIGKILL), really hangs
(SIGSTOP) or really receives a wrong element.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Cli

from hpcbench.core.exitcodes import ExitCode
from hpcbench.probes.collectives.calc import OPS, sweep_sizes

SMALL = ["-p", "max_bytes=4096", "-p", "iters=3", "-p", "warmup=1", "-p", "repeats=2"]


def records(root: Path) -> list[Path]:
    return sorted(root.glob("results/*/*.json"))


def only_check(cli: Cli) -> dict[str, Any]:
    found = records(cli.workdir)
    assert len(found) == 1, found
    checks = json.loads(found[0].read_text())["checks"]
    assert len(checks) == 1
    return dict(checks[0])


def rank_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("HPCBENCH_TEST_MARK") == mark and "collectives_rank" in " ".join(
                proc.cmdline()
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_measure_every_collective_correctly(cli: Cli) -> None:
    r = cli("probe", "collectives", *SMALL, "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    check = json.loads(r.stdout)["checks"][0]
    assert check["status"] == "ok", check["reason"]
    ms = {m["metric"]: m for m in check["measurements"]}
    assert sorted(ms) == sorted(f"{op}_busbw_{k}" for op in OPS for k in ("max_size", "avg"))
    factors = {"all_reduce": 1.0, "all_gather": 0.5, "reduce_scatter": 0.5}  # 2(n-1)/n, (n-1)/n at n=2
    for op in OPS:
        m = ms[f"{op}_busbw_max_size"]
        s = m["settings"]
        assert m["sanity"] is None and m["value"] > 0 and m["unit"] == "GB/s"
        assert s["world_size"] == 2 and s["backend"] == "gloo" and s["launcher"] == "spawned"
        assert s["bus_factor"] == factors[op] and s["exact_check"] is True
        assert [row["size_bytes"] for row in s["table"]] == sweep_sizes(8, 4096)
        for row in s["table"]:
            assert row["wrong"] == 0 and row["busbw_gbs"] > 0
            assert row["busbw_gbs"] == pytest.approx(row["algbw_gbs"] * factors[op])
            assert len(row["rank_time_us"]) == 2
        assert s["slowest_rank"] in (0, 1) and s["slowest_rank_host"] == socket.gethostname()
        assert len(s["rank_time_us_largest"]) == 2 and len(m["samples"]) == 2
    assert {e["verdict"] for e in check["evaluations"]} == {"NOBASELINE"}
    assert rank_processes(cli.mark) == []


def test_a_killed_rank_is_named(cli: Cli) -> None:
    cli.env["HPCBENCH_TEST_COLLECTIVES_FAULT"] = "1:kill:sweep"
    r = cli("probe", "collectives", *SMALL, "-p", "timeout=10", "--timeout", "60", timeout=120)
    assert r.returncode == ExitCode.UNKNOWN, r.stdout + r.stderr
    check = only_check(cli)
    assert check["verdict"] == "ERROR"
    assert check["reason"].startswith("rank 1 of 2 died (killed by SIGKILL)"), check["reason"]
    assert rank_processes(cli.mark) == []


def test_a_hung_rank_is_named_within_the_timeout(cli: Cli) -> None:
    cli.env["HPCBENCH_TEST_COLLECTIVES_FAULT"] = "1:stop:sweep"
    r = cli(
        "probe",
        "collectives",
        *SMALL,
        "-p",
        "ops=all_reduce",
        "-p",
        "timeout=3",
        "--timeout",
        "60",
        timeout=120,
    )
    assert r.returncode == ExitCode.UNKNOWN, r.stdout + r.stderr
    check = only_check(cli)
    assert check["verdict"] == "ERROR"
    assert check["reason"].startswith("rank 0: rank 1 of 2 stopped responding"), check["reason"]
    assert "all_reduce" in check["reason"]
    assert rank_processes(cli.mark) == []  # the stopped rank was killed, not left behind


def test_a_wrong_element_is_a_fail_of_its_own(cli: Cli) -> None:
    cli.env["HPCBENCH_TEST_COLLECTIVES_FAULT"] = "1:corrupt:check"
    r = cli("probe", "collectives", *SMALL, "-p", "ops=reduce_scatter", "-p", "max_bytes=64")
    assert r.returncode == ExitCode.FAIL, r.stdout + r.stderr
    check = only_check(cli)
    assert {e["verdict"] for e in check["evaluations"]} == {"FAIL"}
    reason = check["evaluations"][0]["reason"]
    assert (
        "reduce_scatter: 4 wrong element(s) (nccl-tests #wrong) at 8 B, 16 B, 32 B, 64 B on rank(s) 1"
        in reason
    )


def test_a_rank_that_never_joins_a_launched_job_is_named(cli: Cli) -> None:
    port = free_port()
    cli.env.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    r = cli("probe", "collectives", *SMALL, "-p", "timeout=3", "--timeout", "60", timeout=120)
    assert r.returncode == ExitCode.UNKNOWN, r.stdout + r.stderr
    check = only_check(cli)
    assert check["reason"] == f"rank 0: rank 1 of 2 never joined within 3 s (rendezvous 127.0.0.1:{port})"


def test_bad_parameter_is_a_usage_error(cli: Cli) -> None:
    r = cli("probe", "collectives", "-p", "ops=all_reduce,broadcast")
    assert r.returncode == ExitCode.USAGE
    assert r.stderr.strip().count("\n") == 0 and "unknown collective 'broadcast'" in r.stderr
    assert records(cli.workdir) == []


def test_two_torchrun_agents_form_one_two_node_job(cli: Cli) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    port = free_port()
    agents = []
    for node in (0, 1):
        argv = [
            torchrun,
            "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
            "--master-addr", "127.0.0.1", "--master-port", str(port),
            "-m", "hpcbench", "probe", "collectives", *SMALL, "-p", "timeout=30", "--format", "json",
        ]  # fmt: skip
        # each agent is a node of its own: its own lock, as /run/lock is per node
        env = {**cli.env, "HPCBENCH_LOCK": str(cli.workdir / f"node{node}.lock")}
        agents.append(
            subprocess.Popen(
                argv, cwd=cli.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs = []
    try:
        for agent in agents:
            outs.append(agent.communicate(timeout=180))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    assert [a.returncode for a in agents] == [0, 0], outs
    assert outs[1][0] == ""  # rank 1 reports through rank 0
    record = json.loads(outs[0][0])
    check = record["checks"][0]
    assert check["status"] == "ok", check["reason"]
    for m in check["measurements"]:
        assert m["settings"]["world_size"] == 2 and m["settings"]["launcher"] == "torchrun"
        assert m["sanity"] is None and m["value"] > 0
    assert len(records(cli.workdir)) == 1  # rank 0 alone writes the record
