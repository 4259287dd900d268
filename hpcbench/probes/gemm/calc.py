"""Pure helpers of the gemm probe: default sizes, sweeps, metric names and the implementations
per device. Shapes, FLOP counting and the float64 block check are shared with the burn probe
and live in ``hpcbench.hw.matmul``.
"""

from __future__ import annotations

from hpcbench.hw.matmul import Shape

GPU_DEFAULT_SIZE = 8192
CPU_DEFAULT_SIZE = 512
#: sweep ranges [start, stop, step] (stop included) when the parameters leave them empty
GPU_SWEEP_RANGE = (4096, 16384, 4096)
CPU_SWEEP_RANGE = (256, 1024, 256)
MAX_SWEEP_SHAPES = 4096

#: How the probe can run one GEMM, each timed beside the others when several can run (the faster
#: is reported): torch.mm through cuBLAS or cuBLASLt on a GPU (``preferred_blas_library``);
#: torch.mm (torch's CPU BLAS) or oneDNN's linear on the CPU; ``torch._scaled_mm`` for fp8.
IMPLEMENTATIONS: dict[str, str] = {
    "cublas": "torch.mm through cuBLAS",
    "cublaslt": "torch.mm through cuBLASLt",
    "mm": "torch.mm (torch's CPU BLAS)",
    "onednn": "oneDNN linear (torch._C._nn.mkldnn_linear, operands in oneDNN's layout)",
    "scaled_mm": "torch._scaled_mm (float8_e4m3fn, per-tensor scales, bf16 out)",
}


def parse_range(values: list[int], default: tuple[int, int, int]) -> list[int]:
    """A sweep dimension: ``[]`` (the default range), ``[v]``, or ``[start, stop, step]``, stop included."""
    if not values:
        values = list(default)
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"a dimension must be >= 1, got {values[0]}")
        return [values[0]]
    if len(values) != 3:
        raise ValueError(f"expected [value] or [start, stop, step], got {values}")
    start, stop, step = values
    if start < 1 or step < 1 or stop < start:
        raise ValueError(f"expected 1 <= start <= stop and step >= 1, got {values}")
    return list(range(start, stop + 1, step))


def sweep_shapes(ms: list[int], ns: list[int], ks: list[int]) -> list[Shape]:
    """Every (m, n, k) of the three ranges, as MAMF-finder's brute-force search."""
    count = len(ms) * len(ns) * len(ks)
    if count > MAX_SWEEP_SHAPES:
        raise ValueError(f"the sweep has {count} shapes; at most {MAX_SWEEP_SHAPES} (widen the steps)")
    return [Shape(m, n, k) for m in ms for n in ns for k in ks]


def metric_name(dtype: str, shape: Shape, primary: bool) -> str:
    """``bf16`` for the first (primary) shape, ``bf16_4096x4096x8192`` for the others."""
    return dtype if primary else f"{dtype}_{shape.label}"


def sweep_metric(dtype: str) -> str:
    return f"{dtype}_sweep"


def implementations(kind: str, dtype: str, *, has_cublaslt: bool, has_onednn: bool) -> list[str]:
    """The implementations that can run ``dtype`` on this kind of device, torch's default first."""
    if dtype == "fp8":
        return ["scaled_mm"]
    if kind == "cpu":
        return ["mm", "onednn"] if dtype == "fp32" and has_onednn else ["mm"]
    return ["cublas", "cublaslt"] if has_cublaslt else ["cublas"]


#: cuBLASLt is timed only when asked for: on an H200 (torch 2.11, CUDA 13.0) it ran the very kernels
#: cuBLAS ran (bf16 8192³ 792.1 against 791.8 TFLOPS, six shapes within noise), so timing it by
#: default would double the GPU time for nothing; oneDNN beat torch.mm by 7-10% on a Zen 4 CPU.
ON_REQUEST = ("cublaslt",)


def select_implementations(available: list[str], requested: list[str]) -> list[str]:
    """Those of ``requested`` that are ``available`` ([] = all of them but those ``ON_REQUEST``);
    where none of them is, the default (``available[0]``): fp8 has only ``scaled_mm``, the CPU no
    cuBLAS."""
    if not requested:
        return [name for name in available if name not in ON_REQUEST] or available[:1]
    chosen = [name for name in available if name in requested]
    return chosen or available[:1]
