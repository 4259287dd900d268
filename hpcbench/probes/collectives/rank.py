"""One rank of the collectives probe: join, sweep, time, check, gather.

``run_rank(config, launch)`` runs in every rank and returns the same raw result
on all of them (per-rank times and wrong-element counts of every op and size,
gathered with a collective at the end). The probe turns it into the table and
the measurements (``collectives_math``).

Spawned by the probe, a rank is ``python -m hpcbench.probes.collectives.rank
CONFIG.json OUTDIR``: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT come from the environment, rank 0 writes OUTDIR/result.json, and
a rank that fails writes OUTDIR/error-RANK.json naming what went wrong and
exits with status 3 (4 for a configuration problem).

Timing follows nccl-tests: ``warmup`` untimed iterations, a barrier, then
``iters`` iterations launched back to back and one synchronisation; on GPUs
CUDA events around the loop, on CPUs the wall clock. The largest size is timed
``repeats`` times. Correctness is checked after timing, at every size, on
fresh integer-valued data whose sums are exact (nccl-tests' #wrong).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from hpcbench.core.atomic import write_json
from hpcbench.launch.launcher import LaunchEnv, from_environ
from hpcbench.launch.spawn import EXIT_CONFIG, EXIT_FAILED
from hpcbench.probes.collectives import calc as cm

#: rows of MODULUS elements compared at a time (bounds the check's temporary memory)
CHECK_ROWS = 1 << 16
#: how often a rank polls a CUDA event it waits for
WAIT_POLL_S = 0.0002
FAULT_ENV = "HPCBENCH_TEST_COLLECTIVES_FAULT"


class RankConfigError(Exception):
    """This rank cannot run as configured (e.g. NCCL asked for but this torch has no CUDA)."""


@dataclass(frozen=True)
class RankConfig:
    ops: tuple[str, ...]
    backend: str  # nccl | gloo
    dtype: str
    min_bytes: int
    max_bytes: int  # 0 = the automatic cap
    iters: int
    warmup: int
    repeats: int
    timeout: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankConfig:
        return cls(**{**data, "ops": tuple(data["ops"])})


def _fault(stage: str, rank: int) -> bool:
    """Test hook: HPCBENCH_TEST_COLLECTIVES_FAULT=RANK:ACTION:STAGE.

    ``kill`` (SIGKILL) or ``stop`` (SIGSTOP, a hang) at stage ``join`` or
    ``sweep``; ``corrupt`` at stage ``check`` (True: change one received element).
    """
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return False
    who, action, when = spec.split(":")
    if int(who) != rank or when != stage:
        return False
    if action in ("kill", "stop"):
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)
    return action == "corrupt"


def _device(torch: Any, cfg: RankConfig, launch: LaunchEnv) -> Any:
    if cfg.backend != "nccl":
        return torch.device("cpu")
    import torch.distributed as dist

    if not torch.cuda.is_available() or not dist.is_nccl_available():
        raise RankConfigError(
            f"backend nccl: this torch ({torch.__version__}) has no CUDA or no NCCL; "
            "use the node's CUDA build of torch, or -p backend=gloo"
        )
    device = torch.device("cuda", launch.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


class _Ops:
    """The three collectives on views of preallocated buffers, out-of-place where torch allows."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        self.gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        self.scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor

    def call(self, op: str, shape: cm.OpShape, inp: Any, out: Any) -> None:
        if op == "all_reduce":  # torch.distributed's all-reduce is in-place only
            self.dist.all_reduce(inp[: shape.count])
        elif op == "all_gather":
            self.gather(out[: shape.output_count], inp[: shape.input_count])
        else:
            self.scatter(out[: shape.output_count], inp[: shape.input_count])


def _rolled(torch: Any, values: Any, base: int) -> Any:
    """rolled[i] = values[(base + i) % MODULUS]."""
    return torch.roll(values, -(base % cm.MODULUS))


def fill_periodic(torch: Any, t: Any, values: Any, base: int = 0) -> None:
    """t[i] = values[(base + i) % MODULUS] without an index tensor the size of t."""
    rolled = _rolled(torch, values, base)
    rows, rem = divmod(t.numel(), cm.MODULUS)
    if rows:
        t[: rows * cm.MODULUS].view(rows, cm.MODULUS).copy_(rolled.expand(rows, cm.MODULUS))
    if rem:
        t[rows * cm.MODULUS :].copy_(rolled[:rem])


def wrong_periodic(torch: Any, t: Any, values: Any, base: int = 0) -> int:
    """How many elements of t differ from values[(base + i) % MODULUS] (NaN counts as wrong)."""
    rolled = _rolled(torch, values, base)
    rows, rem = divmod(t.numel(), cm.MODULUS)
    wrong = 0
    for r0 in range(0, rows, CHECK_ROWS):
        r1 = min(rows, r0 + CHECK_ROWS)
        block = t[r0 * cm.MODULUS : r1 * cm.MODULUS].view(r1 - r0, cm.MODULUS)
        wrong += int((block != rolled).sum().item())
    if rem:
        wrong += int((t[rows * cm.MODULUS :] != rolled[:rem]).sum().item())
    return wrong


