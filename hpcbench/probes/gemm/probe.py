"""GEMM throughput: torch.mm in nn.Linear's layout (y = x @ W^T) per dtype, on a GPU or the CPU.

Each case (dtype x shape) gets fresh random inputs (normal, never zeros) from a seeded
generator on the device, ``warmup`` untimed calls, then ``repeats`` timed calls back to back
(a burst, as MAMF-finder times; ``warmup_s`` seconds of untimed calls before the first case
measure the sustained, power-capped state instead), each timed alone (CUDA events on a GPU,
``time.perf_counter`` on the CPU) after a buffer twice the L2 (GPU) or last-level (CPU) cache
has been written, so no call finds its inputs in the cache. FLOPs are 2·m·n·k per call
(MAMF-finder's count), TFLOPS 1e12 FLOP/s; the checked value is the median sample, the best
and every sample are kept.

The last timed call's output is checked against a float64 reference computed on the CPU for
a random block of rows and columns; a wrong element sets ``sanity`` (a FAIL of its own).

fp8 is e4m3 through ``torch._scaled_mm`` with per-tensor scales and a bf16 output. A dtype the
device cannot do (fp8 below compute capability 8.9, TF32 on the CPU) is left out and named with
its reason in every measurement's ``settings["skipped_dtypes"]``; only when no requested dtype
can run does the probe SKIP.

``implementations``: on a GPU torch.mm through cuBLAS (cuBLASLt when asked for), on the CPU
torch.mm and oneDNN's linear for fp32; where several run they alternate call by call, the one
with the shorter median call is reported and every one's output is verified.

The sweep mode (``sweep = true``) measures every shape of the ranges ``sweep_m``, ``sweep_n``,
``sweep_k`` as MAMF-finder does, and reports the best as ``<dtype>_sweep`` with its shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcbench.core.errors import ParamError, ProbeSkip
from hpcbench.hw import gpu_probe as gp
from hpcbench.hw import matmul as mm
from hpcbench.probes.base import GpuProbe, MetricNames, ProbeContext, check
from hpcbench.probes.gemm import calc as gm

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw import torch_device as td

CONVENTION = "2*m*n*k FLOPs per GEMM (MAMF-finder); TFLOPS = 1e12 FLOP/s"
LAYOUT = "nn.Linear: y (m x n) = x (m x k) @ W^T, W (n x k) row-major"


@dataclass(frozen=True)
class GemmParams:
    device: int | str = gp.device_field()
    dtypes: list[str] = field(
        default_factory=lambda: list(mm.DTYPES), metadata={"help": "of bf16, fp16, tf32, fp32, fp8"}
    )
    shapes: list[int | str] = field(
        default_factory=list,
        metadata={
            "help": "N or MxNxK each; the first is the dtype's metric; [] = 8192 on a GPU, 512 on the CPU"
        },
    )
    repeats: int = field(default=20, metadata={"help": "timed calls per case (>= 2)"})
    warmup: int = field(default=10, metadata={"help": "untimed calls per case"})
    warmup_s: float = field(
        default=0.0,
        metadata={"help": "seconds of untimed calls before the first case (> 1: sustained, power-capped)"},
    )
    sweep: bool = field(
        default=False, metadata={"help": "also sweep shapes for the best TFLOPS (MAMF-finder)"}
    )
    sweep_m: list[int] = field(
        default_factory=list,
        metadata={"help": "[start, stop, step] or [value]; [] = 4096..16384/4096 (CPU 256..1024/256)"},
    )
    sweep_n: list[int] = field(default_factory=list, metadata={"help": "as sweep_m"})
    sweep_k: list[int] = field(default_factory=list, metadata={"help": "as sweep_m"})
    sweep_repeats: int = field(default=5, metadata={"help": "timed calls per sweep shape (>= 2)"})
    implementations: list[str] = field(
        default_factory=list,
        metadata={
            "help": "of cublas, cublaslt (GPU), mm, onednn (CPU); [] = cublas on a GPU, mm and onednn "
            "(fp32) on the CPU; several are timed alternately and the faster is reported"
        },
    )
    flush_cache: bool = field(default=True, metadata={"help": "write 2x the L2/LLC before each call"})
    check_size: int = field(
        default=256, metadata={"help": "rows and columns of the output checked in float64"}
    )
    threads: int = field(default=0, metadata={"help": "CPU threads (CPU device); 0 = torch's default"})
    telemetry_interval: float = gp.telemetry_field()
    seed: int = field(default=0, metadata={"help": "seed of the random inputs"})

    def __post_init__(self) -> None:
        name = "gemm"
        gp.check_device(name, self.device)
        check(bool(self.dtypes), name, "dtypes", "expected at least one dtype")
        for d in self.dtypes:
            check(d in mm.DTYPES, name, "dtypes", f"unknown dtype {d!r}; known: {', '.join(mm.DTYPES)}")
        check(len(set(self.dtypes)) == len(self.dtypes), name, "dtypes", "a dtype is listed twice")
        for s in self.shapes:
            try:
                mm.parse_shape(s)
            except ValueError as exc:
                raise ParamError(name, "shapes", str(exc)) from None
        for key in ("sweep_m", "sweep_n", "sweep_k"):
            try:
                gm.parse_range(getattr(self, key), gm.GPU_SWEEP_RANGE)
            except ValueError as exc:
                raise ParamError(name, key, str(exc)) from None
        for impl in self.implementations:
            known = ", ".join(i for i in gm.IMPLEMENTATIONS if i != "scaled_mm")
            check(impl in gm.IMPLEMENTATIONS, name, "implementations", f"unknown {impl!r}; known: {known}")
        check(self.repeats >= 2, name, "repeats", f"must be >= 2, got {self.repeats}")
        check(self.sweep_repeats >= 2, name, "sweep_repeats", f"must be >= 2, got {self.sweep_repeats}")
        check(self.warmup >= 0, name, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.warmup_s >= 0, name, "warmup_s", f"must be >= 0, got {self.warmup_s}")
        check(self.check_size >= 1, name, "check_size", f"must be >= 1, got {self.check_size}")
        check(self.threads >= 0, name, "threads", f"must be >= 0, got {self.threads}")
        check(self.telemetry_interval >= 0, name, "telemetry_interval", "must be >= 0")


@dataclass(frozen=True)
class Case:
    """One timed dtype x shape: its samples (TFLOPS), the correctness check and what it used."""

    shape: mm.Shape
    tflops: list[float]
    check: dict[str, Any]
    sanity: str | None
    settings: dict[str, Any]
    #: the implementation the case reports: the fastest of those timed
    implementation: str = ""


def _calls(torch: Any, names: list[str], x: mm.Operand, w: mm.Operand) -> dict[str, Callable[[], Any]]:
    """The timed call of each implementation: y = x @ W^T."""
    from hpcbench.hw import cuda_only

    (a, _), (b, _) = x, w
    calls: dict[str, Callable[[], Any]] = {}
    for name in names:
        if name == "scaled_mm":
            calls[name] = lambda: mm.scaled_mm(torch, x, w)
        elif name == "onednn":
            am, bm = a.to_mkldnn(), b.to_mkldnn()  # oneDNN's own layout, made once (as a prepacked weight)
            calls[name] = lambda am=am, bm=bm: torch._C._nn.mkldnn_linear(am, bm)
        elif name == "mm":
            calls[name] = lambda: torch.mm(a, b.t())
        else:  # cublas, cublaslt
            calls[name] = cuda_only.through_blas(torch, name, lambda: torch.mm(a, b.t()))
    return calls


def has_onednn(torch: Any) -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch._C._nn, "mkldnn_linear")


def choose_implementations(torch: Any, rt: td.Runtime, dtype: str, requested: list[str]) -> list[str]:
    """The implementations to time for ``dtype`` on this runtime's device ([] = the defaults;
    gemm_math decides). cuBLASLt's presence is only probed when it is asked for: probing sets
    torch's preferred BLAS library, which torch warns about."""
    from hpcbench.hw import cuda_only

    cuda = rt.choice.is_cuda
    available = gm.implementations(
        rt.choice.kind,
        dtype,
        has_cublaslt=cuda and "cublaslt" in requested and cuda_only.has_cublaslt(torch),
        has_onednn=not cuda and has_onednn(torch),
    )
    return gm.select_implementations(available, requested)


