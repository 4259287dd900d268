"""GPU memory (HBM) bandwidth: a device-to-device copy and a STREAM triad on one GPU.

Three float32 buffers, each far larger than the L2 cache (8 x L2, at least 1 GiB, as
the device properties say), the sources random. ``copy``: ``b = a`` (torch's copy_,
cudaMemcpyAsync device-to-device); ``triad``: ``c = a + s * b`` (s = 3). Each call is
timed with CUDA events; bytes are counted as STREAM counts them, read plus written: 2
buffers for copy, 3 for triad; GB/s is 1e9 B/s. The checked value is the best sample
(STREAM and BabelStream report the best), the median and every sample are kept.

The theoretical peak comes from NVML: max memory clock x bus width x 2 (double data
rate), recorded in the settings with each metric's fraction of it.

The result is verified after timing: the copy must equal its source everywhere, and
sampled triad outputs must match a float64 recomputation on the CPU. The same code runs
on the CPU device (``device = "cpu"``), which is how the tests exercise it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.hw import gpu_probe as gp
from hpcbench.probes.base import GpuProbe, ProbeContext, Requirement, check

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw.torch_device import Clock

NAME = "gpu_membw"
KERNELS = ("copy", "triad")
#: buffers read plus written per element (STREAM's counting)
BUFFERS_MOVED = {"copy": 2, "triad": 3}
ITEMSIZE = 4  # float32
SCALAR = 3.0
#: default buffer: this many times the L2 cache, and at least MIN_BUFFER_BYTES
L2_MULTIPLE = 8
MIN_BUFFER_BYTES = 2**30
#: the three buffers take at most this fraction of the free device memory
FREE_FRACTION = 0.5
ALIGN = 2 * 2**20
VERIFY_SAMPLES = 2**20
CONVENTION = "STREAM (bytes read + written, GB/s = 1e9 B/s)"


def buffer_bytes(cache_bytes: int | None, free_bytes: int | None, requested_mib: int = 0) -> int:
    """Bytes per buffer: the requested size, else 8 x the L2 cache and at least 1 GiB,
    capped so that the three buffers take at most half of the free memory."""
    if requested_mib:
        return requested_mib * 2**20
    size = max(L2_MULTIPLE * (cache_bytes or 0), MIN_BUFFER_BYTES)
    if free_bytes:
        size = min(size, int(free_bytes * FREE_FRACTION / 3))
    return max(ALIGN, size // ALIGN * ALIGN)


def moved_bytes(kernel: str, n: int) -> int:
    return BUFFERS_MOVED[kernel] * ITEMSIZE * n


@dataclass(frozen=True)
class GpuMembwParams:
    device: int | str = gp.device_field(
        "GPU index (NVML's), 'auto' (GPU 0) or 'cpu' (same kernels, for tests)"
    )
    buffer_mib: int = field(default=0, metadata={"help": "MiB per buffer; 0 = 8 x L2 cache, at least 1 GiB"})
    repeats: int = field(default=20, metadata={"help": "timed calls of each kernel (>= 2)"})
    warmup: int = field(default=5, metadata={"help": "untimed calls of each kernel first"})
    telemetry_interval: float = gp.telemetry_field()

    def __post_init__(self) -> None:
        gp.check_device(NAME, self.device)
        check(self.buffer_mib >= 0, NAME, "buffer_mib", f"must be >= 0 (0 = auto), got {self.buffer_mib}")
        check(self.repeats >= 2, NAME, "repeats", f"must be >= 2, got {self.repeats}")
        check(self.warmup >= 0, NAME, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.telemetry_interval >= 0, NAME, "telemetry_interval", "must be >= 0")


def verify(torch: Any, a: Any, b: Any, c: Any, scalar: float = SCALAR) -> str | None:
    """None when b == a everywhere and sampled c == a + s*b (float64 on the CPU), else why not."""
    problems = []
    if not torch.equal(a, b):
        wrong = int((a != b).sum().item())
        problems.append(f"copy: {wrong} of {a.numel()} elements differ from the source")
    n = a.numel()
    idx = torch.randint(0, n, (min(n, VERIFY_SAMPLES),), device=a.device)
    a_s, b_s, c_s = (t[idx].to("cpu", torch.float64) for t in (a, b, c))
    want = a_s + scalar * b_s
    bad = ~torch.isclose(c_s, want, rtol=1e-6, atol=1e-6)
    if bool(bad.any()):
        k = int(bad.nonzero()[0].item())
        problems.append(
            f"triad: {int(bad.sum().item())} of {idx.numel()} sampled elements wrong "
            f"(c[{int(idx[k].item())}] = {c_s[k].item():.7g}, expected {want[k].item():.7g})"
        )
    return "; ".join(problems) or None


def measure(
    torch: Any, device: Any, clock: Any, n: int, warmup: int, repeats: int
) -> tuple[dict[str, list[float]], str | None]:
    """Seconds per timed call of each kernel on ``n``-element buffers, and the verification."""
    from hpcbench.hw.torch_device import time_calls

    a = torch.rand(n, dtype=torch.float32, device=device)  # never time zeros
    b = torch.empty_like(a)
    c = torch.empty_like(a)
    kernels = {"copy": lambda: b.copy_(a), "triad": lambda: torch.add(a, b, alpha=SCALAR, out=c)}
    seconds = {k: time_calls(fn, clock, warmup=warmup, repeats=repeats)[0] for k, fn in kernels.items()}
    clock.settle()
    sanity = verify(torch, a, b, c)
    return seconds, sanity


def theoretical_peak(nvml_index: int | None, nvml: Any = None) -> dict[str, Any]:
    """NVML's theoretical memory bandwidth of a GPU, or why it is unknown."""
    from hpcbench.node import nvml as seam

    if nvml_index is None:
        return {"peak_gbps": None, "peak_source": "no NVML index for this device"}
    try:
        with seam.session(nvml) as nv:
            handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, nvml_index)
            r = seam.memory_peak(nv, handle.value) if handle.ok else handle
    except ImportError as exc:
        return {"peak_gbps": None, "peak_source": f"NVML unavailable: {exc}"}
    except Exception as exc:
        if not type(exc).__name__.startswith("NVMLError"):
            raise
        return {"peak_gbps": None, "peak_source": f"NVML: {seam.error_text(exc)}"}
    if not r.ok:
        return {"peak_gbps": None, "peak_source": r.unsupported or r.error}
    return {**r.value, "peak_source": "NVML: max memory clock x bus width x 2 (DDR)"}


