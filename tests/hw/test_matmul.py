"""hw.matmul, shared by the gemm and burn probes: shapes, FLOP counting and the float64 block check."""

from __future__ import annotations

import numpy as np
import pytest

from hpcbench.hw import matmul as gm


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        (8192, gm.Shape(8192, 8192, 8192)),
        ("512", gm.Shape(512, 512, 512)),
        ("4096x8192x2048", gm.Shape(4096, 8192, 2048)),
        (" 16 x 32 x 48 ", gm.Shape(16, 32, 48)),
    ],
)
def test_parse_shape(value: int | str, shape: gm.Shape) -> None:
    assert gm.parse_shape(value) == shape


@pytest.mark.parametrize("value", ["", "8x8", "axbxc", "0", "4x0x4", True, -3, "1x2x3x4"])
def test_parse_shape_rejects(value: int | str) -> None:
    with pytest.raises(ValueError):
        gm.parse_shape(value)


def test_shape_label_and_dict() -> None:
    s = gm.Shape(1, 2, 3)
    assert s.label == "1x2x3" and s.as_dict() == {"m": 1, "n": 2, "k": 3}


def test_flops_count_two_m_n_k() -> None:
    s = gm.Shape(8192, 8192, 8192)
    assert gm.gemm_flops(s) == 2 * 8192**3
    # 1.1 TFLOP in 1.4 ms is ~785 TFLOPS
    assert gm.tflops(s, 1.4e-3) == pytest.approx(2 * 8192**3 / 1.4e-3 / 1e12)
    assert gm.tflops(gm.Shape(1000, 1000, 1000), 1.0) == pytest.approx(2e-3)


def _block(
    dtype: str, k: int = 4096, n: int = 64, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block computed the way the GPU does it (inputs in the dtype, fp32 accumulate, output rounded)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if dtype == "fp16":
        x, w = x.astype(np.float16).astype(np.float64), w.astype(np.float16).astype(np.float64)
        out = (x.astype(np.float32) @ w.astype(np.float32).T).astype(np.float16)
    else:
        x, w = x.astype(np.float64), w.astype(np.float64)
        out = (x.astype(np.float32) @ w.astype(np.float32).T).astype(np.float32)
    ref = x @ w.T
    scale = np.sqrt((x * x) @ (w * w).T)
    return out, ref, scale


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_block_errors_accepts_a_correct_result(dtype: str) -> None:
    out, ref, scale = _block(dtype)
    result = gm.block_errors(out, ref, scale, gm.TOLERANCES[dtype])
    assert result["wrong"] == 0 and result["checked"] == out.size and 0 < result["worst_ratio"] < 1


def test_block_errors_finds_a_flipped_bit_and_a_nan() -> None:
    out, ref, scale = _block("fp32")
    bad = out.copy()
    bad[5, 7] = np.float32(bad[5, 7] * 2.0)  # an exponent bit flipped
    bad[9, 1] = np.nan
    result = gm.block_errors(bad, ref, scale, gm.TOLERANCES["fp32"])
    assert result["wrong"] == 2
    assert result["worst_index"] in ([9, 1], [5, 7])
    rows, cols = list(range(100, 164)), list(range(200, 264))
    reason = gm.block_verdict("fp32", gm.Shape(512, 512, 4096), result, rows, cols)
    assert reason is not None and reason.startswith("gemm fp32 512x512x4096: 2 of 4096 sampled outputs")
    burn = gm.block_verdict("bf16", gm.Shape(8, 8, 8), result, rows, cols, what="burn")
    assert burn is not None and burn.startswith("burn bf16 8x8x8: 2 of 4096")
    assert gm.block_verdict("fp32", gm.Shape(1, 1, 1), {**result, "wrong": 0}, rows, cols) is None


def test_block_errors_tolerance_is_dtype_fitting() -> None:
    """An fp16-rounded result is fine for fp16 but wrong for fp32's tolerance."""
    out16, ref, scale = _block("fp16")
    assert gm.block_errors(out16, ref, scale, gm.TOLERANCES["fp16"])["wrong"] == 0
    assert gm.block_errors(out16, ref, scale, gm.TOLERANCES["fp32"])["wrong"] > 0
