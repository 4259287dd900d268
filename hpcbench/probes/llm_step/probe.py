"""LLM training-step canary: tokens/s and MFU of a real Llama-style decoder, per GPU and across the node.

The parts an LLM job uses (GEMM, attention, HBM, collectives) are measured by their own probes;
this one measures the job: forward + backward + AdamW step of a decoder stack (``model``), bf16
autocast over fp32 master weights, on a fixed synthetic batch (``train``). Presets by shape
(``flops.PRESETS``): ``tiny`` (the CPU, tests), ``8b-layer``, ``70b-layer``; ``auto`` is
``8b-layer`` on a GPU and ``tiny`` on the CPU.

- ``mode = "single"``: one device (``expand = "gpu"`` runs one per GPU at once): tokens/s, step
  time (median, p95), model TFLOPS and MFU (``flops``: 6·N·T + 6·L·h·s·T per step, against the
  GPU's dense bf16 peak: ``peak_tflops`` or the datasheet table), peak memory, the losses; the
  float32 bits of the first loss are offered for a consensus among the node's GPUs of one model.
- ``mode = "ddp"``: one rank per GPU with NCCL (or ``ranks`` gloo processes on the CPU), spawned
  here or joined under torchrun/srun (``ddp``): each rank alone, then DistributedDataParallel;
  node tokens/s, scaling efficiency = node tokens/s / (ranks × one rank's tokens/s alone), the
  slowest rank's GPU named.

A loss that is NaN/Inf or does not fall over the timed steps sets ``sanity`` (a FAIL of its own).
The probe decides no verdict and prints nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.hw.torch_device import Clock

from hpcbench.core.errors import ConfigError, ProbeError, ProbeSkip
from hpcbench.hw import gpu_probe as gp
from hpcbench.probes.base import GpuProbe, ProbeContext, check
from hpcbench.probes.llm_step import flops as fl

NAME = "llm_step"
MODES = ("single", "ddp")
PRECISIONS = ("auto", "bf16", "fp32")
GIB = 2**30
#: the ranks' collective timeout is at most this fraction of the check's timeout
TIMEOUT_FRACTION = 0.3
METRICS = (
    "tokens_per_s",
    "step_time",
    "step_time_p95",
    "model_tflops",
    "mfu",
    "peak_memory",
    "node_tokens_per_s",
    "scaling_efficiency",
)


@dataclass(frozen=True)
class LlmStepParams:
    device: int | str = field(
        default="auto", metadata={"help": "auto (GPU 0, else CPU), cpu, or a GPU index (hpcbench inventory)"}
    )
    mode: str = field(
        default="single",
        metadata={
            "help": "single (one device) or ddp (a rank per GPU with NCCL; gloo ranks with device=cpu)"
        },
    )
    preset: str = field(
        default="auto",
        metadata={"help": "tiny, 8b-layer, 70b-layer; auto = 8b-layer on a GPU, tiny on the CPU"},
    )
    layers: int = field(default=0, metadata={"help": "decoder layers; 0 = the preset's"})
    seq: int = field(default=0, metadata={"help": "sequence length; 0 = the preset's"})
    batch: int = field(default=0, metadata={"help": "micro-batch (sequences per step); 0 = the preset's"})
    steps: int = field(default=20, metadata={"help": "timed training steps (>= 2)"})
    warmup: int = field(default=5, metadata={"help": "untimed steps first"})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate"})
    precision: str = field(
        default="auto", metadata={"help": "auto (bf16 autocast where torch runs it), bf16, fp32"}
    )
    peak_tflops: float = field(
        default=0.0,
        metadata={"help": "dense bf16 peak for MFU; 0 = the GPU's datasheet value (no MFU on the CPU)"},
    )
    ranks: int = field(default=0, metadata={"help": "ddp: ranks to spawn; 0 = one per GPU, or 2 on the CPU"})
    threads: int = field(default=0, metadata={"help": "CPU threads per process (CPU device); 0 = torch's"})
    telemetry_interval: float = field(default=0.1, metadata={"help": "NVML sampling period, s; 0 = off"})
    timeout: float = field(
        default=120.0, metadata={"help": "ddp: seconds for the ranks to join, and per collective"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the weights and the batch"})

    def __post_init__(self) -> None:
        problem = gp.check_device_param(self.device)
        check(problem is None, NAME, "device", problem or "")
        check(self.mode in MODES, NAME, "mode", f"single or ddp, not {self.mode!r}")
        check(
            self.mode == "single" or self.device in ("auto", "cpu"),
            NAME,
            "device",
            "the ddp mode takes a rank per GPU: device auto (NCCL) or cpu (gloo), not a GPU index",
        )
        known = ", ".join(("auto", *fl.PRESETS))
        check(
            self.preset == "auto" or self.preset in fl.PRESETS,
            NAME,
            "preset",
            f"unknown {self.preset!r}; known: {known}",
        )
        for key in ("layers", "seq", "batch"):
            check(
                getattr(self, key) >= 0,
                NAME,
                key,
                f"must be >= 0 (0 = the preset's), got {getattr(self, key)}",
            )
        for preset in fl.PRESETS if self.preset == "auto" else (self.preset,):
            problem = fl.shape_problem(fl.make_shape(preset, self.layers, self.seq, self.batch))
            check(problem is None, NAME, "preset", f"{preset}: {problem}")
        check(self.steps >= 2, NAME, "steps", f"must be >= 2, got {self.steps}")
        check(self.warmup >= 0, NAME, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.lr > 0, NAME, "lr", f"must be > 0, got {self.lr}")
        check(self.precision in PRECISIONS, NAME, "precision", f"auto, bf16 or fp32, not {self.precision!r}")
        check(self.peak_tflops >= 0, NAME, "peak_tflops", f"must be >= 0, got {self.peak_tflops}")
        check(
            self.ranks == 0 or self.ranks >= 2, NAME, "ranks", f"must be 0 (auto) or >= 2, got {self.ranks}"
        )
        check(self.threads >= 0, NAME, "threads", f"must be >= 0, got {self.threads}")
        check(self.telemetry_interval >= 0, NAME, "telemetry_interval", "must be >= 0")
        check(self.timeout > 0, NAME, "timeout", f"must be > 0 seconds, got {self.timeout}")


def resolve_shape(params: LlmStepParams, on_gpu: bool) -> tuple[str, fl.Shape]:
    preset = params.preset if params.preset != "auto" else ("8b-layer" if on_gpu else "tiny")
    return preset, fl.make_shape(preset, params.layers, params.seq, params.batch)


def peak_of(params: LlmStepParams, device_info: dict[str, Any]) -> tuple[float | None, str]:
    """(dense bf16 peak TFLOPS or None, where it comes from or why there is none)."""
    if params.peak_tflops:
        return params.peak_tflops, "parameter peak_tflops"
    if device_info.get("kind") != "cuda":
        return None, "the CPU device has no datasheet bf16 peak here; pass peak_tflops for an MFU"
    name = str(device_info.get("name") or "")
    found = fl.dense_bf16_peak(name)
    if found is None:
        return None, f"no dense bf16 peak known for {name!r}; pass peak_tflops"
    return found


def _ms(seconds: list[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


def single_measurements(
    shape: fl.Shape,
    losses: list[float],
    seconds: list[float],
    *,
    warmup: int,
    subject: str,
    peak: tuple[float | None, str],
    peak_memory_bytes: int | None,
    settings: dict[str, Any],
    consensus_group: str,
    gpu_clocks_held: str = "",
) -> list[Measurement | Unmeasured]:
    """The measurements of one device's run. Pure: the run's losses and step seconds in;
    ``gpu_clocks_held``: what held the GPU's clocks down meanwhile (``throttle_hint``)."""
    import statistics

    from hpcbench.core.measurement import Conditions, Consensus, Measurement, Unmeasured
    from hpcbench.probes.llm_step import calc

    sanity = calc.loss_problem(losses, warmup, subject)
    bits = calc.float32_bits(losses[0])
    tflops, peak_source = peak
    not_measured: list[Unmeasured] = []
    if tflops is None:
        not_measured.append(Unmeasured("mfu", "not_measured", peak_source))
    if peak_memory_bytes is None:
        not_measured.append(
            Unmeasured(
                "peak_memory",
                "not_measured",
                (
                    "the CPU device: torch keeps no allocator statistics for it "
                    "(the process's peak RSS is in settings.peak_rss_bytes)"
                ),
            )
        )
    median = statistics.median(seconds)
    common = {
        **settings,
        "shape": shape.as_dict(),
        "flops_per_step": fl.step_flops(shape),
        "flops_dense": fl.dense_flops(shape),
        "flops_attention": fl.attention_flops(shape),
        "matmul_params": fl.matmul_params(shape),
        "params": fl.all_params(shape),
        "losses_first": calc.json_losses(losses[: warmup + 5]),
        "loss_last": calc.json_losses(losses[-1:])[0],
        "warmup": warmup,
        "steps": len(seconds),
        "step_ms_median": median * 1e3,
        "step_ms_p95": calc.p95(seconds) * 1e3,
        "peak_tflops": tflops,
        "peak_source": peak_source,
    }
    main = {**common, "first_loss_bits": bits}
    agree = Consensus(
        "first_loss_bits", bits, consensus_group, "the float32 bit pattern of the first step's loss"
    )
    held = Conditions(gpu_clocks_held=gpu_clocks_held)

    def m(
        metric: str, samples: list[float], unit: str, conv: str, *, higher: bool = True, s: Any = None
    ) -> Measurement:
        return Measurement.from_samples(
            metric, samples, unit, subject, higher_is_better=higher, statistic="median",
            convention=conv, settings=s or common, sanity=sanity, conditions=held,
            detail=f"{shape.tokens} tokens a step, median step {median * 1e3:.4g} ms",
            consensus=agree if s is main else None,
        )  # fmt: skip

    rate = "tokens per step / step seconds, median of the timed steps"
    p95_ms = calc.p95(seconds) * 1e3
    out = [
        m("tokens_per_s", [fl.tokens_per_s(shape, t) for t in seconds], "tokens/s", rate, s=main),
        m("step_time", _ms(seconds), "ms", "forward + backward + optimizer step, median", higher=False),
        m("step_time_p95", [p95_ms], "ms", "95th percentile of the timed steps", higher=False),
        m("model_tflops", [fl.model_tflops(shape, t) for t in seconds], "TFLOPS", fl.CONVENTION),
    ]
    if tflops is not None:
        conv = f"model FLOPs / step seconds / dense bf16 peak ({tflops:g} TFLOPS)"
        out.append(m("mfu", [fl.mfu(shape, t, tflops) for t in seconds], "ratio", conv))
    if peak_memory_bytes is not None:
        conv = "torch.cuda.max_memory_allocated, GiB = 2^30 B"
        out.append(m("peak_memory", [peak_memory_bytes / GIB], "GiB", conv, higher=False))
    return out + not_measured


