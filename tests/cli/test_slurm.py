"""Slurm: the scontrol parser and the drain/resume decision (pure, on captured output), then
``hpcbench slurm-check``, the HealthCheckProgram script and the acceptance sbatch script against a
real one-node Slurm (munged, slurmctld, slurmd) started on 127.0.0.1 by the tests."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, hpcbench_exe, write
from support import records, slurmcluster
from support.required import unavailable

from hpcbench.cli.slurm import NodeInfo, decide, drain_reason, node_name, parse_show_node
from hpcbench.core.errors import ConfigError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.measurement import Measurement
from hpcbench.engine.record import Record

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def show(name: str) -> NodeInfo:
    return parse_show_node((FIXTURES / f"show-node-{name}.txt").read_text())


# -- parsing captured `scontrol show node` (Slurm 22.05) ------------------------------------


def test_parse_idle_node() -> None:
    node = show("idle")
    assert node == NodeInfo(name="vm", state="IDLE", reason="", reason_by="")
    assert not node.out_of_service and not node.drained_by_hpcbench


def test_parse_operator_drain() -> None:
    node = show("drained-operator")
    assert (node.state, node.reason, node.reason_by) == (
        "IDLE+DRAIN",
        "maintenance",
        "root@2026-11-28T13:19:59",
    )
    assert node.out_of_service and not node.drained_by_hpcbench


def test_parse_hpcbench_reason_with_spaces_commas_and_equals() -> None:
    node = show("drained-hpcbench")
    assert node.reason == "hpcbench: FAIL membw(node), gemm(gpu3,gpu5) x=1"
    assert node.drained_by_hpcbench


def test_parse_draining_and_down() -> None:
    draining = show("draining-hpcbench")
    assert draining.state == "ALLOCATED+DRAIN" and draining.drained_by_hpcbench
    down = show("down-operator")
    assert down.state == "DOWN" and down.reason == "node is down for repair"
    assert down.out_of_service and not down.drained_by_hpcbench


def test_parse_refuses_output_without_a_node() -> None:
    with pytest.raises(ConfigError, match="Node nosuch not found"):
        parse_show_node("Node nosuch not found\n")


# -- the drain reason and the decision -------------------------------------------------------


def record(verdicts: dict[tuple[str, str], str], verdict: str = "FAIL", **extra: Any) -> Record:
    checks = [records.check(c, s, v) for (c, s), v in verdicts.items()]
    return records.record(verdict=verdict, checks=checks, **extra)


def test_drain_reason_names_failing_checks_grouped_by_subject() -> None:
    rec = record(
        {
            ("membw", "node"): "FAIL",
            ("gemm", "gpu3"): "FAIL",
            ("gemm", "gpu5"): "FAIL",
            ("gemm", "gpu0"): "PASS",
            ("storage", "/scratch"): "WARN",
            ("xid", "node"): "ERROR",
        }
    )
    assert drain_reason(rec) == "hpcbench: FAIL membw(node), gemm(gpu3,gpu5)"
    assert (
        drain_reason(rec, ExitCode.WARN)
        == "hpcbench: FAIL membw(node), gemm(gpu3,gpu5), storage(/scratch), xid(node)"
    )
    assert drain_reason(rec, ExitCode.UNKNOWN) == "hpcbench: FAIL membw(node), gemm(gpu3,gpu5), xid(node)"


def test_drain_reason_names_the_first_failing_health_item() -> None:
    """A health item's detail (node_config: ``mount /scratch missing; ...``) leads the reason."""

    def item(metric: str, value: float, detail: str, subject: str = "node") -> dict[str, Any]:
        m = Measurement.from_samples(metric, [value], "count", subject, detail=detail)
        return m.as_dict()

    ms = [
        item("mounts_missing", 2.0, "mount /scratch missing; mount /home missing"),
        item("load_high", 0, "load 0.1"),
    ]
    evals = [{"metric": "load_high", "verdict": "PASS"}, {"metric": "mounts_missing", "verdict": "FAIL"}]
    rec = records.record(
        verdict="FAIL",
        checks=[
            records.check("node_config", "node", "FAIL", measurements=ms, evaluations=evals),
            records.check("gpu_health", "gpu3", "FAIL"),
        ],
    )
    assert drain_reason(rec) == "hpcbench: FAIL mount /scratch missing, gpu_health(gpu3)"
    per_gpu = records.record(
        verdict="FAIL",
        checks=[
            records.check(
                "gpu_health",
                "gpu3",
                "FAIL",
                measurements=[{**ms[0], "subject": "gpu3", "detail": "persistence mode off"}],
                evaluations=evals[1:],
            )
        ],
    )
    assert drain_reason(per_gpu) == "hpcbench: FAIL persistence mode off (gpu_health gpu3)"


