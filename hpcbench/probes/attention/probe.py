"""Attention throughput: torch's scaled_dot_product_attention, forward and forward+backward,
causal and not, per dtype, head dim and sequence length, on a GPU or the CPU.

FLOPs are FlashAttention's benchmark count (see ``attention_math``). Inputs are (batch, heads,
seq, head_dim) random normal tensors; batch = tokens / seq_len and heads = model_dim / head_dim
as in FlashAttention's benchmark (16k tokens, model dim 2048 on a GPU). Timing, warm-up and the
cache flush are the gemm probe's (``torch_device.time_calls``); the checked value is the median.

**The backend actually used.** For each case the probe asks torch's own dispatcher which SDPA
backend it picks for these very tensors (``torch._fused_sdp_choice``, the function
``scaled_dot_product_attention`` calls to choose; where torch lacks it, the first backend of
torch's priority order that runs when forced alone), then times the case inside
``sdpa_kernel([that backend])``: the timed calls can only have run on the recorded backend,
and an error would say so.

**Correctness.** Per dtype, head dim and causality, a small case (batch 1, 2 heads,
``check_seq_len``) runs on the same backend choice and on the math backend in the same dtype,
both compared with the math backend in float64 on the same (rounded) inputs: the output and,
when forward+backward is measured, the three gradients. The backend's error may be at most 3x
the math backend's (FlashAttention's tests allow 2x) plus a small floor; otherwise ``sanity``
is set. A non-finite output or gradient of a timed call sets it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcbench.core.errors import ProbeSkip
from hpcbench.hw import gpu_probe as gp
from hpcbench.probes.attention import calc as am
from hpcbench.probes.base import GpuProbe, MetricNames, ProbeContext, check

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw import torch_device as td

CONVENTION = "FlashAttention: 4*b*h*s^2*d fwd, /2 causal, bwd 2.5x fwd; TFLOPS = 1e12 FLOP/s"
LAYOUT = "q, k, v: (batch, heads, seq_len, head_dim) contiguous; no mask, no dropout"


@dataclass(frozen=True)
class AttentionParams:
    device: int | str = gp.device_field()
    dtypes: list[str] = field(default_factory=lambda: list(am.DTYPES), metadata={"help": "of bf16, fp16"})
    modes: list[str] = field(default_factory=lambda: list(am.MODES), metadata={"help": "of fwd, fwd_bwd"})
    causal: list[bool] = field(default_factory=lambda: [False, True], metadata={"help": "causal mask or not"})
    head_dims: list[int] = field(default_factory=lambda: [64, 128], metadata={"help": "head dimensions"})
    seq_lens: list[int] = field(
        default_factory=list, metadata={"help": "sequence lengths; [] = 2048,4096,8192,16384 (CPU: 256,512)"}
    )
    tokens: int = field(default=0, metadata={"help": "batch = tokens / seq_len; 0 = 16384 (CPU: 1024)"})
    model_dim: int = field(default=0, metadata={"help": "heads = model_dim / head_dim; 0 = 2048 (CPU: 256)"})
    batch: int = field(default=0, metadata={"help": "fixed batch size; 0 = from tokens"})
    heads: int = field(default=0, metadata={"help": "fixed number of heads; 0 = from model_dim"})
    repeats: int = field(default=10, metadata={"help": "timed calls per case (>= 2)"})
    warmup: int = field(default=5, metadata={"help": "untimed calls per case"})
    warmup_s: float = field(
        default=0.0,
        metadata={"help": "seconds of untimed calls before the first case (> 1: sustained, power-capped)"},
    )
    flush_cache: bool = field(default=True, metadata={"help": "write 2x the L2/LLC before each call"})
    check_seq_len: int = field(default=256, metadata={"help": "sequence length of the correctness case"})
    threads: int = field(default=0, metadata={"help": "CPU threads (CPU device); 0 = torch's default"})
    telemetry_interval: float = gp.telemetry_field()
    seed: int = field(default=0, metadata={"help": "seed of the random inputs"})

    def __post_init__(self) -> None:
        name = "attention"
        gp.check_device(name, self.device)
        for key, allowed in (("dtypes", am.DTYPES), ("modes", am.MODES)):
            values = getattr(self, key)
            check(bool(values), name, key, "expected at least one")
            for v in values:
                check(v in allowed, name, key, f"unknown {v!r}; known: {', '.join(allowed)}")
            check(len(set(values)) == len(values), name, key, "a value is listed twice")
        check(
            bool(self.causal) and len(set(self.causal)) == len(self.causal),
            name,
            "causal",
            "expected [false], [true] or both",
        )
        check(bool(self.head_dims), name, "head_dims", "expected at least one head dim")
        for d in self.head_dims:
            check(1 <= d <= 512, name, "head_dims", f"must be in 1..512, got {d}")
        for s in self.seq_lens:
            check(s >= 1, name, "seq_lens", f"must be >= 1, got {s}")
        for key in ("tokens", "model_dim", "batch", "heads", "threads"):
            check(getattr(self, key) >= 0, name, key, f"must be >= 0, got {getattr(self, key)}")
        check(self.repeats >= 2, name, "repeats", f"must be >= 2, got {self.repeats}")
        check(self.warmup >= 0, name, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.warmup_s >= 0, name, "warmup_s", f"must be >= 0, got {self.warmup_s}")
        check(self.check_seq_len >= 1, name, "check_seq_len", f"must be >= 1, got {self.check_seq_len}")
        check(self.telemetry_interval >= 0, name, "telemetry_interval", "must be >= 0")


def priority_order(torch: Any) -> list[Any]:
    """torch's SDPA backend priority (torch._C._get_sdp_priority_order where it exists)."""
    from torch.nn.attention import SDPBackend

    get = getattr(torch._C, "_get_sdp_priority_order", None)
    if get is not None:
        return [SDPBackend(int(b)) for b in get() if int(b) >= 0]
    names = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH", "CUDNN_ATTENTION")
    return [getattr(SDPBackend, n) for n in names if hasattr(SDPBackend, n)]


