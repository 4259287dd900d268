"""The timed training loop on one device, shared by the single-GPU mode and every DDP rank.

``warmup`` untimed steps, then ``steps`` timed steps back to back, each bounded by the device's
clock (CUDA events recorded on the stream before and after each step, read after one
synchronisation; ``time.perf_counter`` on the CPU): a step that waits for the CPU to launch its
kernels counts that wait. The losses stay on the device until the loop has ended.

Imports torch: only ``probe.run`` and the DDP ranks import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hpcbench.hw import torch_device as td
from hpcbench.probes.llm_step import model as lm
from hpcbench.probes.llm_step.calc import float32_bits
from hpcbench.probes.llm_step.flops import Shape

#: test seam: called before each step (0-based, warm-up included) with the model
BeforeStep = Callable[[int, Any], None]


@dataclass(frozen=True)
class Setup:
    """A model, its optimiser and the fixed batch on one device, ready to train."""

    model: Any
    opt: Any
    step: Callable[[], Any]
    precision: str
    settings: dict[str, Any]


def choose_precision(requested: str, device: Any) -> tuple[str, str]:
    """(bf16 | fp32, why): ``auto`` is bf16 autocast on CUDA, and on the CPU where this torch runs it."""
    if requested != "auto":
        return requested, f"precision={requested}"
    if device.type == "cuda":
        return "bf16", "auto: bf16 autocast on CUDA"
    why = lm.bf16_autocast_works(device)
    if why is None:
        return "bf16", "auto: this torch runs bf16 autocast on the CPU"
    return "fp32", f"auto: fp32 ({why})"


def setup(shape: Shape, device: Any, *, precision: str, lr: float, seed: int, wrap: Any = None) -> Setup:
    """Build the decoder (fp32 master weights), AdamW and the batch; ``wrap`` (DDP) wraps the model."""
    chosen, why = choose_precision(precision, device)
    model = lm.build(shape, device, seed)
    built = lm.matmul_weights(model)
    params = sum(p.numel() for p in model.parameters())
    trained = wrap(model) if wrap is not None else model
    opt, opt_name = lm.optimizer(model, device, lr)
    data = lm.batch(shape, device, seed)
    step = lm.make_step(trained, opt, data, lm.autocast(device, chosen), shape.vocab)
    settings = {
        "precision": chosen,
        "precision_reason": why,
        "master_weights": "fp32",
        "optimizer": opt_name,
        "lr": lr,
        "matmul_params_built": built,
        "params_built": params,
        "attention": "torch.nn.functional.scaled_dot_product_attention, is_causal=True",
        "data": "fixed batch: uniform random tokens, targets a fixed permutation of each (seeded)",
    }
    return Setup(trained, opt, step, chosen, settings)


@dataclass(frozen=True)
class Timed:
    """What a run measured: every step's loss (warm-up first), the timed steps' seconds."""

    losses: list[float]
    seconds: list[float]
    first_loss_bits: str
    peak_memory_bytes: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "losses": self.losses,
            "seconds": self.seconds,
            "first_loss_bits": self.first_loss_bits,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


def run(
    s: Setup,
    clock: td.Clock,
    device: Any,
    *,
    warmup: int,
    steps: int,
    before_step: BeforeStep | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Timed:
    """``warmup`` untimed and ``steps`` timed training steps; their losses and seconds."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses: list[Any] = []
    for i in range(warmup):
        if before_step is not None:
            before_step(i, s.model)
        losses.append(s.step())
    clock.settle()
    marks: list[tuple[Any, Any]] = []
    for i in range(warmup, warmup + steps):
        if before_step is not None:
            before_step(i, s.model)
        if on_step is not None:
            on_step(i)
        begin = clock.start()
        losses.append(s.step())
        marks.append((begin, clock.stop()))
    seconds = clock.seconds(marks)
    values = [float(v) for v in torch.stack(losses).float().cpu().tolist()]
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    return Timed(values, seconds, float32_bits(values[0]), peak)
