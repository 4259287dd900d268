"""node_health on fixture trees of a healthy and a broken node
(tests/probes/node_health/fixtures/node_health/, see its
README for where every file comes from), judged by the shipped suites; its parsers on captured
output of several nvme-cli versions and kernel-log formats; and on this machine's real /sys,
/proc, kernel log and nvme-cli."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.results import measured

from hpcbench.core import timeparse
from hpcbench.core.errors import ParamError
from hpcbench.core.measurement import Evaluation, Verdict
from hpcbench.engine import baselines, judge
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.plan import Job
from hpcbench.engine.record import CheckResult
from hpcbench.engine.runner import Outcome
from hpcbench.hw.kernel_log import read_kernel_log
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import describe_device, device_kind
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.node_health import aer, edac, klog, nvme, system
from hpcbench.probes.node_health.probe import METRICS, NodeHealth

FIX = Path(__file__).parent / "fixtures" / "node_health"
HEALTHY, BROKEN = FIX / "healthy", FIX / "broken"
NVME = FIX / "nvme"
SUITES = {n: suite_mod.load(str(ROOT / "suites" / f"{n}.toml")) for n in ("quick", "nightly", "acceptance")}
CHECKS = {n: next(c for c in s.checks if c.id == "node_health") for n, s in SUITES.items()}
BASELINE = baselines.load(str(FIX / "baseline.toml"))
GIB_KIB = 2**20  # KiB per GiB: memory in GiB = bytes / 2**30 = kB / 2**20


def run_tree(tree: Path, runner: nvme.Runner | None = None, **params: Any) -> list[Any]:
    values = {
        "root": str(tree),
        "kernel_log": str(tree / "kernel.log"),
        "nvme_smart_logs": str(tree / "smart-log"),
        "mounts": ["/", "/scratch", "/home"],
        **params,
    }
    p = build_params(NodeHealth, values)
    return NodeHealth(runner=runner).run(p, ProbeContext(subject="node"))


def judged(
    measurements: list[Any], suite: str = "acceptance", baseline: baselines.Baseline | None = BASELINE
) -> tuple[dict[str, Evaluation], CheckResult]:
    check = CHECKS[suite]
    outcome = Outcome.of(Job(check, "node", {}), measurements)
    (result,) = judge.judge(check, [outcome], baseline, Inventory.from_dict({}))
    return {e.metric: e for e in result.evaluations}, result


def values(results: list[Any]) -> dict[str, float]:
    """metric -> value of the metrics measured."""
    return {m.metric: m.value for m in measured(results)}


# ---------------------------------------------------------------------------
# the whole probe on the fixture nodes, judged by the shipped suites


def test_healthy_node_passes_every_item_under_every_suite() -> None:
    ms = run_tree(HEALTHY)
    assert [m.metric for m in ms] == list(METRICS)  # every item measured, none skipped
    for suite in ("quick", "nightly", "acceptance"):
        evals, result = judged(ms, suite)
        assert {m: e.verdict for m, e in evals.items() if e.verdict is not Verdict.PASS} == {}, suite
        assert result.verdict is Verdict.PASS
    v = values(ms)
    assert v["memory_gib"] == 2113404928 / GIB_KIB == 2015.5
    assert v["online_cpus"] == 224 and v["cpus_offline"] == 0
    assert v["memory_numa_balance"] == 1056178176 / 1057226752  # node0 1007.25 / node1 1008.25 GiB
    assert v["nvme_percent_used"] == 3  # the WD drive (nvme-cli 1.16 output); the 970 EVO is at 0
    settings = ms[0].settings
    assert sorted(settings["nvme_smart"]) == ["nvme0", "nvme1"]  # nvme2 is NVMe/TCP: not this node's drive
    assert [c["transport"] for c in settings["nvme_controllers"]] == ["pcie", "pcie", "tcp"]


#: the broken node under the acceptance suite: each item's verdict and the words (with its number)
#: its reason quotes
BROKEN_ACCEPTANCE = {
    "edac_uncorrected": (
        Verdict.FAIL,
        "2 uncorrected since boot on 2 memory controller(s), 4 DIMM(s): mc1 (Intel_10nm Socket#1 IMC#0): "
        "2 = DIMM 'CPU_SrcID#1_MC#0_Chan#1_DIMM#0' (channel 1 slot 0) 2",
    ),
    "edac_corrected": (
        Verdict.WARN,
        "1234 corrected since boot on 2 memory controller(s), 4 DIMM(s): mc0 (Intel_10nm Socket#0 IMC#0): "
        "1234 = DIMM 'CPU_SrcID#0_MC#0_Chan#0_DIMM#0' (channel 0 slot 0) 1234",
    ),
    "aer_fatal": (
        Verdict.FAIL,
        "1 fatal PCIe errors since boot on 4 device(s) with AER: "
        "0000:18:00.0 (GPU, NVIDIA, driver nvidia) 1 (DLP 1)",
    ),
    "aer_nonfatal": (
        Verdict.WARN,
        "3 non-fatal PCIe errors since boot on 4 device(s) with AER: "
        "0000:3b:00.0 (InfiniBand NIC, Mellanox, driver mlx5_core) 3 (CmpltTO 3)",
    ),
    "aer_correctable": (
        Verdict.WARN,
        "152 correctable PCIe errors since boot on 4 device(s) with AER: 0000:3b:00.0 (InfiniBand NIC, "
        "Mellanox, driver mlx5_core) 150 (RxErr 120, BadTLP 30); 0000:18:00.0 (GPU, NVIDIA, driver nvidia) 2 "
        "(BadDLLP 2)",
    ),
    "nvme_critical_warnings": (
        Verdict.FAIL,
        "nvme1 (SAMSUNG MZVL2512HCJQ-00B00, 0000:c2:00.0): critical warning 0x04 (reliability degraded "
        "(media or internal errors)); nvme2 (Micron_7450_MTFDKCC3T8TFR, 0000:c3:00.0): critical warning 0x01 "
        "(available spare below threshold)",
    ),
    "nvme_media_errors": (
        Verdict.FAIL,
        "nvme0 (SAMSUNG MZQL21T9HCJR-00A07, 0000:c1:00.0): 3 media and data integrity errors",
    ),
    "nvme_spare_below_threshold": (
        Verdict.FAIL,
        "nvme2 (Micron_7450_MTFDKCC3T8TFR, 0000:c3:00.0): available spare 5% below its threshold 10%",
    ),
    "nvme_percent_used": (
        Verdict.FAIL,
        "most worn: nvme1 (SAMSUNG MZVL2512HCJQ-00B00, 0000:c2:00.0) at 100% of its rated endurance",
    ),
    "kernel_hw_errors": (
        Verdict.FAIL,
        "4 machine-check / hardware-error line(s) since boot; first: "
        "2026-11-29T04:12:09,101010+00:00 mce: [Hardware Error]: Machine check events logged",
    ),
    "kernel_hung_tasks": (
        Verdict.FAIL,
        "1 hung task line(s) since boot; first: 2026-11-29T05:03:44,303030+00:00 "
        "INFO: task kworker/u449:3:81234 blocked for more than 122 seconds.",
    ),
    "kernel_lockups": (
        Verdict.FAIL,
        "2 soft/hard lockup or RCU stall line(s) since boot; first: "
        "2026-11-29T05:40:02,404040+00:00 watchdog: BUG: soft lockup - CPU#42 stuck for 26s!",
    ),
    "kernel_io_errors": (
        Verdict.FAIL,
        "3 block I/O error line(s) since boot; first: 2026-11-29T02:31:17,445566"
        "+00:00 blk_update_request: I/O error, dev sdb, sector 2048",
    ),
    "kernel_nvme_timeouts": (
        Verdict.FAIL,
        "2 NVMe timeout line(s) since boot; first: 2026-11-29T07:22:18,606060"
        "+00:00 nvme nvme1: I/O tag 418 (c1a2) opcode 0x2 (Read) QID 7 timeout",
    ),
    "kernel_fs_errors": (
        Verdict.FAIL,
        "2 file-system error line(s) since boot; first: 2026-11-29T08:09:05,707070"
        "+00:00 EXT4-fs error (device nvme1n1p1)",
    ),
    "kernel_oom_kills": (
        Verdict.WARN,
        "2 OOM kill line(s) since boot; first: 2026-11-29T02:47:53,556677+00:00 "
        "Memory cgroup out of memory: Killed process 40321 (torchrun)",
    ),
    "memory_gib": (
        Verdict.FAIL,
        "1952 GiB is 97% of the expected 2016 GiB (below 97%): MemTotal 2046296064 kB",
    ),
    "online_cpus": (
        Verdict.FAIL,
        "215 CPUs is 96% of the expected 224 CPUs (below 97%): 215 of 216 present CPUs online; offline: 215",
    ),
    "cpus_offline": (Verdict.FAIL, "offline: 215 of 216 present CPUs"),
    "memory_numa_balance": (
        Verdict.FAIL,
        "smallest node1 / largest node0 = 0.9375 (node0 1007.25 GiB, node1 944.25 GiB)",
    ),
    "mounts_missing": (Verdict.FAIL, "not mounted: /scratch"),
}


def test_broken_node_fails_each_item_with_its_number() -> None:
    ms = run_tree(BROKEN)
    evals, result = judged(ms, "acceptance")
    assert set(evals) == set(METRICS)
    got = {m: e.verdict for m, e in evals.items()}
    # its kernel log has no PCIe link-down or NIC line: tests/test_klog_kinds.py has them
    passing = {"nvme_smart_errors": Verdict.PASS, "kernel_link_errors": Verdict.PASS}
    assert got == {m: v for m, (v, _) in BROKEN_ACCEPTANCE.items()} | passing
    for metric, (_, words) in BROKEN_ACCEPTANCE.items():
        assert words in evals[metric].reason, (metric, evals[metric].reason)
    assert evals["aer_correctable"].reason.startswith(
        "152 count is above the suite's absolute limit 10 count: "
    )
    assert result.verdict is Verdict.FAIL


def test_broken_node_numbers_are_the_fixture_counts() -> None:
    v = values(run_tree(BROKEN))
    assert v == {
        "edac_uncorrected": 2,
        "edac_corrected": 1234,
        "aer_fatal": 1,
        "aer_nonfatal": 3,
        "aer_correctable": 2 + 120 + 30,
        "nvme_critical_warnings": 2,
        "nvme_media_errors": 3,
        "nvme_spare_below_threshold": 1,
        "nvme_percent_used": 100,
        "nvme_smart_errors": 0,
        "kernel_hw_errors": 4,  # 2 mce lines, 1 EDAC UE line, 1 GHES record (not the TSC/PROCESSOR lines)
        "kernel_hung_tasks": 1,
        "kernel_lockups": 2,
        "kernel_io_errors": 3,  # sdb, sda, sda1 (sr0 twice: virtual media, not counted)
        "kernel_nvme_timeouts": 2,
        "kernel_fs_errors": 2,
        "kernel_oom_kills": 2,
        "kernel_link_errors": 0,
        "memory_gib": 2046296064 / GIB_KIB,  # = 1951.5
        "online_cpus": 215,
        "cpus_offline": 1,
        "memory_numa_balance": 990117888 / 1056178176,  # 944.25 / 1007.25 GiB
        "mounts_missing": 1,
    }
    assert v["memory_gib"] == 1951.5


def test_nightly_and_quick_warn_where_acceptance_fails() -> None:
    """A single kernel hardware-error line or 1234 corrected DIMM errors: WARN in the nightly check
    (investigate), FAIL or WARN at acceptance (a new node has none)."""
    ms = run_tree(BROKEN)
    for suite in ("quick", "nightly"):
        evals, _ = judged(ms, suite)
        assert evals["kernel_hw_errors"].verdict is Verdict.WARN
        assert evals["kernel_lockups"].verdict is Verdict.WARN
        assert evals["edac_corrected"].verdict is Verdict.WARN  # 1234 > 100
        assert evals["aer_correctable"].verdict is Verdict.WARN  # 152 > 100
        assert evals["edac_uncorrected"].verdict is Verdict.FAIL
        assert evals["kernel_io_errors"].verdict is Verdict.FAIL


def test_since_leaves_out_older_kernel_log_lines() -> None:
    ms = run_tree(BROKEN, since="2026-11-29T03:00:00Z")
    v = values(ms)
    assert (v["kernel_io_errors"], v["kernel_oom_kills"]) == (2, 1)  # the 02:31 and 02:47 lines left out
    assert v["kernel_hw_errors"] == 4
    detail = next(m for m in ms if m.metric == "kernel_io_errors").detail
    assert detail.startswith(
        "2 block I/O error line(s) since 2026-11-29T03:00:00Z (2026-11-29T03:00:00Z); first: "
    )
    assert "I/O error, dev sda, sector 123456" in detail


def test_missing_dimm_alone_fails_memory_without_a_baseline() -> None:
    """No baseline: memory_gib and online_cpus are NOBASELINE, but the NUMA balance still catches
    the missing DIMM and cpus_offline the offline CPU."""
    ms = run_tree(BROKEN)
    check = CHECKS["quick"]
    (result,) = judge.judge(check, [Outcome.of(Job(check, "node", {}), ms)], None, Inventory.from_dict({}))
    evals = {e.metric: e for e in result.evaluations}
    assert evals["memory_gib"].verdict is Verdict.NOBASELINE
    assert evals["online_cpus"].verdict is Verdict.NOBASELINE
    assert evals["memory_numa_balance"].verdict is Verdict.FAIL
    assert evals["cpus_offline"].verdict is Verdict.FAIL


# ---------------------------------------------------------------------------
# SKIP where the node has no such thing, ERROR where a tool is missing


def test_a_node_without_edac_aer_nvme_skips_those_items_with_reasons(tmp_path: Path) -> None:
    """The layout of this VM: no /sys/devices/system/edac, no AER files, no /sys/class/nvme."""
    shutil.copytree(HEALTHY / "proc", tmp_path / "proc")
    shutil.copytree(HEALTHY / "sys" / "devices" / "system" / "cpu", tmp_path / "sys/devices/system/cpu")
    (tmp_path / "sys/bus/pci/devices/0000:00:04.0").mkdir(parents=True)
    (tmp_path / "sys/bus/pci/devices/0000:00:04.0/class").write_text("0x010000\n")
    ms = NodeHealth().run(
        build_params(NodeHealth, {"root": str(tmp_path), "kernel_log": str(HEALTHY / "kernel.log")}),
        ProbeContext(),
    )
    evals, result = judged(ms, "quick")
    skipped = {m: e.reason for m, e in evals.items() if e.verdict is Verdict.SKIP}
    assert set(skipped) == {
        *edac.METRICS,
        *aer.METRICS,
        *nvme.METRICS,
        "memory_numa_balance",
        "mounts_missing",
    }
    assert skipped["edac_corrected"].startswith(f"not measured: no EDAC memory controller ({tmp_path}/sys/")
    assert skipped["aer_fatal"].startswith("not measured: no PCI device has AER counters")
    assert (
        skipped["nvme_media_errors"]
        == f"not measured: no NVMe controller ({tmp_path}/sys/class/nvme is absent or empty)"
    )
    assert skipped["mounts_missing"] == "not measured: no expected mounts given (parameter mounts)"
    assert {m: e.verdict for m, e in evals.items() if m.startswith("kernel_")} == dict.fromkeys(
        klog.METRICS, Verdict.PASS
    )
    assert result.verdict is Verdict.PASS  # the memory items get a baseline verdict, the rest PASS or SKIP


def test_nvme_cli_missing_where_nvme_drives_exist_is_error_with_the_package() -> None:
    ms = run_tree(BROKEN, nvme_smart_logs="", nvme="/nonexistent/nvme")
    evals, result = judged(ms, "acceptance")
    for metric in nvme.METRICS:
        assert evals[metric].verdict is Verdict.ERROR
        assert evals[metric].reason == (
            "could not measure: 3 NVMe drive(s) but '/nonexistent/nvme' (nvme-cli) is not on PATH: install "
            "nvme-cli (Debian/Ubuntu: apt-get install nvme-cli; RHEL/Rocky/Fedora: dnf install nvme-cli)"
        )
    assert evals["edac_uncorrected"].verdict is Verdict.FAIL  # the other items keep their verdicts
    assert result.verdict is Verdict.FAIL


def replay(
    outputs: dict[str, tuple[int, str, str] | Exception], calls: list[tuple[list[str], float]]
) -> nvme.Runner:
    """A runner answering each /dev/nvmeN with a captured (status, stdout, stderr), or raising."""

    def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
        calls.append((argv, timeout))
        out = outputs[os.path.basename(argv[-1])]
        if isinstance(out, Exception):
            raise out
        return out

    return run


def test_nvme_cli_argv_timeout_and_failures_per_drive() -> None:
    calls: list[tuple[list[str], float]] = []
    no_device = (NVME / "nvme-cli-2.3_no-such-device.stderr").read_text()
    runner = replay(
        {
            "nvme0": (0, (NVME / "nvme-cli-2.x_media-errors.json").read_text(), ""),
            "nvme1": (1, "", no_device),  # nvme-cli 2.3's own words, captured on this machine
            "nvme2": TimeoutError("nvme smart-log -o json /dev/nvme2 timed out after 7 s"),
        },
        calls,
    )
    ms = run_tree(BROKEN, runner=runner, nvme_smart_logs="", nvme_timeout_s=7.0)
    assert calls == [(["nvme", "smart-log", "-o", "json", f"/dev/nvme{i}"], 7.0) for i in range(3)]
    evals, _ = judged(ms, "acceptance")
    assert values(ms)["nvme_smart_errors"] == 2
    assert evals["nvme_smart_errors"].verdict is Verdict.FAIL
    reason = evals["nvme_smart_errors"].reason
    assert "2 of 3 drive(s) did not give their SMART log: " in reason
    assert "nvme1 (SAMSUNG MZVL2512HCJQ-00B00, 0000:c2:00.0): nvme smart-log -o json /dev/nvme1: " in reason
    assert "/dev/nvme0: No such file or directory" in reason  # nvme-cli 2.3's first stderr line
    assert (
        "nvme2 (Micron_7450_MTFDKCC3T8TFR, 0000:c3:00.0): nvme smart-log -o json /dev/nvme2 timed out"
        in reason
    )
    assert values(ms)["nvme_media_errors"] == 3  # the drive that answered is still judged


def test_nvme_cli_refusing_a_device_quotes_its_first_line() -> None:
    """nvme-cli 2.3 on a device node that is not an NVMe controller (captured on this VM)."""
    stderr = (NVME / "nvme-cli-2.3_not-nvme.stderr").read_text()
    ctrl = nvme.Controller("nvme0", "M", "S", "0000:c1:00.0", "pcie")
    logs, denied, errors = nvme.read_smart([ctrl], "nvme", replay({"nvme0": (1, "", stderr)}, []), 15.0)
    assert (logs, denied) == ({}, {})
    assert errors == {"nvme0": "nvme smart-log -o json /dev/nvme0: smart log: Inappropriate ioctl for device"}


def test_nvme_smart_logs_we_may_not_read_are_skipped() -> None:
    denied = (1, "", "open: Permission denied\n")
    ms = run_tree(BROKEN, runner=replay(dict.fromkeys(("nvme0", "nvme1", "nvme2"), denied), []))
    evals, _ = judged(ms, "acceptance")
    for metric in nvme.METRICS:
        assert evals[metric].verdict is Verdict.SKIP
        assert evals[metric].reason == (
            "not measured: no permission to read the SMART logs (run as root): open: Permission denied"
        )


def test_real_nvme_cli_on_a_device_that_is_not_there() -> None:
    """The real nvme-cli, with the probe's argv and timeout: a controller whose device node is
    absent is a read error quoting nvme-cli, not a crash."""
    if shutil.which("nvme") is None:
        pytest.fail("nvme-cli is not installed: apt-get install nvme-cli (dnf install nvme-cli)")
    ctrl = nvme.Controller("nvme97", "X", "Y", "0000:ff:00.0", "pcie")
    logs, denied, errors = nvme.read_smart([ctrl], "nvme", nvme.run_command, 15.0)
    assert (logs, denied) == ({}, {})
    assert errors["nvme97"].startswith("nvme smart-log -o json /dev/nvme97: ")
    assert "No such file or directory" in errors["nvme97"]


def test_the_real_runner_kills_a_command_at_its_timeout() -> None:
    with pytest.raises(TimeoutError, match=r"^sleep 30 timed out after 0.2 s$"):
        nvme.run_command(["sleep", "30"], 0.2)


def test_bad_parameters_are_one_line_param_errors(tmp_path: Path) -> None:
    for bad, words in (
        ({"since": "yesterday"}, "since"),
        ({"root": str(tmp_path / "nope")}, "is not a folder"),
        ({"nvme_timeout_s": 0}, "must be > 0"),
        ({"mounts": ["scratch"]}, "absolute paths"),
        ({"nvme_smart_logs": str(tmp_path / "nope")}, "is not a folder"),
    ):
        with pytest.raises(ParamError, match=words):
            build_params(NodeHealth, bad)


# ---------------------------------------------------------------------------
# the parsers, on captured output


#: (critical_warning, avail_spare, spare_thresh, percent_used, media_errors, temperature K) per fixture
NVME_FIXTURES = {
    "nvme-cli-1.16_wd-2tb_healthy.json": (0, 100, 10, 3, 0, 315),
    "nvme-cli-2.1_samsung-970-evo_healthy.json": (0, 100, 10, 0, 0, 309),
    "nvme-cli-2.x_media-errors.json": (0, 53, 10, 2, 3, 313),
    "nvme-cli-2.x-H_reliability-degraded.json": (4, 100, 10, 100, 0, 301),
    "nvme-cli-2.x_spare-below-threshold_synthetic.json": (1, 5, 10, 87, 0, 310),
    "nvme-cli-3.0_healthy.json": (0, 100, 10, 0, 0, 306),
    "nvme-cli-H_captured_healthy.json": (0, 100, 10, 2, 0, 328),
}


@pytest.mark.parametrize("name", sorted(NVME_FIXTURES))
def test_smart_log_of_every_nvme_cli_version(name: str) -> None:
    s = nvme.parse_smart_log((NVME / name).read_text())
    got = (s.critical_warning, s.avail_spare, s.spare_thresh, s.percent_used, s.media_errors, s.temperature_k)
    assert got == NVME_FIXTURES[name]
    assert s.spare_low is (s.avail_spare < s.spare_thresh)


def test_smart_log_every_fixture_is_listed() -> None:
    assert {p.name for p in NVME.glob("*.json")} == set(NVME_FIXTURES)


def test_smart_log_critical_warning_bits_and_reserved_threshold() -> None:
    s = nvme.Smart(
        critical_warning=0x0C,
        avail_spare=100,
        spare_thresh=255,
        percent_used=1,
        media_errors=0,
        temperature_k=300,
    )
    assert s.warnings() == [
        "reliability degraded (media or internal errors)",
        "media placed in read-only mode",
    ]
    assert not s.spare_low  # a threshold of 255 is reserved (some firmware reports it): not compared
    assert nvme.Smart(0x40, 100, 10, 0, 0, 300).warning_text() == "reserved bits"


SMART_KEYS = {
    "critical_warning": 0,
    "avail_spare": 1,
    "spare_thresh": 1,
    "percent_used": 1,
    "media_errors": 0,
}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"critical_warning": 0}', "no avail_spare, spare_thresh, percent_used, media_errors in the output"),
        (
            json.dumps({**SMART_KEYS, "critical_warning": True}),
            "critical_warning: expected a number",
        ),
        (
            json.dumps({**SMART_KEYS, "avail_spare": "n/a"}),
            "avail_spare: expected a number",
        ),
    ],
)
def test_smart_log_that_is_not_one_is_a_value_error(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        nvme.parse_smart_log(text)


def test_aer_counters_in_the_kernels_format() -> None:
    text = (BROKEN / "sys/bus/pci/devices/0000:3b:00.0/aer_dev_correctable").read_text()
    c = aer.parse_counters(text)
    assert list(c) == [*aer_names("correctable"), "TOTAL_ERR_COR"]
    assert (c["RxErr"], c["BadTLP"], c["TOTAL_ERR_COR"]) == (120, 30, 150)
    assert aer.total(c, "TOTAL_ERR_COR") == 150
    # a kernel without the TOTAL_ line (or a truncated read): the sum of the named errors
    assert aer.total(aer.parse_counters("RxErr 4\nBadTLP 1\ngarbage\n"), "TOTAL_ERR_COR") == 5


def test_aer_detail_names_the_worst_devices_first(tmp_path: Path) -> None:
    """A flapping switch touches many devices: the detail names the five with the most errors."""
    for i in range(7):
        dev = tmp_path / f"sys/bus/pci/devices/0000:{i + 0x40:02x}:00.0"
        dev.mkdir(parents=True)
        (dev / "class").write_text("0x030200\n")
        (dev / "vendor").write_text("0x10de\n")
        (dev / "aer_dev_correctable").write_text(f"RxErr {i + 1}\nTOTAL_ERR_COR {i + 1}\n")
    devices = aer.read_aer(str(tmp_path))
    (_, _, cor) = aer.items(devices, str(tmp_path))
    assert cor.value == sum(range(1, 8)) == 28
    assert cor.detail == (
        "28 correctable PCIe errors since boot on 7 device(s) with AER: "
        + "; ".join(
            f"0000:{0x40 + i:02x}:00.0 (GPU, NVIDIA, no driver) {i + 1} (RxErr {i + 1})"
            for i in (6, 5, 4, 3, 2)
        )
        + "; 2 more device(s)"
    )


def aer_names(kind: str) -> list[str]:
    if kind == "correctable":
        return ["RxErr", "BadTLP", "BadDLLP", "Rollover", "Timeout", "NonFatalErr", "CorrIntErr", "HeaderOF"]
    raise AssertionError(kind)


def test_pci_devices_are_named_by_class_vendor_and_driver() -> None:
    base = str(BROKEN / "sys/bus/pci/devices")
    assert describe_device(base, "0000:18:00.0") == "0000:18:00.0 (GPU, NVIDIA, driver nvidia)"
    assert describe_device(base, "0000:c1:00.0") == "0000:c1:00.0 (NVMe, Samsung, driver nvme)"
    assert describe_device(base, "0000:16:01.0") == "0000:16:01.0 (PCI bridge, Intel, driver pcieport)"
    assert device_kind("0x10de", "0x068000") == "NVSwitch"
    assert device_kind("0x15b3", "0x020000") == "NIC"
    assert device_kind("0x1234", "0x0b4000") == "class 0x0b40"


def test_edac_dimm_layout_names_each_dimm() -> None:
    ctrls = edac.read_edac(str(BROKEN))
    assert ctrls is not None
    assert [(c.name, c.mc_name, c.ce, c.ue) for c in ctrls] == [
        ("mc0", "Intel_10nm Socket#0 IMC#0", 1234, 0),
        ("mc1", "Intel_10nm Socket#1 IMC#0", 0, 2),
    ]
    assert ctrls[1].dimms[1] == edac.Dimm("dimm1", "CPU_SrcID#1_MC#0_Chan#1_DIMM#0", "channel 1 slot 0", 0, 2)


def test_edac_csrow_layout_names_the_channels() -> None:
    """The older layout (csrow<N>/ch<N>_ce_count, ch<N>_dimm_label): amd64_edac on older kernels."""
    ctrls = edac.read_edac(str(FIX / "edac-csrow"))
    assert ctrls is not None
    (mc,) = ctrls
    assert (mc.ce, mc.ue) == (7, 1)
    assert mc.dimms[0] == edac.Dimm(
        "csrow0", "P0_DIMM_A1, P0_DIMM_B1", "ch0 'P0_DIMM_A1' 7 CE, ch1 'P0_DIMM_B1' 0 CE", 7, 0
    )
    ue, ce = edac.items(ctrls, str(FIX / "edac-csrow"))
    assert ue.value == 1 and ce.value == 7
    assert ue.detail.endswith(
        "mc0 (F17h): 1 = DIMM 'P0_DIMM_A2, P0_DIMM_B2' (ch0 'P0_DIMM_A2' 0 CE, ch1 'P0_DIMM_B2' 0 CE) 1"
    )


def test_user_space_crashes_are_not_hardware_errors() -> None:
    """Segfaults, general protection faults and invalid opcodes of programs (this VM's dmesg has
    such lines) and the Code: line after them count in no kind."""
    for tree in (HEALTHY, BROKEN):
        lines = [
            ln
            for ln in (tree / "kernel.log").read_text().splitlines()
            if re.search(r"segfault|traps:|Code:", ln)
        ]
        assert lines
        assert [klog.classify(ln) for ln in lines] == [None] * len(lines)
    assert klog.scan((HEALTHY / "kernel.log").read_text(), None, None) == {}


def test_virtual_media_io_errors_are_not_counted() -> None:
    assert (
        klog.classify("I/O error, dev sr0, sector 0 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2")
        is None
    )
    assert klog.classify("Buffer I/O error on dev sr0, logical block 0, async page read") is None
    assert klog.classify("I/O error, dev sda, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2") == (
        "kernel_io_errors"
    )


def test_plain_dmesg_times_are_placed_with_the_boot_time() -> None:
    """Plain dmesg's [seconds since boot], placed with /proc/stat's btime (1795917600 = 02:00Z)."""
    text = (FIX / "dmesg_plain.log").read_text()
    booted = 1795917600.0
    start = timeparse.since("2026-11-29T03:00:00Z")  # boot + 3600 s
    assert {k: f.count for k, f in klog.scan(text, booted, None).items()} == {
        "kernel_io_errors": 1,
        "kernel_hw_errors": 1,
        "kernel_oom_kills": 1,
    }
    found = klog.scan(text, booted, start)
    assert {k: f.count for k, f in found.items()} == {"kernel_hw_errors": 1, "kernel_oom_kills": 1}
    assert found["kernel_hw_errors"].first_time == booted + 7929.101020


def test_journalctl_short_iso_lines() -> None:
    found = klog.scan(
        (FIX / "journal_short_iso.log").read_text(), None, timeparse.since("2026-11-29T03:00:00Z")
    )
    assert {k: f.count for k, f in found.items()} == {
        "kernel_hw_errors": 1,
        "kernel_hung_tasks": 1,
        "kernel_nvme_timeouts": 1,
    }
    assert found["kernel_nvme_timeouts"].first.endswith("kernel: nvme nvme1: I/O 418 QID 7 timeout, aborting")


def test_cpu_lists_mounts_and_meminfo() -> None:
    assert system.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert system.parse_cpu_list("\n") == []
    assert system.ranges([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    mounts = system.parse_mounts((HEALTHY / "proc/mounts").read_text())
    assert "/mnt/data disk" in mounts and "/scratch" in mounts
    assert system.memtotal_kib("Node 1 MemTotal:       990117888 kB\n") == 990117888
    assert system.memtotal_kib("MemFree: 1 kB\n") is None


def test_smt_off_siblings_are_not_offline_cpus(tmp_path: Path) -> None:
    cpu = tmp_path / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "present").write_text("0-7\n")
    (cpu / "online").write_text("0-3\n")
    (cpu / "smt").mkdir()
    (cpu / "smt/control").write_text("off\n")
    online, offline = system.cpu_items(str(tmp_path))
    assert online.value == 4 and online.detail == "4 of 8 present CPUs online; offline: 4-7"
    assert offline.value is None and offline.not_measured == "SMT is off: 4 sibling threads offline by design"


# ---------------------------------------------------------------------------
# this machine


def test_on_this_machine_it_passes_or_skips_with_reasons() -> None:
    """The real /sys, /proc, kernel log and nvme-cli of the machine the tests run on, judged by
    the quick suite: PASS, or SKIP with the reason (a VM has no EDAC, AER or NVMe), or NOBASELINE
    for memory and CPUs; the numbers equal what the kernel says."""
    ms = NodeHealth().run(build_params(NodeHealth, {}), ProbeContext())
    evals, _ = judged(ms, "quick", baseline=None)
    for metric, e in evals.items():
        assert e.verdict in (Verdict.PASS, Verdict.SKIP, Verdict.NOBASELINE), (metric, e.reason)
        if e.verdict is Verdict.SKIP:
            assert e.reason.startswith("not measured: ") and len(e.reason) > 20
    v = values(ms)
    with open("/proc/meminfo", encoding="utf-8") as fh:
        kib = int(next(ln for ln in fh if ln.startswith("MemTotal:")).split()[1])
    assert v["memory_gib"] == kib / GIB_KIB
    assert v["online_cpus"] == os.sysconf("SC_NPROCESSORS_ONLN")
    if not os.path.isdir("/sys/devices/system/edac/mc"):
        assert evals["edac_uncorrected"].verdict is Verdict.SKIP


def test_this_machines_segfaults_are_not_counted() -> None:
    """This VM's own dmesg holds user-space segfaults; none counts as a kernel error."""
    log = read_kernel_log("auto")
    assert log.text is not None, f"the kernel log is not readable here: {log.unsupported}"
    crashes = [ln for ln in log.text.splitlines() if "segfault at" in ln or " traps: " in ln]
    assert [klog.classify(ln) for ln in crashes] == [None] * len(crashes)