def enabled_backends(torch: Any) -> dict[str, bool]:
    """The global switches (torch.backends.cuda.*_sdp_enabled) that the dispatcher honours."""
    flags = {
        "FLASH_ATTENTION": "flash_sdp_enabled",
        "EFFICIENT_ATTENTION": "mem_efficient_sdp_enabled",
        "MATH": "math_sdp_enabled",
        "CUDNN_ATTENTION": "cudnn_sdp_enabled",
    }
    cuda = torch.backends.cuda
    return {name: bool(getattr(cuda, fn)()) for name, fn in flags.items() if hasattr(cuda, fn)}


def choose_backend(torch: Any, q: Any, k: Any, v: Any, causal: bool) -> tuple[Any, str]:
    """(the backend the dispatcher picks for these tensors or None, how that was determined)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    choice = getattr(torch, "_fused_sdp_choice", None)
    if choice is not None:
        backend = SDPBackend(int(choice(q, k, v, None, 0.0, causal)))
        if backend == SDPBackend.ERROR:
            return None, "torch._fused_sdp_choice: no enabled backend accepts these inputs"
        return backend, "torch._fused_sdp_choice (the dispatcher's own choice for these tensors)"
    enabled = enabled_backends(torch)
    for backend in priority_order(torch):
        if not enabled.get(backend.name, True):
            continue
        try:
            with sdpa_kernel([backend]), torch.no_grad():
                torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        except RuntimeError:
            continue
        return backend, "first enabled backend in torch's priority order that runs when forced alone"
    return None, "no enabled backend runs these inputs when forced alone"


def _run(torch: Any, backend: Any, tensors: list[Any], causal: bool, grad: bool) -> list[Any]:
    """Output (and dq, dk, dv) of one SDPA call forced onto ``backend``."""
    from torch.nn.attention import sdpa_kernel

    q, k, v, dout = (t.detach().clone().requires_grad_(grad and i < 3) for i, t in enumerate(tensors))
    with sdpa_kernel([backend]):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if not grad:
            return [out.detach()]
        out.backward(dout)
    return [out.detach(), q.grad, k.grad, v.grad]


def reference_check(
    torch: Any, device: Any, dtype: str, head_dim: int, causal: bool, seq_len: int, grad: bool, seed: int
) -> tuple[dict[str, Any], str | None]:
    """A small case on the dispatcher's backend and on math in ``dtype``, both against math in float64."""
    from torch.nn.attention import SDPBackend

    from hpcbench.hw import torch_device as td

    gen = torch.Generator(device=device).manual_seed(seed)
    dt = td.torch_dtype(torch, dtype)
    low = [torch.randn(1, 2, seq_len, head_dim, generator=gen, device=device, dtype=dt) for _ in range(4)]
    probe = [t.detach().clone().requires_grad_(grad and i < 3) for i, t in enumerate(low)]
    backend, how = choose_backend(torch, *probe[:3], causal)
    if backend is None:
        return {"backend": None, "how": how}, None
    ref = _run(torch, SDPBackend.MATH, [t.double() for t in low], causal, grad)
    got = _run(torch, backend, low, causal, grad)
    math_low = _run(torch, SDPBackend.MATH, low, causal, grad)
    errors: dict[str, dict[str, float]] = {}
    wrong = []
    for name, r, g, m in zip(("out", "dq", "dk", "dv"), ref, got, math_low, strict=False):
        e_backend = float((g.double() - r).abs().max())
        e_math = float((m.double() - r).abs().max())
        magnitude = float(r.abs().max())
        errors[name] = {"backend": e_backend, "math": e_math, "magnitude": magnitude}
        if not am.within_reference(e_backend, e_math, magnitude, dtype):
            wrong.append(f"{name} max error {e_backend:.3g} vs math backend's {e_math:.3g}")
    result = {
        "backend": backend.name,
        "how": how,
        "seq_len": seq_len,
        "batch": 1,
        "heads": 2,
        "errors": errors,
    }
    sanity = None
    if wrong:
        sanity = (
            f"attention {dtype} d{head_dim} {'causal' if causal else 'full'} on {backend.name}: "
            f"differs from the float64 math backend beyond tolerance: {'; '.join(wrong)}"
        )
    return result, sanity