def test_drain_reason_stays_short() -> None:
    rec = record({(f"check_number_{i}", "node"): "FAIL" for i in range(20)})
    reason = drain_reason(rec, limit=80)
    assert len(reason) <= 80 and reason.startswith("hpcbench: FAIL check_number_0(node)")
    shown = reason.count("(node)")
    assert reason.endswith(f", +{20 - shown} more")


def test_drain_reason_lists_checks_that_never_ran_under_unknown() -> None:
    rec = record({("a", "node"): "PASS"}, verdict="UNKNOWN", not_run=["b"])
    assert drain_reason(rec, ExitCode.UNKNOWN) == "hpcbench: UNKNOWN b(not run)"
    assert drain_reason(rec, ExitCode.FAIL) == "hpcbench: UNKNOWN"


def test_fail_drains_a_node_in_service_or_drained_by_hpcbench() -> None:
    reason = "hpcbench: FAIL membw(node)"
    assert decide(ExitCode.FAIL, show("idle"), reason).kind == "drain"
    action = decide(ExitCode.FAIL, show("drained-hpcbench"), reason)
    assert action.kind == "drain" and action.reason == reason  # the reason is brought up to date
    same = NodeInfo("vm", "IDLE+DRAIN", reason)
    assert decide(ExitCode.FAIL, same, reason).kind == "none"


def test_fail_never_touches_a_node_someone_else_took_out() -> None:
    for name in ("drained-operator", "down-operator"):
        action = decide(ExitCode.FAIL, show(name), "hpcbench: FAIL x(node)")
        assert action.kind == "none" and "left as it is" in action.why


def test_pass_resumes_only_what_hpcbench_drained() -> None:
    assert decide(ExitCode.OK, show("drained-hpcbench"), "").kind == "resume"
    assert decide(ExitCode.WARN, show("draining-hpcbench"), "").kind == "resume"
    assert decide(ExitCode.OK, show("drained-operator"), "").kind == "none"
    assert decide(ExitCode.OK, show("down-operator"), "").kind == "none"
    assert decide(ExitCode.OK, show("idle"), "").kind == "none"


def test_unknown_leaves_the_node_alone_unless_asked() -> None:
    assert decide(ExitCode.UNKNOWN, show("drained-hpcbench"), "r").kind == "none"
    assert decide(ExitCode.UNKNOWN, show("idle"), "r").kind == "none"
    assert decide(ExitCode.UNKNOWN, show("idle"), "r", drain_on=ExitCode.UNKNOWN).kind == "drain"
    assert decide(ExitCode.WARN, show("idle"), "r", drain_on=ExitCode.WARN).kind == "drain"
    assert decide(ExitCode.WARN, show("drained-hpcbench"), "r", drain_on=ExitCode.WARN).kind == "drain"


def test_node_name_order() -> None:
    assert node_name("n1", {"SLURMD_NODENAME": "n2"}) == "n1"
    assert node_name(None, {"SLURMD_NODENAME": "n2"}) == "n2"
    assert node_name(None, {}) == os.uname().nodename.split(".")[0]


# -- against a real Slurm ----------------------------------------------------------------------


