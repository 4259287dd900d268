"""gpu_health on replayed NVML values of H100, H200, A100, B200 and V100 GPUs, judged by the
shipped nightly suite's thresholds: every health item healthy and broken, NVML fields that are
not supported or not permitted (SKIP, never FAIL), a lost GPU, and the node-wide items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pynvml
import pytest
from support import ROOT, TESTS
from support.fakenvml import FakeNvml
from support.nvml_models import BROKEN, GPU_IS_LOST, MODELS, NO_PERMISSION, NOT_SUPPORTED
from support.results import measured

from hpcbench.core.errors import ParamError, ProbeError, ProbeSkip
from hpcbench.core.measurement import Evaluation, Measurement, Unmeasured, Verdict
from hpcbench.engine import judge
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.plan import Job
from hpcbench.engine.record import CheckResult
from hpcbench.engine.runner import Outcome
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import is_nvidia_gpu
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gpu_health import probe as gh

FIXTURES = Path(__file__).parent / "fixtures"
# XIDs on 0000:5d:00 (H100 GPU 3) and 0000:3a:00
KERNEL_LOG = str(TESTS / "hw" / "fixtures" / "xid" / "dmesg_iso.txt")
NIGHTLY = {c.id: c for c in suite_mod.load(str(ROOT / "suites" / "nightly.toml")).checks}
MODEL_NAMES = ["H100", "H200", "A100", "B200", "V100"]
#: what each model's NVML does not support (not a failure: SKIP "not measured")
UNSUPPORTED = {
    "H100": {"retired_pages_pending"},
    "H200": {"retired_pages_pending"},
    "A100": {"retired_pages_pending"},
    "B200": {"retired_pages_pending", "nvlink_errors"},
    "V100": {"remapped_rows_pending", "remapped_rows_failed"},
}
#: the verdict each broken item gets under the nightly suite, and the words its reason holds
EXPECTED = {
    "nvml_errors": (Verdict.FAIL, "nvmlDeviceGetTemperature: GPU is lost"),
    "ecc_enabled": (Verdict.WARN, "ECC disabled; enabled after the next reset"),
    "ecc_uncorrectable_volatile": (Verdict.FAIL, "2 uncorrectable ECC errors since the driver loaded"),
    "ecc_uncorrectable_aggregate": (Verdict.FAIL, "1 uncorrectable ECC errors over the GPU's life"),
    "ecc_correctable_volatile": (Verdict.WARN, "5000 correctable ECC errors since the driver loaded"),
    "ecc_correctable_aggregate": (Verdict.WARN, "250000 correctable ECC errors over the GPU's life"),
    "retired_pages_pending": (Verdict.FAIL, "a page retirement is pending"),
    "remapped_rows_pending": (Verdict.FAIL, "remapping pending: reset the GPU"),
    "remapped_rows_failed": (Verdict.FAIL, "a remapping FAILED: the GPU needs service"),
    "hw_slowdown": (Verdict.FAIL, "HW slowdown, HW power brake slowdown"),
    "sw_thermal_slowdown": (Verdict.WARN, "SW thermal slowdown"),
    "temperature_margin": (Verdict.FAIL, "88 C, slowdown at"),
    "power_limit_ratio": (Verdict.FAIL, "enforced power limit"),
    "persistence_mode": (Verdict.WARN, "persistence mode off"),
    "nvlink_down": (Verdict.FAIL, "down: 3, 5"),
    "nvlink_errors": (Verdict.WARN, "link 2: 400 replay, 3 recovery"),
}
#: items a broken replay breaks together (an uncorrectable error counts in both counters)
ALSO = {"ecc_uncorrectable_volatile": {"ecc_uncorrectable_aggregate"}, "ecc_correctable_volatile": set()}


def run_gpu(fake: FakeNvml, gpu: int = 0, kernel_log: str = KERNEL_LOG, **params: Any) -> list[Any]:
    p = build_params(gh.GpuHealth, {"gpu": gpu, "kernel_log": kernel_log, "xid_since": "boot", **params})
    return gh.GpuHealth(nvml=fake).run(p, ProbeContext(subject=f"gpu{gpu}"))


def judged(
    results: list[Any], check_id: str = "gpu_health", subject: str | None = None
) -> tuple[dict[str, Evaluation], CheckResult]:
    check = NIGHTLY[check_id]
    subject = subject or next(m.subject for m in results if isinstance(m, Measurement))
    outcome = Outcome.of(Job(check, subject, {}), results)
    (result,) = judge.judge(check, [outcome], None, Inventory.from_dict({}))
    return {e.metric: e for e in result.evaluations}, result


def bad(evals: dict[str, Evaluation]) -> dict[str, Verdict]:
    return {m: e.verdict for m, e in evals.items() if e.verdict in (Verdict.WARN, Verdict.FAIL)}


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_healthy_gpu_passes_every_item(model: str) -> None:
    evals, result = judged(run_gpu(FakeNvml(model=model)))
    assert bad(evals) == {}
    skipped = {m for m, e in evals.items() if e.verdict is Verdict.SKIP}
    assert skipped == UNSUPPORTED[model]
    assert all(evals[m].reason.startswith("not measured: NVML: Not Supported") for m in skipped)
    assert set(evals) == set(NIGHTLY["gpu_health"].metrics or ())  # every judged item is reported
    assert result.verdict is Verdict.PASS  # an unsupported field does not make the check SKIP


def broken_cases() -> list[tuple[str, str]]:
    return [(m, item) for m in MODEL_NAMES for item in EXPECTED if item not in UNSUPPORTED[m]]


@pytest.mark.parametrize(("model", "item"), broken_cases())
def test_each_broken_item_is_caught_with_its_reason(model: str, item: str) -> None:
    overrides = dict(BROKEN[item])
    if item == "nvlink_errors":
        overrides["nvlink_errors"] = {
            (2, pynvml.NVML_NVLINK_ERROR_DL_REPLAY): 400,
            (2, pynvml.NVML_NVLINK_ERROR_DL_RECOVERY): 3,
        }
    evals, result = judged(run_gpu(FakeNvml(model=model, devices={0: overrides})))
    verdict, words = EXPECTED[item]
    assert bad(evals) == {item: verdict, **{m: verdict for m in ALSO.get(item, ())}}
    assert words in evals[item].reason
    assert result.verdict is verdict


def test_nvlink_errors_below_the_nightly_limit_pass() -> None:
    evals, _ = judged(run_gpu(FakeNvml(model="H100", devices={0: BROKEN["nvlink_errors"]})))
    assert evals["nvlink_errors"].verdict is Verdict.PASS and evals["nvlink_errors"].measured == 43


def test_xids_of_this_gpu_fail_it_and_application_xids_are_not_counted() -> None:
    evals, _ = judged(run_gpu(FakeNvml(model="H100"), gpu=3))  # H100 GPU 3 sits at 0000:5d:00
    e = evals["xid_errors"]
    assert (e.verdict, e.measured) == (Verdict.FAIL, 2)
    assert "XID 48 x1 (double-bit ECC error), XID 63 x1" in e.reason and "on PCI 0000:5d:00" in e.reason
    assert "(not counted: XID 13 x2 (graphics engine exception), XID 43 x1" in e.reason
    fewer, _ = judged(run_gpu(FakeNvml(model="H100"), gpu=3, xid_ignore=[13, 31, 43, 45, 63]))
    assert fewer["xid_errors"].measured == 1
    later, _ = judged(run_gpu(FakeNvml(model="H100"), gpu=3, xid_since="2026-11-28T03:00:00Z"))
    assert later["xid_errors"].verdict is Verdict.PASS  # the DBE came before
    other = run_gpu(FakeNvml(model="H100"), gpu=0)
    assert judged(other)[0]["xid_errors"].verdict is Verdict.PASS
    assert next(m for m in other if m.metric == "xid_errors").detail == "no XID on PCI 0000:18:00"


def test_unreadable_kernel_log_is_not_measured(tmp_path: Path) -> None:
    evals, result = judged(run_gpu(FakeNvml(model="H200"), kernel_log=str(tmp_path / "kern.log")))
    assert evals["xid_errors"].verdict is Verdict.SKIP
    assert evals["xid_errors"].reason.startswith("not measured: kernel log not readable: cannot read")
    assert result.verdict is Verdict.PASS


#: NVML function -> the items it feeds
FIELDS = {
    "nvmlDeviceGetEccMode": {
        "ecc_enabled",
        "ecc_uncorrectable_volatile",
        "ecc_uncorrectable_aggregate",
        "ecc_correctable_volatile",
        "ecc_correctable_aggregate",
    },
    "nvmlDeviceGetTotalEccErrors": {
        "ecc_uncorrectable_volatile",
        "ecc_uncorrectable_aggregate",
        "ecc_correctable_volatile",
        "ecc_correctable_aggregate",
    },
    "nvmlDeviceGetRemappedRows": {"remapped_rows_pending", "remapped_rows_failed"},
    "nvmlDeviceGetTemperature": {"temperature_margin"},
    "nvmlDeviceGetTemperatureThreshold": {"temperature_margin"},
    "nvmlDeviceGetEnforcedPowerLimit": {"power_limit_ratio"},
    "nvmlDeviceGetPowerManagementDefaultLimit": {"power_limit_ratio"},
    "nvmlDeviceGetPersistenceMode": {"persistence_mode"},
    "nvmlDeviceGetNvLinkState": {"nvlink_down", "nvlink_errors"},
    "nvmlDeviceGetNvLinkErrorCounter": {"nvlink_errors"},
}


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION])
@pytest.mark.parametrize("fn", sorted(FIELDS))
def test_unsupported_or_forbidden_field_is_skip_never_fail(fn: str, code: int) -> None:
    evals, result = judged(run_gpu(FakeNvml(model="A100", failures={(fn, None): code})))
    assert bad(evals) == {}
    skipped = {m for m, e in evals.items() if e.verdict is Verdict.SKIP}
    assert skipped == FIELDS[fn] | UNSUPPORTED["A100"]
    assert evals["nvml_errors"].measured == 0 and result.verdict is Verdict.PASS


def test_clock_reasons_under_the_old_name_and_not_at_all() -> None:
    old_driver = FakeNvml(
        model="V100",
        failures={("nvmlDeviceGetCurrentClocksEventReasons", None): pynvml.NVML_ERROR_FUNCTION_NOT_FOUND},
        devices={0: BROKEN["hw_slowdown"]},
    )
    evals, _ = judged(run_gpu(old_driver))
    assert evals["hw_slowdown"].verdict is Verdict.FAIL  # read through ...ClocksThrottleReasons
    neither = {
        ("nvmlDeviceGetCurrentClocksEventReasons", None): pynvml.NVML_ERROR_NOT_SUPPORTED,
        ("nvmlDeviceGetCurrentClocksThrottleReasons", None): pynvml.NVML_ERROR_NOT_SUPPORTED,
    }
    evals, _ = judged(run_gpu(FakeNvml(model="H100", failures=neither)))
    assert (
        evals["hw_slowdown"].verdict is Verdict.SKIP and evals["sw_thermal_slowdown"].verdict is Verdict.SKIP
    )


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_an_item_failing_with_a_real_nvml_error_counts_as_nvml_error(model: str) -> None:
    evals, _ = judged(run_gpu(FakeNvml(model=model, devices={0: {"persistence": GPU_IS_LOST}})))
    assert evals["nvml_errors"].verdict is Verdict.FAIL
    assert "nvmlDeviceGetPersistenceMode: GPU is lost" in evals["nvml_errors"].reason
    assert evals["persistence_mode"].verdict is Verdict.SKIP
    assert "NVML error: nvmlDeviceGetPersistenceMode: GPU is lost" in evals["persistence_mode"].reason


def test_a_lost_gpu_fails_and_its_xids_are_still_read() -> None:
    fake = FakeNvml(model="H100", failures={("nvmlDeviceGetHandleByIndex", 3): pynvml.NVML_ERROR_GPU_IS_LOST})
    p = build_params(gh.GpuHealth, {"gpu": 3, "kernel_log": KERNEL_LOG})
    inventory = Inventory.from_dict({"gpus": {"devices": [{"index": 3, "pci_bus_id": "00000000:5D:00.0"}]}})
    ms = gh.GpuHealth(nvml=fake).run(p, ProbeContext(subject="gpu3", inventory=inventory))
    evals, result = judged(ms)
    assert bad(evals) == {"nvml_errors": Verdict.FAIL, "xid_errors": Verdict.FAIL}
    assert "nvmlDeviceGetHandleByIndex: GPU is lost" in evals["nvml_errors"].reason
    assert evals["ecc_enabled"].reason == "not measured: no handle to GPU 3: NVML error: " + (
        "nvmlDeviceGetHandleByIndex: GPU is lost"
    )
    assert result.verdict is Verdict.FAIL


def test_processes_are_reported_not_judged() -> None:
    ms = run_gpu(FakeNvml(model="H100", devices={0: BROKEN["processes"]}))
    procs = next(m for m in ms if m.metric == "processes")
    assert procs.value == 1 and procs.detail == "pid 4242 (python3) uses 70000 MiB"
    evals, _ = judged(ms)
    assert "processes" not in evals


def test_gpu_identity_and_settings() -> None:
    ms = run_gpu(FakeNvml(model="B200"), gpu=5)
    first = ms[0]
    assert first.metric == "nvml_errors"
    assert first.settings["gpu"] == {
        "index": 5,
        "name": "NVIDIA B200",
        "uuid": "GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a05",
        "pci_bus_id": "00000000:C3:00.0",
    }
    assert (
        first.settings["kernel_log_source"] == KERNEL_LOG and first.settings["driver_version"] == "570.124.06"
    )
    assert {m.convention for m in measured(ms)} == {"NVML", "kernel log"}
    margin = next(m for m in ms if m.metric == "temperature_margin")
    assert (margin.value, margin.unit, margin.higher_is_better) == (56.0, "C", True)


# -- node scope -------------------------------------------------------------------------------


def pci_tree(root: Path, gpus: list[str]) -> str:
    """A sysfs PCI device folder: NVIDIA GPUs, an NVSwitch (a bridge) and a ConnectX NIC."""
    others = {"0000:05:00.0": ("0x10de", "0x068000"), "0000:5e:00.0": ("0x15b3", "0x020700")}
    for addr, (vendor, cls) in {**{g: ("0x10de", "0x030200") for g in gpus}, **others}.items():
        d = root / addr
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(cls + "\n")
    return str(root)


def run_node(fake: Any, pci_root: str, **params: Any) -> list[Any]:
    p = build_params(gh.GpuHealth, {"kernel_log": KERNEL_LOG, **params})
    return gh.GpuHealth(nvml=fake, pci_root=pci_root).run(p, ProbeContext(subject="node"))


H100_BUSES = [f"0000:{b.lower()}:00.0" for b in MODELS["H100"]["bus_ids"]]


def test_node_healthy(tmp_path: Path) -> None:
    evals, result = judged(
        run_node(FakeNvml(model="H100"), pci_tree(tmp_path, H100_BUSES)), "gpu_health_node"
    )
    assert bad(evals) == {}
    assert evals["gpus_missing"].measured == 0 and evals["firmware_version_mismatch"].measured == 0
    # the fixture's XIDs are on 0000:5d:00 and 0000:3a:00, both visible GPUs: not the node's
    assert evals["xid_errors"].measured == 0
    assert result.verdict is Verdict.PASS


def test_node_gpu_fallen_off_the_bus(tmp_path: Path) -> None:
    visible = [b for b in MODELS["H100"]["bus_ids"] if b != "3A"]
    fake = FakeNvml(count=7, model="H100", devices={i: {"bus_ids": visible} for i in range(7)})
    ms = run_node(fake, pci_tree(tmp_path, H100_BUSES))
    evals, _ = judged(ms, "gpu_health_node")
    assert bad(evals) == {"gpus_missing": Verdict.FAIL, "xid_errors": Verdict.FAIL}
    assert "7 of 8 GPUs (NVIDIA GPUs on the PCI bus) visible to NVML; not seen by NVML: 0000:3a:00" in (
        evals["gpus_missing"].reason
    )
    assert "XID 79 x1 (GPU has fallen off the bus)" in evals["xid_errors"].reason
    gpu_count = next(m for m in ms if m.metric == "gpu_count")
    assert gpu_count.value == 7 and "gpu_count" not in evals  # reported, not judged


def test_node_expected_count_from_the_suite(tmp_path: Path) -> None:
    ms = run_node(FakeNvml(count=4, model="A100"), str(tmp_path))  # sysfs lists no GPU (a container)
    assert judged(ms, "gpu_health_node")[0]["gpus_missing"].verdict is Verdict.PASS
    missing = next(m for m in ms if m.metric == "gpus_missing")
    assert missing.detail == "4 of 4 GPUs (sysfs lists none: as many as NVML sees) visible to NVML"
    evals, _ = judged(
        run_node(FakeNvml(count=4, model="A100"), str(tmp_path), expected_gpus=8), "gpu_health_node"
    )
    assert (
        evals["gpus_missing"].measured == 4
        and "4 of 8 GPUs (expected by the suite)" in evals["gpus_missing"].reason
    )


def test_node_driver_not_loaded_with_gpus_on_the_bus(tmp_path: Path) -> None:
    fake = FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    evals, _ = judged(run_node(fake, pci_tree(tmp_path, H100_BUSES)), "gpu_health_node")
    assert evals["gpus_missing"].verdict is Verdict.FAIL and evals["gpus_missing"].measured == 8
    assert "(NVML unavailable: Driver Not Loaded)" in evals["gpus_missing"].reason


def test_node_without_gpus_is_skip(tmp_path: Path) -> None:
    fake = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(ProbeSkip, match="no GPU on this node"):
        run_node(fake, pci_tree(tmp_path, []))


def test_node_library_and_kernel_module_differ(tmp_path: Path) -> None:
    fake = FakeNvml(init_error=pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    evals, _ = judged(run_node(fake, str(tmp_path)), "gpu_health_node")
    assert evals["driver_version_mismatch"].verdict is Verdict.FAIL
    assert "NVML library and kernel module versions differ" in evals["driver_version_mismatch"].reason


def test_node_driver_versions_compared_with_the_kernel_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gh, "KERNEL_MODULE_VERSION", str(FIXTURES / "nvidia" / "version_open.txt"))
    evals, _ = judged(run_node(FakeNvml(model="H200"), str(tmp_path)), "gpu_health_node")
    e = evals["driver_version_mismatch"]
    assert e.verdict is Verdict.PASS and e.measured == 0
    monkeypatch.setattr(gh, "KERNEL_MODULE_VERSION", str(FIXTURES / "nvidia" / "version_proprietary.txt"))
    evals, _ = judged(run_node(FakeNvml(model="H200"), str(tmp_path)), "gpu_health_node")
    e = evals["driver_version_mismatch"]
    assert e.verdict is Verdict.FAIL
    assert "driver: NVML library 570.124.06, kernel module 535.161.08" in e.reason


def test_node_mixed_vbios(tmp_path: Path) -> None:
    fake = FakeNvml(model="H100", devices={7: {"vbios": "96.00.74.00.0D"}})
    evals, _ = judged(run_node(fake, str(tmp_path)), "gpu_health_node")
    e = evals["firmware_version_mismatch"]
    assert e.verdict is Verdict.WARN
    assert (
        "VBIOS differs among NVIDIA H100 80GB HBM3: 96.00.74.00.0D on GPU 7; 96.00.99.00.01 on GPU 0, 1"
        in e.reason
    )


def test_node_cannot_count_is_an_error(tmp_path: Path) -> None:
    fake = FakeNvml(failures={("nvmlDeviceGetCount", None): pynvml.NVML_ERROR_UNKNOWN})
    with pytest.raises(ProbeError, match="NVML cannot count the GPUs"):
        run_node(fake, str(tmp_path))


def test_pure_helpers() -> None:
    assert gh.kernel_module_version((FIXTURES / "nvidia" / "version_open.txt").read_text()) == "570.124.06"
    assert (
        gh.kernel_module_version((FIXTURES / "nvidia" / "version_proprietary.txt").read_text())
        == "535.161.08"
    )
    assert gh.kernel_module_version("") is None
    bad_, compared = gh.driver_mismatches("570.124.06", "570.124.06", "12.8", "12.9")
    assert bad_ == ["CUDA: NVML 12.8, libcuda 12.9"] and compared == [
        "driver 570.124.06 (NVML library and kernel module)"
    ]
    assert gh.driver_mismatches(None, None, "12.8", None) == ([], [])
    assert is_nvidia_gpu("0x10de\n", "0x030200\n") and is_nvidia_gpu("0x10de", "0x030000")
    assert not is_nvidia_gpu("0x10de", "0x068000") and not is_nvidia_gpu("0x15b3", "0x030200")


def test_params_are_validated() -> None:
    for bad_params in ({"xid_since": "yesterday"}, {"expected_gpus": -1}, {"gpu": -2}, {"kernel_log": " "}):
        with pytest.raises(ParamError):
            build_params(gh.GpuHealth, bad_params)
    assert build_params(gh.GpuHealth, {"xid_ignore": "13,43"}, from_text=True).xid_ignore == [13, 43]


def test_every_judged_health_item_has_a_limit_in_every_suite() -> None:
    """A metric with neither a baseline nor a limit would be NOBASELINE, UNKNOWN in nightly."""
    for name in ("quick", "nightly", "acceptance", "gpu-check"):
        for check in suite_mod.load(str(ROOT / "suites" / f"{name}.toml")).checks:
            if check.probe == "gpu_health":
                assert check.metrics and set(check.metrics) == set(check.absolute), (name, check.id)
                assert set(check.metrics) <= set(gh.GpuHealth.metrics)


def test_supported_list_is_complete() -> None:
    assert set(EXPECTED) | {"xid_errors", "processes"} == set(gh.GPU_METRICS)
    assert NOT_SUPPORTED != NO_PERMISSION


def test_a_check_whose_metrics_are_all_unmeasured_is_skip_not_error() -> None:
    """Nothing measured at all: every reason still reaches the verdicts (an Unmeasured entry per
    metric, not a key riding on a first measurement that does not exist)."""
    check = NIGHTLY["gpu_health"]
    why = {m: "NVML: Not Supported" for m in check.metrics or ()}
    results = [Unmeasured(m, "not_measured", reason) for m, reason in why.items()]
    evals, result = judged(results, subject="gpu0")
    assert set(evals) == set(why) and {e.verdict for e in evals.values()} == {Verdict.SKIP}
    assert result.verdict is Verdict.SKIP


def test_node_nvml_error_on_one_gpu(tmp_path: Path) -> None:
    fake = FakeNvml(model="H100", failures={("nvmlDeviceGetVbiosVersion", 2): pynvml.NVML_ERROR_GPU_IS_LOST})
    evals, _ = judged(run_node(fake, str(tmp_path)), "gpu_health_node")
    assert bad(evals) == {"nvml_errors": Verdict.FAIL}
    assert "GPU 2: nvmlDeviceGetVbiosVersion: GPU is lost" in evals["nvml_errors"].reason
    unsupported = FakeNvml(
        model="H100", failures={("nvmlDeviceGetInforomImageVersion", None): NOT_SUPPORTED.code}
    )
    evals, _ = judged(run_node(unsupported, str(tmp_path)), "gpu_health_node")
    assert bad(evals) == {} and evals["firmware_version_mismatch"].measured == 0  # VBIOS still compared
