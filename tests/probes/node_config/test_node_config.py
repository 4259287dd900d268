"""node_config (NHC's catalogue as parameters) on a captured tree of a healthy node
(tests/probes/node_config/fixtures/node_config/healthy, see its README), and on copies with one
fault planted each:
every fault is FAIL or WARN under the health suite's limits with a reason naming the item."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.results import measured, reasons

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.core.measurement import Verdict
from hpcbench.engine import judge
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.node_config import read, specs
from hpcbench.probes.node_config.probe import METRICS, NodeConfig

HEALTHY = Path(__file__).parent / "fixtures" / "node_config" / "healthy"
CHECK = next(c for c in suite_mod.load(str(ROOT / "suites" / "health.toml")).checks if c.id == "node_config")
GIB = 2**30


def _statvfs(free_frac: float = 0.5, inode_frac: float = 0.5) -> Any:
    blocks, files = 1_000_000, 100_000
    return lambda path: os.statvfs_result(
        (4096, 4096, blocks, int(blocks * free_frac), int(blocks * free_frac), files, int(files * inode_frac),
         int(files * inode_frac), 0, 255)
    )  # fmt: skip


def _users_script(tmp: Path, users: str) -> list[str]:
    script = tmp / "squeue"
    script.write_text(f"#!/bin/sh\nprintf '{users}'\n")
    script.chmod(0o755)
    return [str(script), "--noheader", "--nodelist", "{host}", "--format", "%u"]


def params(tree: Path, tmp: Path, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "root": str(tree),
        "cpu_sockets": 2,
        "cpu_cores": 4,
        "cpu_threads": 8,
        "memory_gib": 24683664 / 2**20,
        "swap_max_gib": 0.0,
        "free_memory_min_gib": 1.0,
        "mounts": [
            "/ rw type=ext4 source=/dev/vda free=10% inodes=5%",
            "/scratch type=lustre source=10.0.0.5@o2ib:/scratch options=flock rw",
            "/home type=nfs4 options=hard",
        ],
        "processes": ["slurmd@root", "munged@munge", "nvidia-persistenced@nvidia-persistenced"],
        "forbidden_processes": ["xmrig"],
        "check_job_users": True,
        "job_users_command": _users_script(tmp, "alice\\n"),
        "files": ["/etc/slurm/slurm.conf contains=ClusterName=gpu", "/etc/passwd matches=^munge:"],
        "dmi": ["bios_version=2.19.*", "product_name=PowerEdge XE9680"],
        "load_max": 8.0,
        "commands": ["timeout=5 match=^ok -- echo ok"],
    }
    values.update(over)
    return values


def run(tree: Path, tmp: Path, statvfs: Any = None, **over: Any) -> list[Any]:
    p = build_params(NodeConfig, params(tree, tmp, **over))
    return NodeConfig(statvfs=statvfs or _statvfs(), host="gpu01").run(p, ProbeContext(workdir=str(tmp)))


def judged(ms: list[Any]) -> dict[str, Any]:
    outcome = Outcome.of(Job(CHECK, "node", {}), ms)
    (result,) = judge.judge(CHECK, [outcome], None, Inventory.from_dict({}))
    return {e.metric: e for e in result.evaluations}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dest = tmp_path / "tree"
    shutil.copytree(HEALTHY, dest)
    return dest


def test_the_healthy_tree_passes_every_item(tree: Path, tmp_path: Path) -> None:
    ms = run(tree, tmp_path)
    assert [m.metric for m in ms] == list(METRICS)  # every item measured
    evals = judged(ms)
    assert {m: e.verdict for m, e in evals.items() if e.verdict is not Verdict.PASS} == {}
    assert all(m.value == 0 for m in ms)


Planter = Any  # (tree) -> the parameters to change


def sub(leaf: str, old: str, new: str) -> Planter:
    """Replace text in one file of the tree."""

    def plant(tree: Path) -> dict[str, Any]:
        path = tree / leaf
        text = path.read_text()
        assert old in text, (leaf, old)
        path.write_text(text.replace(old, new))
        return {}

    return plant


def param(**over: Any) -> Planter:
    return lambda tree: over


def remove(leaf: str) -> Planter:
    return lambda tree: (
        (shutil.rmtree(tree / leaf) if (tree / leaf).is_dir() else (tree / leaf).unlink()) or {}
    )


def process(pid: int, comm: str, uid: int) -> Planter:
    """A new process: a copy of alice's python3 (pid 4242) with another name and user."""

    def plant(tree: Path) -> dict[str, Any]:
        shutil.copytree(tree / "proc/4242", tree / f"proc/{pid}")
        (tree / f"proc/{pid}/comm").write_text(comm + "\n")
        return sub(f"proc/{pid}/status", "Uid:\t1001\t1001", f"Uid:\t{uid}\t{uid}")(tree)

    return plant


