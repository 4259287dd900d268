"""What a run will do: each check's subjects (jobs), the checks that cannot run here and why, the
measurements one check can take over from another, and how long it should take.

Pure functions of the suite, the probes' contract and the inventory; the runner executes the
plan and ``hpcbench run --dry-run`` prints it.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hpcbench.core.errors import ConfigError
from hpcbench.engine.suite import CheckSpec
from hpcbench.node.collector import gpu_absence
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import param_hints

#: expansions whose subjects run at once, one child each (unless the probe says concurrent = False)
CONCURRENT_EXPANSIONS = ("gpu", "rail")


@dataclass(frozen=True)
class Job:
    """One subject of a check: ``params`` as the suite gave them (with the subject's expansion
    parameter), ``typed`` the probe's Params parsed from them (None when the suite was loaded
    without its probes)."""

    check: CheckSpec
    subject: str
    params: dict[str, Any]
    typed: Any = field(default=None, compare=False, repr=False)


def local_mounts(inventory: Inventory) -> list[str]:
    """Writable mounts of local block devices, one per device (the shallowest of its mount points):
    read-only mounts, loop devices and further (bind) mounts of a device are left out."""
    chosen: dict[str, str] = {}
    for m in inventory.storage.mounts:
        device, point = m.device, m.mountpoint
        if not device.startswith("/dev/") or device.startswith("/dev/loop") or m.read_only:
            continue
        if device not in chosen or point.rstrip("/").count("/") < chosen[device].rstrip("/").count("/"):
            chosen[device] = point
    return list(chosen.values())


def _takes_list(probe_cls: Any, key: str) -> bool:
    """Whether the probe's expansion parameter ``key`` is a list (then each subject is [value])."""
    return typing.get_origin(param_hints(probe_cls.Params).get(key)) is list


@dataclass(frozen=True)
class Unrunnable:
    """Why a check has no subject to run on: ``skip`` (nothing to measure here) or ``error``."""

    status: str
    reason: str
    hint: str = ""


def expand(
    check: CheckSpec,
    probe_cls: Any,
    inventory: Inventory,
    gpus: Sequence[int] | None = None,
) -> list[Job] | Unrunnable:
    """The jobs of a check, one per subject, or why there are none. ``gpus``: the GPUs (NVML
    indices) this run may use (``--gpus``, ``CUDA_VISIBLE_DEVICES``); None: all of them."""
    inventory = inventory
    if check.expand == "none":
        return [Job(check, "node", dict(check.params), check.typed)]
    key = probe_cls.expands[check.expand]
    if check.expand == "numa":
        subjects = [(f"numa{n.id}", n.id) for n in inventory.numa_nodes]
    elif check.expand == "gpu":
        subjects = [(f"gpu{d.index}", d.index) for d in inventory.gpus.devices]
        if not subjects:
            return Unrunnable(*gpu_absence(inventory))
        if gpus is not None:
            subjects = [s for s in subjects if s[1] in gpus]
            if not subjects:
                why = "none of this node's GPUs is selected (--gpus or CUDA_VISIBLE_DEVICES)"
                return Unrunnable("skip", why)
    elif check.expand == "nic":  # every RDMA port and physical Ethernet interface (hpcbench.node.nics)
        subjects = [(n, n) for n in inventory.network.nics]
        if not subjects:
            return Unrunnable("skip", "no RDMA port and no physical Ethernet interface on this node")
    elif check.expand == "rail":  # the compute rails (hpcbench.node.nics.rails), or the check's own list
        given = check.params.get("rails")
        subjects = [(n, n) for n in (given or inventory.network.rails)]
        if not subjects:
            return Unrunnable("skip", "no RDMA port on this node: no rail")
    else:  # mount: the targets the check names in a list parameter, else the local mounts
        listed = _takes_list(probe_cls, key)
        given = check.params.get(key) if listed else None
        mounts = [str(m) for m in given] if given else local_mounts(inventory)
        subjects = [(m, [m] if listed else m) for m in mounts]
        if not subjects:
            return Unrunnable("skip", "no local block-device mounts on this node")
    return [
        Job(
            check,
            name,
            {**check.params, key: value},
            replace(check.typed, **{key: value}) if check.typed is not None else None,
        )
        for name, value in subjects
    ]


@dataclass(frozen=True)
class PlannedCheck:
    """One check of the suite as it will run here: its jobs (one per subject) or why there are none,
    and, where it would only measure again what an earlier check measures, that check's id."""

    check: CheckSpec
    probe: Any  # a ProbeSpec
    jobs: list[Job] | Unrunnable
    reuses: str | None = None
    why_reused: str = ""

    @property
    def concurrent(self) -> bool:
        if self.check.expand == "rail" and self.check.params.get("at_once") is False:
            return False  # the rails one after another (a rail probe's at_once parameter)
        return self.check.expand in CONCURRENT_EXPANSIONS and bool(self.probe.concurrent)

    def batches(self) -> list[list[Job]]:
        """The jobs in the groups that run together (all GPUs at once, else one after another)."""
        if isinstance(self.jobs, Unrunnable) or self.reuses:
            return []
        size = len(self.jobs) if self.concurrent else 1
        return [self.jobs[i : i + size] for i in range(0, len(self.jobs), size)]


