"""Pure helpers of the gemm probe: shapes, sweeps, FLOP counting and the
correctness check of a computed block against a float64 reference.

FLOPs are counted as MAMF-finder and cuBLAS benchmarks count them: 2·m·n·k per GEMM of an
(m×k) by (k×n) product; TFLOPS is 1e12 FLOP/s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DTYPES: tuple[str, ...] = ("bf16", "fp16", "tf32", "fp32", "fp8")
GPU_DEFAULT_SIZE = 8192
CPU_DEFAULT_SIZE = 512
#: sweep ranges [start, stop, step] (stop included) when the parameters leave them empty
GPU_SWEEP_RANGE = (4096, 16384, 4096)
CPU_SWEEP_RANGE = (256, 1024, 256)
MAX_SWEEP_SHAPES = 4096
FP8_MAX = 448.0  # largest finite float8_e4m3fn

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


@dataclass(frozen=True)
class Shape:
    """y (m×n) = x (m×k) @ W^T, W (n×k): nn.Linear's layout."""

    m: int
    n: int
    k: int

    @property
    def label(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"

    def as_dict(self) -> dict[str, int]:
        return {"m": self.m, "n": self.n, "k": self.k}


_SHAPE = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*[x×]\s*(\d+))?\s*$")


def parse_shape(value: int | str) -> Shape:
    """``8192`` or ``"8192"`` (a cube) or ``"4096x8192x2048"`` (m x n x k). ValueError if neither."""
    if isinstance(value, bool):
        raise ValueError(f"expected N or MxNxK, got {value!r}")
    if isinstance(value, int):
        dims = (value, value, value)
    else:
        match = _SHAPE.match(str(value))
        if not match:
            raise ValueError(f"expected N or MxNxK (e.g. 8192 or 4096x8192x2048), got {value!r}")
        a, b, c = match.groups()
        dims = (int(a), int(b), int(c)) if b else (int(a),) * 3
    if min(dims) < 1:
        raise ValueError(f"dimensions must be >= 1, got {value!r}")
    return Shape(*dims)


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


def gemm_flops(shape: Shape) -> int:
    return 2 * shape.m * shape.n * shape.k


def tflops(shape: Shape, seconds: float) -> float:
    return gemm_flops(shape) / seconds / 1e12


def metric_name(dtype: str, shape: Shape, primary: bool) -> str:
    """``bf16`` for the first (primary) shape, ``bf16_4096x4096x8192`` for the others."""
    return dtype if primary else f"{dtype}_{shape.label}"


def sweep_metric(dtype: str) -> str:
    return f"{dtype}_sweep"


@dataclass(frozen=True)
class Tolerance:
    """|computed - reference| <= rtol·|reference| + atol·scale, scale = sqrt(sum_k (x·w)²)."""

    rtol: float
    atol: float


#: rtol covers the rounding of the output to its dtype, atol the arithmetic inside (TF32's
#: 10-bit inputs, fp16/bf16 reduced-precision reductions), relative to the terms' magnitude
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(rtol=1e-5, atol=1e-4),
    "tf32": Tolerance(rtol=1e-5, atol=1e-2),
    "fp16": Tolerance(rtol=2e-3, atol=5e-3),
    "bf16": Tolerance(rtol=1e-2, atol=1e-2),
    "fp8": Tolerance(rtol=1e-2, atol=1e-2),  # e4m3 inputs are exact in the reference; output bf16
}


def block_errors(out: Any, ref: Any, scale: Any, tol: Tolerance) -> dict[str, Any]:
    """Compare a computed block with its float64 reference (numpy arrays of one shape).

    Returns the count of wrong elements (non-finite ones included), the worst one's position
    and values, and the largest error in units of the tolerance.
    """
    import numpy as np

    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    allowed = tol.rtol * np.abs(ref) + tol.atol * scale
    allowed = np.where(allowed > 0, allowed, np.finfo(np.float64).tiny)
    err = np.abs(out - ref)
    ratio = np.where(np.isfinite(out), err / allowed, np.inf)
    bad = int(np.count_nonzero(~(ratio <= 1.0)))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else (0, 0)
    return {
        "checked": int(out.size),
        "wrong": bad,
        "worst_ratio": float(ratio[worst]) if ratio.size else 0.0,
        "worst_index": [int(i) for i in worst],
        "worst_value": float(out[worst]) if out.size else 0.0,
        "worst_expected": float(ref[worst]) if ref.size else 0.0,
        "rtol": tol.rtol,
        "atol": tol.atol,
    }


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


def block_verdict(
    dtype: str,
    shape: Shape,
    check: dict[str, Any],
    rows: list[int],
    cols: list[int],
    implementation: str | None = None,
) -> str | None:
    """None when the sampled block is right, else the one-line reason for ``sanity`` (naming the
    implementation, where several ran)."""
    if check["wrong"] == 0:
        return None
    r, c = check["worst_index"]
    via = f" ({implementation})" if implementation else ""
    return (
        f"gemm {dtype} {shape.label}{via}: {check['wrong']} of {check['checked']} sampled outputs differ "
        f"from the float64 reference beyond tolerance; worst y[{rows[r]}, {cols[c]}] = "
        f"{check['worst_value']:.6g}, "
        f"expected {check['worst_expected']:.6g}"
    )
