"""The shapes of the decoder the canary trains, and its FLOP and MFU arithmetic. Pure: no torch.

FLOPs per training step (forward + backward; PaLM's appendix B count, as Megatron-LM and
nanoGPT report MFU):

    6 · N · T  +  6 · L · h · s · T

- N = the parameters that take part in a matrix multiply, exactly those the model runs: per layer
  the query and output projections (h·h each), the key and value projections (h · kv_heads ·
  head_dim each), the SwiGLU MLP (3 · h · ffn); and the LM head (h · vocab). The embedding is a
  table lookup (no FLOPs) and the RMSNorm weights scale elementwise: neither counts, as in the
  standard count. 6 = 2 FLOPs per multiply-add × (1 forward + 2 backward).
- the attention term: scores Q·Kᵀ and their product with V cost 4 · s · h FLOPs per token and
  layer forward, 12 · L · h · s · T with the backward; causal attention computes half of the
  score matrix, so 6 · L · h · s · T (grouped-query attention shares K and V among query heads,
  the products stay per query head: h, not kv_heads · head_dim).
- T = tokens per step = micro-batch × sequence; s = sequence; L = layers; h = hidden.

Activation recomputation, softmax, norms and the optimizer are not counted (MFU counts the model's
FLOPs, not the hardware's). TFLOPS = 1e12 FLOP/s; MFU = FLOPs per step / step seconds / the GPU's
dense bf16 peak in FLOP/s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CONVENTION = "6*N*T + 6*L*h*s*T FLOPs per step (PaLM appendix B, causal halved); TFLOPS = 1e12 FLOP/s"


@dataclass(frozen=True)
class Arch:
    """A decoder's shape, without the batch: hidden size, heads, KV heads, MLP width, vocabulary."""

    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int


#: presets by shape (not by weights): the architecture, default layers, sequence and micro-batch
PRESETS: dict[str, tuple[Arch, int, int, int]] = {
    # CPU and tests: seconds on one core
    "tiny": (Arch(hidden=64, heads=4, kv_heads=2, ffn=176, vocab=256), 2, 64, 2),
    # one Llama-3-8B decoder layer (hidden 4096, 32 heads, 8 KV heads, SwiGLU 14336), 4k tokens;
    # a small vocabulary: the LM head stays a sliver (1.9%) of N
    "8b-layer": (Arch(hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=1024), 1, 4096, 1),
    # one Llama-3-70B decoder layer (hidden 8192, 64 heads, 8 KV heads, SwiGLU 28672)
    "70b-layer": (Arch(hidden=8192, heads=64, kv_heads=8, ffn=28672, vocab=1024), 1, 4096, 1),
}


@dataclass(frozen=True)
class Shape:
    """What one step trains: the architecture, its depth and the micro-batch."""

    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    layers: int
    seq: int
    batch: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def tokens(self) -> int:
        """Tokens per step (one micro-batch)."""
        return self.batch * self.seq

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "head_dim": self.head_dim, "tokens_per_step": self.tokens}


def shape_problem(shape: Shape) -> str | None:
    """What is wrong with a shape (one line), or None."""
    for key in ("hidden", "heads", "kv_heads", "ffn", "layers", "seq", "batch"):
        if getattr(shape, key) < 1:
            return f"{key} must be >= 1, got {getattr(shape, key)}"
    if shape.vocab < 2:
        return f"vocab must be >= 2, got {shape.vocab}"
    if shape.hidden % shape.heads:
        return f"hidden {shape.hidden} is not a multiple of heads {shape.heads}"
    if shape.heads % shape.kv_heads:
        return f"heads {shape.heads} is not a multiple of kv_heads {shape.kv_heads}"
    if shape.head_dim % 2:
        return f"head_dim {shape.head_dim} (hidden / heads) must be even for rotary embeddings"
    return None