def measure_case(
    torch: Any,
    rt: td.Runtime,
    dtype: str,
    shape: mm.Shape,
    *,
    repeats: int,
    warmup: int,
    warmup_s: float,
    flush: Any,
    check_size: int,
    seed: int,
    implementations: list[str] | None = None,
) -> Case:
    """Time one dtype x shape with each implementation (None: the device's defaults),
    alternated call by call, report the faster and verify every one's last output."""
    from contextlib import nullcontext

    from hpcbench.core.stats import fastest
    from hpcbench.hw import cuda_only
    from hpcbench.hw import torch_device as td

    names = implementations if implementations is not None else choose_implementations(torch, rt, dtype, [])
    gen = torch.Generator(device=rt.device).manual_seed(seed)
    x, w = mm.operands(torch, rt.device, dtype, shape, gen)
    calls = _calls(torch, names, x, w)
    precision: dict[str, Any] = {}
    ctx: Any = nullcontext(precision)
    if rt.choice.is_cuda and dtype in ("fp32", "tf32"):
        ctx = cuda_only.fp32_matmul(torch, tf32=dtype == "tf32")
    blas: Any = cuda_only.preferred_blas_restored(torch) if rt.choice.is_cuda else nullcontext()
    with torch.no_grad(), ctx as used, blas:
        seconds, outs = td.time_alternating(
            calls, rt.clock, warmup=warmup, repeats=repeats, flush=flush, warmup_s=warmup_s
        )
        precision = dict(used)
        reference = mm.Reference(torch, x, w, shape, check_size, seed)
        several = len(names) > 1
        checks = {n: reference.verify(torch, outs[n], dtype, n if several else None) for n in names}
    chosen = fastest(seconds, prefer=names[0])
    tflops = {name: [mm.tflops(shape, s) for s in seconds[name]] for name in names}
    checked = checks[chosen][0]
    reasons = [reason for _, reason in checks.values() if reason]
    settings: dict[str, Any] = {
        "op": f"{gm.IMPLEMENTATIONS[chosen]} ({x[0].dtype})",
        "implementation": chosen,
        "shape": shape.as_dict(),
        "flops_per_call": mm.gemm_flops(shape),
        "check": checked,
    }
    if several:
        settings["other_implementations_tflops"] = {n: tflops[n] for n in names if n != chosen}
    if precision:
        settings["precision"] = precision
    del x, w, outs, calls
    return Case(shape, tflops[chosen], checked, "; ".join(reasons) or None, settings, chosen)


