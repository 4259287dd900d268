"""Busy GPUs: which GPUs a job loads, the SKIP reason, and the runner skipping a GPU another
process uses unless forced (real child processes; NVML's process list replayed)."""

from __future__ import annotations

from typing import Any

import pytest
from support.fakenvml import FakeNvml
from support.nvml_models import BROKEN, MIB

from hpcbench.engine import busy
from hpcbench.engine.runner import Runner
from hpcbench.engine.suite import CheckSpec, Suite
from hpcbench.node import nvml as seam
from hpcbench.node.inventory import Inventory
from hpcbench.node.nvml import GpuProcess
from hpcbench.probes.collectives.probe import Collectives
from hpcbench.probes.gpu_membw.probe import GpuMembw
from hpcbench.probes.pcie.probe import Pcie

INVENTORY = Inventory.from_dict(
    {
        "gpus": {
            "count": 2,
            "devices": [
                {
                    "index": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "uuid": "GPU-aaaa",
                    "pci_bus_id": "00000000:18:00.0",
                },
                {
                    "index": 1,
                    "name": "NVIDIA H100 80GB HBM3",
                    "uuid": "GPU-bbbb",
                    "pci_bus_id": "00000000:2A:00.0",
                },
            ],
        }
    }
)
ALL = Inventory.from_dict({"gpus": {"count": 8, "devices": [{"index": i} for i in range(8)]}})


def test_job_gpus_from_the_expansion_parameter_its_default_a_launch_or_the_node() -> None:
    assert busy.job_gpus(Pcie, {"gpu": 3}, ALL, {}) == [3]
    assert busy.job_gpus(Pcie, {}, ALL, {}) == [0]  # pcie's default gpu = 0
    assert busy.job_gpus(GpuMembw, {"device": 5}, ALL, {}) == [5]
    assert busy.job_gpus(GpuMembw, {"device": "cpu"}, ALL, {}) == []  # the CPU device loads no GPU
    assert busy.job_gpus(GpuMembw, {}, ALL, {}) == list(range(8))  # device = auto: any of them
    assert busy.job_gpus(Collectives, {}, ALL, {}) == list(range(8))
    launch = {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "29500"}
    assert busy.job_gpus(Collectives, {}, ALL, launch) == [1]  # one rank of torchrun: its own GPU
    assert busy.job_gpus(Collectives, {}, Inventory(), {}) == []


def test_busy_reason_names_pid_process_and_memory() -> None:
    procs = {3: [GpuProcess(4242, "python3", 70000 * MIB)], 4: [GpuProcess(99, "?", None)]}
    assert busy.busy_reason(procs, [3]) == "busy: pid 4242 (python3) uses 70000 MiB"
    assert busy.busy_reason(procs, [2]) is None
    assert busy.busy_reason(procs, [3], ignore_pids={4242}) is None
    assert (
        busy.busy_reason(procs, [3, 4])
        == "busy: gpu3 pid 4242 (python3) uses 70000 MiB, gpu4 pid 99 (?) uses ? MiB"
    )


def suite(*checks: CheckSpec) -> Suite:
    return Suite(name="t", path="", sha256="", checks=checks)


def probe_classes() -> dict[str, Any]:
    return {"gpu_membw": GpuMembw, "pcie": Pcie}


def processes_of(fake: FakeNvml) -> Any:
    return lambda gpus: seam.gpu_processes(gpus, nvml=fake)


@pytest.mark.parametrize("force", [False, True])
def test_runner_skips_the_busy_gpu_unless_forced(force: bool) -> None:
    fake = FakeNvml(count=2, model="H100", devices={1: BROKEN["processes"]})
    check = CheckSpec(id="membw", probe="gpu_membw", expand="gpu", params={"repeats": 2}, timeout=120)
    runner = Runner(INVENTORY, force=force, gpu_processes=processes_of(fake))
    outcomes, not_run = runner.run(suite(check), probe_classes())
    assert not_run == []
    by = {o.job.subject: o for o in outcomes}
    # gpu0 is idle: its child ran and found that this torch cannot use CUDA (the test node has no GPU)
    assert by["gpu0"].status == "error" and "cannot use CUDA" in by["gpu0"].reason
    if force:
        assert by["gpu1"].status == "error" and "busy" not in by["gpu1"].reason
    else:
        assert by["gpu1"].status == "skip"
        assert by["gpu1"].reason == "busy: pid 4242 (python3) uses 70000 MiB"
        assert "--force" in by["gpu1"].hint


def test_every_job_of_a_gpu_group_is_checked_before_any_child_starts() -> None:
    asked: list[list[int]] = []
    seen_children: list[int] = []

    def processes(gpus: list[int]) -> dict[int, list[GpuProcess]]:
        asked.append(list(gpus))
        seen_children.append(len(runner._running))
        return {}

    runner = Runner(INVENTORY, gpu_processes=processes)
    check = CheckSpec(id="membw", probe="gpu_membw", expand="gpu", params={"repeats": 2}, timeout=120)
    runner.run(suite(check), probe_classes())
    assert asked == [[0], [1]] and seen_children == [0, 0]


def test_no_gpu_no_nvml_question() -> None:
    def processes(gpus: list[int]) -> dict[int, list[GpuProcess]]:
        raise AssertionError("a node without GPUs has nothing to ask NVML about")

    runner = Runner(Inventory.from_dict({"gpus": {"count": 0, "devices": []}}), gpu_processes=processes)
    check = CheckSpec(id="membw", probe="gpu_membw", params={"device": "cpu", "buffer_mib": 4}, timeout=120)
    outcomes, _ = runner.run(suite(check), probe_classes())
    assert outcomes[0].status == "skip" and outcomes[0].reason == "no GPU on this node"


@pytest.mark.parametrize(
    ("probe", "order"),
    [
        ("pcie", ["start gpu0", "end gpu0", "start gpu1", "end gpu1"]),  # one GPU at a time
        ("gpu_membw", ["start gpu0", "start gpu1", "end gpu0", "end gpu1"]),  # every GPU at once
    ],
)
def test_pcie_subjects_run_one_after_another(probe: str, order: list[str]) -> None:
    events: list[str] = []
    runner = Runner(
        INVENTORY,
        on_start=lambda job, i, n: events.append(f"start {job.subject}"),
        on_finish=lambda outcome, i, n: events.append(f"end {outcome.job.subject}"),
        gpu_processes=lambda gpus: {},
    )
    runner.run(suite(CheckSpec(id=probe, probe=probe, expand="gpu", timeout=120)), probe_classes())
    assert events == order
