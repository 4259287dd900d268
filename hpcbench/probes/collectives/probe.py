"""Collective bandwidth through torch.distributed: all-reduce, all-gather, reduce-scatter.

Two ways to get ranks:

- **Spawned** (the default): the probe starts one rank per GPU with NCCL on a
  GPU node, or ``ranks`` (default 2) gloo ranks on a CPU node, as child
  processes (``python -m hpcbench.probes.collectives.rank``) meeting on
  127.0.0.1 at a free port. It watches them: when one dies, the others get a
  few seconds to report, then are killed, and the probe's ERROR names the
  rank that died.
- **Joined**: under torchrun or srun (RANK, WORLD_SIZE, MASTER_ADDR and
  MASTER_PORT set), the probe process *is* one rank and joins that job, so one
  job spans nodes. Every rank returns the same measurements; the session lets
  rank 0 alone write the record.

Numbers follow nccl-tests (see ``collectives_math``). The probe imports no
torch itself in spawned mode; ranks do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ConfigError, ProbeError, ProbeSkip
from hpcbench.probes.base import ProbeContext, Requirement, check
from hpcbench.probes.collectives import calc as cm

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.launch.launcher import LaunchEnv
    from hpcbench.probes.collectives.rank import RankConfig

NAME = "collectives"
CONVENTION = "nccl-tests busbw"
#: the collective timeout is at most this fraction of the check's timeout, so the probe
#: reports which rank is missing before the runner kills it
TIMEOUT_FRACTION = 0.3


@dataclass(frozen=True)
class CollectivesParams:
    ops: list[str] = field(
        default_factory=lambda: list(cm.OPS),
        metadata={"help": "collectives to measure: all_reduce, all_gather, reduce_scatter"},
    )
    backend: str = field(default="auto", metadata={"help": "auto (nccl on GPU nodes, else gloo), nccl, gloo"})
    ranks: int = field(
        default=0,
        metadata={"help": "ranks to spawn; 0 = one per GPU (nccl) or 2 (gloo); under torchrun: WORLD_SIZE"},
    )
    min_bytes: int = field(default=8, metadata={"help": "smallest size of the sweep (bytes)"})
    max_bytes: int = field(
        default=0,
        metadata={"help": "largest size; 0 = 8 GiB on GPUs (capped by free memory), 64 MiB on CPUs"},
    )
    iters: int = field(default=20, metadata={"help": "timed iterations per size, launched back to back"})
    warmup: int = field(default=5, metadata={"help": "untimed iterations per size first"})
    repeats: int = field(default=3, metadata={"help": "timed loops at the largest size (median is checked)"})
    dtype: str = field(default="float32", metadata={"help": "float32 or float64"})
    timeout: float = field(
        default=60.0, metadata={"help": "seconds to wait for the ranks to join, and for each collective"}
    )

    def __post_init__(self) -> None:
        ops = self.ops
        check(bool(ops), NAME, "ops", "must name at least one collective")
        bad = [o for o in ops if o not in cm.OPS]
        check(
            not bad, NAME, "ops", f"unknown collective {bad[0] if bad else ''!r}; known: {', '.join(cm.OPS)}"
        )
        check(len(set(ops)) == len(ops), NAME, "ops", "names a collective twice")
        check(
            self.backend in ("auto", "nccl", "gloo"),
            NAME,
            "backend",
            f"auto, nccl or gloo, not {self.backend!r}",
        )
        check(
            self.ranks == 0 or self.ranks >= 2, NAME, "ranks", f"must be 0 (auto) or >= 2, got {self.ranks}"
        )
        check(self.min_bytes >= 1, NAME, "min_bytes", f"must be >= 1, got {self.min_bytes}")
        check(
            self.max_bytes == 0 or self.max_bytes >= self.min_bytes,
            NAME,
            "max_bytes",
            f"must be 0 (auto) or >= min_bytes ({self.min_bytes}), got {self.max_bytes}",
        )
        check(self.iters >= 1, NAME, "iters", f"must be >= 1, got {self.iters}")
        check(self.warmup >= 0, NAME, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.repeats >= 1, NAME, "repeats", f"must be >= 1, got {self.repeats}")
        check(self.dtype in cm.DTYPES, NAME, "dtype", f"float32 or float64, not {self.dtype!r}")
        check(self.timeout > 0, NAME, "timeout", f"must be > 0 seconds, got {self.timeout}")


def choose_backend(requested: str, gpu_count: int) -> str:
    if requested != "auto":
        return requested
    return "nccl" if gpu_count > 0 else "gloo"


def choose_ranks(requested: int, backend: str, gpu_count: int) -> int:
    """How many ranks to spawn; ProbeSkip/ProbeError when this node cannot have them."""
    if backend == "nccl":
        if requested > gpu_count:
            raise ProbeError(
                f"ranks={requested} but this node has {gpu_count} GPU(s); NCCL needs a GPU per rank"
            )
        n = requested or gpu_count
        if n < 2:
            gpus = f"{gpu_count} GPU" + ("" if gpu_count == 1 else "s")
            raise ProbeSkip(f"collectives need 2 or more ranks (one per GPU with NCCL); this node has {gpus}")
        return n
    return requested or 2


def effective_timeout(requested: float, check_timeout: float | None) -> float:
    if not check_timeout:
        return requested
    return max(1.0, min(requested, check_timeout * TIMEOUT_FRACTION))


def _spawn(cfg: RankConfig, world: int, workdir: str, deadline_s: float) -> dict[str, Any]:
    """Run ``world`` ranks on this node (hpcbench.launch.spawn); rank 0's result, or ProbeError
    naming the rank that failed and how."""
    from hpcbench.launch import spawn

    return spawn.spawn("hpcbench.probes.collectives.rank", cfg.as_dict(), world, workdir, deadline_s)


def _join(cfg: RankConfig, launch: LaunchEnv) -> dict[str, Any]:
    from hpcbench.launch.rendezvous import RankFailure
    from hpcbench.probes.collectives.rank import RankConfigError, run_rank

    try:
        return run_rank(cfg, launch)
    except RankConfigError as exc:
        raise ProbeError(str(exc)) from None
    except RankFailure as exc:
        raise ProbeError(f"rank {launch.rank}: {exc}") from None


def measurements(result: dict[str, Any], subject: str, extra: dict[str, Any]) -> list[Measurement]:
    """busbw at the largest size and the average busbw of each op, with the per-size table."""
    from hpcbench.core.measurement import Measurement

    world = int(result["world_size"])
    members = result["members"]
    common = {
        k: result[k]
        for k in (
            "world_size",
            "backend",
            "dtype",
            "max_bytes",
            "max_bytes_source",
            "exact_check",
        )
    }
    common.update(
        {
            "hosts": [m["host"] for m in members],
            "devices": [m["device"] for m in members],
            "torch_version": result["torch_version"],
            "nccl_version": result["nccl_version"],
            "time": "per-iteration loop time averaged over ranks (nccl-tests -a 1)",
            **extra,
        }
    )
    out = []
    for op, data in result["ops"].items():
        shapes = [cm.OpShape(**s) for s in data["shapes"]]
        rows = cm.table_rows(op, shapes, data["times"], data["wrong"], world)
        repeats = [
            cm.rank_average([data["repeats"][r][i] for r in range(world)])
            for i in range(len(data["repeats"][0]))
        ]
        largest = shapes[-1]
        samples = [cm.busbw_gbs(op, largest.size_bytes, t, world) for t in repeats]
        per_rank = [data["times"][r][-1] for r in range(world)]
        worst, spread = cm.slowest(per_rank)
        settings = {
            **common,
            "op": op,
            "in_place": op == "all_reduce",
            "bus_factor": cm.bus_factor(op, world),
            "size_convention": {
                "all_reduce": "size = each rank's buffer",
                "all_gather": "size = the whole output buffer (ranks x chunk), as nccl-tests",
                "reduce_scatter": "size = the whole input buffer (ranks x chunk), as nccl-tests",
            }[op],
            "largest_bytes": largest.size_bytes,
            "slowest_rank": worst,
            "slowest_rank_host": members[worst]["host"],
            "rank_spread": spread,
            "rank_time_us_largest": [t * 1e6 for t in per_rank],
            "table": rows,
        }
        sanity = cm.wrong_summary(op, shapes, data["wrong"])
        out.append(
            Measurement.from_samples(
                f"{op}_busbw_max_size",
                samples,
                "GB/s",
                subject,
                statistic="median",
                convention=CONVENTION,
                settings=settings,
                sanity=sanity,
            )
        )
        average = sum(row["busbw_gbs"] for row in rows) / len(rows)
        out.append(
            Measurement.from_samples(
                f"{op}_busbw_avg",
                [average],
                "GB/s",
                subject,
                statistic="best",
                convention=CONVENTION + " (mean over sizes)",
                settings=settings,
                sanity=sanity,
            )
        )
    return out


class Collectives:
    """all-reduce, all-gather and reduce-scatter bus bandwidth (nccl-tests' conventions)."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Collective bandwidth: all-reduce, all-gather, reduce-scatter busbw (torch.distributed, NCCL or gloo)"
    )
    Params: ClassVar[type] = CollectivesParams
    requires: ClassVar[tuple[Requirement, ...]] = (
        Requirement("ranks", "2 or more", count=2),
        Requirement("idle_gpu"),  # never disturbs another process's job on a GPU
    )
    expands: ClassVar[dict[str, str]] = {}

    def run(self, params: CollectivesParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.launch.launcher import from_environ
        from hpcbench.probes.collectives.rank import RankConfig

        gpus = len(ctx.gpus) if ctx.gpus is not None else ctx.inventory.gpus.count
        backend = choose_backend(params.backend, gpus)
        timeout = effective_timeout(params.timeout, ctx.timeout)
        cfg = RankConfig(
            ops=tuple(params.ops),
            backend=backend,
            dtype=params.dtype,
            min_bytes=params.min_bytes,
            max_bytes=params.max_bytes,
            iters=params.iters,
            warmup=params.warmup,
            repeats=params.repeats,
            timeout=timeout,
        )
        try:
            launch = from_environ(os.environ)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
        if launch is not None:
            if launch.world_size < 2:
                raise ProbeSkip(f"collectives need 2 or more ranks; WORLD_SIZE is {launch.world_size}")
            if params.ranks and params.ranks != launch.world_size:
                raise ProbeError(f"ranks={params.ranks} but this job's WORLD_SIZE is {launch.world_size}")
            result = _join(cfg, launch)
            launcher = launch.launcher
        else:
            world = choose_ranks(params.ranks, backend, gpus)
            deadline = ctx.timeout * 0.9 if ctx.timeout else 3600.0
            result = _spawn(cfg, world, ctx.workdir, deadline)
            launcher = "spawned"
        return measurements(result, ctx.subject, {"launcher": launcher, "timeout_s": timeout})
