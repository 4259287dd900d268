"""The llm_step probe on the CPU with the ``tiny`` preset: the FLOP count against a hand count, the
reported numbers pinned with a fixed clock, the loss falling on the fixed batch, a NaN planted in one
step as a FAIL of sanity, the first-loss consensus naming a GPU that computes another answer, the
DDP arithmetic, the suites and the GPU profiles' estimates."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

import pytest
import torch
from conftest import Cli
from support.fixedclock import FixedClock
from support.results import measured, reasons

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.engine import baselines
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import consensus, evaluate
from hpcbench.engine.plan import Unrunnable, expand
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.llm_step import calc, train
from hpcbench.probes.llm_step import flops as fl
from hpcbench.probes.llm_step import model as lm
from hpcbench.probes.llm_step import probe as llm

INVENTORY = Inventory.from_dict(
    {"cpu": {"model": "test cpu", "threads": 2, "llc_bytes": 4 * 2**20}, "gpus": {"count": 0}}
)
#: one thread: on a shared 2-core machine an OpenMP pair beside other tests stalls
FAST = {"device": "cpu", "preset": "tiny", "steps": 4, "warmup": 1, "threads": 1}
CLI_FAST = [arg for k, v in FAST.items() for arg in ("-p", f"{k}={v}")]


def results(values: dict[str, Any], subject: str = "node", **probe_kwargs: Any) -> list[Any]:
    params = build_params(llm.LlmStep, {**FAST, **values})
    ctx = ProbeContext(subject=subject, inventory=INVENTORY)
    return llm.LlmStep(**probe_kwargs).run(params, ctx)


def run(values: dict[str, Any], subject: str = "node", **probe_kwargs: Any) -> dict[str, Measurement]:
    """metric -> measurement of the metrics measured."""
    return {m.metric: m for m in measured(results(values, subject, **probe_kwargs))}


def suite_check(name: str, check_id: str) -> Any:
    return next(c for c in suite_mod.load(name, registry.load_all()).checks if c.id == check_id)


# -- the FLOP count -------------------------------------------------------------------------------


def test_flop_count_of_tiny_against_a_hand_count() -> None:
    shape = fl.make_shape("tiny")  # hidden 64, 4 heads of 16, 2 KV heads, FFN 176, 2 layers, vocab 256
    assert (shape.layers, shape.seq, shape.batch, shape.tokens) == (2, 64, 2, 128)
    # per layer: q 64*64 + k 64*32 + v 64*32 + o 64*64 + MLP 3*64*176 = 4096+2048+2048+4096+33792
    assert fl.layer_matmul_params(shape) == 46080
    assert fl.matmul_params(shape) == 2 * 46080 + 64 * 256 == 108544  # + the LM head
    assert fl.dense_flops(shape) == 6 * 108544 * 128 == 83361792
    assert fl.attention_flops(shape) == 12 * 2 * 64 * 64 * 128 // 2 == 6291456  # causal: half
    assert fl.step_flops(shape) == 89653248


def test_flop_count_of_8b_layer_against_a_hand_count() -> None:
    shape = fl.make_shape("8b-layer")
    # q, o: 4096^2 each = 33,554,432; k, v: 4096*1024 each = 8,388,608; MLP 3*4096*14336 = 176,160,768
    assert fl.layer_matmul_params(shape) == 218103808
    assert fl.matmul_params(shape) == 218103808 + 4096 * 1024 == 222298112
    assert fl.step_flops(shape) == 6 * 222298112 * 4096 + 6 * 4096 * 4096 * 4096 == 5875515260928
    big = fl.make_shape("70b-layer", layers=2, seq=2048, batch=2)
    # q, o 8192^2; k, v 8192*1024; MLP 3*8192*28672
    assert fl.layer_matmul_params(big) == 2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672
    assert fl.attention_flops(big) == 6 * 2 * 8192 * 2048 * 4096


@pytest.mark.parametrize("overrides", [{}, {"layers": 3, "seq": 32, "batch": 1}])
def test_the_count_is_of_the_weights_the_model_runs(overrides: dict[str, int]) -> None:
    shape = fl.make_shape("tiny", **overrides)
    model = lm.build(shape, torch.device("cpu"), seed=0)
    assert lm.matmul_weights(model) == fl.matmul_params(shape)
    assert sum(p.numel() for p in model.parameters()) == fl.all_params(shape)


def test_dense_bf16_peaks_by_gpu_name() -> None:
    assert fl.dense_bf16_peak("NVIDIA H200")[0] == 989.4  # type: ignore[index]
    assert fl.dense_bf16_peak("NVIDIA H200 NVL")[0] == 835.5  # type: ignore[index]
    assert fl.dense_bf16_peak("NVIDIA H100 80GB HBM3")[0] == 989.4  # type: ignore[index]
    assert fl.dense_bf16_peak("NVIDIA H100 PCIe")[0] == 756.5  # type: ignore[index]
    assert fl.dense_bf16_peak("NVIDIA A100-SXM4-80GB")[0] == 312.0  # type: ignore[index]
    assert fl.dense_bf16_peak("NVIDIA B200")[0] == 2250.0  # type: ignore[index]
    assert fl.dense_bf16_peak("Tesla V100-SXM2-32GB") is None


# -- the numbers, pinned --------------------------------------------------------------------------


def test_tokens_step_time_and_mfu_are_the_documented_formulas_with_a_fixed_clock() -> None:
    seconds = [0.5, 0.25, 1.0, 0.4]
    ms = run({"peak_tflops": 0.002}, clock=FixedClock(seconds))
    shape = fl.make_shape("tiny")
    flops = 89653248  # the hand count above
    tokens = ms["tokens_per_s"]
    assert tokens.unit == "tokens/s" and tokens.statistic == "median"
    assert list(tokens.samples) == [128 / t for t in seconds]
    assert tokens.value == statistics.median(128 / t for t in seconds) == (256 + 320) / 2
    assert (
        ms["step_time"].value == statistics.median(t * 1e3 for t in seconds) and ms["step_time"].unit == "ms"
    )
    assert not ms["step_time"].higher_is_better
    # 95th percentile, linear between ranks: 0.5 + 0.85 * (1.0 - 0.5)
    assert ms["step_time_p95"].value == pytest.approx((0.5 + 0.85 * 0.5) * 1e3, rel=1e-12)
    assert ms["model_tflops"].value == statistics.median(flops / t / 1e12 for t in seconds)
    mfu = ms["mfu"]
    assert mfu.unit == "ratio" and list(mfu.samples) == [flops / t / (0.002 * 1e12) for t in seconds]
    # the median of the steps' rates: tokens/s x FLOPs per token / peak
    assert mfu.value == pytest.approx(288 * (flops / 128) / 2e9, rel=1e-12)
    s = tokens.settings
    assert (
        s["flops_per_step"] == fl.step_flops(shape) == flops and s["peak_source"] == "parameter peak_tflops"
    )
    assert s["matmul_params_built"] == s["matmul_params"] == 108544
    assert s["timer"] == "fixed (test)" and s["steps"] == 4 and s["warmup"] == 1
    assert s["precision"] in ("bf16", "fp32") and s["precision_reason"].startswith("auto: ")
    assert s["optimizer"] == "AdamW foreach=True" and s["master_weights"] == "fp32"
    assert "peak_memory" not in ms


def test_without_a_peak_the_cpu_has_no_mfu_and_says_why() -> None:
    out = results({})
    assert "mfu" not in run({})
    why = reasons(out)
    assert set(why) == {"mfu", "peak_memory"}  # no CUDA allocator here either
    assert why["mfu"].startswith("the CPU device has no datasheet bf16 peak")
    check = suite_check("nightly", "llm_step")
    evs = [e for e in check_evals(check, out) if e.metric == "mfu"]
    assert [(e.verdict, e.kind) for e in evs] == [(Verdict.SKIP, "not_measured")]


def check_evals(check: Any, out: list[Any]) -> list[Any]:
    from hpcbench.engine.judge import judge
    from hpcbench.engine.plan import Job
    from hpcbench.engine.runner import Outcome

    outcome = Outcome.of(Job(check, "node", {}), out)
    (result,) = judge(check, [outcome], None, INVENTORY)
    return list(result.evaluations)


# -- correctness ----------------------------------------------------------------------------------


def test_the_loss_falls_on_the_fixed_batch() -> None:
    ms = run({"steps": 6, "warmup": 2})
    main = ms["tokens_per_s"]
    losses = main.settings["losses_first"]
    assert main.sanity is None and len(losses) == 2 + 5  # the warm-up's and the first 5 timed steps'
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))  # Adam on one batch: every step
    assert losses[0] == pytest.approx(5.58, abs=0.05)  # about ln(256) = 5.55 at the start
    assert main.settings["loss_last"] < losses[-1]  # the 8th step's


def test_a_nan_planted_in_one_step_is_a_fail_of_sanity() -> None:
    def plant(step: int, model: Any) -> None:
        if step == 3:
            with torch.no_grad():
                model.head.weight[0, 0] = float("nan")

    ms = run({"steps": 4, "warmup": 1}, subject="gpu2", before_step=plant)
    main = ms["tokens_per_s"]
    assert main.sanity == "gpu2: the loss is nan at step 4 of 5 (2 non-finite step(s))"
    assert all(m.sanity == main.sanity for m in ms.values())
    ev = evaluate(main, suite_check("nightly", "llm_step"), None, INVENTORY)
    assert ev.verdict is Verdict.FAIL and ev.kind == "sanity"
    assert ev.reason == f"wrong result: {main.sanity}"


def test_a_diverging_run_through_the_cli_is_a_fail_with_its_losses_in_the_record(cli: Cli) -> None:
    # lr 1e30: the second update overflows the weights, the loss is NaN from the third step on
    r = cli("probe", "llm_step", *CLI_FAST, "-p", "lr=1e30", "--format", "json")
    assert r.returncode == ExitCode.FAIL, r.stderr
    (check,) = json.loads(r.stdout)["checks"]
    main = next(m for m in check["measurements"] if m["metric"] == "tokens_per_s")
    assert main["sanity"] == "node: the loss is nan at step 3 of 5 (3 non-finite step(s))"
    assert main["settings"]["losses_first"][2:] == ["nan"] * 3  # strict JSON: the text, not NaN
    assert {e["verdict"] for e in check["evaluations"] if e["kind"] == "sanity"} == {"FAIL"}


def test_loss_problems_pure() -> None:
    assert calc.loss_problem([5.0, 4.0, 3.0], 1, "gpu0") is None
    assert calc.loss_problem([5.0, 4.0, 4.0], 1, "gpu0") == (
        "gpu0: the loss did not fall over the 2 timed steps on the fixed batch "
        "(4 at the first, 4 at the last)"
    )
    assert calc.loss_problem([5.0, float("inf"), 3.0], 0, "gpu1") == (
        "gpu1: the loss is inf at step 2 of 3 (1 non-finite step(s))"
    )
    assert calc.float32_bits(1.0) == "3f800000"


def test_consensus_names_the_gpu_whose_first_loss_differs() -> None:
    def nudge(step: int, model: Any) -> None:  # a GPU that computes another answer from the same inputs
        if step == 0:
            with torch.no_grad():
                model.blocks[0].mlp.up.weight[0, 0] += 0.5

    fast = {"steps": 2, "warmup": 0}
    by_subject = {f"gpu{i}": list(run(fast, subject=f"gpu{i}").values()) for i in range(2)}
    by_subject["gpu2"] = list(run(fast, subject="gpu2", before_step=nudge).values())
    bits = {s: ms[0].consensus.value for s, ms in by_subject.items()}
    assert bits["gpu0"] == bits["gpu1"] != bits["gpu2"]  # same seed: bit for bit on healthy devices
    out = consensus(by_subject)
    assert [e.verdict for e in out["gpu0"]] == [Verdict.PASS] == [e.verdict for e in out["gpu1"]]
    (odd,) = out["gpu2"]
    assert odd.verdict is Verdict.FAIL and odd.metric == "first_loss_bits"
    assert odd.reason.startswith(
        f"gpu2: the float32 bit pattern of the first step's loss ({bits['gpu2']}) differs from the one "
        f"2 of 3 subjects computed ({bits['gpu0']}; "
    )


# -- the DDP arithmetic, pure ---------------------------------------------------------------------


def _rank(rank: int, alone: list[float], together: list[float], bits: str = "40b2b3ea") -> dict[str, Any]:
    losses = [5.0, 4.5, 4.0, 3.5]
    return {
        "member": {"rank": rank, "host": "n1", "device": "NVIDIA H200", "nvml_index": rank + 4, "uuid": None},
        "alone": {"losses": losses, "seconds": alone, "first_loss_bits": bits, "peak_memory_bytes": 1},
        "together": {"losses": losses, "seconds": together, "first_loss_bits": bits, "peak_memory_bytes": 1},
    }


def test_ddp_scaling_efficiency_and_the_slowest_rank_are_pinned() -> None:
    shape = fl.make_shape("tiny")  # 128 tokens a step
    result = {
        "backend": "nccl",
        "launcher": "spawned",
        "ranks": [
            _rank(0, [0.1, 0.1, 0.1], [0.12, 0.13, 0.11]),
            _rank(1, [0.2, 0.2, 0.2], [0.14, 0.12, 0.12]),  # rank 1 (gpu5) is slow alone
            _rank(2, [0.1, 0.1, 0.1], [0.12, 0.12, 0.16]),
        ],
    }
    ms = {
        m.metric: m
        for m in llm.ddp_measurements(shape, result, warmup=1, subject="node", peak=(100.0, "t"), extra={})
    }
    node_steps = [0.14, 0.13, 0.16]  # each step lasts as long as its slowest rank's
    assert list(ms["step_time"].samples) == pytest.approx([t * 1e3 for t in node_steps], rel=1e-12)
    node = 3 * 128 / 0.14
    assert ms["node_tokens_per_s"].value == pytest.approx(node, rel=1e-12)
    single = 128 / 0.1  # the median rank alone
    assert ms["scaling_efficiency"].value == pytest.approx(node / (3 * single), rel=1e-12)
    assert ms["mfu"].value == pytest.approx(fl.step_flops(shape) / 0.14 / 100e12, rel=1e-12)
    s = ms["scaling_efficiency"].settings
    assert (s["slowest_rank"], s["slowest_rank_gpu"], s["slowest_rank_host"]) == (1, 5, "n1")
    assert (
        ms["scaling_efficiency"].detail == "slowest rank 1 (gpu5 on n1): alone 50% of the other ranks' median"
    )
    assert ms["scaling_efficiency"].sanity is None


def test_ddp_names_a_rank_whose_first_loss_differs() -> None:
    ranks = [_rank(i, [0.1, 0.1], [0.1, 0.1], "40b2b3ea" if i != 2 else "40b2b3eb") for i in range(3)]
    ms = llm.ddp_measurements(
        fl.make_shape("tiny"),
        {"backend": "nccl", "ranks": ranks},
        warmup=1,
        subject="node",
        peak=(None, "x"),
        extra={},
    )
    assert (
        ms[0].sanity
        == "rank 2 (gpu6 on n1): first loss bits 40b2b3eb differ from the other ranks' (same seed)"
    )
    assert "mfu" not in {m.metric for m in measured(ms)} and reasons(ms) == {"mfu": "x"}


def test_ddp_without_a_gpu_skips_unless_asked_for_the_cpu() -> None:
    params = build_params(llm.LlmStep, {"mode": "ddp"})
    with pytest.raises(ProbeSkip, match="no GPU on this node"):
        llm.LlmStep().run(params, ProbeContext(inventory=INVENTORY))


# -- parameters, suites, profiles -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"preset": "405b"}, "preset"),
        ({"mode": "fsdp"}, "mode"),
        ({"mode": "ddp", "device": 3}, "device"),
        ({"steps": 1}, "steps"),
        ({"layers": -1}, "layers"),
        ({"precision": "fp8"}, "precision"),
        ({"lr": 0.0}, "lr"),
        ({"ranks": 1}, "ranks"),
        ({"peak_tflops": -1.0}, "peak_tflops"),
        ({"device": "cuda"}, "device"),
    ],
)
def test_param_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamError) as exc:
        build_params(llm.LlmStep, values)
    assert exc.value.key == key


def test_auto_preset_and_precision() -> None:
    params = build_params(llm.LlmStep, {})
    assert llm.resolve_shape(params, on_gpu=True) == ("8b-layer", fl.make_shape("8b-layer"))
    assert llm.resolve_shape(params, on_gpu=False) == ("tiny", fl.make_shape("tiny"))
    assert train.choose_precision("fp32", torch.device("cpu")) == ("fp32", "precision=fp32")


def test_suites_run_the_8b_layer_on_every_gpu_and_the_ddp_mode() -> None:
    assert not [c for c in suite_mod.load("quick", registry.load_all()).checks if c.probe == "llm_step"]
    probe = registry.load("llm_step")
    for name in ("nightly", "acceptance"):
        per_gpu, ddp = suite_check(name, "llm_step"), suite_check(name, "llm_step_ddp")
        assert per_gpu.expand == "gpu" and per_gpu.params["preset"] == "8b-layer"
        assert per_gpu.relative is not None and per_gpu.relative.to == "best"
        assert ddp.params["mode"] == "ddp" and ddp.expand in ("none", None, "")
        cpu_node = Inventory.from_dict({"gpus": {"count": 0, "devices": []}})
        assert expand(per_gpu, probe, cpu_node) == Unrunnable("skip", "no GPU on this node")
        # nothing judged is left NOBASELINE (UNKNOWN under require_baseline) on a bundled GPU profile
        for profile in ("h200", "h100-sxm", "a100-sxm-80gb", "b200"):
            base = baselines.load(profile)
            assert all(base.expectation("llm_step", m) is not None for m in per_gpu.metrics or ())
        assert list(ddp.metrics or ()) == ["scaling_efficiency"] and set(ddp.absolute) == {
            "scaling_efficiency"
        }


@pytest.mark.parametrize("profile", ["h200", "h100-sxm", "a100-sxm-80gb", "b200"])
def test_gpu_profiles_hold_estimates_consistent_with_the_flop_count(profile: str) -> None:
    base = baselines.load(profile)
    mfu, tokens = base.expectation("llm_step", "mfu"), base.expectation("llm_step", "tokens_per_s")
    assert mfu is not None and tokens is not None and mfu.estimate and tokens.estimate
    peak = fl.dense_bf16_peak(base.match["gpu_name"])
    assert peak is not None
    per_token = fl.step_flops(fl.make_shape("8b-layer")) / 4096
    assert tokens.value == round(mfu.value * peak[0] * 1e12 / per_token, -2)


def test_import_loads_no_torch() -> None:
    code = "import sys, hpcbench.probes.llm_step.probe\nprint('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stderr
