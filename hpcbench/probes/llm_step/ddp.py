"""One rank of the llm_step probe's ``ddp`` mode: alone, then data-parallel.

Every rank (one per GPU with NCCL; N processes with gloo on the CPU) first trains the decoder on
its own device, without communication, all ranks at once (``alone``: each GPU's single-GPU
tokens/s under the node's full load), then trains a fresh copy wrapped in
``DistributedDataParallel`` (``together``: gradients all-reduced in buckets while the backward
runs). Same seed on every rank: the same weights, the same batch, so every rank's first loss is
the same bit for bit. The ranks' results are gathered to every rank (``all_gather_object``).

Spawned by the probe, a rank is ``python -m hpcbench.probes.llm_step.ddp CONFIG.json OUTDIR``
(``launch/spawn.py``'s convention: rank 0 writes OUTDIR/result.json, a failed rank
OUTDIR/error-RANK.json); under torchrun or srun the probe process calls ``run_rank`` itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from hpcbench.core.atomic import write_json
from hpcbench.core.errors import ProbeError, ProbeSkip
from hpcbench.launch.launcher import LaunchEnv, from_environ
from hpcbench.launch.spawn import EXIT_CONFIG, EXIT_FAILED
from hpcbench.node.inventory import Inventory
from hpcbench.probes.llm_step.flops import Shape

#: test hook: RANK:STAGE, that rank kills itself (SIGKILL) as it reaches ``alone`` or ``ddp``
FAULT_ENV = "HPCBENCH_TEST_LLM_STEP_FAULT"


def _fault(stage: str, rank: int) -> None:
    who, _, when = os.environ.get(FAULT_ENV, "").partition(":")
    if who and int(who) == rank and when == stage:
        os.kill(os.getpid(), signal.SIGKILL)


class RankConfigError(Exception):
    """This rank cannot run as configured (no CUDA for NCCL, a GPU not on this node)."""


def _runtime(torch: Any, cfg: dict[str, Any], launch: LaunchEnv) -> Any:
    from hpcbench.hw import torch_device as td

    if cfg["backend"] != "nccl":
        return td.prepare(torch, "cpu", Inventory.from_dict(cfg["inventory"]), cfg.get("threads", 0))
    import torch.distributed as dist

    if not torch.cuda.is_available() or not dist.is_nccl_available():
        raise RankConfigError(
            f"backend nccl: this torch ({torch.__version__}) has no CUDA or no NCCL; "
            "use the node's CUDA build of torch, or -p device=cpu for gloo ranks"
        )
    devices = cfg.get("devices") or []
    device = (
        devices[launch.local_rank] if launch.local_rank < len(devices) else _joined_gpu(torch, cfg, launch)
    )
    try:
        return td.prepare(torch, device, Inventory.from_dict(cfg["inventory"]))
    except (ProbeSkip, ProbeError) as exc:
        raise RankConfigError(f"GPU {device}: {exc}") from None


def _joined_gpu(torch: Any, cfg: dict[str, Any], launch: LaunchEnv) -> int:
    """Under torchrun/srun: CUDA ordinal LOCAL_RANK (modulo the GPUs this process sees, as the
    collectives probe does; srun may show each task one GPU), as its NVML index where the
    inventory lists its UUID, else the ordinal itself."""
    from hpcbench.hw import cuda_only
    from hpcbench.hw import torch_device as td

    ordinal = launch.local_rank % max(1, torch.cuda.device_count())
    uuids = cuda_only.cuda_uuids(torch)
    want = td.normalize_uuid(uuids[ordinal]) if ordinal < len(uuids) else None
    for d in Inventory.from_dict(cfg["inventory"]).gpus.devices:
        if want is not None and td.normalize_uuid(d.uuid) == want:
            return int(d.index)
    return ordinal


def _phase(
    torch: Any, rt: Any, shape: Shape, cfg: dict[str, Any], wrap: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    from hpcbench.probes.llm_step import train

    s = train.setup(shape, rt.device, precision=cfg["precision"], lr=cfg["lr"], seed=cfg["seed"], wrap=wrap)
    timed = train.run(s, rt.clock, rt.device, warmup=cfg["warmup"], steps=cfg["steps"])
    settings = dict(s.settings)
    del s
    if rt.choice.is_cuda:
        torch.cuda.empty_cache()
    return timed.as_dict(), settings


def run_rank(cfg: dict[str, Any], launch: LaunchEnv) -> dict[str, Any]:
    """This rank's part: both phases; every rank's results, gathered (identical on every rank)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from hpcbench.launch.rendezvous import RankFailure, Rendezvous

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(cfg.get("threads") or max(1, len(os.sched_getaffinity(0)) // local))
    rt = _runtime(torch, cfg, launch)
    rdzv = Rendezvous(launch, cfg["timeout"], name="llm_step")
    me = {
        "rank": launch.rank,
        "host": socket.gethostname(),
        "device": rt.info.get("name"),
        "nvml_index": rt.choice.nvml_index,
        "uuid": rt.info.get("uuid"),
    }
    rdzv.join(json.dumps(me))
    try:
        dist.init_process_group(
            cfg["backend"],
            store=rdzv.pg_store(),
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=timedelta(seconds=cfg["timeout"]),
        )
    except Exception as exc:
        raise rdzv.failure("init_process_group", exc) from None
    shape = Shape(**cfg["shape"])
    ids = [rt.choice.cuda_ordinal] if rt.choice.is_cuda else None
    try:
        rdzv.step("alone")
        _fault("alone", launch.rank)
        alone, settings = _phase(torch, rt, shape, cfg, None)
        dist.barrier()
        rdzv.step("ddp")
        _fault("ddp", launch.rank)
        together, _ = _phase(
            torch,
            rt,
            shape,
            cfg,
            lambda m: DistributedDataParallel(m, device_ids=ids, gradient_as_bucket_view=True),
        )
        rdzv.step("gather")
        every: list[Any] = [None] * launch.world_size
        dist.all_gather_object(every, {"member": me, "alone": alone, "together": together})
        dist.barrier()
    except (RankFailure, RankConfigError):
        raise
    except Exception as exc:
        raise rdzv.failure("training", exc) from None
    dist.destroy_process_group()
    rdzv.finish()
    return {
        "world_size": launch.world_size,
        "backend": cfg["backend"],
        "launcher": launch.launcher,
        "ranks": every,
        "device": rt.info,
        "settings": settings,
        "ddp": "DistributedDataParallel(gradient_as_bucket_view=True): bucketed all-reduce during backward",
        "nccl_version": ".".join(map(str, torch.cuda.nccl.version())) if rt.choice.is_cuda else None,
    }


def config(shape: Shape, **values: Any) -> dict[str, Any]:
    """The ranks' configuration (JSON): the shape and the run's values."""
    return {"shape": asdict(shape), **values}


def main(argv: list[str]) -> int:
    config_path, outdir = argv
    from hpcbench.launch.rendezvous import RankFailure

    launch = from_environ(os.environ)
    assert launch is not None, "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT must be set"
    with open(config_path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    try:
        result = run_rank(cfg, launch)
    except (RankConfigError, RankFailure) as exc:
        is_config = isinstance(exc, RankConfigError)
        write_json(
            os.path.join(outdir, f"error-{launch.rank}.json"),
            {"rank": launch.rank, "config": is_config, "message": str(exc)},
            allow_nan=True,
            durable=False,
        )
        os._exit(EXIT_CONFIG if is_config else EXIT_FAILED)  # a process group stuck on a dead peer
    if launch.rank == 0:
        write_json(os.path.join(outdir, "result.json"), result, allow_nan=True, durable=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
