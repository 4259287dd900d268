"""gpu_services: the GPU node's own services on an HGX tree
(tests/probes/gpu_services/fixtures/gpu_services/hgx) with the fake NVML (real pynvml types and
codes), each fault planted judged by the health suite and named; the items that do not apply (no
NVSwitch fabric, DCGM not asked) are SKIP with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pynvml
import pytest
from support import ROOT
from support.fakenvml import FakeNvml
from support.nvml_models import BROKEN

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.core.measurement import Verdict
from hpcbench.engine import judge
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gpu_services.probe import METRICS, GpuServices, loaded_modules

HGX = Path(__file__).parent / "fixtures" / "gpu_services" / "hgx"
CHECK = next(c for c in suite_mod.load(str(ROOT / "suites" / "health.toml")).checks if c.id == "gpu_services")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(HGX, tmp_path / "hgx")
    return tmp_path / "hgx"


def run(tree: Path, nvml: Any = None, **params: Any) -> list[Any]:
    p = build_params(GpuServices, {**CHECK.params, "root": str(tree), **params})
    return GpuServices(nvml=nvml or FakeNvml(), pci_root=str(tree / "no-pci")).run(p, ProbeContext())


def judged(ms: list[Any]) -> dict[str, Any]:
    (result,) = judge.judge(CHECK, [Outcome.of(Job(CHECK, "node", {}), ms)], None, Inventory.from_dict({}))
    return {e.metric: e for e in result.evaluations}


def not_passing(evals: dict[str, Any]) -> dict[str, Verdict]:
    return {m: e.verdict for m, e in evals.items() if e.verdict not in (Verdict.PASS, Verdict.SKIP)}


def test_a_healthy_hgx_h200_passes(tree: Path) -> None:
    ms = run(tree, dcgm=True, driver_version="570.*")
    assert [m.metric for m in ms] == list(METRICS)
    evals = judged(ms)
    assert {m: e.verdict for m, e in evals.items()} == dict.fromkeys(METRICS, Verdict.PASS)
    assert ms[0].settings["nvswitch_fabric"] is True and ms[0].settings["driver_version"] == "570.124.06"


@pytest.mark.parametrize(
    ("broken", "metric", "verdict", "names"),
    [
        ("persistence_mode", "persistence_off", Verdict.FAIL, "gpu3 persistence mode off"),
        ("fabric_not_ready", "fabric_not_ready", Verdict.FAIL, "gpu3 fabric in progress"),
        (
            "fabric_failed",
            "fabric_not_ready",
            Verdict.FAIL,
            "gpu3 fabric completed, status NVML_ERROR_TIMEOUT",
        ),
        ("mig_wrong", "mig_wrong", Verdict.FAIL, "gpu3 MIG on"),
        ("mig_pending", "mig_wrong", Verdict.FAIL, "gpu3 MIG change pending a reset"),
        (
            "app_clocks_locked",
            "app_clocks_locked",
            Verdict.WARN,
            "gpu3 application clock 1410 MHz, default 1980 MHz",
        ),
    ],
)
def test_a_broken_gpu_is_judged_and_named(
    tree: Path, broken: str, metric: str, verdict: Verdict, names: str
) -> None:
    evals = judged(run(tree, FakeNvml(devices={3: BROKEN[broken]})))
    assert not_passing(evals) == {metric: verdict}
    assert names in evals[metric].reason


@pytest.mark.parametrize(
    ("plant", "params", "metric", "names"),
    [
        ("proc/1822", {}, "persistenced_missing", "nvidia-persistenced not running"),
        ("proc/1907", {}, "fabricmanager_missing", "nvidia-fabricmanager not running on an NVSwitch system"),
        ("proc/2011", {"dcgm": True}, "dcgm_missing", "nv-hostengine not running"),
        (
            "",
            {"modules": ["nvidia", "nvidia_uvm", "nvidia_fs"]},
            "modules_missing",
            "module nvidia_fs not loaded",
        ),
        ("", {"driver_version": "580.*"}, "driver_wrong", "driver 570.124.06, expected 580.*"),
    ],
)
def test_a_missing_service_is_judged_and_named(
    tree: Path, plant: str, params: dict[str, Any], metric: str, names: str
) -> None:
    if plant:
        shutil.rmtree(tree / plant)
    evals = judged(run(tree, **params))
    assert not_passing(evals) == {metric: Verdict.FAIL}
    assert names in evals[metric].reason


def test_the_uvm_module_unloaded(tree: Path) -> None:
    text = (tree / "proc/modules").read_text()
    (tree / "proc/modules").write_text(
        "".join(ln for ln in text.splitlines(True) if not ln.startswith("nvidia_uvm"))
    )
    evals = judged(run(tree))
    assert not_passing(evals) == {"modules_missing": Verdict.FAIL}
    assert "module nvidia_uvm not loaded" in evals["modules_missing"].reason


def test_without_an_nvswitch_fabric_the_fabric_items_are_skipped(tree: Path) -> None:
    shutil.rmtree(tree / "proc/1907")  # no fabric manager either: none is needed
    ms = run(tree, FakeNvml(model="A100"))
    evals = judged(ms)
    assert not_passing(evals) == {}
    assert evals["fabric_not_ready"].verdict is Verdict.SKIP
    assert "no GPU with an NVSwitch fabric" in evals["fabric_not_ready"].reason
    assert evals["fabricmanager_missing"].verdict is Verdict.SKIP


def test_a_gpu_without_mig(tree: Path) -> None:
    v100 = FakeNvml(model="V100")
    assert not_passing(judged(run(tree, v100))) == {}  # mig = off: a GPU without MIG is off
    evals = judged(run(tree, FakeNvml(model="V100"), mig="on"))
    assert not_passing(evals) == {"mig_wrong": Verdict.FAIL}
    assert "gpu0 has no MIG" in evals["mig_wrong"].reason


def test_a_node_without_nvidia_gpus_is_skipped(tree: Path) -> None:
    with pytest.raises(ProbeSkip, match="no NVIDIA GPU on this node"):
        run(tree, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))


def test_nvml_failing_where_gpus_are_is_an_error_per_item(tree: Path) -> None:
    ms = run(tree, FakeNvml(failures={("nvmlDeviceGetCount", None): pynvml.NVML_ERROR_UNKNOWN}))
    evals = judged(ms)
    assert evals["persistence_off"].verdict is Verdict.ERROR
    assert evals["persistenced_missing"].verdict is Verdict.PASS  # read from /proc all the same


def test_parameters_are_checked() -> None:
    with pytest.raises(ParamError, match="off, on or any"):
        build_params(GpuServices, {"mig": "maybe"})


def test_proc_modules_parser() -> None:
    assert loaded_modules((HGX / "proc/modules").read_text()) >= {"nvidia", "nvidia_uvm", "nvidia_peermem"}