MOUNTS, SCRATCH = "proc/self/mounts", "10.0.0.5@o2ib:/scratch /scratch lustre"
FAULTS: list[tuple[str, Planter, str, Verdict, str]] = [
    # planted fault, metric, verdict, what the reason names
    ("cpu offline", sub("sys/devices/system/cpu/online", "0-7", "0-6"), "cpu_layout_wrong", Verdict.FAIL,
     "cpu threads 7, expected 8"),
    ("a socket lost", param(cpu_sockets=4), "cpu_layout_wrong", Verdict.FAIL, "cpu sockets 2, expected 4"),
    ("memory lost", sub("proc/meminfo", "MemTotal:       24683664", "MemTotal:       20000000"),
     "memory_wrong", Verdict.FAIL, "memory 19.1 GiB, expected 23.54"),
    ("swap on", sub("proc/meminfo", "SwapTotal:             0", "SwapTotal:       2097152"),
     "swap_wrong", Verdict.FAIL, "swap 2.0 GiB, expected at most 0 GiB"),
    ("free memory", param(free_memory_min_gib=30.0), "free_memory_low", Verdict.WARN,
     "free memory 22.0 GiB, expected at least 30 GiB"),
    ("scratch gone", sub(MOUNTS, SCRATCH, "10.0.0.5@o2ib:/scratch /mnt/old lustre"), "mounts_missing",
     Verdict.FAIL, "mount /scratch missing"),
    ("autofs trigger only", sub(MOUNTS, SCRATCH, "systemd-1 /scratch autofs"), "mounts_missing", Verdict.FAIL,
     "mount /scratch missing"),
    ("read-only", sub(MOUNTS, "/scratch lustre rw,", "/scratch lustre ro,"), "mounts_wrong", Verdict.FAIL,
     "mount /scratch read-only"),
    ("wrong type", sub(MOUNTS, "/home nfs4", "/home nfs"), "mounts_wrong", Verdict.FAIL,
     "mount /home type nfs, expected nfs4"),
    ("option lost", sub(MOUNTS, "rw,flock,", "rw,"), "mounts_wrong", Verdict.FAIL,
     "mount /scratch without option flock"),
    ("slurmd dead", remove("proc/812"), "processes_missing", Verdict.FAIL, "process slurmd not running"),
    ("munged as root", sub("proc/640/status", "Uid:\t998", "Uid:\t0"), "processes_missing", Verdict.FAIL,
     "process munged not running as munge (as root)"),
    ("a miner", process(4300, "xmrig", 1001), "processes_forbidden", Verdict.FAIL,
     "process xmrig running (forbidden)"),
    ("stray user", process(5000, "python3", 1002), "users_without_job", Verdict.WARN,
     "user bob has 1 process(es) and no job here"),
    ("slurm.conf gone", remove("etc/slurm/slurm.conf"), "files_wrong", Verdict.FAIL,
     "file /etc/slurm/slurm.conf missing or unreadable"),
    ("slurm.conf changed", sub("etc/slurm/slurm.conf", "ClusterName=gpu", "ClusterName=cpu"), "files_wrong",
     Verdict.FAIL, "file /etc/slurm/slurm.conf lacks 'ClusterName=gpu'"),
    ("BIOS downgraded", sub("sys/class/dmi/id/bios_version", "2.19.1", "2.18.0"), "dmi_wrong", Verdict.FAIL,
     "dmi bios_version 2.18.0, expected 2.19.*"),
    ("load", sub("proc/loadavg", "0.42 ", "31.5 "), "load_high", Verdict.WARN,
     "load 31.5 (1 min), expected at most 8"),
    ("command fails", param(commands=["false"]), "commands_failed", Verdict.FAIL, "command false exited 1"),
    ("command output", param(commands=["match=^ok -- echo bad"]), "commands_failed", Verdict.FAIL,
     "command echo bad output does not match '^ok'"),
    ("command hangs", param(commands=["timeout=0.5 -- sleep 30"]), "commands_failed", Verdict.FAIL,
     "command sleep 30 did not end in 0.5 s"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("plant", "metric", "verdict", "names"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_each_planted_fault_is_judged_and_named(
    tree: Path, tmp_path: Path, plant: Any, metric: str, verdict: Verdict, names: str
) -> None:
    over = plant(tree)
    evals = judged(run(tree, tmp_path, **over))
    wrong = {m: e.verdict for m, e in evals.items() if e.verdict is not Verdict.PASS}
    assert wrong == {metric: verdict}
    assert names in evals[metric].reason


def test_full_file_systems_are_named_with_their_free_space(tree: Path, tmp_path: Path) -> None:
    evals = judged(run(tree, tmp_path, statvfs=_statvfs(free_frac=0.05)))
    assert evals["mounts_full"].verdict is Verdict.FAIL
    # 50,000 of 1,000,000 blocks of 4096 bytes free = 0.19 GiB, 5.0%, below free=10%
    assert f"mount / free {50_000 * 4096 / GIB:.1f} GiB (5.0%), expected 10%" in evals["mounts_full"].reason
    evals = judged(run(tree, tmp_path, statvfs=_statvfs(inode_frac=0.01)))
    assert "mount / free inodes 1000 of 100000, expected 5%" in evals["mounts_full"].reason


def test_nothing_configured_is_a_skip_not_a_pass(tree: Path) -> None:
    with pytest.raises(ProbeSkip, match="sets none"):
        NodeConfig().run(build_params(NodeConfig, {"root": str(tree)}), ProbeContext())


def test_items_not_configured_are_skipped_with_the_parameter(tree: Path, tmp_path: Path) -> None:
    ms = NodeConfig().run(build_params(NodeConfig, {"root": str(tree), "load_max": 8.0}), ProbeContext())
    assert [m.metric for m in measured(ms)] == ["load_high"]
    assert reasons(ms)["dmi_wrong"] == "no expected DMI values (dmi)"


def test_users_without_a_slurm_are_skipped(tree: Path, tmp_path: Path) -> None:
    ms = run(tree, tmp_path, job_users_command=[str(tmp_path / "no-squeue")])
    assert "users_without_job" not in [m.metric for m in measured(ms)]
    assert "not found: no Slurm here" in reasons(ms)["users_without_job"]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("mounts", ["scratch"], "a mount point is an absolute path"),
        ("mounts", ["/scratch free=lots"], "expected 10% or a size"),
        ("mounts", ["/scratch colour=blue"], "unknown option 'colour=blue'"),
        ("processes", ["slurm d"], "expected a process name"),
        ("files", ["/x matches=("], "matches:"),
        ("dmi", ["bios=1"], "KEY one of bios_vendor"),
        ("commands", ["timeout=0 -- true"], "timeout must be > 0"),
        ("commands", ["timeout=5 --"], "no command after --"),
    ],
)
def test_a_wrong_spec_is_refused_when_the_suite_loads(key: str, value: list[str], says: str) -> None:
    with pytest.raises(ParamError, match=says.replace("(", r"\(")):
        build_params(NodeConfig, {key: value})


def test_mount_table_parser_on_autofs_and_escapes() -> None:
    text = (
        "systemd-1 /scratch autofs rw,relatime,fd=52 0 0\n"
        "systemd-1 /home autofs rw,relatime,fd=53 0 0\n"
        "nas:/home /home nfs4 rw,hard 0 0\n"
        "/dev/sdb1 /mnt/my\\040disk ext4 ro 0 0\n"
    )
    got = read.parse_mounts(text)
    assert sorted(got) == ["/home", "/mnt/my disk"]  # /scratch: a trigger with nothing behind it
    assert got["/home"].fstype == "nfs4" and got["/mnt/my disk"].options == ("ro",)


def test_amounts() -> None:
    assert specs.amount("10%", "free") == specs.Amount(10.0, True)
    assert specs.amount("50G", "free").value == 50 * 2**30
    assert specs.amount("1000", "inodes").value == 1000
    assert specs.Amount(10.0, True).met(10, 100) and not specs.Amount(10.0, True).met(9, 100)


def test_the_real_node_reads(tmp_path: Path) -> None:
    """This machine's /proc and /sys: the layout the kernel reports, root mounted."""
    layout = read.cpu_layout("/")
    assert layout is not None and 1 <= layout.sockets <= layout.cores <= layout.threads
    mounts = read.read_mounts("/")
    assert mounts is not None and "/" in mounts
    procs = read.processes("/")
    assert procs is not None and any(p.pid == os.getpid() and p.uid == os.getuid() for p in procs)
