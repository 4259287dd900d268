"""The attention probe: FlashAttention's FLOP count, the case grid, the backend actually used,
the check against the math backend, and real runs on the CPU device."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import Cli

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.node.inventory import Inventory
from hpcbench.probes.attention import calc as am
from hpcbench.probes.attention import probe as attention
from hpcbench.probes.base import ProbeContext, build_params

INVENTORY = Inventory.from_dict(
    {"cpu": {"model": "test cpu", "threads": 2, "llc_bytes": 4 * 2**20}, "gpus": {"count": 0}}
)
FAST = {"device": "cpu", "repeats": 2, "warmup": 0, "warmup_s": 0.0, "check_seq_len": 32}


def run(values: dict[str, Any]) -> list:
    params = build_params(attention.Attention, {**FAST, **values})
    return attention.Attention().run(params, ProbeContext(subject="node", inventory=INVENTORY))


def test_flops_as_flashattention_counts_them() -> None:
    # FlashAttention's benchmark: batch 2, 16 heads, 8k, head dim 128
    fwd = 4 * 2 * 16 * 8192**2 * 128
    assert am.attention_flops(2, 16, 8192, 128, False, "fwd") == fwd
    assert am.attention_flops(2, 16, 8192, 128, True, "fwd") == fwd / 2
    assert am.attention_flops(2, 16, 8192, 128, False, "bwd") == 2.5 * fwd
    assert am.attention_flops(2, 16, 8192, 128, True, "fwd_bwd") == 3.5 * fwd / 2
    with pytest.raises(ValueError):
        am.attention_flops(1, 1, 1, 1, False, "both")


def test_metric_names_and_grid() -> None:
    assert am.metric_name("bf16", "fwd_bwd", True, 128, 8192) == "bf16_fwd_bwd_causal_d128_s8192"
    grid = am.cases(
        ["bf16"], ["fwd", "fwd_bwd"], [False], [64, 128], [2048, 16384], tokens=16384, model_dim=2048
    )
    assert [c.metric for c in grid] == [
        "bf16_fwd_full_d64_s2048", "bf16_fwd_bwd_full_d64_s2048", "bf16_fwd_full_d64_s16384",
        "bf16_fwd_bwd_full_d64_s16384", "bf16_fwd_full_d128_s2048", "bf16_fwd_bwd_full_d128_s2048",
        "bf16_fwd_full_d128_s16384", "bf16_fwd_bwd_full_d128_s16384",
    ]  # fmt: skip
    # FlashAttention's benchmark sizes: batch = 16k tokens / seqlen, heads = 2048 / head dim
    assert [(c.batch, c.heads) for c in grid[::2]] == [(8, 32), (1, 32), (8, 16), (1, 16)]
    assert am.batch_and_heads(32768, 256, 16384, 2048, 0, 0) == (1, 8)
    assert am.batch_and_heads(512, 64, 16384, 2048, 3, 5) == (3, 5)
    assert len(am.all_metrics()) == 2 * 2 * 2 * 2 * 4
    for name in ("bf16_fwd_causal_d128_s8192", "fp16_fwd_bwd_full_d80_s3000"):
        assert name in attention.Attention.metrics
    assert "bf16_bwd_full_d128_s8192" not in attention.Attention.metrics


def test_within_reference() -> None:
    assert am.within_reference(0.005, 0.002, 1.0, "bf16")  # 3 x 0.002 + 2^-7
    assert not am.within_reference(0.05, 0.002, 1.0, "bf16")
    assert not am.within_reference(float("nan"), 0.002, 1.0, "fp16")
    assert am.within_reference(0.04, 0.001, 10.0, "bf16")  # the floor scales with the magnitude


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"dtypes": ["fp32"]}, "dtypes"),
        ({"modes": ["bwd"]}, "modes"),
        ({"causal": []}, "causal"),
        ({"causal": [True, True]}, "causal"),
        ({"head_dims": [0]}, "head_dims"),
        ({"seq_lens": [0]}, "seq_lens"),
        ({"repeats": 1}, "repeats"),
        ({"device": "gpu0"}, "device"),
        ({"tokens": -1}, "tokens"),
    ],
)
def test_param_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamError) as exc:
        build_params(attention.Attention, values)
    assert exc.value.key == key


def test_cpu_run_records_backend_flops_and_reference_check() -> None:
    ms = run({"dtypes": ["bf16"], "head_dims": [32], "seq_lens": [64, 128], "tokens": 256, "model_dim": 64})
    assert [m.metric for m in ms] == [
        "bf16_fwd_full_d32_s64", "bf16_fwd_bwd_full_d32_s64", "bf16_fwd_full_d32_s128",
        "bf16_fwd_bwd_full_d32_s128", "bf16_fwd_causal_d32_s64", "bf16_fwd_bwd_causal_d32_s64",
        "bf16_fwd_causal_d32_s128", "bf16_fwd_bwd_causal_d32_s128",
    ]  # fmt: skip
    for m in ms:
        s = m.settings
        assert m.sanity is None and m.unit == "TFLOPS" and m.statistic == "median" and len(m.samples) == 2
        assert (s["batch"], s["heads"]) == (256 // s["seq_len"], 2)
        assert s["flops_per_call"] == am.attention_flops(
            s["batch"], 2, s["seq_len"], 32, s["causal"], s["mode"]
        )
        # the backend recorded is the one torch's dispatcher picks for such tensors
        q = torch.randn(
            s["batch"], 2, s["seq_len"], 32, dtype=torch.bfloat16, requires_grad=s["mode"] == "fwd_bwd"
        )
        expected = torch.nn.attention.SDPBackend(
            int(torch._fused_sdp_choice(q, q, q, None, 0.0, s["causal"]))
        )
        assert s["sdpa_backend"] == expected.name
        assert s["sdpa_backend_how"].startswith("torch._fused_sdp_choice")
        ref = s["reference_check"]
        assert ref["backend"] == s["sdpa_backend"] and ref["seq_len"] == 32
        assert set(ref["errors"]) == {"out", "dq", "dk", "dv"}
        assert all(
            e["backend"] <= 3 * e["math"] + 2**-7 * max(1, e["magnitude"]) for e in ref["errors"].values()
        )
        assert s["telemetry"]["source"] is None and s["skipped_cases"] == {}


def test_reported_tflops_is_flashattentions_flops_over_seconds_over_1e12() -> None:
    """With fixed timings each sample is FlashAttention's count (4·b·h·s²·d forward, half of it
    causal, 3.5x for forward + backward) / seconds / 1e12, and the value is the median."""
    from support.fixedclock import FixedClock

    seconds = [2e-3, 1e-3, 4e-3]  # every case's three timed calls: median 2 ms
    clock = FixedClock(seconds)
    values = {"dtypes": ["bf16"], "head_dims": [16], "seq_lens": [32], "batch": 1, "heads": 2, "repeats": 3}
    params = build_params(attention.Attention, {**FAST, **values})
    ms = attention.Attention(clock=clock).run(params, ProbeContext(subject="node", inventory=INVENTORY))
    fwd = 4 * 1 * 2 * 32**2 * 16  # 131,072 FLOPs
    flops = {
        "bf16_fwd_full_d16_s32": fwd,
        "bf16_fwd_bwd_full_d16_s32": 3.5 * fwd,
        "bf16_fwd_causal_d16_s32": fwd / 2,
        "bf16_fwd_bwd_causal_d16_s32": 3.5 * fwd / 2,
    }
    assert sorted(m.metric for m in ms) == sorted(flops) and len(clock.timed) == 4 * 3
    for m in ms:
        assert list(m.samples) == [flops[m.metric] / t / 1e12 for t in seconds], m.metric
        assert m.value == flops[m.metric] / 2e-3 / 1e12 and m.statistic == "median" and m.unit == "TFLOPS"
        assert m.settings["flops_per_call"] == flops[m.metric] and m.settings["timer"] == "fixed (test)"
    by = {m.metric: m.value for m in ms}
    assert by["bf16_fwd_full_d16_s32"] == pytest.approx(6.5536e-5, rel=1e-12)  # by hand
    assert by["bf16_fwd_bwd_causal_d16_s32"] == pytest.approx(1.14688e-4, rel=1e-12)


def test_fwd_only_checks_the_output_only() -> None:
    ms = run({"dtypes": ["fp16"], "modes": ["fwd"], "causal": [True], "head_dims": [16], "seq_lens": [64]})
    (m,) = ms
    assert m.metric == "fp16_fwd_causal_d16_s64" and set(m.settings["reference_check"]["errors"]) == {"out"}


def test_backend_fallback_without_fused_sdp_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where torch lacks _fused_sdp_choice: the first enabled backend in priority order that runs."""
    monkeypatch.delattr(torch, "_fused_sdp_choice")
    q = torch.randn(1, 2, 64, 32)
    backend, how = attention.choose_backend(torch, q, q, q, True)
    assert backend is not None and "priority order" in how
    first = next(
        b for b in attention.priority_order(torch) if attention.enabled_backends(torch).get(b.name, True)
    )
    assert backend == first
    torch.backends.cuda.enable_flash_sdp(False)
    try:
        if first.name == "FLASH_ATTENTION":
            assert attention.choose_backend(torch, q, q, q, True)[0] != first
    finally:
        torch.backends.cuda.enable_flash_sdp(True)


