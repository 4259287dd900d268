"""Busy GPUs: an invasive probe never disturbs another process's job on a GPU.

A probe that loads a GPU (gemm, attention, gpu_membw, pcie, collectives) declares
``Requirement("idle_gpu")``. Before starting it, the runner asks NVML which processes
hold a context on the GPUs the job uses; when another process does, the job is SKIP
with the reason ``busy: pid 4242 (python3) uses 70000 MiB``, unless ``--force``.

The decisions here are pure functions; the NVML query is ``hpcbench.node.nvml.gpu_processes``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hpcbench.core.errors import ConfigError
from hpcbench.node.inventory import Inventory
from hpcbench.node.nvml import GpuProcess

HINT = "another process uses this GPU, so the check did not run; --force runs it anyway"


def job_gpus(
    probe_cls: Any,
    params: Mapping[str, Any],
    inventory: Inventory,
    environ: Mapping[str, str],
    selected: Sequence[int] | None = None,
    typed: Any = None,
) -> list[int]:
    """The GPUs a job will load (none on a node without GPUs).

    The GPU its ``gpu`` expansion parameter names (set by ``expand = "gpu"`` or given,
    else the parameter's default); one rank of a torchrun/srun launch: its LOCAL_RANK's
    GPU; otherwise every GPU of the node.
    """
    from hpcbench.launch import launcher

    devices = inventory.gpus.devices
    if not devices:
        return []
    key = probe_cls.expands.get("gpu")
    if key:
        if typed is None:  # a suite loaded without its probes: parse the values here
            from hpcbench.probes.base import build_params

            try:
                typed = build_params(probe_cls, dict(params))
            except ConfigError:
                typed = None
        value = getattr(typed, key) if typed is not None else params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if value == "cpu":  # the GPU probes' CPU device (torch_device): no GPU is loaded
            return []
    try:
        job = launcher.from_environ(environ)
    except ConfigError:
        job = None
    if job is not None:
        return [job.local_rank]
    return [d.index for d in devices if selected is None or d.index in selected]


def busy_reason(
    processes: Mapping[int, Sequence[GpuProcess]], gpus: Sequence[int], ignore_pids: Collection[int] = ()
) -> str | None:
    """None when no other process holds one of ``gpus``, else the SKIP reason.

    ``ignore_pids``: this run's own processes (the runner and the probe children it started).
    """
    found = [(g, p) for g in gpus for p in processes.get(g, ()) if p.pid not in ignore_pids]
    if not found:
        return None
    if len(gpus) == 1:
        return "busy: " + ", ".join(p.describe() for _, p in found)
    return "busy: " + ", ".join(f"gpu{g} {p.describe()}" for g, p in found)
