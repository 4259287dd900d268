"""Pure helpers of the attention probe: FLOP counting, case grid, metric names, the comparison
with the math backend.

FLOPs are counted as FlashAttention's benchmarks count them (benchmarks/benchmark_flash_attention.py):
forward 4·b·h·s²·d (two matmuls, QK^T and PV, of 2·s²·d each per head), halved when causal;
backward 2.5 × forward; forward + backward 3.5 × forward. TFLOPS is 1e12 FLOP/s.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES: tuple[str, ...] = ("bf16", "fp16")
MODES: tuple[str, ...] = ("fwd", "fwd_bwd")
#: multiple of the forward FLOPs each mode does
MODE_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}
GPU_SEQ_LENS: tuple[int, ...] = (2048, 4096, 8192, 16384)
CPU_SEQ_LENS: tuple[int, ...] = (256, 512)
#: FlashAttention's benchmark: 16k tokens per batch, model dim 2048 (heads = 2048 / head dim)
GPU_TOKENS, GPU_MODEL_DIM = 16384, 2048
CPU_TOKENS, CPU_MODEL_DIM = 1024, 256


@dataclass(frozen=True)
class AttnCase:
    dtype: str
    mode: str
    causal: bool
    head_dim: int
    seq_len: int
    batch: int
    heads: int

    @property
    def metric(self) -> str:
        return metric_name(self.dtype, self.mode, self.causal, self.head_dim, self.seq_len)

    @property
    def flops(self) -> float:
        return attention_flops(self.batch, self.heads, self.seq_len, self.head_dim, self.causal, self.mode)


def attention_flops(batch: int, heads: int, seq_len: int, head_dim: int, causal: bool, mode: str) -> float:
    """FlashAttention's count: 4·b·h·s²·d forward, /2 causal, x2.5 backward, x3.5 both."""
    if mode not in MODE_FACTOR:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODE_FACTOR)}")
    forward = 4.0 * batch * heads * seq_len * seq_len * head_dim
    if causal:
        forward /= 2
    return forward * MODE_FACTOR[mode]


def metric_name(dtype: str, mode: str, causal: bool, head_dim: int, seq_len: int) -> str:
    """``bf16_fwd_bwd_causal_d128_s8192``."""
    return f"{dtype}_{mode}_{'causal' if causal else 'full'}_d{head_dim}_s{seq_len}"


def all_metrics(
    head_dims: tuple[int, ...] = (64, 128), seq_lens: tuple[int, ...] = GPU_SEQ_LENS
) -> tuple[str, ...]:
    """Every metric of the default grid (what a suite may name in ``metrics``)."""
    return tuple(
        metric_name(dt, mode, causal, d, s)
        for dt in DTYPES
        for mode in MODES
        for causal in (False, True)
        for d in head_dims
        for s in seq_lens
    )


def batch_and_heads(
    seq_len: int, head_dim: int, tokens: int, model_dim: int, batch: int, heads: int
) -> tuple[int, int]:
    """Batch = tokens / seq_len and heads = model_dim / head_dim (FlashAttention's benchmark),
    unless given; at least 1 each."""
    b = batch or max(1, tokens // seq_len)
    h = heads or max(1, model_dim // head_dim)
    return b, h


def cases(
    dtypes: list[str],
    modes: list[str],
    causal: list[bool],
    head_dims: list[int],
    seq_lens: list[int],
    *,
    tokens: int,
    model_dim: int,
    batch: int = 0,
    heads: int = 0,
) -> list[AttnCase]:
    """The grid, in the order it runs (dtype, head dim, causal, sequence length, mode)."""
    out = []
    for dt in dtypes:
        for d in head_dims:
            for c in causal:
                for s in seq_lens:
                    b, h = batch_and_heads(s, d, tokens, model_dim, batch, heads)
                    out.extend(AttnCase(dt, mode, c, d, s, b, h) for mode in modes)
    return out


#: the backend may err at most this many times the math backend's own error in the same dtype
#: (FlashAttention's tests allow 2x), plus this floor relative to the reference's magnitude
ERROR_FACTOR = 3.0
ERROR_FLOOR = {"bf16": 2**-7, "fp16": 2**-10}


def within_reference(err_backend: float, err_math: float, ref_magnitude: float, dtype: str) -> bool:
    """Is the backend's error (vs float64) in line with the math backend's error in ``dtype``?"""
    bound = ERROR_FACTOR * err_math + ERROR_FLOOR[dtype] * max(1.0, ref_magnitude)
    return err_backend <= bound  # NaN fails