class _Rank:
    def __init__(self, torch: Any, cfg: RankConfig, launch: LaunchEnv, rdzv: Any, device: Any) -> None:
        import torch.distributed as dist

        self.torch, self.dist, self.cfg, self.rdzv, self.device = torch, dist, cfg, rdzv, device
        self.rank, self.world = launch.rank, launch.world_size
        self.dtype = getattr(torch, cfg.dtype)
        self.cuda = device.type == "cuda"
        self.ops = _Ops(dist)
        self.gen = torch.Generator(device=device).manual_seed(20240613 + self.rank)
        residues = torch.arange(cm.MODULUS, device=device, dtype=torch.int64)
        self.mine = ((residues + cm.STRIDE * self.rank) % cm.MODULUS + 1).to(self.dtype)
        self.table = torch.tensor(cm.reduce_table(self.world), device=device, dtype=self.dtype)

    def pattern_of(self, rank: int) -> Any:
        residues = self.torch.arange(cm.MODULUS, device=self.device, dtype=self.torch.int64)
        return ((residues + cm.STRIDE * rank) % cm.MODULUS + 1).to(self.dtype)

    def sync(self) -> None:
        if self.cuda:
            event = self.torch.cuda.Event()
            event.record()
            self.wait(event)

    def wait(self, event: Any) -> None:
        """Wait for a CUDA event, at most ``timeout`` s: a stuck NCCL collective raises, never hangs."""
        deadline = time.monotonic() + self.cfg.timeout
        while not event.query():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the GPU work did not complete within {self.cfg.timeout:g} s")
            time.sleep(WAIT_POLL_S)

    def barrier(self) -> None:
        flag = self.torch.ones(1, device=self.device, dtype=self.dtype)
        self.dist.all_reduce(flag)
        self.sync()

    def agreed_min(self, value: int) -> int:
        t = self.torch.tensor([value], device=self.device, dtype=self.torch.int64)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MIN)
        return int(t.item())

    def max_bytes(self) -> tuple[int, str]:
        if self.cfg.max_bytes:
            return self.cfg.max_bytes, "parameter"
        if self.cuda:
            free = int(self.torch.cuda.mem_get_info(self.device)[0])
            mine = cm.default_max_bytes("nccl", self.world, free_gpu_bytes=free)
        else:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
            mine = cm.default_max_bytes("gloo", local, node_memory_bytes=memory)
        return self.agreed_min(mine), "auto"

    def buffers(self, op: str, largest: cm.OpShape) -> tuple[Any, Any]:
        empty = self.torch.empty
        inp = empty(largest.input_count, device=self.device, dtype=self.dtype)
        out = inp if op == "all_reduce" else empty(largest.output_count, device=self.device, dtype=self.dtype)
        inp.uniform_(1.0, 2.0, generator=self.gen)
        return inp, out

    def time_loop(self, op: str, shape: cm.OpShape, inp: Any, out: Any) -> float:
        """Seconds per iteration of ``iters`` back-to-back iterations after ``warmup`` ones."""
        if op == "all_reduce":  # fresh random data, scaled so the in-place sums stay finite
            scale = 2.0 ** -cm.timing_scale_exponent(self.world, self.cfg.warmup + self.cfg.iters)
            inp[: shape.count].uniform_(1.0, 2.0, generator=self.gen).mul_(scale)
        for _ in range(self.cfg.warmup):
            self.ops.call(op, shape, inp, out)
        self.barrier()
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(self.cfg.iters):
                self.ops.call(op, shape, inp, out)
            end.record()
            self.wait(end)
            return start.elapsed_time(end) / 1e3 / self.cfg.iters
        t0 = time.perf_counter()
        for _ in range(self.cfg.iters):
            self.ops.call(op, shape, inp, out)
        return (time.perf_counter() - t0) / self.cfg.iters

    def check(self, op: str, shape: cm.OpShape, inp: Any, out: Any) -> int:
        """Run ``op`` once on the check data; the number of wrong elements on this rank."""
        torch = self.torch
        fill_periodic(torch, inp[: shape.input_count], self.mine)
        if op != "all_reduce":
            out[: shape.output_count].fill_(float("nan"))
        self.ops.call(op, shape, inp, out)
        self.sync()
        if _fault("check", self.rank):
            (inp if op == "all_reduce" else out)[shape.output_count - 1] += 1
        if op == "all_reduce":
            return wrong_periodic(torch, inp[: shape.count], self.table)
        if op == "reduce_scatter":
            return wrong_periodic(
                torch, out[: shape.output_count], self.table, self.rank * shape.output_count
            )
        chunk = shape.input_count
        return sum(
            wrong_periodic(torch, out[k * chunk : (k + 1) * chunk], self.pattern_of(k))
            for k in range(self.world)
        )

    def sweep(
        self, op: str, shapes: list[cm.OpShape], exact: bool
    ) -> tuple[list[float], list[int], list[float]]:
        """Per-size seconds, per-size wrong counts, and the repeats at the largest size."""
        inp, out = self.buffers(op, shapes[-1])
        times, wrong, repeats = [], [], []
        for k, shape in enumerate(shapes):
            self.rdzv.step(f"{op} {cm.human_size(shape.size_bytes)}")
            if k == 1:
                _fault("sweep", self.rank)
            times.append(self.time_loop(op, shape, inp, out))
        for i in range(1, self.cfg.repeats):
            self.rdzv.step(f"{op} {cm.human_size(shapes[-1].size_bytes)} repeat {i + 1}")
            repeats.append(self.time_loop(op, shapes[-1], inp, out))
        for shape in shapes:
            self.rdzv.step(f"{op} check {cm.human_size(shape.size_bytes)}")
            wrong.append(self.check(op, shape, inp, out) if exact else 0)
        del inp, out
        return times, wrong, [times[-1], *repeats]

    def gather(self, values: list[float]) -> list[list[float]]:
        """values of every rank: result[r] is rank r's list."""
        torch = self.torch
        mine = torch.tensor(values, device=self.device, dtype=torch.float64)
        every = torch.empty(len(values) * self.world, device=self.device, dtype=torch.float64)
        self.ops.gather(every, mine)
        flat = every.cpu().tolist()
        return [flat[r * len(values) : (r + 1) * len(values)] for r in range(self.world)]


