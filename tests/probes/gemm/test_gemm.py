"""The gemm probe on the CPU device: every dtype path torch has on the CPU, the float64 check,
a wrong answer caught, the sweep, per-dtype SKIP, and the CLI."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support.required import unavailable

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.core.measurement import Verdict
from hpcbench.engine.baselines import Baseline, Expectation
from hpcbench.engine.judge import evaluate
from hpcbench.engine.suite import CheckSpec
from hpcbench.hw import matmul as mm
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gemm import calc as gm
from hpcbench.probes.gemm import probe as gemm

INVENTORY = Inventory.from_dict(
    {"cpu": {"model": "test cpu", "threads": 2, "llc_bytes": 4 * 2**20}, "gpus": {"count": 0}}
)
FAST = {"device": "cpu", "repeats": 2, "warmup": 0, "warmup_s": 0.0}


@pytest.fixture()
def onednn() -> None:
    """The test needs torch's oneDNN linear: skipped without it, a failure with
    HPCBENCH_REQUIRE_SERVICES=1 (the CPU wheels of torch on PyPI have it)."""
    import torch

    if not gemm.has_onednn(torch):
        unavailable(
            f"torch {torch.__version__} has no oneDNN (mkldnn) linear: install the CPU build from PyPI"
        )


def run(values: dict[str, Any], subject: str = "node") -> list:
    params = build_params(gemm.Gemm, {**FAST, **values})
    return gemm.Gemm().run(params, ProbeContext(subject=subject, inventory=INVENTORY))


def test_probe_attributes() -> None:
    assert gemm.Gemm.name == "gemm"
    assert gemm.Gemm.expands == {"gpu": "device"}
    assert [r.kind for r in gemm.Gemm.requires] == ["idle_gpu"]  # runs on the CPU device as well
    assert build_params(gemm.Gemm, {}).dtypes == ["bf16", "fp16", "tf32", "fp32", "fp8"]


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"dtypes": ["int4"]}, "dtypes"),
        ({"dtypes": []}, "dtypes"),
        ({"dtypes": ["bf16", "bf16"]}, "dtypes"),
        ({"shapes": ["8x8"]}, "shapes"),
        ({"sweep_m": [1, 2]}, "sweep_m"),
        ({"sweep_k": [8, 4, 1]}, "sweep_k"),
        ({"repeats": 1}, "repeats"),
        ({"device": "cuda"}, "device"),
        ({"device": -1}, "device"),
        ({"check_size": 0}, "check_size"),
        ({"implementations": ["cutlass"]}, "implementations"),
    ],
)
def test_param_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamError) as exc:
        build_params(gemm.Gemm, values)
    assert exc.value.key == key


def test_params_from_text() -> None:
    p = build_params(
        gemm.Gemm, {"device": "3", "shapes": "8192,4096x8192x2048", "sweep_m": "1,9,4"}, from_text=True
    )
    assert p.device == 3 and p.shapes == [8192, "4096x8192x2048"] and p.sweep_m == [1, 9, 4]
    assert build_params(gemm.Gemm, {"device": "cpu"}, from_text=True).device == "cpu"


def test_cpu_run_every_dtype_torch_has_on_the_cpu() -> None:
    ms = run({"shapes": ["64", "32x48x80", "30x48x80"]})
    names = [m.metric for m in ms]
    assert names == [
        "bf16", "bf16_32x48x80", "bf16_30x48x80",
        "fp16", "fp16_32x48x80", "fp16_30x48x80",
        "fp32", "fp32_32x48x80", "fp32_30x48x80",
        "fp8", "fp8_32x48x80",
    ]  # fmt: skip
    for m in ms:
        s = m.settings
        assert m.unit == "TFLOPS" and m.statistic == "median" and m.sanity is None
        assert len(m.samples) == 2 and all(v > 0 for v in m.samples)
        shape = mm.Shape(**s["shape"])
        assert s["flops_per_call"] == 2 * shape.m * shape.n * shape.k
        assert (
            s["check"]["wrong"] == 0 and s["check"]["checked"] == shape.m * shape.n
        )  # all of a small output
        assert s["timer"] == "time.perf_counter" and s["device"]["kind"] == "cpu"
        assert s["cache_flush"]["bytes"] == 8 * 2**20  # twice the 4 MiB LLC
        assert s["telemetry"] == {"source": None, "reason": "the CPU device has no NVML telemetry"}
        assert "tf32" in s["skipped_dtypes"] and "not of the CPU" in s["skipped_dtypes"]["tf32"]
    fp8 = next(m for m in ms if m.metric == "fp8")
    assert fp8.settings["op"].startswith("torch._scaled_mm")
    assert fp8.settings["skipped_shapes"] == {"fp8 30x48x80": "not a multiple of 16"}


def test_default_cpu_shape_is_small() -> None:
    (m,) = run({"dtypes": ["fp32"], "repeats": 2})
    assert m.settings["shape"] == {"m": 512, "n": 512, "k": 512}


def test_only_unsupported_dtypes_is_skip_with_the_reason() -> None:
    with pytest.raises(ProbeSkip, match="tf32: a tensor-core mode of NVIDIA GPUs"):
        run({"dtypes": ["tf32"]})


def test_inputs_are_fresh_random_never_zero() -> None:
    import torch

    shape = mm.Shape(64, 48, 32)
    (x1, _), (w1, _) = mm.operands(torch, "cpu", "bf16", shape, torch.Generator().manual_seed(0))
    (x2, _), _ = mm.operands(torch, "cpu", "bf16", shape, torch.Generator().manual_seed(1))
    assert x1.shape == (64, 32) and w1.shape == (48, 32)  # x: m x k, W: n x k (nn.Linear)
    assert 0.8 < float(x1.float().std()) < 1.2 and int((x1 == 0).sum()) < 5
    assert not torch.equal(x1, x2)


def _corrupting(monkeypatch: pytest.MonkeyPatch, row: int, col: int, only: str | None = None) -> None:
    """Make every GEMM the probe times (or only implementation ``only``'s) return one wrong
    element: a silent data corruption."""
    original = gemm._calls

    def faulty(torch: Any, names: list[str], x: Any, w: Any) -> Any:
        calls = original(torch, names, x, w)

        def corrupt(call: Any) -> Any:
            def run() -> Any:
                out = call()
                if getattr(out, "is_mkldnn", False):
                    out = out.to_dense()
                out[row, col] = out[row, col] * 2 + 1
                return out

            return run

        return {name: corrupt(c) if only in (None, name) else c for name, c in calls.items()}

    monkeypatch.setattr(gemm, "_calls", faulty)


def test_wrong_answer_sets_sanity_and_fails_apart_from_slowness(monkeypatch: pytest.MonkeyPatch) -> None:
    _corrupting(monkeypatch, 3, 5)
    ms = run({"dtypes": ["fp32", "bf16"], "shapes": ["64"], "implementations": ["mm"]})
    for m in ms:
        assert m.sanity is not None
        assert m.sanity.startswith(f"gemm {m.metric} 64x64x64: 1 of 4096 sampled outputs differ")
        assert "worst y[3, 5]" in m.sanity
    fast = Baseline(
        "b", "/b.toml", {}, {"source": "published", "date": "2026-01-01"}, {"g": {"fp32": Expectation(1e-9)}}
    )
    ev = evaluate(ms[0], CheckSpec(id="g", probe="gemm"), fast, Inventory.from_dict({}))
    assert (
        ev.verdict is Verdict.FAIL and ev.kind == "sanity" and ev.reason.startswith("wrong result: gemm fp32")
    )


@pytest.mark.usefixtures("onednn")
def test_a_wrong_answer_from_the_slower_implementation_still_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every implementation's output is verified, not only the reported one's: a corruption in
    either names the implementation."""
    for bad in ("mm", "onednn"):
        _corrupting(monkeypatch, 2, 7, only=bad)
        (m,) = run({"dtypes": ["fp32"], "shapes": ["64"]})
        assert m.settings["implementation"] in ("mm", "onednn")
        assert m.sanity is not None and m.sanity.startswith(f"gemm fp32 64x64x64 ({bad}): 1 of 4096")
        assert "worst y[2, 7]" in m.sanity and m.sanity.count("sampled outputs differ") == 1
        monkeypatch.undo()


@pytest.mark.usefixtures("onednn")
def test_cpu_fp32_times_torch_mm_and_onednn_and_keeps_both() -> None:
    """Both implementations run on the real clock (which is faster is the fixed-clock test's
    business: with real timings the two can be within noise of each other)."""
    (m,) = run({"dtypes": ["fp32"], "shapes": ["64"], "repeats": 4})
    chosen = m.settings["implementation"]
    (other,) = m.settings["other_implementations_tflops"]
    assert {chosen, other} == {"mm", "onednn"} and len(m.settings["other_implementations_tflops"][other]) == 4
    assert len(m.samples) == 4 and m.value == statistics.median(m.samples)
    assert m.settings["op"].startswith(gm.IMPLEMENTATIONS[chosen]) and m.sanity is None
    # one named implementation: only it runs; bf16 has only torch.mm on the CPU
    (only,) = run({"dtypes": ["fp32"], "shapes": ["64"], "implementations": ["onednn"]})
    assert only.settings["implementation"] == "onednn" and "other_implementations_tflops" not in only.settings
    (bf,) = run({"dtypes": ["bf16"], "shapes": ["64"], "implementations": ["onednn"]})
    assert bf.settings["implementation"] == "mm" and "other_implementations_tflops" not in bf.settings


def _fixed(monkeypatch: pytest.MonkeyPatch, seconds: dict[str | None, list[float]]) -> Any:
    """A fixed clock for the probe, and its two implementations ``mm`` and ``onednn`` doing the same
    real torch.mm (so neither needs oneDNN), each call tagged so that it takes its own seconds."""
    from support.fixedclock import FixedClock

    clock = FixedClock(seconds)
    original = gemm._calls

    def tagged(torch: Any, names: list[str], x: Any, w: Any) -> Any:
        call = original(torch, ["mm"], x, w)["mm"]
        return {name: clock.tagged(name, call) for name in names}

    monkeypatch.setattr(gemm, "choose_implementations", lambda torch, rt, dtype, requested: ["mm", "onednn"])
    monkeypatch.setattr(gemm, "_calls", tagged)
    return clock


def run_fixed(clock: Any, values: dict[str, Any]) -> list:
    params = build_params(gemm.Gemm, {**FAST, **values})
    return gemm.Gemm(clock=clock).run(params, ProbeContext(subject="node", inventory=INVENTORY))


def test_reported_tflops_is_2mnk_over_seconds_over_1e12_of_the_shorter_median_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule the probe implements: the implementation with the shorter median *time* is reported
    (stats.fastest), its samples 2·m·n·k / seconds / 1e12 and its value their median. The times are
    chosen so that the other rule, the higher median of 4 TFLOPS samples, would pick the other one:
    mm's median time is 2.5 ms, onednn's 2.4 ms, while mm's median TFLOPS (of 1, 1, 4 and 4 ms) is
    higher than onednn's."""
    mm_s, onednn_s = [1e-3, 4e-3, 1e-3, 4e-3], [2.4e-3] * 4
    clock = _fixed(monkeypatch, {"mm": mm_s, "onednn": onednn_s})
    (m,) = run_fixed(clock, {"dtypes": ["fp32"], "shapes": ["32x48x80"], "repeats": 4, "warmup": 1})
    flops = 2 * 32 * 48 * 80  # 245,760
    assert clock.timed.count("mm") == clock.timed.count("onednn") == 4  # warm-up calls are not timed
    assert m.settings["implementation"] == "onednn"
    assert list(m.samples) == [flops / t / 1e12 for t in onednn_s]
    assert m.value == pytest.approx(245760 / 2.4e-3 / 1e12, rel=1e-12)  # 1.024e-4 TFLOPS
    slow = m.settings["other_implementations_tflops"]["mm"]
    assert slow == [flops / t / 1e12 for t in mm_s]
    assert statistics.median(slow) > m.value  # what comparing median TFLOPS would have picked
    assert m.settings["flops_per_call"] == 245760 and m.sanity is None and m.unit == "TFLOPS"


def test_reported_sweep_value_is_the_best_shapes_median(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep reports the shape with the highest median TFLOPS, and that median as its value."""
    clock = _fixed(monkeypatch, {"mm": [1e-3, 2e-3, 3e-3], "onednn": [4e-3]})
    ms = run_fixed(
        clock,
        {
            "dtypes": ["fp32"],
            "shapes": ["16"],
            "repeats": 3,
            "sweep": True,
            "sweep_repeats": 3,
            "sweep_m": [16, 32, 16],
            "sweep_n": [16],
            "sweep_k": [16],
        },
    )
    sweep = ms[1]
    assert sweep.metric == "fp32_sweep" and sweep.settings["sweep"]["best_shape"] == "32x16x16"
    assert sweep.value == pytest.approx(2 * 32 * 16 * 16 / 2e-3 / 1e12, rel=1e-12)  # median: 2 ms
    assert [r["median"] for r in sweep.settings["sweep"]["table"]] == [
        float(f"{2 * m * 16 * 16 / 2e-3 / 1e12:.6g}") for m in (16, 32)
    ]


def test_sampled_block_misses_nothing_it_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block smaller than the output catches a corrupted element whose row and column it samples."""
    import torch

    gen = torch.Generator().manual_seed(0 + 7919)  # the rows the probe samples for seed 0
    rows = torch.randperm(128, generator=gen)[:16].sort().values.tolist()
    cols = torch.randperm(128, generator=gen)[:16].sort().values.tolist()
    _corrupting(monkeypatch, rows[4], cols[9])
    (m,) = run({"dtypes": ["fp32"], "shapes": ["128"], "check_size": 16, "implementations": ["mm"]})
    assert m.settings["check"]["checked"] == 256 and m.settings["check"]["wrong"] == 1
    assert f"worst y[{rows[4]}, {cols[9]}]" in (m.sanity or "")


def test_sweep_measures_every_shape_and_reports_the_best() -> None:
    ms = run(
        {
            "dtypes": ["fp32"],
            "shapes": ["32"],
            "sweep": True,
            "sweep_m": [32, 96, 32],
            "sweep_n": [48],
            "sweep_k": [16, 32, 16],
        }
    )
    assert [m.metric for m in ms] == ["fp32", "fp32_sweep"]
    sweep = ms[1].settings["sweep"]
    assert sweep["shapes"] == 6 and [r["shape"] for r in sweep["table"]] == [
        "32x48x16", "32x48x32", "64x48x16", "64x48x32", "96x48x16", "96x48x32",
    ]  # fmt: skip
    row = {r["shape"]: r for r in sweep["table"]}[sweep["best_shape"]]
    assert row["median"] == max(r["median"] for r in sweep["table"])
    assert sweep["best_shape"] == mm.Shape(**ms[1].settings["shape"]).label
    assert ms[1].value == pytest.approx(row["median"], rel=1e-4) and ms[1].sanity is None


def test_sweep_picks_the_fastest_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    speed = {"32x32x32": 1.0, "64x32x32": 3.0, "96x32x32": 2.0}

    def fake(torch: Any, rt: Any, dtype: str, shape: mm.Shape, **kw: Any) -> gemm.Case:
        v = speed.get(shape.label, 0.5)
        return gemm.Case(shape, [v, v * 0.9, v * 1.1], {"wrong": 0}, None, {"shape": shape.as_dict()})

    monkeypatch.setattr(gemm, "measure_case", fake)
    ms = run({"dtypes": ["fp32"], "sweep": True, "sweep_m": [32, 96, 32], "sweep_n": [32], "sweep_k": [32]})
    assert ms[1].metric == "fp32_sweep" and ms[1].settings["sweep"]["best_shape"] == "64x32x32"
    assert ms[1].value == 3.0


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, hpcbench.probes.gemm.probe, hpcbench.probes.attention.probe, hpcbench.hw.telemetry\n"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def _record(cli: Cli) -> dict[str, Any]:
    (path,) = sorted(Path(cli.workdir).glob("results/*/*.json"))
    return json.loads(path.read_text())


def test_cli_probe_gemm_on_the_cpu(cli: Cli) -> None:
    r = cli(
        "probe",
        "gemm",
        "-p",
        "device=cpu",
        "-p",
        "dtypes=fp32,bf16",
        "-p",
        "shapes=64",
        "-p",
        "repeats=3",
        "-p",
        "warmup_s=0",
    )
    assert r.returncode == 0, r.stderr
    check = _record(cli)["checks"][0]
    assert check["status"] == "ok" and [m["metric"] for m in check["measurements"]] == ["fp32", "bf16"]
    assert all(m["sanity"] is None and len(m["samples"]) == 3 for m in check["measurements"])


def test_cli_gpu_index_on_a_cpu_node_is_skip(cli: Cli) -> None:
    r = cli("probe", "gemm", "-p", "device=0", "--format", "json")
    assert r.returncode == 0, r.stderr
    check = json.loads(r.stdout)["checks"][0]
    assert check["verdict"] == "SKIP" and check["reason"] == "no GPU on this node"


def test_cli_bad_parameter_is_one_line_and_exit_4(cli: Cli) -> None:
    r = cli("probe", "gemm", "-p", "dtypes=int4")
    assert r.returncode == 4
    assert (
        r.stderr.strip().count("\n") == 0
        and "unknown dtype 'int4'" in r.stderr
        and "Traceback" not in r.stderr
    )


def test_implementations_per_device_and_dtype() -> None:
    lt, dnn = {"has_cublaslt": True, "has_onednn": True}, {"has_cublaslt": False, "has_onednn": False}
    assert gm.implementations("cuda", "bf16", **lt) == ["cublas", "cublaslt"]
    assert gm.implementations("cuda", "tf32", **dnn) == ["cublas"]
    assert gm.implementations("cuda", "fp8", **lt) == ["scaled_mm"]
    assert gm.implementations("cpu", "fp32", **lt) == ["mm", "onednn"]
    assert gm.implementations("cpu", "bf16", **lt) == ["mm"]
    assert gm.implementations("cpu", "fp32", **dnn) == ["mm"]
    assert gm.select_implementations(["cublas", "cublaslt"], []) == ["cublas"]  # cuBLASLt on request
    assert gm.select_implementations(["cublas", "cublaslt"], ["cublas", "cublaslt"]) == ["cublas", "cublaslt"]
    assert gm.select_implementations(["mm", "onednn"], []) == ["mm", "onednn"]
    assert gm.select_implementations(["cublas", "cublaslt"], ["cublaslt", "onednn"]) == ["cublaslt"]
    assert gm.select_implementations(["scaled_mm"], ["cublas"]) == ["scaled_mm"]  # fp8 has no other
