"""Where the processes of a multi-GPU load run: each GPU's feeding process on cores of its own NUMA
affinity (NVML's ``nvmlDeviceGetCpuAffinity``), their hyperthread siblings left to them, the host
load on every other allowed CPU, near the GPU it shares a NUMA node with where it can.

``place`` is pure (tested on a 2-socket layout in tests/fixtures/cpu_topology/); ``thread_siblings``
reads sysfs (``cpuN/topology/thread_siblings_list``) and ``near_cpus`` NVML.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSFS_CPUS = Path("/sys/devices/system/cpu")
#: cores each GPU's feeding process keeps (the launch thread, NVML sampling, the Python around them)
FEEDER_CORES = 2


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,8,10-11`` (the kernel's cpu list format) -> [0, 1, 2, 3, 8, 10, 11]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def thread_siblings(root: Path = SYSFS_CPUS, cpus: Iterable[int] = ()) -> dict[int, tuple[int, ...]]:
    """CPU -> the hardware threads of its core (itself included), from sysfs; a CPU whose file
    cannot be read is its own only thread."""
    out: dict[int, tuple[int, ...]] = {}
    for cpu in cpus:
        siblings = [cpu]
        with contextlib.suppress(OSError, ValueError):
            siblings = parse_cpu_list((root / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text())
        out[cpu] = tuple(sorted(set(siblings) | {cpu}))
    return out


def near_cpus(nvml: Any, indices: Iterable[int], ncpus: int) -> dict[int, list[int]]:
    """GPU index -> the CPUs NVML says are local to it; a GPU NVML does not answer for is left out."""
    from hpcbench.node import nvml as seam

    out: dict[int, list[int]] = {}
    with seam.session(nvml) as nv:
        for index in indices:
            handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, index)
            if handle.ok:
                got = seam.cpu_affinity(nv, handle.value, ncpus)
                if got.ok and got.value:
                    out[index] = list(got.value)
    return out


@dataclass(frozen=True)
class Placement:
    """One GPU's processes: its feeder (the cores it runs on, with their sibling threads) and the
    CPUs of its share of the host load."""

    gpu: int
    feeders: tuple[int, ...]  # the cores' first threads
    affinity: tuple[int, ...]  # feeders and their siblings: where the GPU's process runs
    load: tuple[int, ...]
    near: str  # how the GPU's CPUs were known

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu,
            "feeders": list(self.feeders),
            "affinity": list(self.affinity),
            "host_load": list(self.load),
            "near": self.near,
        }


def place(
    allowed: Iterable[int],
    gpus: Iterable[int],
    near: Mapping[int, list[int]],
    siblings: Mapping[int, tuple[int, ...]],
    cores: int = FEEDER_CORES,
) -> dict[int, Placement]:
    """Each GPU's feeder cores (the first free whole cores of its NUMA affinity, in GPU order;
    any allowed core when NVML gave none), then the host load: the allowed CPUs no feeder core
    holds, those of a NUMA affinity dealt among the GPUs of it, the rest among every GPU."""
    allowed_set = set(allowed)
    order = sorted(set(gpus))
    taken: set[int] = set()
    feeders: dict[int, list[int]] = {}
    for gpu in order:
        pool = sorted(c for c in (near.get(gpu) or allowed_set) if c in allowed_set and c not in taken)
        whole = [
            c for c in pool if c == min(siblings.get(c, (c,))) and not set(siblings.get(c, (c,))) & taken
        ]
        chosen = (whole or pool)[:cores]
        feeders[gpu] = chosen
        for c in chosen:
            taken |= {c, *siblings.get(c, (c,))} & allowed_set
    free = sorted(allowed_set - taken)
    load: dict[int, list[int]] = {g: [] for g in order}
    groups: dict[frozenset[int], list[int]] = {}
    for gpu in order:
        if near.get(gpu):
            groups.setdefault(frozenset(near[gpu]), []).append(gpu)
    dealt: set[int] = set()
    for cpus, members in groups.items():
        pool = [c for c in free if c in cpus and c not in dealt]
        for k, gpu in enumerate(members):
            load[gpu] += pool[k :: len(members)]
        dealt |= set(pool)
    rest = [c for c in free if c not in dealt]
    for k, gpu in enumerate(order):
        load[gpu] += rest[k :: len(order)] if order else []
    return {
        gpu: Placement(
            gpu,
            tuple(feeders[gpu]),
            tuple(sorted({s for c in feeders[gpu] for s in siblings.get(c, (c,)) if s in allowed_set})),
            tuple(sorted(load[gpu])),
            "nvmlDeviceGetCpuAffinity" if near.get(gpu) else "no NVML affinity: any allowed CPU",
        )
        for gpu in order
    }