def _finite(torch: Any, tensors: list[Any]) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


class Attention(GpuProbe):
    """SDPA TFLOPS (FlashAttention's counting) per dtype, mode, mask, head dim and length."""

    name = "attention"
    description = (
        "Attention throughput (TFLOPS, torch SDPA, FlashAttention's FLOP count), checked against math"
    )
    Params = AttentionParams
    metrics = MetricNames(
        am.all_metrics() + ("<dtype>_<fwd|fwd_bwd>_<full|causal>_d<head dim>_s<seq len>",),
        r"(bf16|fp16)_(fwd|fwd_bwd)_(full|causal)_d\d+_s\d+",
    )

    def run(self, params: AttentionParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.core.measurement import Conditions, Measurement
        from hpcbench.hw import torch_device as td
        from hpcbench.hw.telemetry import throttle_hint

        opened, flush, common = gp.open_timed(params, ctx.inventory, LAYOUT, self.clock)
        torch, rt, dtypes = opened.torch, opened.rt, opened.dtypes
        gpu = rt.choice.is_cuda
        grid = am.cases(
            dtypes,
            params.modes,
            params.causal,
            params.head_dims,
            params.seq_lens or list(am.GPU_SEQ_LENS if gpu else am.CPU_SEQ_LENS),
            tokens=params.tokens or (am.GPU_TOKENS if gpu else am.CPU_TOKENS),
            model_dim=params.model_dim or (am.GPU_MODEL_DIM if gpu else am.CPU_MODEL_DIM),
            batch=params.batch,
            heads=params.heads,
        )
        common = {
            **common,
            "sdpa_priority_order": [b.name for b in priority_order(torch)],
            "sdpa_enabled": enabled_backends(torch),
            "statistic": gp.STATISTIC,
        }
        checks: dict[tuple[str, int, bool], tuple[dict[str, Any], str | None]] = {}
        skipped_cases: dict[str, str] = {}
        out: list[Measurement] = []
        warm = params.warmup_s
        with td.sampler(rt, params.telemetry_interval) as sampler:
            for i, case in enumerate(grid):
                key = (case.dtype, case.head_dim, case.causal)
                if key not in checks:
                    checks[key] = reference_check(
                        torch,
                        rt.device,
                        case.dtype,
                        case.head_dim,
                        case.causal,
                        params.check_seq_len,
                        "fwd_bwd" in params.modes,
                        params.seed + 104729,
                    )
                t0 = time.monotonic()
                timed = self._time_case(torch, rt, case, params, flush, warm, params.seed + i)
                if isinstance(timed, str):
                    skipped_cases[case.metric] = timed
                    continue
                warm = 0.0
                samples, settings, finite = timed
                checked, sanity = checks[key]
                if not finite:
                    sanity = (
                        f"attention {case.metric}: the timed call produced a non-finite output or gradient"
                    )
                tel = sampler.summary(t0, time.monotonic())
                settings.update({"reference_check": checked, "telemetry": tel})
                out.append(
                    Measurement.from_samples(
                        case.metric,
                        samples,
                        "TFLOPS",
                        ctx.subject,
                        statistic="median",
                        convention=CONVENTION,
                        settings={**common, **settings},
                        sanity=sanity,
                        conditions=Conditions(gpu_clocks_held=throttle_hint(tel)),
                    )
                )
        if not out:
            raise ProbeSkip(
                "no SDPA backend runs any case here: " + "; ".join(sorted(set(skipped_cases.values())))
            )
        for m in out:
            m.settings["skipped_cases"] = skipped_cases
        return out

    @staticmethod
    def _time_case(
        torch: Any,
        rt: td.Runtime,
        case: am.AttnCase,
        params: AttentionParams,
        flush: Any,
        warm: float,
        seed: int,
    ) -> tuple[list[float], dict[str, Any], bool] | str:
        """TFLOPS samples, settings and whether the last call was finite; or why the case cannot run."""
        from torch.nn.attention import sdpa_kernel

        from hpcbench.hw import torch_device as td

        gen = torch.Generator(device=rt.device).manual_seed(seed)
        dt = td.torch_dtype(torch, case.dtype)
        grad = case.mode == "fwd_bwd"
        shape = (case.batch, case.heads, case.seq_len, case.head_dim)
        q, k, v = (
            torch.randn(*shape, generator=gen, device=rt.device, dtype=dt).requires_grad_(grad)
            for _ in range(3)
        )
        dout = torch.randn(*shape, generator=gen, device=rt.device, dtype=dt)
        backend, how = choose_backend(torch, q, k, v, case.causal)
        if backend is None:
            return how
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def forward() -> Any:
            with torch.no_grad():
                return sdpa(q, k, v, is_causal=case.causal)

        def forward_backward() -> Any:
            q.grad = k.grad = v.grad = None
            out = sdpa(q, k, v, is_causal=case.causal)
            out.backward(dout)
            return out

        with sdpa_kernel([backend]):
            seconds, last = td.time_calls(
                forward_backward if grad else forward,
                rt.clock,
                warmup=params.warmup,
                repeats=params.repeats,
                flush=flush,
                warmup_s=warm,
            )
        finite = _finite(torch, [last.detach(), q.grad, k.grad, v.grad] if grad else [last])
        settings = {
            "dtype": case.dtype,
            "mode": case.mode,
            "causal": case.causal,
            "batch": case.batch,
            "heads": case.heads,
            "seq_len": case.seq_len,
            "head_dim": case.head_dim,
            "flops_per_call": case.flops,
            "sdpa_backend": backend.name,
            "sdpa_backend_how": how,
        }
        return [case.flops / s / 1e12 for s in seconds], settings, finite