def _shapes(params: GemmParams, rt: td.Runtime) -> list[mm.Shape]:
    if params.shapes:
        return [mm.parse_shape(s) for s in params.shapes]
    return [mm.parse_shape(gm.GPU_DEFAULT_SIZE if rt.choice.is_cuda else gm.CPU_DEFAULT_SIZE)]


def _sweep(params: GemmParams, rt: td.Runtime) -> list[mm.Shape]:
    default = gm.GPU_SWEEP_RANGE if rt.choice.is_cuda else gm.CPU_SWEEP_RANGE
    ms, ns, ks = (gm.parse_range(getattr(params, f"sweep_{d}"), default) for d in "mnk")
    return gm.sweep_shapes(ms, ns, ks)


class Gemm(GpuProbe):
    """GEMM TFLOPS per dtype (torch.mm, nn.Linear layout), float64-verified, with NVML telemetry."""

    name = "gemm"
    description = "GEMM throughput per dtype (TFLOPS, torch.mm in nn.Linear layout), verified in float64"
    Params = GemmParams
    metrics = MetricNames(
        (*mm.DTYPES, *(gm.sweep_metric(d) for d in mm.DTYPES), "<dtype>_<M>x<N>x<K>"),
        r"(bf16|fp16|tf32|fp32|fp8)(_sweep|_\d+x\d+x\d+)?",
    )

    def run(self, params: GemmParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.hw import torch_device as td

        opened, flush, common = gp.open_timed(params, ctx.inventory, LAYOUT, self.clock)
        torch, rt, todo = opened.torch, opened.rt, opened.dtypes
        shapes = _shapes(params, rt)
        sweep = _sweep(params, rt) if params.sweep else []
        impls = {d: choose_implementations(torch, rt, d, params.implementations) for d in todo}
        common = {
            **common,
            "reference": "float64 on the CPU, random block of check_size rows x columns",
            "statistic": gp.STATISTIC,
        }
        if rt.choice.is_cuda:
            from hpcbench.hw import cuda_only

            common["cublas"] = cuda_only.reduced_precision_flags(torch)
        unfit = [sh for sh in shapes if "fp8" in todo and not mm.fp8_fits(sh)]
        if unfit:
            common["skipped_shapes"] = {f"fp8 {sh.label}": "not a multiple of 16" for sh in unfit}
        out: list[Measurement] = []
        warm = params.warmup_s
        with td.sampler(rt, params.telemetry_interval) as sampler:
            for dtype in todo:
                for i, shape in enumerate(shapes):
                    if dtype == "fp8" and not mm.fp8_fits(shape):
                        continue  # named in common["skipped_shapes"]
                    t0 = time.monotonic()
                    case = measure_case(
                        torch,
                        rt,
                        dtype,
                        shape,
                        repeats=params.repeats,
                        warmup=params.warmup,
                        warmup_s=warm,
                        flush=flush,
                        check_size=params.check_size,
                        seed=params.seed + i,
                        implementations=impls[dtype],
                    )
                    warm = 0.0
                    tel = sampler.summary(t0, time.monotonic())
                    out.append(
                        self._measurement(gm.metric_name(dtype, shape, i == 0), dtype, case, ctx, common, tel)
                    )
                if sweep:
                    args = (sweep, params, impls[dtype], flush, sampler, ctx, common)
                    out.append(self._sweep(torch, rt, dtype, *args))
        return out

    def _sweep(
        self,
        torch: Any,
        rt: td.Runtime,
        dtype: str,
        shapes: list[mm.Shape],
        params: GemmParams,
        impls: list[str],
        flush: Any,
        sampler: Any,
        ctx: ProbeContext,
        common: dict[str, Any],
    ) -> Measurement:
        import statistics

        t0 = time.monotonic()
        table: list[dict[str, Any]] = []
        best: Case | None = None
        wrong: list[str] = []
        for j, shape in enumerate(s for s in shapes if dtype != "fp8" or mm.fp8_fits(s)):
            case = measure_case(
                torch,
                rt,
                dtype,
                shape,
                repeats=params.sweep_repeats,
                warmup=params.warmup,
                warmup_s=0.0,
                flush=flush,
                check_size=min(params.check_size, 64),
                seed=params.seed + 1000 + j,
                implementations=impls,
            )
            median = statistics.median(case.tflops)
            table.append(
                {
                    "shape": shape.label,
                    "median": float(f"{median:.6g}"),
                    "best": float(f"{max(case.tflops):.6g}"),
                    "implementation": case.implementation,
                }
            )
            if case.sanity:
                wrong.append(case.sanity)
            if best is None or median > statistics.median(best.tflops):
                best = case
        if best is None:
            raise ProbeSkip(f"{dtype}: no sweep shape is a multiple of 16 (fp8)")
        extra = {"sweep": {"shapes": len(table), "best_shape": best.shape.label, "table": table}}
        sanity = (
            "; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
            if wrong
            else None
        )
        case = Case(best.shape, best.tflops, best.check, sanity, {**best.settings, **extra})
        tel = sampler.summary(t0, time.monotonic())
        return self._measurement(gm.sweep_metric(dtype), dtype, case, ctx, common, tel)

    @staticmethod
    def _measurement(
        metric: str, dtype: str, case: Case, ctx: ProbeContext, common: dict[str, Any], tel: dict[str, Any]
    ) -> Measurement:
        from hpcbench.core.measurement import Conditions, Measurement
        from hpcbench.hw.telemetry import throttle_hint

        return Measurement.from_samples(
            metric,
            case.tflops,
            "TFLOPS",
            ctx.subject,
            statistic="median",
            convention=CONVENTION,
            settings={**common, "dtype": dtype, **case.settings, "telemetry": tel},
            sanity=case.sanity,
            conditions=Conditions(gpu_clocks_held=throttle_hint(tel)),
        )
