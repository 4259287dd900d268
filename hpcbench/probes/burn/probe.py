"""Burn-in: sustained GEMM on a GPU (every GPU at once under ``expand = "gpu"``) or the CPU for
``duration_s``, watching for wrong bits, throughput that sags or droops, throttling and errors.

- **Silent data corruption.** Inputs are seeded and fixed; cuBLAS runs deterministically
  (``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before CUDA starts, ``torch.use_deterministic_algorithms``),
  so every output must equal the first bit for bit. Every ``verify_every_s`` (and at the end) the
  latest output is compared with the first (``calc.compare``); the first is checked once against
  float64 on a block (as gemm does) and its sha256 recorded, which the checks compare across the
  GPUs of one model (the odd one out by majority). Any difference sets ``sanity``: a FAIL of its own.
- **Stability.** Throughput per ``window_s`` window; sustained TFLOPS (median of the windows after
  the warm-up), stability (worst / median) and droop (last span / first span): ``calc``.
- **Telemetry** (GPU): SM clock, temperature and its slope, power, seconds in each throttle reason;
  ECC, row-remapping and PCIe replay counters and XIDs before and after (``watch``).
- **Host load** (``host_load``): the CPUs not feeding a GPU loop STREAM triad and GEMM (``hostload``).

A window's progress line goes to the runner (``report_progress``); the probe prints nothing.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hpcbench.core.errors import ParamError, ProbeError
from hpcbench.core.measurement import Conditions, Consensus, Measurement, Unmeasured
from hpcbench.hw import gpu_probe as gp
from hpcbench.hw import matmul as mm
from hpcbench.probes.base import GpuProbe, MetricNames, ProbeContext, check, report_progress
from hpcbench.probes.burn import calc

if TYPE_CHECKING:  # what run() uses is imported there: `hpcbench list` reads only the header and Params
    from hpcbench.hw import torch_device as td
    from hpcbench.node.inventory import Inventory
    from hpcbench.probes.burn import loop
    from hpcbench.probes.burn.watch import Watch

NAME = "burn"
GPU_DEFAULT_SIZE = 8192
CPU_DEFAULT_SIZE = 1024
#: what the check's timeout must leave beyond duration_s (torch and CUDA start, the first output's
#: float64 check and digest, the counters and the kernel log after)
SETUP_S = 60.0
CUBLAS_WORKSPACE = ":4096:8"
CONVENTION = (
    "2*m*n*k FLOPs per GEMM (MAMF-finder); TFLOPS = 1e12 FLOP/s; median of the windows after the warm-up"
)


@dataclass(frozen=True)
class BurnParams:
    device: int | str = gp.device_field()
    dtype: str = field(default="bf16", metadata={"help": "of bf16, fp16, tf32, fp32, fp8"})
    shape: int | str = field(
        default="auto", metadata={"help": "N or MxNxK; auto = 8192 on a GPU, 1024 on the CPU"}
    )
    duration_s: float = field(default=60.0, metadata={"help": "seconds of sustained GEMM (>= 3 windows)"})
    window_s: float = field(default=10.0, metadata={"help": "seconds per throughput window"})
    verify_every_s: float = field(
        default=5.0,
        metadata={"help": "compare the latest output with the first every so many seconds; 0 = every GEMM"},
    )
    check_size: int = field(
        default=256, metadata={"help": "rows and columns of the first output checked in float64"}
    )
    host_load: bool = field(
        default=False, metadata={"help": "run STREAM triad and GEMM loops on the CPUs not feeding a GPU"}
    )
    host_load_mib: int = field(default=96, metadata={"help": "MiB of triad arrays per host-load CPU"})
    threads: int = field(
        default=0, metadata={"help": "CPU threads (CPU device); 0 = all, or half with host_load"}
    )
    telemetry_interval: float = gp.telemetry_field(0.2)
    kernel_log: str = field(
        default="auto",
        metadata={"help": "XID source: auto (journalctl, else dmesg), journalctl, dmesg, none, or a file"},
    )
    xid_ignore: list[int] = field(
        default_factory=list,
        metadata={"help": "XIDs not counted; [] = every XID (the GPU is the burn's alone)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the fixed inputs"})

    def __post_init__(self) -> None:
        gp.check_device(NAME, self.device)
        check(
            self.dtype in mm.DTYPES, NAME, "dtype", f"unknown {self.dtype!r}; known: {', '.join(mm.DTYPES)}"
        )
        if self.shape != "auto":
            try:
                shape = mm.parse_shape(self.shape)
            except ValueError as exc:
                raise ParamError(NAME, "shape", str(exc)) from None
            if self.dtype == "fp8":
                check(mm.fp8_fits(shape), NAME, "shape", f"fp8 needs multiples of 16, got {shape.label}")
        check(self.window_s > 0, NAME, "window_s", f"must be > 0, got {self.window_s}")
        check(
            self.duration_s >= 3 * self.window_s,
            NAME,
            "duration_s",
            f"must be at least 3 windows ({3 * self.window_s:g} s), got {self.duration_s:g}",
        )
        check(self.verify_every_s >= 0, NAME, "verify_every_s", f"must be >= 0, got {self.verify_every_s}")
        check(self.check_size >= 1, NAME, "check_size", f"must be >= 1, got {self.check_size}")
        check(self.host_load_mib >= 1, NAME, "host_load_mib", f"must be >= 1, got {self.host_load_mib}")
        check(self.threads >= 0, NAME, "threads", f"must be >= 0, got {self.threads}")
        check(self.telemetry_interval >= 0, NAME, "telemetry_interval", "must be >= 0")
        check(bool(self.kernel_log.strip()), NAME, "kernel_log", "must not be empty")
        check(all(c >= 0 for c in self.xid_ignore), NAME, "xid_ignore", "XIDs are >= 0")


def make_step(torch: Any, rt: td.Runtime, dtype: str, x: mm.Operand, w: mm.Operand, shape: mm.Shape) -> Any:
    """One GEMM, y = x @ W^T, into the same output every time (fp8: torch._scaled_mm's own)."""
    if dtype == "fp8":
        return lambda: mm.scaled_mm(torch, x, w)
    (a, _), (b, _) = x, w
    y = torch.empty(shape.m, shape.n, dtype=a.dtype, device=rt.device)
    bt = b.t()

    def step() -> Any:
        return torch.mm(a, bt, out=y)

    return step


def digest(torch: Any, tensor: Any) -> str:
    """sha256 of a tensor's bytes (row-major), as the GPUs of one model must all compute them."""
    import hashlib

    raw = tensor.contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
    return hashlib.sha256(raw.tobytes()).hexdigest()


def _plan(params: BurnParams, rt: td.Runtime, inventory: Inventory) -> tuple[int, list[int]]:
    """(the burn's CPU threads on the CPU device, 0 on a GPU; the CPUs of this child's host load)."""
    allowed = sorted(os.sched_getaffinity(0))
    if rt.choice.is_cuda:
        indices = sorted(d.index for d in inventory.gpus.devices)
        mine = rt.choice.nvml_index
        share, shares = (indices.index(mine), len(indices)) if mine in indices else (0, 1)
        cpus = calc.host_load_cpus(allowed, shares, share, shares) if params.host_load else []
        return 0, cpus
    threads = params.threads or (max(1, len(allowed) // 2) if params.host_load else len(allowed))
    return threads, calc.host_load_cpus(allowed, threads, 0, 1) if params.host_load else []


class Burn(GpuProbe):
    """Sustained GEMM for minutes: silent data corruption, throughput stability, throttling, errors."""

    name = NAME
    description = (
        "Burn-in: sustained GEMM per GPU, bit-for-bit output checks, stability, droop, throttling, errors"
    )
    Params = BurnParams
    metrics = MetricNames(
        (*(f"{d}_sustained" for d in mm.DTYPES), "stability", "droop", *calc.WATCH_METRICS),
        r"(bf16|fp16|tf32|fp32|fp8)_sustained",
    )

    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml  # None: pynvml (tests inject a fake)

    def run(self, params: BurnParams, ctx: ProbeContext) -> list[Measurement]:
        if ctx.timeout and params.duration_s + SETUP_S > ctx.timeout:
            raise ProbeError(
                f"duration_s {params.duration_s:g} s does not fit in the check's timeout "
                f"of {ctx.timeout:g} s",
                hint=f"raise the timeout to at least {params.duration_s + SETUP_S:g} s "
                f"(duration + {SETUP_S:g} s to start, verify and read the counters)",
            )
        inventory = ctx.inventory
        opened = gp.open_device(
            params.device,
            inventory,
            dtypes=[params.dtype],
            environ={"CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE},  # cuBLAS deterministic
        )
        torch, rt = opened.torch, opened.rt
        threads, load_cpus = _plan(params, rt, inventory)
        if threads:
            torch.set_num_threads(threads)
        size = GPU_DEFAULT_SIZE if rt.choice.is_cuda else CPU_DEFAULT_SIZE
        shape = mm.parse_shape(size if params.shape == "auto" else params.shape)
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            return self._burn(torch, rt, params, ctx, shape, load_cpus)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)

    def _watch(self, rt: td.Runtime, params: BurnParams, inventory: Inventory) -> Watch:
        from hpcbench.probes.burn.watch import Watch

        index = rt.choice.nvml_index if rt.choice.is_cuda else None
        bus = next((d.pci_bus_id for d in inventory.gpus.devices if d.index == index), None)
        why = (
            "the CPU device has no NVML telemetry"
            if not rt.choice.is_cuda
            else "GPU not in the NVML inventory"
        )
        return Watch(
            index,
            bus,
            interval=params.telemetry_interval,
            kernel_log=params.kernel_log,
            xid_ignore=tuple(params.xid_ignore),
            nvml=self.nvml,
            why_none=why,
        )

    def _burn(
        self,
        torch: Any,
        rt: td.Runtime,
        params: BurnParams,
        ctx: ProbeContext,
        shape: mm.Shape,
        load_cpus: list[int],
    ) -> list[Measurement]:
        import time

        from hpcbench.hw import cuda_only
        from hpcbench.probes.burn import hostload, loop

        dtype = params.dtype
        flops = mm.gemm_flops(shape)
        gen = torch.Generator(device=rt.device).manual_seed(params.seed)
        precision: Any = nullcontext({})
        if rt.choice.is_cuda and dtype in ("fp32", "tf32"):
            precision = cuda_only.fp32_matmul(torch, tf32=dtype == "tf32")
        watch = self._watch(rt, params, ctx.inventory)
        per_window: dict[int, dict[str, float]] = {}
        with torch.no_grad(), precision as used:
            x, w = mm.operands(torch, rt.device, dtype, shape, gen)
            step = make_step(torch, rt, dtype, x, w, shape)
            watch.begin()
            reference = step().clone()
            rt.clock.settle()
            first_digest = digest(torch, reference)
            first_check, first_wrong = mm.Reference(
                torch, x, w, shape, params.check_size, params.seed
            ).verify(torch, reference, dtype, what=NAME)
            load = (
                hostload.start(load_cpus, params.duration_s, params.host_load_mib, ctx.workdir)
                if load_cpus
                else None
            )
            started = time.monotonic()

            def on_window(win: calc.Window) -> None:
                per_window[win.index] = watch.window(started + win.start, started + win.end)
                report_progress(ctx, progress_line(win, params.duration_s, per_window[win.index]))

            try:
                result = loop.run(
                    step,
                    lambda out: calc.compare(torch, reference, out),
                    duration_s=params.duration_s,
                    window_s=params.window_s,
                    verify_every_s=params.verify_every_s,
                    flops_per_iteration=flops,
                    settle=rt.clock.settle,
                    on_window=on_window,
                    started=started,
                )
            finally:
                host = load.stop() if load is not None else None
                watch.end()
            ended = started + result.seconds
            precision_used = dict(used)
        return self._measurements(
            rt, params, ctx, shape, result, watch, started, ended,
            first=(first_digest, first_check, first_wrong), per_window=per_window,
            host=host, load_cpus=load_cpus, precision=precision_used,
        )  # fmt: skip

    def _measurements(
        self,
        rt: td.Runtime,
        params: BurnParams,
        ctx: ProbeContext,
        shape: mm.Shape,
        result: loop.LoopResult,
        watch: Watch,
        started: float,
        ended: float,
        *,
        first: tuple[str, dict[str, Any], str | None],
        per_window: dict[int, dict[str, float]],
        host: dict[str, Any] | None,
        load_cpus: list[int],
        precision: dict[str, Any],
    ) -> list[Measurement]:
        from hpcbench.core.items import to_measurements
        from hpcbench.hw.telemetry import throttle_hint

        first_digest, first_check, first_wrong = first
        dtype, subject = params.dtype, ctx.subject
        st = calc.stability(result.windows, params.duration_s)
        corrupt = calc.corruption_reason(subject, result.corruptions, result.verifications, shape.n)
        sanity = "; ".join(r for r in (first_wrong, corrupt) if r) or None
        windows = [{**w.as_dict(), **per_window.get(w.index, {})} for w in result.windows]
        common: dict[str, Any] = {
            "device": rt.info,
            "dtype": dtype,
            "shape": shape.as_dict(),
            "flops_per_iteration": mm.gemm_flops(shape),
            "duration_s": params.duration_s,
            "window_s": params.window_s,
            "seed": params.seed,
            "timer": "time.monotonic around batches, after the device finished them",
        }
        if precision:
            common["precision"] = precision
        model = str(rt.info.get("name") or "cpu")
        verification = {
            "bit_for_bit": "every output against the first, elementwise on its bits",
            "verify_every_s": params.verify_every_s,
            "verifications": result.verifications,
            "corruptions": [c.as_dict(shape.n) for c in result.corruptions[:20]],
            "first_output_float64": first_check,
            "first_output_sha256": first_digest,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "deterministic_algorithms": True,
        }
        warm = calc.span(params.duration_s)
        main_settings: dict[str, Any] = {
            **common,
            **watch.settings(started, ended),
            "iterations": result.iterations,
            "seconds": round(result.seconds, 3),
            "windows": windows,
            "sustained_windows": [i + 1 for i in st.sustained_windows],
            "warmup_s": round(warm, 3),
            "verification": verification,
            "host_load": host if host is not None else {"cpus": 0, "requested": params.host_load},
        }
        items = (
            watch.items(started, ended) if watch.active else (watch.unwatched() if rt.choice.is_cuda else [])
        )
        worst = result.windows[st.worst_window]
        out: list[Measurement | Unmeasured] = [
            Measurement.from_samples(
                f"{dtype}_sustained",
                [result.windows[i].tflops for i in st.sustained_windows],
                "TFLOPS",
                subject,
                statistic="median",
                convention=CONVENTION,
                settings=main_settings,
                sanity=sanity,
                detail=f"sustained {st.sustained:.4g} TFLOPS: median of windows {st.sustained_windows[0] + 1}"
                f"-{st.sustained_windows[-1] + 1} (after the first {warm:.0f} s)",
                consensus=Consensus(
                    name="first_output_sha256",
                    value=first_digest,
                    group=f"{model} {dtype} {shape.label} seed {params.seed}",
                    what="the sha256 of the first output",
                ),
                conditions=Conditions(gpu_clocks_held=throttle_hint(main_settings.get("telemetry"))),
            ),
            Measurement.from_samples(
                "stability",
                [st.stability],
                "ratio",
                subject,
                convention="worst window / median window, after the warm-up",
                detail=f"worst window {worst.index + 1} ({worst.start:.0f}-{worst.end:.0f} s) "
                f"{worst.tflops:.4g} TFLOPS against the median {st.sustained:.4g}",
            ),
        ]
        if st.droop is not None:
            first_rate = calc.rate([result.windows[i] for i in st.first_windows])
            last_rate = calc.rate([result.windows[i] for i in st.last_windows])
            out.append(
                Measurement.from_samples(
                    "droop",
                    [st.droop],
                    "ratio",
                    subject,
                    convention=f"TFLOPS over the last {warm:.0f} s / over the first {warm:.0f} s",
                    detail=f"last {warm:.0f} s {last_rate:.4g} TFLOPS against the first "
                    f"{warm:.0f} s {first_rate:.4g}",
                    settings={
                        "first_windows": [i + 1 for i in st.first_windows],
                        "last_windows": [i + 1 for i in st.last_windows],
                    },
                )
            )
        advised = [
            replace(i, warnings=(calc.ADVICE[i.metric],)) if i.metric in calc.ADVICE else i for i in items
        ]
        return out + to_measurements(
            advised, subject, {}, lambda m: "kernel log" if m == "xid_new" else "NVML"
        )


def progress_line(win: calc.Window, duration_s: float, tel: dict[str, float]) -> str:
    """``window 12 (110-120 s of 600): 768.2 TFLOPS, SM 1515 MHz, 64 C, 698 W``."""
    text = f"window {win.index + 1} ({win.start:.0f}-{win.end:.0f} s of {duration_s:.0f})"
    text += f": {win.tflops:.4g} TFLOPS"
    if "sm_clock_median_mhz" in tel:
        text += f", SM {tel['sm_clock_median_mhz']:.0f} MHz"
    if "temperature_max_c" in tel:
        text += f", {tel['temperature_max_c']:.0f} C"
    if "power_median_w" in tel:
        text += f", {tel['power_median_w']:.0f} W"
    return text