def _member_name(member: dict[str, Any]) -> str:
    where = (
        f"gpu{member['nvml_index']}" if member.get("nvml_index") is not None else str(member.get("device"))
    )
    return f"rank {member['rank']} ({where} on {member['host']})"


def ddp_measurements(
    shape: fl.Shape,
    result: dict[str, Any],
    *,
    warmup: int,
    subject: str,
    peak: tuple[float | None, str],
    extra: dict[str, Any],
) -> list[Measurement | Unmeasured]:
    """node tokens/s, scaling efficiency, step time and MFU of a DDP run. Pure: the gathered result in.

    A step of the node lasts as long as its slowest rank's; one rank alone runs at the median of
    the ranks' tokens/s when each trained alone (all at once, before DDP)."""
    import statistics

    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.probes.llm_step import calc

    ranks = result["ranks"]
    world = len(ranks)
    members = [r["member"] for r in ranks]
    steps = len(ranks[0]["together"]["seconds"])
    node_seconds = [max(r["together"]["seconds"][i] for r in ranks) for i in range(steps)]
    alone = [fl.tokens_per_s(shape, statistics.median(r["alone"]["seconds"])) for r in ranks]
    single = statistics.median(alone)
    node_rates = [world * fl.tokens_per_s(shape, t) for t in node_seconds]
    node = statistics.median(node_rates)
    efficiency = fl.scaling_efficiency(node, world, single)
    worst, fraction = calc.slowest(alone)
    problems = [
        p
        for r, m in zip(ranks, members, strict=True)
        for phase in ("alone", "together")
        if (p := calc.loss_problem(r[phase]["losses"], warmup, f"{_member_name(m)} {phase}"))
    ]
    bits = [r["alone"]["first_loss_bits"] for r in ranks]
    problems += [
        f"{_member_name(members[i])}: first loss bits {bits[i]} differ from the other ranks' (same seed)"
        for i in calc.majority_outliers(bits)
    ]
    sanity = "; ".join(problems[:3]) or None
    tflops, peak_source = peak
    settings = {
        **extra,
        **result.get("settings", {}),
        "world_size": world,
        "backend": result["backend"],
        "launcher": result.get("launcher"),
        "ddp": result.get("ddp"),
        "nccl_version": result.get("nccl_version"),
        "shape": shape.as_dict(),
        "flops_per_step_per_rank": fl.step_flops(shape),
        "members": members,
        "single_tokens_per_s": single,
        "alone_tokens_per_s": alone,
        "together_step_ms_median": [statistics.median(r["together"]["seconds"]) * 1e3 for r in ranks],
        "first_loss_bits": bits,
        "losses_first": calc.json_losses(ranks[0]["together"]["losses"][: warmup + 5]),
        "slowest_rank": worst,
        "slowest_rank_gpu": members[worst].get("nvml_index"),
        "slowest_rank_host": members[worst]["host"],
        "peak_tflops": tflops,
        "peak_source": peak_source,
        "peak_memory_bytes": [r["together"]["peak_memory_bytes"] for r in ranks],
    }
    detail = f"slowest {_member_name(members[worst])}: alone {fraction:.0%} of the other ranks' median"

    def m(metric: str, samples: list[float], unit: str, conv: str, higher: bool = True) -> Measurement:
        return Measurement.from_samples(
            metric, samples, unit, subject, higher_is_better=higher, statistic="median",
            convention=conv, settings=settings, sanity=sanity, detail=detail,
        )  # fmt: skip

    out: list[Measurement | Unmeasured] = [
        m("node_tokens_per_s", node_rates, "tokens/s",
          "ranks x tokens per step / the slowest rank's step seconds, median of the timed steps"),
        m("scaling_efficiency", [efficiency], "ratio",
          "node tokens/s / (ranks x the median rank's tokens/s alone)"),
        m("step_time", _ms(node_seconds), "ms", "the slowest rank's step, median", higher=False),
    ]  # fmt: skip
    if tflops is not None:
        out.append(
            m("mfu", [fl.mfu(shape, t, tflops) for t in node_seconds], "ratio",
              f"model FLOPs per rank / the slowest rank's step seconds / dense bf16 peak ({tflops:g} TFLOPS)")
        )  # fmt: skip
    else:
        out.append(Unmeasured("mfu", "not_measured", peak_source))
    return out


