"""Every GPU at once: the gpu expansion of the gemm and attention checks, the relative check
against the node's best GPU, the bundled suites and GPU baselines, and what a CPU node shows."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ROOT, Cli
from support.fakenvml import FakeNvml

from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.engine import baselines
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import judge
from hpcbench.engine.plan import CONCURRENT_EXPANSIONS, Unrunnable, expand
from hpcbench.node import nvml
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.attention.probe import Attention
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gemm import probe as gemm

GPU_SUITES = ("quick", "nightly", "acceptance", "gpu-check")
PROFILES = {"H100": "h100-sxm", "H200": "h200", "A100": "a100-sxm-80gb", "B200": "b200"}


def gpu_node_data(model: str = "H200", count: int = 8) -> dict[str, Any]:
    return {
        "cpu": {"model": "Xeon", "threads": 224},
        "gpus": nvml.gpu_inventory(FakeNvml(count=count, model=model)),
    }


def gpu_node(model: str = "H200", count: int = 8) -> Inventory:
    return Inventory.from_dict(gpu_node_data(model, count))


def load(name: str) -> suite_mod.Suite:
    return suite_mod.load(name, registry.load_all())


@pytest.mark.parametrize("name", GPU_SUITES)
def test_gpu_checks_expand_over_every_gpu_and_compare_with_the_best(name: str) -> None:
    checks = [c for c in load(name).checks if c.probe in ("gemm", "attention")]
    assert {c.id for c in checks} >= {"gemm", "attention"}
    node = gpu_node()
    for check in checks:
        assert check.expand == "gpu" and check.relative is not None and check.relative.to == "best"
        jobs = expand(check, registry.load(check.probe), node)
        assert isinstance(jobs, list)
        assert [(j.subject, j.params["device"]) for j in jobs] == [(f"gpu{i}", i) for i in range(8)]
        for job in jobs:  # what each child gets is a valid parameter set
            build_params(registry.load(check.probe), job.params)
        none = expand(
            check, registry.load(check.probe), Inventory.from_dict({"gpus": {"count": 0, "devices": []}})
        )
        assert none == Unrunnable("skip", "no GPU on this node")
    assert "gpu" in CONCURRENT_EXPANSIONS  # one child per GPU, all at once


def _outcome(subject: str, ms: list[Measurement]) -> Any:
    job = SimpleNamespace(subject=subject, params={})
    return SimpleNamespace(
        job=job,
        status="ok",
        started="",
        duration=1.0,
        reason="",
        hint="",
        params={},
        measurements=ms,
        unmeasured=[],
    )


def test_the_slow_gpu_is_caught_against_the_nodes_best_without_a_baseline() -> None:
    """Real measurements (the probe on the CPU device), one 'GPU' 25% slower: only it fails."""
    params = build_params(
        gemm.Gemm, {"device": "cpu", "dtypes": ["fp32"], "shapes": ["128"], "warmup_s": 0.0}
    )
    (m,) = gemm.Gemm().run(
        params, ProbeContext(subject="gpu0", inventory=Inventory.from_dict({"gpus": {"count": 0}}))
    )
    outcomes = []
    for i in range(4):
        factor = 0.75 if i == 2 else 1.0
        samples = [v * factor for v in m.samples]
        slow = Measurement.from_samples(
            "fp32", samples, "TFLOPS", f"gpu{i}", statistic="median", settings=m.settings
        )
        outcomes.append(_outcome(f"gpu{i}", [slow]))
    check = next(c for c in load("quick").checks if c.id == "gemm")
    check = suite_mod.CheckSpec(**{**check.__dict__, "metrics": ("fp32",)})
    results = {r.subject: r for r in judge(check, outcomes, None, Inventory.from_dict({}))}
    rel = {s: next(e for e in r.evaluations if e.kind == "relative") for s, r in results.items()}
    assert rel["gpu2"].verdict is Verdict.FAIL and rel["gpu2"].ratio == pytest.approx(0.75)
    assert rel["gpu2"].reason.startswith("gpu2 reaches 75% of the best subject")
    assert all(rel[f"gpu{i}"].verdict is Verdict.PASS for i in (0, 1, 3))
    assert all(
        e.verdict is Verdict.NOBASELINE for r in results.values() for e in r.evaluations if e.kind == "none"
    )


@pytest.mark.parametrize(("model", "profile"), PROFILES.items())
def test_bundled_profiles_match_their_gpu(model: str, profile: str) -> None:
    chosen = baselines.choose(gpu_node(model))
    assert chosen is not None and chosen.name == profile


def test_no_profile_for_other_gpus_or_cpu_nodes() -> None:
    assert baselines.choose(gpu_node("V100")) is None
    pcie = gpu_node_data("H100")
    for d in pcie["gpus"]["devices"]:
        d["name"] = "NVIDIA H100 PCIe"
    assert baselines.choose(Inventory.from_dict(pcie)) is None
    nvl = gpu_node_data("H200")
    for d in nvl["gpus"]["devices"]:
        d["pci_device_id"] = "0x233B10DE"  # H200 NVL
    assert baselines.choose(Inventory.from_dict(nvl)) is None
    assert (
        baselines.choose(
            Inventory.from_dict({"cpu": {"model": "AMD EPYC"}, "gpus": {"count": 0, "devices": []}})
        )
        is None
    )


@pytest.mark.parametrize("profile", PROFILES.values())
def test_every_judged_gpu_metric_has_a_sourced_value(profile: str) -> None:
    """nightly and acceptance require a baseline: each GEMM/attention metric they judge is in every
    bundled GPU profile (fp8 apart on A100, which cannot run it), with its source; estimates say so."""
    base = baselines.load(profile)
    for name in ("nightly", "acceptance"):
        for check in load(name).checks:
            if check.probe not in ("gemm", "attention"):
                continue
            assert check.metrics is not None
            for metric in check.metrics:
                exp = base.expectation(check.id, metric)
                if profile == "a100-sxm-80gb" and metric == "fp8":
                    assert exp is None
                    continue
                assert exp is not None, (name, check.id, metric)
                assert exp.unit == "TFLOPS" and exp.source
                assert exp.estimate == exp.source.startswith("estimate"), (profile, check.id, metric)
    if base.provenance["source"] == "estimate":
        assert all(e.estimate for table in base.expected.values() for e in table.values())


def test_profiles_are_plausible_against_datasheet_peaks() -> None:
    """Sanity of the numbers themselves: below the dense datasheet peak, above half of it."""
    peaks = {
        "h100-sxm": {"bf16": 989, "fp8": 1979},
        "a100-sxm-80gb": {"bf16": 312},
        "b200": {"bf16": 2250, "fp8": 4500},
    }
    for name, dtypes in peaks.items():
        base = baselines.load(name)
        for dtype, peak in dtypes.items():
            value = base.expectation("gemm", dtype).value  # type: ignore[union-attr]
            assert 0.5 * peak < value < peak, (name, dtype)


def test_gpu_compute_checks_run_on_a_gpu_and_skip_on_a_cpu_node(cli: Cli) -> None:
    """On a GPU node gemm and attention run (status ok, a verified result); on a CPU node every GPU
    check of the suite SKIPs with the reason."""
    inventory = json.loads(cli("inventory", "--format", "json").stdout)
    if inventory["gpus"]["count"]:
        r = cli(
            "run", str(ROOT / "suites" / "gpu-check.toml"), "--only", "gemm,attention", "--format", "json"
        )
        ran = json.loads(r.stdout)["checks"]
        assert ran and all(c["status"] == "ok" and c["verdict"] != "SKIP" for c in ran), ran
        assert all(m["sanity"] is None for c in ran for m in c["measurements"])
        return
    r = cli("run", str(ROOT / "suites" / "gpu-check.toml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert {"gemm", "gemm_sweep", "attention"} <= set(checks)
    for c in checks.values():  # ours and the other GPU checks of the suite
        assert c["verdict"] == "SKIP" and c["reason"].startswith("no GPU on this node"), c


def test_gpu_node_with_a_cpu_only_torch_errors_on_each_gpu(cli: Cli, tmp_path: Path) -> None:
    """Through the CLI on a replayed 2-GPU H200 node (NVML faked, torch real): one child per GPU,
    the H200 profile chosen, and a clear ERROR that says why torch cannot measure."""
    (tmp_path / "twogpus.py").write_text(
        "from support.fakenvml import FakeNvml\n\n\ndef node():\n    return FakeNvml(count=2)\n"
    )
    env = dict(cli.env)
    env["PYTHONPATH"] = f"{tmp_path}:{ROOT / 'tests'}:{env['PYTHONPATH']}"
    env[nvml.ENV_MODULE] = "twogpus:node"
    cli.env = env
    r = cli("probe", "attention", "--expand", "gpu", "--format", "json")
    assert r.returncode == 3, r.stderr
    record = json.loads(r.stdout)
    assert record["baseline"]["name"] == "h200"
    assert [(c["subject"], c["verdict"]) for c in record["checks"]] == [("gpu0", "ERROR"), ("gpu1", "ERROR")]
    for c in record["checks"]:
        assert "cannot use CUDA here, though NVML lists 2 GPU(s)" in c["reason"]
        assert "CUDA build of torch" in c["hint"] and c["params"]["device"] in (0, 1)


def test_attention_metrics_in_suites_are_valid_names() -> None:
    for name in GPU_SUITES:
        for check in load(name).checks:
            if check.probe == "attention" and check.metrics:
                assert all(m in Attention.metrics for m in check.metrics)
