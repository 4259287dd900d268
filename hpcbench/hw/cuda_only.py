"""The CUDA-only pieces of the GPU compute probes, kept small and apart.

CUDA-event timing, the device's properties (L2 cache size for the flush buffer, compute
capability for the fp8 and TF32 decisions), the UUIDs that map NVML's GPU index to torch's
CUDA ordinal, and the TF32 switch. None of this can run on the CPU-only test machine; it is
exercised by ``make gpu-check`` on a GPU node. The decisions it feeds are pure functions
elsewhere (``torch_device.choose_device``, ``torch_device.dtype_unsupported``) and are tested.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def cuda_uuids(torch: Any) -> list[str | None]:
    """The UUID of each CUDA device torch sees, in ordinal order (None where torch cannot tell)."""
    out: list[str | None] = []
    for ordinal in range(torch.cuda.device_count()):
        try:
            out.append(str(torch.cuda.get_device_properties(ordinal).uuid))
        except (AttributeError, RuntimeError):
            out.append(None)
    return out


def device_info(torch: Any, ordinal: int) -> dict[str, Any]:
    """Selects the device and describes it for the measurement settings."""
    torch.cuda.set_device(ordinal)
    props = torch.cuda.get_device_properties(ordinal)
    return {
        "kind": "cuda",
        "cuda_ordinal": ordinal,
        "name": props.name,
        "capability": [int(props.major), int(props.minor)],
        "sm_count": int(props.multi_processor_count),
        "memory_bytes": int(props.total_memory),
        "l2_cache_bytes": int(getattr(props, "L2_cache_size", 0)) or None,
        "uuid": str(getattr(props, "uuid", "")) or None,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }


def memory_info(torch: Any, ordinal: int | None) -> tuple[int, int]:
    """(free, total) bytes of a GPU's memory, as the driver reports them (cudaMemGetInfo)."""
    free, total = torch.cuda.mem_get_info(ordinal)
    return int(free), int(total)


class EventClock:
    """CUDA events recorded on the current stream around each call; read after one synchronize."""

    name = "torch.cuda.Event"

    def __init__(self, torch: Any, ordinal: int) -> None:
        self._torch = torch
        self._ordinal = ordinal

    def start(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def stop(self) -> Any:
        return self.start()

    def settle(self) -> None:
        self._torch.cuda.synchronize(self._ordinal)

    def seconds(self, marks: list[tuple[Any, Any]]) -> list[float]:
        self.settle()
        return [max(a.elapsed_time(b) / 1e3, 1e-9) for a, b in marks]


@contextlib.contextmanager
def fp32_matmul(torch: Any, tf32: bool) -> Iterator[dict[str, Any]]:
    """float32 matmuls in TF32 (``tf32=True``) or full IEEE fp32; restored afterwards.

    Uses ``torch.backends.cuda.matmul.fp32_precision`` where torch has it, else ``allow_tf32``.
    Yields what was set, for the settings.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        old = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        try:
            yield {"fp32_precision": matmul.fp32_precision}
        finally:
            matmul.fp32_precision = old
        return
    old_allow = matmul.allow_tf32
    matmul.allow_tf32 = tf32
    try:
        yield {"allow_tf32": tf32}
    finally:
        matmul.allow_tf32 = old_allow


def reduced_precision_flags(torch: Any) -> dict[str, Any]:
    """cuBLAS's reduced-precision reduction switches for fp16/bf16 (they affect speed and error)."""
    matmul = torch.backends.cuda.matmul
    out: dict[str, Any] = {}
    for name in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
        value = getattr(matmul, name, None)
        out[name] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    return out


def has_cublaslt(torch: Any) -> bool:
    """Whether torch can route its matmuls through cuBLASLt (``preferred_blas_library``)."""
    choose = getattr(torch.backends.cuda, "preferred_blas_library", None)
    if choose is None:
        return False
    old = choose()
    try:
        choose("cublaslt")
    except (RuntimeError, ValueError):  # a build without cuBLASLt
        return False
    finally:
        choose(old)
    return True


def through_blas(torch: Any, library: str, call: Any) -> Any:
    """``call`` with torch's preferred BLAS library set to ``library`` first (a host-side switch
    read at each launch); ``preferred_blas_restored`` puts torch's own choice back. A torch
    without the switch (< 2.3) runs its matmuls through cuBLAS only, and ``has_cublaslt`` says
    False there, so ``call`` is returned as it is."""
    choose = getattr(torch.backends.cuda, "preferred_blas_library", None)
    if choose is None:
        return call

    def run() -> Any:
        if choose().name.lower() != library:  # reading is silent; setting makes torch warn
            choose(library)
        return call()

    return run


@contextlib.contextmanager
def preferred_blas_restored(torch: Any) -> Iterator[None]:
    choose = getattr(torch.backends.cuda, "preferred_blas_library", None)
    old = choose() if choose is not None else None
    try:
        yield
    finally:
        if choose is not None and choose() != old:
            choose(old)
