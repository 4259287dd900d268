"""What the GPU compute probes (gemm, attention, burn, memtest) share: the device they run on, the dtypes,
the timing loop and the cache flush between timed calls.

Everything here works on the CPU device as well, so the tests cover it without a GPU; the
CUDA-only pieces (CUDA events, L2 size, device properties, TF32 switch) are in ``cuda_only``.

The ``device`` parameter of both probes is ``"auto"`` (GPU 0 when torch sees CUDA, else the
CPU), ``"cpu"``, or a GPU index as ``hpcbench inventory`` lists it (NVML's index, which a
suite's ``expand = "gpu"`` passes). A GPU index is mapped to torch's CUDA ordinal through the
GPU's UUID, so ``CUDA_VISIBLE_DEVICES`` and CUDA's device order cannot make a probe measure
one GPU and report another.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hpcbench.core.errors import ProbeError, ProbeSkip
from hpcbench.node.inventory import GpuDevice, Inventory

#: the probes' dtype names -> torch dtype attribute
TORCH_DTYPES = {
    "fp32": "float32",
    "tf32": "float32",  # float32 tensors, multiplied in TF32 on the tensor cores
    "fp16": "float16",
    "bf16": "bfloat16",
    "fp8": "float8_e4m3fn",
}
#: bytes per element of each dtype's inputs
ITEMSIZE = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1}
#: the flush buffer when the cache size is unknown
FALLBACK_FLUSH_BYTES = 256 * 2**20
MIN_FLUSH_BYTES = 8 * 2**20


def dtype_unsupported(
    dtype: str, kind: str, capability: tuple[int, int] | None, *, has_fp8: bool, torch_version: str = ""
) -> str | None:
    """Why ``dtype`` cannot be measured on this device (a one-line reason), or None.

    fp8 is e4m3 through ``torch._scaled_mm``: on CUDA it needs compute capability >= 8.9
    (Ada, Hopper, Blackwell); on the CPU torch's own implementation runs where it exists.
    TF32 is a tensor-core mode: NVIDIA GPUs of compute capability >= 8.0 only.
    """
    if dtype == "fp8" and not has_fp8:
        return f"fp8: torch {torch_version or '?'} has no torch._scaled_mm or float8_e4m3fn"
    if kind == "cpu":
        if dtype == "tf32":
            return "tf32: a tensor-core mode of NVIDIA GPUs (compute capability >= 8.0), not of the CPU"
        return None
    cc = capability or (0, 0)
    text = f"{cc[0]}.{cc[1]}"
    if dtype == "fp8" and cc < (8, 9):
        return f"fp8: e4m3 GEMM needs compute capability >= 8.9 (Ada/Hopper or newer); this GPU has {text}"
    if dtype in ("tf32", "bf16") and cc < (8, 0):
        return f"{dtype}: needs compute capability >= 8.0 (Ampere or newer); this GPU has {text}"
    return None


@dataclass(frozen=True)
class DeviceChoice:
    """Where a probe runs: ``cpu``, or ``cuda`` with torch's ordinal and NVML's index."""

    kind: str
    cuda_ordinal: int | None = None
    nvml_index: int | None = None
    how: str = ""

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def normalize_uuid(uuid: Any) -> str | None:
    """NVML's ``GPU-6f1c...`` and torch's ``6f1c...`` as one comparable form."""
    if uuid is None:
        return None
    text = str(uuid).strip().lower()
    if text.startswith("gpu-"):
        text = text[4:]
    return text or None


def choose_device(
    device: int | str,
    *,
    inventory: Inventory,
    cuda_available: bool,
    cuda_uuids: list[str | None],
    torch_version: str = "",
    visible_devices: str | None = None,
) -> DeviceChoice:
    """The device a probe runs on; ProbeSkip where it does not apply, ProbeError where it cannot run.

    Pure: the caller passes what torch and the environment say. ``cuda_uuids`` is the UUID
    of each CUDA ordinal torch sees (None where torch cannot tell).
    """
    inventory = inventory
    devices = inventory.gpus.devices
    if device == "cpu":
        return DeviceChoice("cpu", how="device=cpu")
    if device == "auto":
        if cuda_available and cuda_uuids:
            index = _nvml_index_of(cuda_uuids[0], devices)
            return DeviceChoice("cuda", 0, index, how="device=auto: CUDA device 0")
        return DeviceChoice("cpu", how="device=auto: torch sees no CUDA device")
    assert isinstance(device, int)
    if not cuda_available:
        if not devices:
            from hpcbench.node.collector import gpu_absence

            status, reason, hint = gpu_absence(inventory)
            if status == "error":  # NVIDIA GPUs on the PCI bus that NVML does not list
                raise ProbeError(reason, hint=hint)
            raise ProbeSkip(reason)
        raise ProbeError(
            f"torch {torch_version or '?'} cannot use CUDA here, though NVML lists {len(devices)} GPU(s)",
            hint="install a CUDA build of torch (make SYSTEM_TORCH=1 reuses the node's own torch)",
        )
    if not devices:  # NVML unavailable: the index can only be taken as torch's ordinal
        if device < len(cuda_uuids):
            return DeviceChoice(
                "cuda", device, None, how="GPU index taken as CUDA ordinal (no NVML inventory)"
            )
        raise ProbeError(f"GPU {device} does not exist: torch sees {len(cuda_uuids)} CUDA device(s)")
    entry = next((d for d in devices if d.index == device), None)
    if entry is None:
        known = ", ".join(str(d.index) for d in devices)
        raise ProbeError(f"GPU {device} is not on this node (GPU indices: {known})")
    want = normalize_uuid(entry.uuid)
    have = [normalize_uuid(u) for u in cuda_uuids]
    if want is not None and want in have:
        return DeviceChoice("cuda", have.index(want), device, how="GPU index -> CUDA ordinal by UUID")
    if want is None or all(u is None for u in have):
        if visible_devices is None and device < len(cuda_uuids):
            return DeviceChoice(
                "cuda", device, device, how="GPU index = CUDA ordinal (PCI bus order, no UUID)"
            )
        raise ProbeError(f"GPU {device}: cannot match it to a CUDA device (no UUID to compare)")
    raise ProbeSkip(
        f"GPU {device} ({entry.uuid}) is not visible to this process "
        f"(CUDA_VISIBLE_DEVICES={visible_devices if visible_devices is not None else 'unset'})"
    )


def _nvml_index_of(uuid: str | None, devices: tuple[GpuDevice, ...]) -> int | None:
    want = normalize_uuid(uuid)
    for d in devices:
        if want is not None and normalize_uuid(d.uuid) == want:
            return d.index
    return None


def flush_bytes(cache_bytes: int | None) -> int:
    """Size of the buffer written between timed calls: twice the cache, so none of the inputs survive."""
    if not cache_bytes or cache_bytes <= 0:
        return FALLBACK_FLUSH_BYTES
    return max(2 * int(cache_bytes), MIN_FLUSH_BYTES)


class Clock(Protocol):
    """Marks the start and end of each timed call; turns the marks into seconds."""

    name: str

    def start(self) -> Any: ...

    def stop(self) -> Any: ...

    def settle(self) -> None: ...

    def seconds(self, marks: list[tuple[Any, Any]]) -> list[float]: ...


class PerfCounterClock:
    """The CPU device: operations are synchronous, so the wall clock around the call is its time."""

    name = "time.perf_counter"

    def start(self) -> float:
        return time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter()

    def settle(self) -> None:
        return None

    def seconds(self, marks: list[tuple[Any, Any]]) -> list[float]:
        return [max(float(b) - float(a), 1e-9) for a, b in marks]


class CacheFlush:
    """Writes a buffer larger than the cache before each timed call (as Triton's do_bench does)."""

    def __init__(self, torch: Any, device: Any, nbytes: int, basis: str) -> None:
        self.nbytes = nbytes
        self.basis = basis
        self._buf = torch.empty(max(nbytes // 4, 1), dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self._buf.zero_()

    def describe(self) -> dict[str, Any]:
        return {"bytes": self.nbytes, "basis": self.basis}


def no_flush() -> None:
    return None


def time_calls(
    fn: Callable[[], Any],
    clock: Clock,
    *,
    warmup: int,
    repeats: int,
    flush: Callable[[], None] = no_flush,
    warmup_s: float = 0.0,
    now: Callable[[], float] = time.monotonic,
) -> tuple[list[float], Any]:
    """Seconds of each of ``repeats`` timed calls of ``fn``, and the last call's result.

    ``warmup`` untimed calls first, then more until ``warmup_s`` seconds have passed (GPU
    clocks ramp up under load; ``now`` reads the time for that). The cache is flushed before
    every call, timed or not, and the flush itself is outside the timed interval.
    """
    seconds, results = time_alternating(
        {"": fn}, clock, warmup=warmup, repeats=repeats, flush=flush, warmup_s=warmup_s, now=now
    )
    return seconds[""], results[""]


def time_alternating(
    fns: dict[str, Callable[[], Any]],
    clock: Clock,
    *,
    warmup: int,
    repeats: int,
    flush: Callable[[], None] = no_flush,
    warmup_s: float = 0.0,
    now: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """``time_calls`` for several implementations of one operation, interleaved: in every
    iteration each runs once, in the listed order on even iterations and reversed on odd ones,
    so all meet the same clocks, temperature and neighbours. Seconds of each one's timed calls,
    and each one's last result."""
    names = list(fns)

    def order(iteration: int) -> list[str]:
        return names if iteration % 2 == 0 else names[::-1]

    for iteration in range(warmup):
        for name in order(iteration):
            flush()
            fns[name]()
    clock.settle()
    deadline = now() + warmup_s
    while now() < deadline:
        for name in names:
            flush()
            fns[name]()
        clock.settle()
    marks: dict[str, list[tuple[Any, Any]]] = {name: [] for name in names}
    results: dict[str, Any] = dict.fromkeys(names)
    for iteration in range(repeats):
        for name in order(iteration):
            flush()
            begin = clock.start()
            results[name] = fns[name]()
            marks[name].append((begin, clock.stop()))
    return {name: clock.seconds(marks[name]) for name in names}, results


@dataclass(frozen=True)
class Runtime:
    """The torch side of a DeviceChoice: the torch.device, its clock, the flush and a description."""

    choice: DeviceChoice
    device: Any
    clock: Clock
    info: dict[str, Any]
    cache_bytes: int | None
    cache_basis: str


def prepare(
    torch: Any,
    device_param: int | str,
    inventory: Inventory,
    threads: int = 0,
    clock: Clock | None = None,
) -> Runtime:
    """Resolve ``device_param`` with torch, select the device, and describe it.

    ``clock`` replaces the device's own (CUDA events, ``time.perf_counter``): the seam through
    which tests give a probe fixed timings and check the number it reports."""
    from hpcbench.hw import cuda_only

    available = bool(torch.cuda.is_available())
    uuids = cuda_only.cuda_uuids(torch) if available else []
    choice = choose_device(
        device_param,
        inventory=inventory,
        cuda_available=available,
        cuda_uuids=uuids,
        torch_version=torch.__version__,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    if choice.is_cuda:
        assert choice.cuda_ordinal is not None
        info = cuda_only.device_info(torch, choice.cuda_ordinal)
        info.update({"how": choice.how, "nvml_index": choice.nvml_index})
        return Runtime(
            choice,
            torch.device("cuda", choice.cuda_ordinal),
            clock or cuda_only.EventClock(torch, choice.cuda_ordinal),
            info,
            info.get("l2_cache_bytes"),
            "2 x the GPU's L2 cache (cudaDeviceProp.l2CacheSize)",
        )
    if threads:
        torch.set_num_threads(threads)
    cpu = inventory.cpu
    info = {
        "kind": "cpu",
        "name": cpu.model or "cpu",
        "threads": torch.get_num_threads(),
        "how": choice.how,
        "torch_version": torch.__version__,
    }
    return Runtime(
        choice,
        torch.device("cpu"),
        clock or PerfCounterClock(),
        info,
        cpu.llc_bytes,
        "2 x the CPU's last-level cache (inventory cpu.llc_bytes)",
    )


def make_flush(torch: Any, rt: Runtime, enabled: bool) -> tuple[Callable[[], None], dict[str, Any]]:
    """The cache flush for this runtime and its description for the settings."""
    if not enabled:
        return no_flush, {"bytes": 0, "basis": "disabled (flush_cache=false)"}
    nbytes = flush_bytes(rt.cache_bytes)
    basis = rt.cache_basis if rt.cache_bytes else "cache size unknown: 256 MiB"
    flush = CacheFlush(torch, rt.device, nbytes, basis)
    return flush, flush.describe()


def sampler(rt: Runtime, interval: float, nvml: Any = None) -> Any:
    """The NVML telemetry sampler of the runtime's GPU; on the CPU device (or a GPU NVML does not
    list) one that samples nothing and says why."""
    from hpcbench.hw import telemetry

    if rt.choice.is_cuda:
        why = "GPU not in the NVML inventory"
        return telemetry.Sampler(rt.choice.nvml_index, interval, nvml=nvml, why_none=why)
    return telemetry.Sampler(None, interval, nvml=nvml, why_none="the CPU device has no NVML telemetry")


def torch_dtype(torch: Any, name: str) -> Any:
    return getattr(torch, TORCH_DTYPES[name])


def unsupported_dtypes(torch: Any, rt: Runtime, dtypes: list[str]) -> dict[str, str]:
    """dtype -> why it cannot run on this runtime's device (decided by ``dtype_unsupported``)."""
    has_fp8 = hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
    cc = tuple(rt.info["capability"]) if rt.choice.is_cuda else None
    out = {}
    for d in dtypes:
        reason = dtype_unsupported(d, rt.choice.kind, cc, has_fp8=has_fp8, torch_version=torch.__version__)
        if reason:
            out[d] = reason
    return out