def run_rank(cfg: RankConfig, launch: LaunchEnv) -> dict[str, Any]:
    """This rank's part of the job; the gathered raw result (identical on every rank)."""
    import torch
    import torch.distributed as dist

    from hpcbench.launch.rendezvous import RankFailure, Rendezvous

    torch.set_num_threads(
        max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    )
    device = _device(torch, cfg, launch)
    rdzv = Rendezvous(launch, cfg.timeout)
    _fault("join", launch.rank)
    info = json.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        }
    )
    members = [json.loads(m) for m in rdzv.join(info)]
    try:
        dist.init_process_group(
            cfg.backend,
            store=rdzv.pg_store(),
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=timedelta(seconds=cfg.timeout),
        )
    except Exception as exc:
        raise rdzv.failure("init_process_group", exc) from None
    try:
        rank = _Rank(torch, cfg, launch, rdzv, device)
        itemsize = cm.DTYPES[cfg.dtype]
        rdzv.step("choosing sizes")
        max_bytes, source = rank.max_bytes()
        sizes = cm.sweep_sizes(min(cfg.min_bytes, max_bytes), max_bytes)
        exact = cm.check_exact(cfg.dtype, launch.world_size)
        ops: dict[str, Any] = {}
        for op in cfg.ops:
            shapes = [s for s in (cm.op_shape(op, b, itemsize, launch.world_size) for b in sizes) if s]
            if not shapes:
                raise RankConfigError(
                    f"{op}: no size up to {max_bytes} B holds one {cfg.dtype} element per rank "
                    f"at {launch.world_size} ranks; raise max_bytes"
                )
            times, wrong, repeats = rank.sweep(op, shapes, exact)
            rdzv.step(f"{op} gather")
            gathered = rank.gather([*times, *map(float, wrong), *repeats])
            n = len(shapes)
            ops[op] = {
                "shapes": [asdict(s) for s in shapes],
                "times": [g[:n] for g in gathered],
                "wrong": [[int(w) for w in g[n : 2 * n]] for g in gathered],
                "repeats": [g[2 * n :] for g in gathered],
            }
        rdzv.step("the end")
        rank.barrier()
    except (RankFailure, RankConfigError):
        raise
    except Exception as exc:
        raise rdzv.failure("a collective", exc) from None
    dist.destroy_process_group()
    rdzv.finish()
    return {
        "world_size": launch.world_size,
        "backend": cfg.backend,
        "launcher": launch.launcher,
        "members": members,
        "dtype": cfg.dtype,
        "max_bytes": max_bytes,
        "max_bytes_source": source,
        "exact_check": exact,
        "ops": ops,
        "torch_version": torch.__version__,
        "nccl_version": ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else None,
    }


def _write(path: str, data: dict[str, Any]) -> None:
    write_json(path, data, allow_nan=True, durable=False)


def main(argv: list[str]) -> int:
    config_path, outdir = argv
    from hpcbench.launch.rendezvous import RankFailure

    launch = from_environ(os.environ)
    assert launch is not None, "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT must be set"
    with open(config_path, encoding="utf-8") as fh:
        cfg = RankConfig.from_dict(json.load(fh))
    error = os.path.join(outdir, f"error-{launch.rank}.json")
    try:
        result = run_rank(cfg, launch)
    except (RankConfigError, RankFailure) as exc:
        config = isinstance(exc, RankConfigError)
        _write(error, {"rank": launch.rank, "config": config, "message": str(exc)})
        # no interpreter shutdown: a process group stuck on a dead peer could block it
        os._exit(EXIT_CONFIG if config else EXIT_FAILED)
    if launch.rank == 0:
        _write(os.path.join(outdir, "result.json"), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
