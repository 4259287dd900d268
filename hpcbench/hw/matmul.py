"""What the GEMM probes (gemm, burn) share: shapes, FLOP counting, the inputs of one GEMM per dtype,
the call itself, and the check of a computed block against a float64 reference.

FLOPs are counted as MAMF-finder and cuBLAS benchmarks count them: 2·m·n·k per GEMM of an
(m×k) by (k×n) product; TFLOPS is 1e12 FLOP/s. The layout is ``nn.Linear``'s: y (m×n) = x (m×k)
@ Wᵀ with W (n×k) row-major. fp8 is float8_e4m3fn through ``torch._scaled_mm`` with per-tensor
scales and a bf16 output.

Everything here runs on torch's CPU device as well; the pure parts (shapes, FLOPs, tolerances,
``block_errors``, ``block_verdict``) take numbers and numpy arrays only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: the dtypes a GEMM probe can run (torch_device.TORCH_DTYPES names them for torch)
DTYPES: tuple[str, ...] = ("bf16", "fp16", "tf32", "fp32", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn


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


def gemm_flops(shape: Shape) -> int:
    return 2 * shape.m * shape.n * shape.k


def tflops(shape: Shape, seconds: float) -> float:
    return gemm_flops(shape) / seconds / 1e12


def fp8_fits(shape: Shape) -> bool:
    """torch._scaled_mm needs every dimension a multiple of 16."""
    return shape.m % 16 == 0 and shape.n % 16 == 0 and shape.k % 16 == 0


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


def block_verdict(
    dtype: str,
    shape: Shape,
    check: dict[str, Any],
    rows: list[int],
    cols: list[int],
    implementation: str | None = None,
    what: str = "gemm",
) -> str | None:
    """None when the sampled block is right, else the one-line reason for ``sanity`` (naming the
    probe as ``what``, and the implementation where several ran)."""
    if check["wrong"] == 0:
        return None
    r, c = check["worst_index"]
    via = f" ({implementation})" if implementation else ""
    return (
        f"{what} {dtype} {shape.label}{via}: {check['wrong']} of {check['checked']} sampled outputs differ "
        f"from the float64 reference beyond tolerance; worst y[{rows[r]}, {cols[c]}] = "
        f"{check['worst_value']:.6g}, "
        f"expected {check['worst_expected']:.6g}"
    )


Operand = tuple[Any, Any]


def operands(torch: Any, device: Any, dtype: str, shape: Shape, gen: Any) -> tuple[Operand, Operand]:
    """x (m×k) and W (n×k), normal values from ``gen`` (never zeros), each as (tensor, per-tensor
    scale or None); fp8 quantizes them to e4m3 with scales that map their largest magnitude to
    e4m3's."""
    from hpcbench.hw.torch_device import torch_dtype

    m, n, k = shape.m, shape.n, shape.k
    if dtype == "fp8":
        xf = torch.randn(m, k, generator=gen, device=device, dtype=torch.float32)
        wf = torch.randn(n, k, generator=gen, device=device, dtype=torch.float32)
        sx = (xf.abs().max() / FP8_MAX).reshape(())
        sw = (wf.abs().max() / FP8_MAX).reshape(())
        a = (xf / sx).to(torch.float8_e4m3fn)
        b = (wf / sw).to(torch.float8_e4m3fn)
        del xf, wf
        return (a, sx), (b, sw)
    dt = torch_dtype(torch, dtype)
    x = torch.randn(m, k, generator=gen, device=device, dtype=dt)
    w = torch.randn(n, k, generator=gen, device=device, dtype=dt)
    return (x, None), (w, None)


def scaled_mm(torch: Any, x: Operand, w: Operand) -> Any:
    """y = x @ W^T in fp8 (e4m3 inputs, per-tensor scales, bf16 output) through torch._scaled_mm."""
    (a, sx), (b, sw) = x, w
    out = torch._scaled_mm(a, b.t(), scale_a=sx, scale_b=sw, out_dtype=torch.bfloat16)
    return out[0] if isinstance(out, tuple) else out  # torch < 2.4 also returned amax


def rows64(torch: Any, operand: Operand, index: Any) -> Any:
    """The chosen rows of an operand in float64 on the CPU, scale applied (fp8)."""
    tensor, scale = operand
    idx = index.to(tensor.device)
    if scale is None:
        return tensor.index_select(0, idx).to("cpu", torch.float64)
    # fp8: gather the raw bytes (indexing float8 is not implemented everywhere), then convert exactly
    rows = tensor.view(torch.uint8).index_select(0, idx).view(tensor.dtype).to(torch.float32)
    return rows.to("cpu", torch.float64) * float(scale)


class Reference:
    """The float64 reference of a random block of the output (rows and columns drawn from the seed)."""

    def __init__(self, torch: Any, x: Operand, w: Operand, shape: Shape, size: int, seed: int) -> None:
        cpu_gen = torch.Generator().manual_seed(seed + 7919)
        self.rows = torch.randperm(shape.m, generator=cpu_gen)[: min(size, shape.m)].sort().values
        self.cols = torch.randperm(shape.n, generator=cpu_gen)[: min(size, shape.n)].sort().values
        xb, wb = rows64(torch, x, self.rows), rows64(torch, w, self.cols)
        self.ref = (xb @ wb.T).numpy()
        self.scale = ((xb * xb) @ (wb * wb).T).sqrt().numpy()
        self.shape = shape

    def verify(
        self, torch: Any, out: Any, dtype: str, implementation: str | None = None, what: str = "gemm"
    ) -> tuple[dict[str, Any], str | None]:
        """The output's block against the reference: (check details, sanity reason or None)."""
        if getattr(out, "is_mkldnn", False):
            out = out.to_dense()
        rows, cols = self.rows.to(out.device), self.cols.to(out.device)
        block = out.index_select(0, rows).index_select(1, cols).to("cpu", torch.float64)
        result = block_errors(block.numpy(), self.ref, self.scale, TOLERANCES[dtype])
        result["block"] = [len(self.rows), len(self.cols)]
        reason = block_verdict(
            dtype, self.shape, result, self.rows.tolist(), self.cols.tolist(), implementation, what
        )
        return result, reason
