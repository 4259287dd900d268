"""Burn-in: sustained GEMM on a GPU (every GPU at once under ``expand = "gpu"``) or the CPU for
``duration_s``, watching for wrong bits, throughput that sags or droops, throttling and errors.

- **Silent data corruption.** Inputs are seeded and fixed; cuBLAS runs deterministically
  (``hw.determinism``: tunable ops off, a valid ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts,
  ``torch.use_deterministic_algorithms``; fp8 without the NaN fill of fresh outputs),
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
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ParamError, ProbeError, ProbeSkip
from hpcbench.hw import gpu_probe as gp
from hpcbench.hw import matmul as mm

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw import torch_device as td
    from hpcbench.node.inventory import Inventory
    from hpcbench.probes.burn import loop
    from hpcbench.probes.burn.watch import Watch

from hpcbench.probes.base import GpuProbe, MetricNames, ProbeContext, check, report_progress
from hpcbench.probes.burn import calc

NAME = "burn"
GPU_DEFAULT_SIZE = 8192
CPU_DEFAULT_SIZE = 1024
#: untimed GEMMs before the timed run on a GPU: out of the idle it spent in the float64 check
#: (nvml.h: HW slowdown "may also be reported during PState or clock change") to its power cap
GPU_WARMUP_S = 10.0
#: what the check's timeout must leave beyond duration_s (torch and CUDA start, the first output's
#: float64 check and digest, the counters and the kernel log after)
SETUP_S = 60.0
CONVENTION = (
    "2*m*n*k FLOPs per GEMM (MAMF-finder); TFLOPS = 1e12 FLOP/s; median of the windows after the warm-up"
)


@dataclass(frozen=True)
class BurnParams:
    device: int | str = field(
        default="auto", metadata={"help": "auto (GPU 0, else CPU), cpu, or a GPU index (hpcbench inventory)"}
    )
    dtype: str = field(default="bf16", metadata={"help": "of bf16, fp16, tf32, fp32, fp8"})
    shape: int | str = field(
        default="auto", metadata={"help": "N or MxNxK; auto = 8192 on a GPU, 1024 on the CPU"}
    )
    duration_s: float = field(default=60.0, metadata={"help": "seconds of sustained GEMM (>= 3 windows)"})
    window_s: float = field(default=10.0, metadata={"help": "seconds per throughput window"})
    warmup_s: float | str = field(
        default="auto",
        metadata={
            "help": "seconds of untimed GEMMs before the timed run (clocks and power settle); "
            f"auto = {GPU_WARMUP_S:g} on a GPU, 0 on the CPU"
        },
    )
    verify_every_s: float = field(
        default=5.0,
        metadata={"help": "compare the latest output with the first every so many seconds; 0 = every GEMM"},
    )
    every_output: bool = field(
        default=True,
        metadata={"help": "sum every output's bits on the device against the first's (checksum.py)"},
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
    telemetry_interval: float = field(default=0.2, metadata={"help": "NVML sampling period, s; 0 = off"})
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
        problem = gp.check_device_param(self.device)
        check(problem is None, NAME, "device", problem or "")
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
        check(
            self.warmup_s == "auto" or (isinstance(self.warmup_s, int | float) and self.warmup_s >= 0),
            NAME,
            "warmup_s",
            f"auto or seconds >= 0, got {self.warmup_s!r}",
        )
        check(self.check_size >= 1, NAME, "check_size", f"must be >= 1, got {self.check_size}")
        check(self.host_load_mib >= 1, NAME, "host_load_mib", f"must be >= 1, got {self.host_load_mib}")
        check(self.threads >= 0, NAME, "threads", f"must be >= 0, got {self.threads}")
        check(self.telemetry_interval >= 0, NAME, "telemetry_interval", "must be >= 0")
        check(bool(self.kernel_log.strip()), NAME, "kernel_log", "must not be empty")
        check(all(c >= 0 for c in self.xid_ignore), NAME, "xid_ignore", "XIDs are >= 0")


def warmup_seconds(params: BurnParams, is_cuda: bool) -> float:
    """The untimed warm-up of this run: ``warmup_s``, auto = ``GPU_WARMUP_S`` on a GPU, 0 on the CPU."""
    if params.warmup_s == "auto":
        return GPU_WARMUP_S if is_cuda else 0.0
    return float(params.warmup_s)


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


def _plan(
    params: BurnParams, rt: td.Runtime, inventory: Inventory, nvml: Any = None
) -> tuple[int, list[int], dict[str, Any]]:
    """(the burn's CPU threads on the CPU device, 0 on a GPU; the CPUs of this child's host load;
    on a GPU, where its process runs: ``hw.placement``, its GPU's NUMA cores and their siblings)."""
    from hpcbench.hw import placement

    allowed = sorted(os.sched_getaffinity(0))
    if rt.choice.is_cuda:
        indices = sorted(d.index for d in inventory.gpus.devices)
        mine = rt.choice.nvml_index
        near: dict[int, list[int]] = {}
        try:
            near = placement.near_cpus(nvml, indices, max(os.cpu_count() or 1, 1024))
        except ImportError:
            pass
        except Exception as exc:  # pynvml's NVMLError subclasses: no affinity, any CPU
            if not type(exc).__name__.startswith("NVMLError"):
                raise
        plan = placement.place(allowed, indices, near, placement.thread_siblings(cpus=allowed))
        if mine not in plan:
            return 0, calc.host_load_cpus(allowed, 1, 0, 1) if params.host_load else [], {}
        own = plan[mine]
        return 0, list(own.load) if params.host_load else [], own.as_dict()
    threads = params.threads or (max(1, len(allowed) // 2) if params.host_load else len(allowed))
    return threads, calc.host_load_cpus(allowed, threads, 0, 1) if params.host_load else [], {}


class Burn(GpuProbe):
    """Sustained GEMM for minutes: silent data corruption, throughput stability, throttling, errors."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Burn-in: sustained GEMM per GPU, bit-for-bit output checks, stability, droop, throttling, errors"
    )
    Params: ClassVar[type] = BurnParams
    metrics: ClassVar[tuple[str, ...]] = MetricNames(
        (*(f"{d}_sustained" for d in mm.DTYPES), "stability", "droop", *calc.WATCH_METRICS),
        r"(bf16|fp16|tf32|fp32|fp8)_sustained",
    )

    def __init__(self, nvml: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.nvml = nvml  # None: pynvml (tests inject a fake)
        self.clock = clock  # of the timed run, its windows and the telemetry (tests pass a fixed one)

    def run(self, params: BurnParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.hw import determinism
        from hpcbench.hw import torch_device as td

        warm = warmup_seconds(params, params.device != "cpu")  # auto: a GPU's unless told the CPU
        if ctx.timeout and params.duration_s + warm + SETUP_S > ctx.timeout:
            also = f" (and {warm:g} s of warm-up)" if warm else ""
            raise ProbeError(
                f"duration_s {params.duration_s:g} s{also} does not fit in the "
                f"check's timeout of {ctx.timeout:g} s",
                hint=f"raise the timeout to at least {params.duration_s + warm + SETUP_S:g} s "
                f"(duration + warm-up + {SETUP_S:g} s to start, verify and read the counters)",
            )
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # before CUDA starts
        environment = determinism.enforce()  # tunable ops off, a valid cuBLAS workspace (and what was)
        import torch

        inventory = ctx.inventory
        rt = td.prepare(torch, params.device, inventory)
        skipped = td.unsupported_dtypes(torch, rt, [params.dtype])
        if skipped:
            raise ProbeSkip(skipped[params.dtype])
        threads, load_cpus, placed = _plan(params, rt, inventory, self.nvml)
        affinity = os.sched_getaffinity(0)
        if placed.get("affinity"):
            os.sched_setaffinity(0, placed["affinity"])  # this GPU's feeder on cores of its NUMA node
        if threads:
            torch.set_num_threads(threads)
        size = GPU_DEFAULT_SIZE if rt.choice.is_cuda else CPU_DEFAULT_SIZE
        shape = mm.parse_shape(size if params.shape == "auto" else params.shape)
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        import torch.utils.deterministic as det

        was_filling = det.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True)
        # fp8: _scaled_mm allocates a fresh output per call, which deterministic mode would fill with
        # NaN first (a hidden pass over every output); every element is written by the GEMM anyway
        det.fill_uninitialized_memory = params.dtype != "fp8"
        try:
            out = self._burn(torch, rt, params, ctx, shape, load_cpus)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            det.fill_uninitialized_memory = was_filling
            os.sched_setaffinity(0, affinity)
        if placed:
            out[0].settings["placement"] = placed
        kept = out[0].settings.setdefault("verification", {})
        kept.update(environment=environment, fill_uninitialized_memory=params.dtype != "fp8")
        return out

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
            clock=self.clock,
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

        from hpcbench.hw import counter_watch, cuda_only
        from hpcbench.probes.burn import checksum, faults, hostload, loop

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
            warmup = warmup_seconds(params, rt.choice.is_cuda)
            load = (
                hostload.start(load_cpus, warmup + params.duration_s, params.host_load_mib, ctx.workdir)
                if load_cpus
                else None
            )
            sums = checksum.OutputChecksum(torch, reference) if params.every_output else None
            started, warmed, fault = self.clock(), 0, None

            def on_window(win: calc.Window) -> None:
                per_window[win.index] = watch.window(started + win.start, started + win.end)
                report_progress(ctx, progress_line(win, params.duration_s, per_window[win.index]))

            try:
                warmed = (
                    loop.warm(step, warmup, clock=self.clock, settle=rt.clock.settle) if warmup > 0 else 0
                )
                watch.timed()  # the throttle counters at the start of the timed run
                started = self.clock()
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
                    clock=self.clock,
                    each=sums.add if sums is not None else None,
                    flipped=sums.read if sums is not None else None,
                )
            except RuntimeError as exc:  # a CUDA error: the GPU, or the code? the counters tell
                if not counter_watch.is_cuda_error(exc):
                    raise
                fault = exc
            finally:
                host = load.stop() if load is not None else None
                watch.end()
            if fault is not None:
                return faults.measurements(
                    rt.info,
                    params.dtype,
                    params.duration_s,
                    ctx.subject,
                    watch,
                    started,
                    self.clock(),
                    fault,
                    CONVENTION,
                )
            ended = started + result.seconds
            precision_used = dict(used)
        return self._measurements(
            rt, params, ctx, shape, result, watch, started, ended,
            first=(first_digest, first_check, first_wrong), per_window=per_window,
            host=host, load_cpus=load_cpus, precision=precision_used, warmup=(warmup, warmed),
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
        warmup: tuple[float, int] = (0.0, 0),
    ) -> list[Measurement]:
        from hpcbench.core.measurement import Conditions, Consensus, Measurement
        from hpcbench.hw.telemetry import throttle_hint
        from hpcbench.probes.burn import checksum, faults

        first_digest, first_check, first_wrong = first
        dtype, subject = params.dtype, ctx.subject
        st = calc.stability(result.windows, params.duration_s)
        corrupt = calc.corruption_reason(subject, result.corruptions, result.verifications, shape.n)
        named = {c.iteration for c in result.corruptions}  # the one wrong output the full compare named
        unnamed = [f for f in result.flips if f.outputs > 1 or f.last_iteration not in named]
        flips = checksum.flips_reason(subject, unnamed, result.checked_outputs)
        sanity = "; ".join(r for r in (first_wrong, corrupt, flips) if r) or None
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
            "every_output": {
                "method": "int64 sum of each output's bits against the first output's, on the device, "
                "counted there and read at each verify point",
                "checked": result.checked_outputs,
                "flip_windows": [f.as_dict() for f in result.flips[:20]],
            }
            if params.every_output
            else "off (every_output = false)",
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
            "untimed_warmup": {"seconds": warmup[0], "iterations": warmup[1]},
            "verification": verification,
            "host_load": host if host is not None else {"cpus": 0, "requested": params.host_load},
        }
        items = (
            watch.items(started, ended) if watch.active else (watch.unwatched() if rt.choice.is_cuda else [])
        )
        worst = result.windows[st.worst_window]
        out = [
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
                conditions=Conditions(gpu_clocks_held=throttle_hint(watch.telemetry_summary(started, ended))),
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
                    convention=f"TFLOPS over the last {warm:.0f} s / over the {warm:.0f} s after the "
                    f"first {warm:.0f} s (the warm-up)",
                    detail=f"last {warm:.0f} s {last_rate:.4g} TFLOPS against {first_rate:.4g} in "
                    f"the {warm:.0f} s after the warm-up",
                    settings={
                        "first_windows": [i + 1 for i in st.first_windows],
                        "last_windows": [i + 1 for i in st.last_windows],
                    },
                )
            )
        return out + faults.watch_measurements(items, subject)


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