class LlmStep(GpuProbe):
    """Training-step canary: a Llama-style decoder's tokens/s and MFU per GPU, and its DDP scaling."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "LLM training step: tokens/s and MFU of a Llama-style decoder per GPU, DDP scaling across the node"
    )
    Params: ClassVar[type] = LlmStepParams
    metrics: ClassVar[tuple[str, ...]] = METRICS

    def __init__(self, clock: Clock | None = None, before_step: Any = None) -> None:
        self.clock = clock  # None: the device's own (tests pass fixed timings)
        self.before_step = before_step  # test seam: (step index, model) before each step

    def run(self, params: LlmStepParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        import resource

        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # before CUDA starts
        if params.mode == "ddp":
            return self._ddp(params, ctx)
        import torch

        from hpcbench.hw import torch_device as td
        from hpcbench.hw.telemetry import throttle_hint
        from hpcbench.probes.llm_step import train

        rt = td.prepare(torch, params.device, ctx.inventory, params.threads, clock=self.clock)
        preset, shape = resolve_shape(params, rt.choice.is_cuda)
        s = train.setup(shape, rt.device, precision=params.precision, lr=params.lr, seed=params.seed)
        with td.sampler(rt, params.telemetry_interval) as sampler:
            t0 = time.monotonic()
            timed = train.run(
                s, rt.clock, rt.device, warmup=params.warmup, steps=params.steps, before_step=self.before_step
            )
            telemetry = sampler.summary(t0, time.monotonic())
        settings = {
            **s.settings,
            "device": rt.info,
            "preset": preset,
            "timer": rt.clock.name,
            "seed": params.seed,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "telemetry": telemetry,
        }
        group = (
            f"{rt.info.get('name')} {preset} {shape.layers}L s{shape.seq} b{shape.batch} "
            f"{s.precision} seed {params.seed}"
        )
        return single_measurements(
            shape,
            timed.losses,
            timed.seconds,
            warmup=params.warmup,
            subject=ctx.subject,
            peak=peak_of(params, rt.info),
            peak_memory_bytes=timed.peak_memory_bytes,
            settings=settings,
            consensus_group=group,
            gpu_clocks_held=throttle_hint(telemetry),
        )

    def _ddp(self, params: LlmStepParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.launch import spawn
        from hpcbench.launch.launcher import from_environ
        from hpcbench.probes.llm_step import ddp

        gpus = list(ctx.gpus) if ctx.gpus is not None else sorted(d.index for d in ctx.inventory.gpus.devices)
        if params.device == "auto" and not gpus:
            raise ProbeSkip(
                "no GPU on this node: the ddp mode trains one rank per GPU (device=cpu runs gloo ranks)"
            )
        backend = "gloo" if params.device == "cpu" else "nccl"
        preset, shape = resolve_shape(params, backend == "nccl")
        timeout = min(params.timeout, ctx.timeout * TIMEOUT_FRACTION) if ctx.timeout else params.timeout
        cfg = ddp.config(
            shape,
            backend=backend,
            devices=gpus,
            inventory=ctx.inventory.as_dict(),
            precision=params.precision,
            lr=params.lr,
            seed=params.seed,
            warmup=params.warmup,
            steps=params.steps,
            threads=params.threads,
            timeout=max(1.0, timeout),
        )
        try:
            launch = from_environ(os.environ)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
        if launch is not None:
            if launch.world_size < 2:
                raise ProbeSkip(f"ddp needs 2 or more ranks; WORLD_SIZE is {launch.world_size}")
            result = self._join({**cfg, "devices": []}, launch)  # each rank: its LOCAL_RANK's GPU
        else:
            world = params.ranks or (len(gpus) if backend == "nccl" else 2)
            if backend == "nccl" and world > len(gpus):
                raise ProbeError(
                    f"ranks={world} but this run has {len(gpus)} GPU(s); NCCL needs a GPU per rank"
                )
            if world < 2:
                raise ProbeSkip(
                    f"ddp needs 2 or more ranks (one per GPU with NCCL); this run has {len(gpus)} GPU"
                )
            deadline = ctx.timeout * 0.9 if ctx.timeout else 3600.0
            result = spawn.spawn("hpcbench.probes.llm_step.ddp", cfg, world, ctx.workdir, deadline)
            result["launcher"] = "spawned"
        extra = {"preset": preset, "seed": params.seed, "timeout_s": cfg["timeout"]}
        return ddp_measurements(
            shape,
            result,
            warmup=params.warmup,
            subject=ctx.subject,
            peak=peak_of(params, result["device"]),
            extra=extra,
        )

    @staticmethod
    def _join(cfg: dict[str, Any], launch: Any) -> dict[str, Any]:
        from hpcbench.launch.rendezvous import RankFailure
        from hpcbench.probes.llm_step.ddp import RankConfigError, run_rank

        try:
            return run_rank(cfg, launch)
        except RankConfigError as exc:
            raise ProbeError(str(exc)) from None
        except RankFailure as exc:
            raise ProbeError(f"rank {launch.rank}: {exc}") from None