def _same_measurement(a: CheckSpec, b: CheckSpec, key: str) -> bool:
    """Whether check ``b`` (expanded over ``key``) would run ``a``'s probe with ``a``'s parameters."""
    strip = {k: v for k, v in b.params.items() if k != key}
    return a.probe == b.probe and a.expand == "none" and dict(a.params) == strip


def make_plan(
    checks: Sequence[CheckSpec],
    probes: Mapping[str, Any],
    inventory: Inventory,
    gpus: Sequence[int] | None = None,
) -> list[PlannedCheck]:
    """Every check's jobs. A check expanded over NUMA nodes on a node with one NUMA node measures
    the whole node: where an earlier check already measures it with the same probe and parameters,
    it takes that measurement over instead of taking it again."""
    inventory = inventory
    planned: list[PlannedCheck] = []
    for check in checks:
        probe = probes[check.probe]
        jobs = expand(check, probe, inventory, gpus)
        reuses, why = None, ""
        if check.expand == "numa" and len(inventory.numa_nodes) == 1 and isinstance(jobs, list):
            key = probe.expands["numa"]
            earlier = next((p for p in planned if _same_measurement(p.check, check, key)), None)
            if earlier is not None and isinstance(earlier.jobs, list):
                reuses = earlier.check.id
                why = f"one NUMA node: the whole node, measured by {earlier.check.id}"
        planned.append(PlannedCheck(check, probe, jobs, reuses, why))
    return planned


def estimate(
    planned: PlannedCheck, history: Mapping[tuple[str, str], float] | None = None
) -> tuple[float, str]:
    """(seconds, basis) the check should take: the last run's durations of its subjects where
    known (``history``: (check id, subject) -> seconds), else its timeout, the most it may take;
    concurrent subjects count once."""
    history = history or {}
    total, guessed = 0.0, False
    for batch in planned.batches():
        known = [history.get((job.check.id, job.subject)) for job in batch]
        if any(k is None for k in known):
            guessed = True
            total += planned.check.timeout
        else:
            total += max(k for k in known if k is not None)
    return total, "the timeout" if guessed else "the last run"


# ---------------------------------------------------------------------------
# Choosing what runs: --only, --skip, --gpus, CUDA_VISIBLE_DEVICES


def _ids(text: str | None) -> list[str]:
    return [x for x in (p.strip() for p in (text or "").split(",")) if x]


def select_checks(checks: Sequence[CheckSpec], only: str | None, skip: str | None) -> tuple[CheckSpec, ...]:
    """The checks ``--only ID[,ID]`` and ``--skip ID[,ID]`` leave; ConfigError naming an id the suite
    does not have (a typo must not silently run everything or nothing)."""
    known = [c.id for c in checks]
    for option, given in (("--only", _ids(only)), ("--skip", _ids(skip))):
        unknown = [i for i in given if i not in known]
        if unknown:
            raise ConfigError(
                f"{option}: no check {unknown[0]!r} in this suite; its checks: {', '.join(known)}"
            )
    keep = set(_ids(only)) or set(known)
    chosen = tuple(c for c in checks if c.id in keep and c.id not in set(_ids(skip)))
    if not chosen:
        raise ConfigError("--only and --skip leave no check to run")
    return chosen


def select_gpus(inventory: Inventory, gpus: str | None, visible: str | None) -> tuple[int, ...] | None:
    """The GPUs (NVML indices) a run may use: ``--gpus 0,3``, else those ``CUDA_VISIBLE_DEVICES``
    names (UUIDs, ``GPU-`` prefixes of them, or indices in PCI bus order, as NVML numbers them),
    else None (all). ConfigError for a GPU the node does not have."""
    devices = inventory.gpus.devices
    indices = [d.index for d in devices]
    if gpus is not None:
        chosen = []
        for part in _ids(gpus):
            if not part.isdigit() or int(part) not in indices:
                have = ", ".join(map(str, indices)) or "none"
                raise ConfigError(f"--gpus {gpus}: no GPU {part!r} on this node (NVML indices: {have})")
            chosen.append(int(part))
        return tuple(sorted(set(chosen)))
    if visible is None:
        return None
    chosen = []
    for part in _ids(visible):
        if part.lstrip("-").isdigit():
            if int(part) < 0:  # CUDA stops at the first invalid entry: -1 hides every GPU
                break
            if int(part) in indices:
                chosen.append(int(part))
            continue
        match = [d.index for d in devices if d.uuid and d.uuid.lower().startswith(part.lower())]
        if len(match) == 1:
            chosen.append(match[0])
        elif not match and not part.upper().startswith("MIG-"):
            raise ConfigError(f"CUDA_VISIBLE_DEVICES={visible}: {part} is not a GPU of this node")
    return tuple(sorted(set(chosen)))