class GpuMembw(GpuProbe):
    """HBM bandwidth of one GPU: device-to-device copy and STREAM triad (GB/s)."""

    name = NAME
    description = "GPU memory bandwidth: device-to-device copy and STREAM triad (GB/s, CUDA events)"
    Params = GpuMembwParams
    requires: ClassVar[tuple[Requirement, ...]] = (Requirement("gpu"), *GpuProbe.requires)  # a GPU only
    metrics = KERNELS

    def __init__(self, nvml: Any = None, clock: Clock | None = None) -> None:
        self.nvml = nvml
        self.clock = clock  # None: the device's own (tests pass fixed timings)

    def run(self, params: GpuMembwParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.core.measurement import Conditions, Measurement
        from hpcbench.hw.telemetry import throttle_hint
        from hpcbench.hw.torch_device import sampler

        torch, rt, _, _ = gp.open_device(params.device, ctx.inventory, clock=self.clock)
        if rt.choice.is_cuda:
            free, _total = torch.cuda.mem_get_info(rt.device)
        else:
            free = ctx.inventory.memory.total_bytes
        nbytes = buffer_bytes(rt.cache_bytes, free, params.buffer_mib)
        n = nbytes // ITEMSIZE
        # clocks, power, temperature and throttle reasons while the kernels run (a hint on a shortfall)
        with sampler(rt, params.telemetry_interval, nvml=self.nvml) as nvml_sampler:
            with torch.no_grad():
                seconds, sanity = measure(torch, rt.device, rt.clock, n, params.warmup, params.repeats)
            tel = nvml_sampler.summary()
        peak = (
            theoretical_peak(rt.choice.nvml_index, self.nvml)
            if rt.choice.is_cuda
            else {
                "peak_gbps": None,
                "peak_source": "CPU device: no NVML peak",
            }
        )
        settings = {
            "device": rt.info,
            "buffer_bytes_each": n * ITEMSIZE,
            "cache_bytes": rt.cache_bytes,
            "buffer_rule": f"{L2_MULTIPLE} x cache, at least 1 GiB"
            if not params.buffer_mib
            else "buffer_mib",
            "dtype": "float32",
            "scalar": SCALAR,
            "timer": rt.clock.name,
            "repeats": params.repeats,
            "warmup": params.warmup,
            "telemetry": tel,
            **peak,
        }
        out = []
        for kernel in KERNELS:
            samples = [moved_bytes(kernel, n) / s / 1e9 for s in seconds[kernel]]
            extra: dict[str, Any] = {"bytes_per_call": moved_bytes(kernel, n)}
            if peak.get("peak_gbps"):
                extra["fraction_of_peak"] = round(max(samples) / peak["peak_gbps"], 4)
            out.append(
                Measurement.from_samples(
                    kernel,
                    samples,
                    "GB/s",
                    ctx.subject,
                    statistic="best",
                    convention=CONVENTION,
                    settings={**settings, **extra},
                    sanity=sanity,
                    conditions=Conditions(gpu_clocks_held=throttle_hint(tel)),
                )
            )
        return out
