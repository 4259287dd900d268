"""``hpcbench probe burn`` / ``probe memtest`` are judged: no bundled quick check runs them, so the
limits of gpu-check's checks do, and the command says so."""

from __future__ import annotations

import json

from conftest import Cli

from hpcbench.core.exitcodes import ExitCode


def test_a_standalone_memtest_is_judged_with_gpu_checks_limits(cli: Cli) -> None:
    r = cli(
        "probe", "memtest", "-p", "device=cpu", "-p", "max_mib=4", "-p", "patterns=0x55,address",
        "--format", "json",
    )  # fmt: skip
    assert r.returncode == ExitCode.OK, r.stderr
    assert "hpcbench probe memtest: judged with the limits of gpu-check's check memtest\n" in r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    absolute = check["thresholds"]["absolute"]
    assert absolute["mismatched_words"] == absolute["ecc_uncorrectable_new"] == {"warn": None, "fail": 0.5}
    by = {e["metric"]: e["verdict"] for e in check["evaluations"]}
    assert by["mismatched_words"] == "PASS" and by["ecc_uncorrectable_new"] == "SKIP"  # the CPU has no ECC


def test_a_standalone_burn_is_judged_with_gpu_checks_limits(cli: Cli) -> None:
    r = cli(
        "probe", "burn", "-p", "device=cpu", "-p", "shape=64", "-p", "duration_s=1.5", "-p", "window_s=0.5",
        "-p", "threads=1", "--format", "json",
    )  # fmt: skip
    assert "hpcbench probe burn: judged with the limits of gpu-check's check burn\n" in r.stderr, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    assert check["thresholds"]["absolute"]["stability"] == {"warn": 0.9, "fail": 0.8}
    kinds = {e["metric"]: e["kind"] for e in check["evaluations"]}
    assert kinds["stability"] == "absolute" and kinds["droop"] == "absolute"


def test_quick_still_judges_its_own_probes(cli: Cli) -> None:
    r = cli("probe", "node_health", "--format", "json")
    assert "hpcbench probe node_health: judged with the limits of quick's check " in r.stderr, r.stderr
