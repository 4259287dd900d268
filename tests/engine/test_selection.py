"""Choosing what runs: --only/--skip, --gpus and CUDA_VISIBLE_DEVICES, --dry-run, --deadline, and no
measurement taken twice for one subject (plan.py, the runner, the installed CLI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, write
from support import TESTS

from hpcbench.core.errors import ConfigError
from hpcbench.engine.lock import RunLock
from hpcbench.engine.plan import estimate, make_plan, select_checks, select_gpus
from hpcbench.engine.suite import CheckSpec
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry

UUID = "GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a{:02d}"  # tests/support/fakenvml.py's


def gpus_inventory(n: int) -> Inventory:
    devices = [{"index": i, "uuid": f"GPU-{i}{UUID[5:].format(i)}"} for i in range(n)]
    return Inventory.from_dict({"gpus": {"count": n, "devices": devices}})


CHECKS = (CheckSpec("a", "fixed"), CheckSpec("b", "fixed"), CheckSpec("c", "fixed"))


def test_select_checks() -> None:
    assert [c.id for c in select_checks(CHECKS, "a,c", None)] == ["a", "c"]
    assert [c.id for c in select_checks(CHECKS, None, "b")] == ["a", "c"]
    assert [c.id for c in select_checks(CHECKS, "a, b", "b")] == ["a"]
    assert select_checks(CHECKS, None, None) == CHECKS
    with pytest.raises(ConfigError, match="--only: no check 'x' in this suite; its checks: a, b, c"):
        select_checks(CHECKS, "a,x", None)
    with pytest.raises(ConfigError, match="--skip: no check 'd'"):
        select_checks(CHECKS, None, "d")
    with pytest.raises(ConfigError, match="leave no check to run"):
        select_checks(CHECKS, "a", "a")


def test_select_gpus_from_the_option_and_the_environment() -> None:
    inv = gpus_inventory(4)
    assert select_gpus(inv, None, None) is None  # all
    assert select_gpus(inv, "3,0", None) == (0, 3)
    assert select_gpus(inv, "1", "0,2") == (1,)  # the option wins
    with pytest.raises(
        ConfigError, match=r"--gpus 0,7: no GPU '7' on this node \(NVML indices: 0, 1, 2, 3\)"
    ):
        select_gpus(inv, "0,7", None)
    with pytest.raises(ConfigError, match="no GPU 'x'"):
        select_gpus(inv, "x", None)
    assert select_gpus(inv, None, "2,0") == (0, 2)  # indices, in PCI bus order as NVML's
    uuid = {d.index: d.uuid for d in inv.gpus.devices}
    assert select_gpus(inv, None, f"{uuid[3]},{uuid[1]}") == (1, 3)
    assert select_gpus(inv, None, uuid[2][:6]) == (2,)  # a unique prefix, as CUDA accepts
    assert select_gpus(inv, None, "1,-1,2") == (1,)  # CUDA stops at an invalid entry
    assert select_gpus(inv, None, "") == () and select_gpus(inv, None, "-1") == ()
    assert select_gpus(inv, None, "MIG-0c3b8a5e-1111-2222-3333-444455556666") == ()
    with pytest.raises(
        ConfigError, match="CUDA_VISIBLE_DEVICES=GPU-ffff: GPU-ffff is not a GPU of this node"
    ):
        select_gpus(inv, None, "GPU-ffff")
    with pytest.raises(ConfigError, match=r"NVML indices: none"):
        select_gpus(Inventory.from_dict({}), "0", None)


def probes() -> dict[str, Any]:
    return {n: registry.load(n) for n in ("cpu_membw", "gpu_health")}


def test_a_numa_check_on_one_numa_node_takes_over_the_whole_node_measurement() -> None:
    membw = CheckSpec("membw", "cpu_membw", params={"repeats": 5})
    numa = CheckSpec("numa", "cpu_membw", params={"repeats": 5}, expand="numa")
    one = Inventory.from_dict({"numa": {"nodes": [{"id": 0, "cpus": [0, 1]}]}})
    planned = make_plan((membw, numa), probes(), one)
    assert planned[1].reuses == "membw" and "one NUMA node" in planned[1].why_reused
    assert planned[1].batches() == []  # no child of its own
    two = Inventory.from_dict({"numa": {"nodes": [{"id": 0, "cpus": [0]}, {"id": 1, "cpus": [1]}]}})
    assert make_plan((membw, numa), probes(), two)[1].reuses is None  # two subjects: measured apart
    other = CheckSpec("numa", "cpu_membw", params={"repeats": 9}, expand="numa")
    assert make_plan((membw, other), probes(), one)[1].reuses is None  # another measurement
    assert make_plan((numa, membw), probes(), one)[0].reuses is None  # nothing measured before it


def test_estimate_from_the_last_run_else_the_timeout() -> None:
    check = CheckSpec("g", "gpu_health", expand="gpu", timeout=60)
    (p,) = make_plan((check,), probes(), gpus_inventory(3))
    assert len(p.batches()) == 1  # all GPUs at once: they count once
    assert estimate(p) == (60.0, "the timeout")
    history = {("g", "gpu0"): 2.0, ("g", "gpu1"): 3.5, ("g", "gpu2"): 1.0}
    assert estimate(p, history) == (3.5, "the last run")
    assert estimate(p, {("g", "gpu0"): 2.0}) == (60.0, "the timeout")  # a subject not seen before
    (s,) = make_plan(
        (CheckSpec("s", "cpu_membw", expand="numa", timeout=30),), probes(), Inventory.from_dict({})
    )
    assert estimate(s, {("s", "numa0"): 4.0}) == (4.0, "the last run")


SUITE = """
name = "sel"
[[check]]
id = "one"
probe = "fixed"
absolute = { score = { warn = 50.0 } }
timeout = 20
[[check]]
id = "two"
probe = "fixed"
params = { value = 40.0 }
absolute = { score = { warn = 50.0 } }
timeout = 20
[[check]]
id = "slow"
probe = "fixed"
params = { sleep = 30.0 }
timeout = 120
"""


def run_json(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    done = cli("run", *args, "--format", "json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_only_and_skip_choose_checks_and_the_record_says_so(cli: Cli, tmp_path: Path) -> None:
    suite = write(tmp_path / "sel.toml", SUITE)
    code, rec = run_json(cli, str(suite), "--only", "one")
    assert code == 0 and [c["id"] for c in rec["checks"]] == ["one"]
    assert rec["suite"]["selection"] == "--only one"
    code, rec = run_json(cli, str(suite), "--skip", "slow")
    assert code == 1 and [c["id"] for c in rec["checks"]] == ["one", "two"]  # two: WARN
    bad = cli("run", str(suite), "--only", "three")
    assert (
        bad.returncode == 4
        and "--only: no check 'three' in this suite; its checks: one, two, slow" in bad.stderr
    )
    # a pass of part of the suite is not a pass of the suite: --max-age runs it again
    again = cli("run", str(suite), "--skip", "slow,two", "--max-age", "1h", "--quiet")
    assert again.returncode == 0
    skipped = cli("run", str(suite), "--skip", "slow,two", "--max-age", "1h")
    assert "passed (OK)" in skipped.stdout
    full = cli("run", str(suite), "--only", "one,two", "--max-age", "1h", "--quiet")
    assert full.returncode == 1  # another selection: it ran


def test_dry_run_prints_the_plan_and_runs_nothing(cli: Cli, tmp_path: Path) -> None:
    suite = write(tmp_path / "sel.toml", SUITE)
    with RunLock(Path(cli.env["HPCBENCH_LOCK"]), {"run_id": "other", "suite": "x"}):  # takes no lock
        done = cli("run", str(suite), "--dry-run", "--skip", "two")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("dry run, nothing is started (--skip two)")
    assert lines[1] == "baseline: none matches this node"
    rows = {ln.split()[0]: ln for ln in lines[4:-1]}
    assert set(rows) == {"one", "slow"}
    assert "120 s" in rows["slow"] and "sleep=30.0" in rows["slow"]
    assert lines[-1] == "estimated duration: 140 s (the timeouts); at most 140 s (the timeouts)"
    assert not (tmp_path / "results").exists()
    data = json.loads(cli("run", str(suite), "--dry-run", "--format", "json", "--deadline", "5m").stdout)
    assert [c["id"] for c in data["checks"]] == ["one", "two", "slow"]
    assert data["checks"][2]["subjects"] == [{"subject": "node", "params": {"sleep": 30.0}}]
    assert data["deadline_s"] == 300 and data["estimate_s"] == 20 + 20 + 120
    # after a run, the estimate is what each check took
    assert cli("run", str(suite), "--only", "one,two", "--quiet").returncode == 1
    data = json.loads(cli("run", str(suite), "--dry-run", "--format", "json", "--only", "one,two").stdout)
    assert data["estimate_basis"] == "the last run" and data["estimate_s"] < 2 * 20


def test_deadline_leaves_out_what_cannot_finish_and_writes_the_record(cli: Cli, tmp_path: Path) -> None:
    suite = write(tmp_path / "sel.toml", SUITE)
    code, rec = run_json(cli, str(suite), "--deadline", "60s")
    assert code == 3  # something was not measured: UNKNOWN, never OK
    assert [c["id"] for c in rec["checks"]] == ["one", "two"]  # 20 s each at most: they fit
    (late,) = rec["not_run"]
    assert late["id"] == "slow" and late["reason"].startswith(
        "node: not started: it would not end before the"
    )
    assert "120 s needed (the timeout)" in late["reason"]


def test_deadline_cuts_a_running_check_short(cli: Cli, tmp_path: Path) -> None:
    """The last run of 'slow' took a moment; this time it sleeps past the deadline: it is stopped."""
    quick = SUITE.replace("params = { sleep = 30.0 }", "params = { sleep = 0.0 }")
    suite = write(tmp_path / "sel.toml", quick)
    assert cli("run", str(suite), "--only", "slow", "--quiet").returncode == 0
    suite.write_text(SUITE)  # another file: same check ids, another sha256; durations are per check id
    code, rec = run_json(cli, str(suite), "--only", "slow", "--deadline", "10s")
    assert code == 3
    (slow,) = rec["checks"]
    assert slow["verdict"] == "ERROR" and "at the run's deadline (--deadline)" in slow["reason"]


def test_gpus_and_cuda_visible_devices_choose_the_gpu_subjects(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "replay_nvml.py").write_text(
        "from support.fakenvml import FakeNvml\n\n\ndef nvml():\n    return FakeNvml(count=4, model='H100')\n"
    )
    cli.env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(TESTS), cli.env["PYTHONPATH"]])
    cli.env["HPCBENCH_NVML_MODULE"] = "replay_nvml:nvml"
    suite = write(tmp_path / "g.toml", '[[check]]\nid = "v"\nprobe = "visible"\nexpand = "gpu"\n')
    code, rec = run_json(cli, str(suite), "--gpus", "1,3")
    assert code == 0, rec
    seen = {c["subject"]: c["measurements"][0]["settings"] for c in rec["checks"]}
    assert sorted(seen) == ["gpu1", "gpu3"]
    assert seen["gpu3"]["cuda_visible_devices"] == f"{UUID.format(1)},{UUID.format(3)}"
    assert seen["gpu3"]["gpus"] == [1, 3]
    cli.env["CUDA_VISIBLE_DEVICES"] = UUID.format(2)
    code, rec = run_json(cli, str(suite))
    assert [c["subject"] for c in rec["checks"]] == ["gpu2"]
    cli.env["CUDA_VISIBLE_DEVICES"] = ""
    code, rec = run_json(cli, str(suite))
    assert (
        rec["checks"][0]["verdict"] == "SKIP"
        and "none of this node's GPUs is selected" in rec["checks"][0]["reason"]
    )
    bad = cli("run", str(suite), "--gpus", "4")
    assert (
        bad.returncode == 4 and "--gpus 4: no GPU '4' on this node (NVML indices: 0, 1, 2, 3)" in bad.stderr
    )