def test_the_fixture_suite_keeps_the_acceptance_limits() -> None:
    """broken-suite.toml (the docs' example) judges with the acceptance suite's limits."""
    demo = suite_mod.load(str(FIX / "broken-suite.toml"))
    (check,) = demo.checks
    assert (check.absolute, check.thresholds) == (
        CHECKS["acceptance"].absolute,
        CHECKS["acceptance"].thresholds,
    )


def test_probe_on_the_command_line_against_the_broken_tree(tmp_path: Path, cli: Any) -> None:
    """The installed CLI, the real runner (a child process) and the docs' fixture suite (its
    paths made absolute): exit 2 (FAIL), the reasons in the JSON record."""
    suite = tmp_path / "nh.toml"
    suite.write_text((FIX / "broken-suite.toml").read_text().replace('"tests/', f'"{ROOT}/tests/'))
    done = cli("run", str(suite), "--baseline", str(FIX / "baseline.toml"), "--format", "json", "-q")
    assert done.returncode == 2, done.stderr
    record = json.loads(done.stdout)
    (check,) = record["checks"]
    verdicts = {e["metric"]: e["verdict"] for e in check["evaluations"]}
    passing = {"nvme_smart_errors": "PASS", "kernel_link_errors": "PASS"}
    assert verdicts == {m: v.value for m, (v, _) in BROKEN_ACCEPTANCE.items()} | passing
    reason = next(e["reason"] for e in check["evaluations"] if e["metric"] == "mounts_missing")
    assert reason == "1 count is above the suite's absolute limit 0.5 count: not mounted: /scratch"


def test_bad_root_on_the_command_line_is_exit_4(cli: Any) -> None:
    done = cli("probe", "node_health", "-p", "root=/no/such/root")
    assert done.returncode == 4
    assert done.stderr.strip().count("\n") == 0 and "is not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_nvme_cli_is_installed_here() -> None:
    """The tests above run the real nvme-cli; name the package where it is missing."""
    path = shutil.which("nvme")
    if path is None:
        pytest.fail("nvme-cli is not installed: apt-get install nvme-cli (dnf install nvme-cli)")
    done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=15, check=False)
    assert done.stdout.startswith("nvme version ")
