"""The GPU checks end to end through the installed CLI: suite, runner, probe children, checks,
record and exit code, with NVML replayed in every process through HPCBENCH_NVML_MODULE (the
node has no GPU; nothing else is faked)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conftest import Cli, write
from support import TESTS

KERNEL_LOG = TESTS / "hw" / "fixtures" / "xid" / "dmesg_iso.txt"

HEALTH_SUITE = f"""
name = "health"
require_baseline = true

[[check]]
id = "gpu_health_node"
probe = "gpu_health"
params = {{ expected_gpus = 8, kernel_log = "{KERNEL_LOG}" }}
metrics = ["nvml_errors", "gpus_missing", "xid_errors"]
[check.absolute]
nvml_errors = {{ fail = 0.5 }}
gpus_missing = {{ fail = 0.5 }}
xid_errors = {{ fail = 0.5 }}

[[check]]
id = "gpu_health"
probe = "gpu_health"
params = {{ kernel_log = "{KERNEL_LOG}" }}
expand = "gpu"
metrics = ["ecc_uncorrectable_volatile", "retired_pages_pending", "hw_slowdown", "xid_errors"]
[check.absolute]
ecc_uncorrectable_volatile = {{ fail = 0.5 }}
retired_pages_pending = {{ fail = 0.5 }}
hw_slowdown = {{ fail = 0.5 }}
xid_errors = {{ fail = 0.5 }}
"""


def replay(cli: Cli, tmp_path: Path, fake: str) -> None:
    """Every hpcbench process of this CLI sees the NVML that ``fake`` (an expression) builds."""
    (tmp_path / "replay_nvml.py").write_text(
        f"from support.fakenvml import FakeNvml\nfrom support.nvml_models import BROKEN\n\n\n"
        f"def nvml():\n    return {fake}\n"
    )
    cli.env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(TESTS), cli.env["PYTHONPATH"]])
    cli.env["HPCBENCH_NVML_MODULE"] = "replay_nvml:nvml"


def by_subject(record: dict[str, Any], check_id: str) -> dict[str, dict[str, Any]]:
    return {c["subject"]: c for c in record["checks"] if c["id"] == check_id}


def evaluations(check: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["metric"]: e for e in check["evaluations"]}


def test_a_broken_h100_node_fails_with_the_reasons(cli: Cli, tmp_path: Path) -> None:
    replay(cli, tmp_path, 'FakeNvml(model="H100", devices={3: BROKEN["ecc_uncorrectable_volatile"]})')
    suite = write(tmp_path / "health.toml", HEALTH_SUITE)
    r = cli("run", str(suite), "--format", "json", "--quiet")
    assert r.returncode == 2, r.stderr
    record = json.loads(r.stdout)
    assert record["inventory"]["gpus"]["count"] == 8 and record["baseline"]["name"] == "h100-sxm"
    gpus = by_subject(record, "gpu_health")
    assert sorted(gpus) == [f"gpu{i}" for i in range(8)]
    bad = evaluations(gpus["gpu3"])
    assert gpus["gpu3"]["verdict"] == "FAIL"
    assert bad["ecc_uncorrectable_volatile"]["verdict"] == "FAIL"
    assert "2 uncorrectable ECC errors since the driver loaded" in bad["ecc_uncorrectable_volatile"]["reason"]
    assert (
        bad["xid_errors"]["verdict"] == "FAIL"
        and "XID 48 x1 (double-bit ECC error)" in bad["xid_errors"]["reason"]
    )
    assert bad["retired_pages_pending"]["verdict"] == "SKIP"  # H100: NVML does not support it
    # gpu2 has the fixture's XID 79 (0000:3a:00); the others are healthy
    assert evaluations(gpus["gpu2"])["xid_errors"]["verdict"] == "FAIL"
    assert {s: c["verdict"] for s, c in gpus.items() if s not in ("gpu2", "gpu3")} == {
        f"gpu{i}": "PASS" for i in (0, 1, 4, 5, 6, 7)
    }
    (node,) = by_subject(record, "gpu_health_node").values()
    assert node["verdict"] == "PASS" and evaluations(node)["gpus_missing"]["measured"] == 0


def test_a_missing_gpu_fails_the_node(cli: Cli, tmp_path: Path) -> None:
    replay(cli, tmp_path, 'FakeNvml(count=7, model="A100")')
    suite = write(tmp_path / "health.toml", HEALTH_SUITE)
    r = cli("run", str(suite), "--format", "json")
    assert r.returncode == 2, r.stderr
    (node,) = by_subject(json.loads(r.stdout), "gpu_health_node").values()
    missing = evaluations(node)["gpus_missing"]
    assert missing["verdict"] == "FAIL" and missing["measured"] == 1
    assert "7 of 8 GPUs (expected by the suite) visible to NVML" in missing["reason"]


def test_a_busy_gpu_is_skipped_unless_forced(cli: Cli, tmp_path: Path) -> None:
    replay(cli, tmp_path, 'FakeNvml(count=2, model="H100", devices={1: BROKEN["processes"]})')
    args = (
        "probe",
        "gpu_membw",
        "--expand",
        "gpu",
        "-p",
        "buffer_mib=4",
        "-p",
        "repeats=2",
        "--format",
        "json",
    )
    r = cli(*args)
    assert r.returncode == 3, r.stderr  # gpu0 ran, and this torch cannot use CUDA: ERROR
    checks = by_subject(json.loads(r.stdout), "gpu_membw")
    assert checks["gpu1"]["verdict"] == "SKIP"
    assert checks["gpu1"]["reason"] == "busy: pid 4242 (python3) uses 70000 MiB"
    assert checks["gpu0"]["verdict"] == "ERROR" and "cannot use CUDA" in checks["gpu0"]["reason"]
    forced = by_subject(json.loads(cli(*args, "--force").stdout), "gpu_membw")
    assert forced["gpu1"]["verdict"] == "ERROR" and "cannot use CUDA" in forced["gpu1"]["reason"]


def gpus_here(cli: Cli) -> int:
    """The GPUs NVML shows this test's runs (none on CI; a GPU machine's own)."""
    inventory = json.loads(cli("inventory", "--format", "json").stdout)
    return int(inventory["gpus"]["count"] or 0)


def test_gpu_checks_run_where_a_gpu_is_and_skip_where_none_is(cli: Cli) -> None:
    """On a node without GPUs every GPU check SKIPs with the reason; on a GPU node the same checks
    run (status ok, never SKIP), so this test proves the GPU paths where it can."""
    ids = {"gpu_health_node", "gpu_health", "gpu_membw", "pcie"}
    if gpus_here(cli):
        r = cli("run", "gpu-check", "--only", ",".join(sorted(ids)), "--format", "json")
        checks = [c for c in json.loads(r.stdout)["checks"] if c["id"] in ids]
        assert {c["id"] for c in checks} == ids
        assert all(c["status"] == "ok" and c["verdict"] != "SKIP" for c in checks), checks
        return
    r = cli("run", "gpu-check", "--format", "json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    mine = [c for c in record["checks"] if c["probe"] in ("gpu_health", "gpu_membw", "pcie")]
    assert {c["id"] for c in mine} == ids
    assert all(c["verdict"] == "SKIP" and "no GPU on this node" in c["reason"] for c in mine)