def make_shape(preset: str, layers: int = 0, seq: int = 0, batch: int = 0) -> Shape:
    """The preset's shape with ``layers``, ``seq`` and ``batch`` overriding its defaults (0: keep)."""
    arch, d_layers, d_seq, d_batch = PRESETS[preset]
    return Shape(
        hidden=arch.hidden,
        heads=arch.heads,
        kv_heads=arch.kv_heads,
        ffn=arch.ffn,
        vocab=arch.vocab,
        layers=layers or d_layers,
        seq=seq or d_seq,
        batch=batch or d_batch,
    )


def layer_matmul_params(shape: Shape) -> int:
    """Weights of one decoder layer's matrix multiplies: q, k, v, o projections and the SwiGLU MLP."""
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    return 2 * h * h + 2 * h * kv + 3 * h * shape.ffn


def matmul_params(shape: Shape) -> int:
    """N of the FLOP count: every layer's matmul weights and the LM head (h x vocab)."""
    return shape.layers * layer_matmul_params(shape) + shape.hidden * shape.vocab


def all_params(shape: Shape) -> int:
    """Every trained parameter: N, the embedding table, and the RMSNorm weights (2 a layer, 1 final)."""
    return matmul_params(shape) + shape.vocab * shape.hidden + (2 * shape.layers + 1) * shape.hidden


def dense_flops(shape: Shape) -> int:
    """6 · N · T."""
    return 6 * matmul_params(shape) * shape.tokens


def attention_flops(shape: Shape) -> int:
    """12 · L · h · s · T, halved for causal attention."""
    return 12 * shape.layers * shape.hidden * shape.seq * shape.tokens // 2


def step_flops(shape: Shape) -> int:
    """Model FLOPs of one training step (forward + backward) of one micro-batch."""
    return dense_flops(shape) + attention_flops(shape)


def tokens_per_s(shape: Shape, seconds: float) -> float:
    return shape.tokens / seconds


def model_tflops(shape: Shape, seconds: float) -> float:
    """Model FLOPs per second of a step that took ``seconds``, in TFLOPS (1e12 FLOP/s)."""
    return step_flops(shape) / seconds / 1e12


def mfu(shape: Shape, seconds: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: FLOPs per step / step seconds / the dense bf16 peak (FLOP/s)."""
    return step_flops(shape) / seconds / (peak_tflops * 1e12)


def scaling_efficiency(node_tokens_per_s: float, ranks: int, single_tokens_per_s: float) -> float:
    """node tokens/s / (ranks × one rank's tokens/s alone): 1.0 is perfect data-parallel scaling."""
    return node_tokens_per_s / (ranks * single_tokens_per_s)


#: dense (no sparsity) bf16 tensor-core peaks, TFLOPS, from NVIDIA's datasheets, keyed on a fragment
#: of the name torch reports; the first fragment found in the name wins (specific ones first)
DENSE_BF16_PEAKS: tuple[tuple[str, float, str], ...] = (
    ("GH200", 989.4, "GH200 datasheet: 1,979 TFLOPS bf16 with sparsity, half dense"),
    ("H200 NVL", 835.5, "H200 NVL datasheet: 1,671 TFLOPS bf16 with sparsity, half dense"),
    ("H200", 989.4, "H200 SXM datasheet: 1,979 TFLOPS bf16 with sparsity, half dense"),
    ("H100 NVL", 835.5, "H100 NVL datasheet: 1,671 TFLOPS bf16 with sparsity, half dense"),
    ("H100 PCIe", 756.5, "H100 PCIe datasheet: 1,513 TFLOPS bf16 with sparsity, half dense"),
    ("H100", 989.4, "H100 SXM datasheet: 1,979 TFLOPS bf16 with sparsity, half dense"),
    ("B200", 2250.0, "HGX B200 datasheet: 4.5 PFLOPS bf16 with sparsity, half dense"),
    ("A100", 312.0, "A100 datasheet: 312 TFLOPS bf16 dense"),
)


def dense_bf16_peak(gpu_name: str) -> tuple[float, str] | None:
    """(TFLOPS, source) of the GPU whose name torch reports, or None when the table lacks it."""
    for fragment, tflops, source in DENSE_BF16_PEAKS:
        if fragment.lower() in gpu_name.lower():
            return tflops, source
    return None
