"""A Llama-style decoder written with torch, its synthetic batch, and one training step.

RMSNorm, rotary position embeddings, grouped-query attention through
``torch.nn.functional.scaled_dot_product_attention`` (causal), a SwiGLU MLP, pre-norm residual
blocks, a final RMSNorm and an untied LM head over a small vocabulary; bias-free ``nn.Linear``
weights, fp32 master weights, bf16 autocast (or fp32) for the forward and backward, AdamW.

The batch is drawn once from a seeded ``torch.Generator``: random tokens, and as targets a fixed
random permutation of each token (a task the model can learn, so the loss on the fixed batch
falls from about ln(vocab) as training proceeds). No download, no tokenizer.

Imports torch: only ``probe.run`` and the DDP ranks import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpcbench.probes.llm_step.flops import Shape

INIT_STD = 0.02
ROPE_THETA = 500000.0
NORM_EPS = 1e-5


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + NORM_EPS)
        return (normed * self.weight).to(x.dtype)


def rotary_tables(seq: int, head_dim: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (seq, head_dim / 2), in fp32."""
    inv = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of each head by the position's angles. x: (b, heads, s, d)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)


def _sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal SDPA with fewer K/V heads than query heads: ``enable_gqa`` where torch has it, else
    K and V repeated to the query heads (the same products, the same FLOPs)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        except TypeError:  # torch < 2.5
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class Attention(nn.Module):
    def __init__(self, shape: Shape) -> None:
        super().__init__()
        h, d = shape.hidden, shape.head_dim
        self.heads, self.kv_heads, self.head_dim = shape.heads, shape.kv_heads, d
        self.q = nn.Linear(h, shape.heads * d, bias=False)
        self.k = nn.Linear(h, shape.kv_heads * d, bias=False)
        self.v = nn.Linear(h, shape.kv_heads * d, bias=False)
        self.o = nn.Linear(shape.heads * d, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = _sdpa_gqa(q, k, v)
        return self.o(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.gate = nn.Linear(shape.hidden, shape.ffn, bias=False)
        self.up = nn.Linear(shape.hidden, shape.ffn, bias=False)
        self.down = nn.Linear(shape.ffn, shape.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(shape.hidden)
        self.attn = Attention(shape)
        self.mlp_norm = RMSNorm(shape.hidden)
        self.mlp = SwiGLU(shape)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.hidden)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.norm = RMSNorm(shape.hidden)
        self.head = nn.Linear(shape.hidden, shape.vocab, bias=False)

    def forward(self, tokens: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


def matmul_weights(model: nn.Module) -> int:
    """Elements of the weights of every nn.Linear in the model: N of the FLOP count, as built."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def build(shape: Shape, device: Any, seed: int) -> Decoder:
    """The decoder in fp32, built on ``device`` and initialised there from a seeded generator of the
    device (normal, std 0.02; output projections scaled by 1/sqrt(2 · layers), as GPT-2 and
    Megatron-LM do): the same weights on every device of one kind, without a host copy."""
    with torch.device(device):
        model = Decoder(shape)
    gen = torch.Generator(device=device).manual_seed(seed)
    scaled = INIT_STD / math.sqrt(2 * shape.layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                continue  # RMSNorm weights stay 1
            p.normal_(0.0, scaled if name.endswith(("o.weight", "down.weight")) else INIT_STD, generator=gen)
    return model


@dataclass(frozen=True)
class Batch:
    tokens: Any
    targets: Any
    cos: Any
    sin: Any


def batch(shape: Shape, device: Any, seed: int) -> Batch:
    """The fixed synthetic batch: tokens uniform over the vocabulary, targets = a fixed random
    permutation of each token, both from a seeded generator on the CPU (the same on every device)."""
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    tokens = torch.randint(0, shape.vocab, (shape.batch, shape.seq), generator=gen)
    perm = torch.randperm(shape.vocab, generator=gen)
    cos, sin = rotary_tables(shape.seq, shape.head_dim, device)
    return Batch(tokens.to(device), perm[tokens].to(device), cos, sin)


def autocast(device: Any, precision: str) -> Callable[[], AbstractContextManager[Any]]:
    """A factory of the forward's autocast context: bf16 autocast, or none (fp32)."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext


def optimizer(model: nn.Module, device: Any, lr: float) -> tuple[torch.optim.Optimizer, str]:
    """AdamW (betas 0.9/0.95, weight decay 0.1): fused on CUDA, foreach on the CPU; and which."""
    kwargs: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.95), "weight_decay": 0.1}
    if device.type == "cuda":
        return torch.optim.AdamW(model.parameters(), fused=True, **kwargs), "AdamW fused=True"
    return torch.optim.AdamW(model.parameters(), foreach=True, **kwargs), "AdamW foreach=True"


def make_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Batch,
    cast: Callable[[], AbstractContextManager[Any]],
    vocab: int,
) -> Callable[[], torch.Tensor]:
    """One training step: forward (autocast), cross-entropy in fp32, backward, AdamW step. Returns
    the loss as a detached device tensor (read after the timed loop: no synchronisation here)."""

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with cast():
            logits = model(data.tokens, data.cos, data.sin)
        loss = F.cross_entropy(logits.float().view(-1, vocab), data.targets.view(-1))
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def bf16_autocast_works(device: Any) -> str | None:
    """None when bf16 autocast runs a matmul on ``device`` here, else why not (for the settings)."""
    try:
        a = torch.ones(8, 8, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out = a @ a
        if out.dtype != torch.bfloat16:
            return f"autocast on {device.type} left the matmul in {out.dtype}"
    except (RuntimeError, ValueError) as exc:
        return f"bf16 autocast on {device.type} failed: {' '.join(str(exc).split())[:160]}"
    return None