def _need_slurm() -> None:
    """Skip without the Slurm daemons (a failure with HPCBENCH_REQUIRE_SERVICES=1)."""
    why = slurmcluster.missing()
    if why:
        unavailable(why)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.SlurmCluster]:
    _need_slurm()
    cluster = slurmcluster.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def node(slurm: slurmcluster.SlurmCluster, cli: Cli) -> slurmcluster.SlurmCluster:
    """The cluster's node back in service, and the cli pointed at the cluster."""
    slurm.reset()
    cli.env["SLURM_CONF"] = str(slurm.conf)
    return slurm


SUITE = """name = "health"
[[check]]
id = "membw"
probe = "fixed"
params = { value = 100.0 }
[[check]]
id = "gemm"
probe = "fixed"
params = { value = 50.0, metric = "fp32", unit = "TFLOPS" }
"""


def baseline(tmp: Path, membw: float, gemm: float) -> Path:
    return write(
        tmp / f"b{membw:g}-{gemm:g}.toml",
        f"""name = "b"
[provenance]
source = "golden-node"
date = "2026-11-01"
nodes = 1
[expected.membw]
score = {membw}
[expected.gemm]
fp32 = {gemm}
""",
    )


def check(cli: Cli, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("slurm-check", "health.toml", "--quiet", *extra)


def test_fail_drains_the_node_with_the_hpcbench_reason(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    write(cli.workdir / "health.toml", SUITE)
    fast = baseline(cli.workdir, 100.0, 500.0)  # gemm at 10%: FAIL
    r = check(cli, "--baseline", str(fast), "--log-file", "ops.log")
    assert r.returncode == ExitCode.FAIL, r.stderr
    assert f"draining node {node.node}" in r.stderr
    state, reason = node.state()
    assert state == "drained" and reason == "hpcbench: FAIL gemm(node)"
    assert "Reason=hpcbench: FAIL gemm(node) [root@" in node.show_node()
    log = (cli.workdir / "ops.log").read_text()
    assert "slurm-check: FAIL: draining node" in log and "FAIL (exit 2)" in log


def test_pass_resumes_a_node_hpcbench_drained(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    write(cli.workdir / "health.toml", SUITE)
    r = check(cli, "--baseline", str(baseline(cli.workdir, 100.0, 500.0)))
    assert r.returncode == ExitCode.FAIL and node.state()[0] == "drained"
    r = check(cli, "--baseline", str(baseline(cli.workdir, 100.0, 50.0)))
    assert r.returncode == ExitCode.OK, r.stderr
    assert "resuming node" in r.stderr
    state, reason = node.state()
    assert "drain" not in state and reason == ""


def test_pass_does_not_resume_a_node_an_operator_drained(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    write(cli.workdir / "health.toml", SUITE)
    node.scontrol("update", f"nodename={node.node}", "state=drain", "reason=maintenance")
    r = check(cli, "--baseline", str(baseline(cli.workdir, 100.0, 50.0)), "--log-file", "ops.log")
    assert r.returncode == ExitCode.OK, r.stderr
    assert node.state() == ("drained", "maintenance")
    # the state may carry flags such as +NOT_RESPONDING when slurmd answers late under load
    assert re.search(
        r"is IDLE\+DRAIN[A-Z_+]* with reason 'maintenance', not set by hpcbench; left as it is",
        (cli.workdir / "ops.log").read_text(),
    )
    # nor does a failing run overwrite the operator's reason
    r = check(cli, "--baseline", str(baseline(cli.workdir, 100.0, 500.0)))
    assert r.returncode == ExitCode.FAIL
    assert node.state() == ("drained", "maintenance")


def test_unknown_node_is_a_usage_error(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    write(cli.workdir / "health.toml", SUITE)
    r = check(cli, "--node", "no-such-node")
    assert r.returncode == ExitCode.USAGE
    assert r.stderr.strip() == "hpcbench: error: scontrol show node no-such-node: Node no-such-node not found"
    assert not list(cli.workdir.glob("results/*/*.json"))  # nothing ran


def test_max_age_reuses_a_fresh_pass_and_resumes(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    write(cli.workdir / "health.toml", SUITE)
    good = str(baseline(cli.workdir, 100.0, 50.0))
    assert check(cli, "--baseline", good).returncode == ExitCode.OK
    node.scontrol("update", f"nodename={node.node}", "state=drain", "reason=hpcbench: FAIL gemm(node)")
    r = check(cli, "--baseline", good, "--max-age", "1h")
    assert r.returncode == ExitCode.OK, r.stderr
    assert len(list(cli.workdir.glob("results/*/*.json"))) == 1  # not run again
    assert node.state() == ("idle", "")


def _wrapper(path: Path, cli: Cli, slurm_conf: Path, *args: str, **more: str) -> Path:
    """What a site's HealthCheckProgram is: a script slurmd runs with an empty environment."""
    env = {k: cli.env[k] for k in ("PYTHONPATH", "HPCBENCH_LOCK", "TMPDIR")}
    env.update(more)
    env.update(
        SLURM_CONF=str(slurm_conf),
        HPCBENCH=hpcbench_exe(),
        HPCBENCH_SUITE=str(cli.workdir / "health.toml"),
        HPCBENCH_OUTPUT=str(cli.workdir / "results"),
        HPCBENCH_LOG=str(cli.workdir / "ops.log"),
        HPCBENCH_TEXTFILE_DIR=str(cli.workdir / "no-textfile-dir"),
    )
    lines = ["#!/bin/sh"] + [f"export {k}='{v}'" for k, v in env.items()]
    lines.append(f"exec {ROOT / 'examples/slurm/hpcbench-healthcheck.sh'} {' '.join(args)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_health_check_program_run_by_slurmd_drains_the_failing_node(
    cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """slurmd itself runs examples/slurm/hpcbench-healthcheck.sh when it starts: the node ends
    drained with hpcbench's reason, before any job could land on it."""
    _need_slurm()
    write(cli.workdir / "health.toml", SUITE)
    fast = baseline(cli.workdir, 100.0, 500.0)
    root = tmp_path_factory.mktemp("slurm-hc")
    # its checks' default timeout (300 s) is past the script's default deadline (50 s): none
    program = _wrapper(
        cli.workdir / "healthcheck", cli, root / "slurm.conf", "--baseline", str(fast), HPCBENCH_DEADLINE=""
    )
    extra = f"HealthCheckProgram={program}\nHealthCheckInterval=3600\nHealthCheckNodeState=IDLE"
    cluster = slurmcluster.start(root, extra=extra, wait=frozenset({"drained", "draining"}))
    try:
        state, reason = cluster.state()
        assert reason == "hpcbench: FAIL gemm(node)", cluster.logs()
        log = (cli.workdir / "ops.log").read_text()
        assert "slurm-check: FAIL: draining node" in log
        (rec,) = cli.workdir.glob("results/*/*.json")
        assert json.loads(rec.read_text())["verdict"] == "FAIL"
    finally:
        cluster.stop()


def test_health_suite_as_health_check_program_drains_on_a_missing_mount(
    cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The bundled health suite, included by a site suite that expects /scratch (not mounted
    here), run by slurmd through examples/slurm/hpcbench-healthcheck.sh: the node drains with the
    missing mount as the reason."""
    _need_slurm()
    write(
        cli.workdir / "health.toml",
        'name = "site-health"\ninclude = "health"\n[[check]]\nid = "node_config"\n'
        'params = { mounts = ["/ rw", "/scratch"] }\n',
    )
    root = tmp_path_factory.mktemp("slurm-health")
    program = _wrapper(cli.workdir / "healthcheck", cli, root / "slurm.conf")
    extra = f"HealthCheckProgram={program}\nHealthCheckInterval=3600\nHealthCheckNodeState=ANY"
    cluster = slurmcluster.start(root, extra=extra, wait=frozenset({"drained", "draining"}))
    try:
        state, reason = cluster.state()
        assert reason == "hpcbench: FAIL mount /scratch missing", cluster.logs()
        (rec,) = cli.workdir.glob("results/*/*.json")
        data = json.loads(rec.read_text())
        assert data["suite"]["name"] == "site-health"
        failing = [c["id"] for c in data["checks"] if c["verdict"] == "FAIL"]
        assert failing == ["node_config"]
    finally:
        cluster.stop()


def test_acceptance_sbatch_runs_every_node_then_the_fleet_analysis(
    node: slurmcluster.SlurmCluster, cli: Cli
) -> None:
    write(cli.workdir / "health.toml", SUITE)
    out = cli.workdir / "shared" / "acceptance"
    env = {
        **cli.env,
        "SUITE": str(cli.workdir / "health.toml"),
        "OUT": str(out),
        "HPCBENCH": hpcbench_exe(),
    }
    r = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--nodes=1",
            f"--output={cli.workdir / 'job.out'}",
            str(ROOT / "examples/slurm/acceptance.sbatch"),
            "--baseline",
            str(baseline(cli.workdir, 100.0, 500.0)),
        ],
        cwd=cli.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    job_out = (cli.workdir / "job.out").read_text()
    assert r.returncode == ExitCode.FAIL, r.stderr + job_out  # the node's gemm is at 10% of its baseline
    (rec,) = out.glob(f"{node.node}/*.json")
    assert json.loads(rec.read_text())["verdict"] == "FAIL"
    assert (out / "junit" / f"{node.node}.xml").exists() and (out / "fleet.csv").exists()
    assert "0: hpcbench health: FAIL: gemm/node" in job_out  # srun --label: task 0's summary line
    assert "per-node runs exit 2" in job_out


def test_lock_held_leaves_the_node_alone_and_exits_0(node: slurmcluster.SlurmCluster, cli: Cli) -> None:
    """Another run holds the node (cron's nightly): a Prolog must not fail the job for that."""
    from hpcbench.engine.lock import RunLock

    write(cli.workdir / "health.toml", SUITE)
    node.scontrol("update", f"nodename={node.node}", "state=drain", "reason=hpcbench: FAIL gemm(node)")
    with RunLock(Path(cli.env["HPCBENCH_LOCK"]), {"run_id": "cron01", "suite": "nightly"}):
        r = check(cli, "--baseline", str(baseline(cli.workdir, 100.0, 50.0)))
    assert r.returncode == ExitCode.OK, r.stderr
    assert "not judged, node" in r.stderr and "run id cron01" in r.stderr
    assert node.state() == ("drained", "hpcbench: FAIL gemm(node)")


def test_prolog_fails_the_launch_and_keeps_the_hpcbench_reason(
    cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """As a Prolog, a failing node drains itself with hpcbench's reason (Slurm's own "Prolog error"
    drain does not replace it) and the job goes back to the queue instead of running there."""
    _need_slurm()
    write(cli.workdir / "health.toml", SUITE)
    fast = baseline(cli.workdir, 100.0, 500.0)
    root = tmp_path_factory.mktemp("slurm-prolog")
    program = _wrapper(
        cli.workdir / "prolog", cli, root / "slurm.conf", "--baseline", str(fast), HPCBENCH_DEADLINE=""
    )  # its checks' default timeout (300 s) is past the script's default deadline (50 s): none
    cluster = slurmcluster.start(root, extra=f"Prolog={program}")
    try:
        marker = cli.workdir / "job-ran"
        r = subprocess.run(
            ["sbatch", "--output=/dev/null", "--wrap", f"touch {marker}"],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        cluster.wait_state({"drained", "draining"})
        assert cluster.state()[1] == "hpcbench: FAIL gemm(node)"

        def job_state() -> str:
            q = ["squeue", "-h", "-o", "%T"]
            return subprocess.run(
                q, env=cluster.env, capture_output=True, text=True, timeout=30
            ).stdout.strip()

        deadline = time.monotonic() + 60
        while job_state() != "PENDING" and time.monotonic() < deadline:  # requeued after the prolog
            time.sleep(0.3)
        assert job_state() == "PENDING" and not marker.exists()
        assert cluster.state()[1] == "hpcbench: FAIL gemm(node)"
    finally:
        cluster.stop()