def test_no_backend_for_any_case_is_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        attention, "choose_backend", lambda *a: (None, "no enabled backend accepts these inputs")
    )
    with pytest.raises(ProbeSkip, match="no SDPA backend runs any case here: no enabled backend"):
        run({"dtypes": ["bf16"], "modes": ["fwd"], "causal": [False], "head_dims": [16], "seq_lens": [64]})


def test_a_backend_that_computes_wrong_is_a_sanity_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    original = attention._run

    def faulty(torch_: Any, backend: Any, tensors: list[Any], causal: bool, grad: bool) -> list[Any]:
        out = original(torch_, backend, tensors, causal, grad)
        if backend.name != "MATH":
            out[0] = out[0] + 0.25  # the fused kernel is off; the math backend is not
        return out

    monkeypatch.setattr(attention, "_run", faulty)
    (m,) = run({"dtypes": ["bf16"], "modes": ["fwd"], "causal": [False], "head_dims": [16], "seq_lens": [64]})
    assert m.sanity is not None
    assert (
        m.sanity.startswith("attention bf16 d16 full on ")
        and "differs from the float64 math backend" in m.sanity
    )
    assert "out max error" in m.sanity


def test_non_finite_output_is_caught() -> None:
    ok = torch.ones(3)
    assert attention._finite(torch, [ok, None]) and not attention._finite(
        torch, [ok, torch.tensor([1.0, float("nan")])]
    )


def test_cli_probe_attention_on_the_cpu(cli: Cli) -> None:
    r = cli(
        "probe", "attention", "-p", "device=cpu", "-p", "dtypes=bf16", "-p", "head_dims=32",
        "-p", "seq_lens=64", "-p", "causal=true", "-p", "repeats=2", "-p", "warmup_s=0",
        "-p", "check_seq_len=32", "--format", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    import json

    check = json.loads(r.stdout)["checks"][0]
    assert check["status"] == "ok"
    assert [m["metric"] for m in check["measurements"]] == [
        "bf16_fwd_causal_d32_s64",
        "bf16_fwd_bwd_causal_d32_s64",
    ]
