"""Burn placement on a 2-socket node (tests/hw/fixtures/cpu_topology/2x56c-smt.lscpu, the layout of an
HGX H200 node's 2 x 56 cores with SMT; NVML's CPU affinity replayed by the fake: GPUs 0-3 on NUMA 0,
4-7 on NUMA 1): each GPU's feeder on two whole cores of its own NUMA node, their sibling threads
left to it, the host load on the rest of that node's CPUs, dealt among its GPUs."""

from __future__ import annotations

from pathlib import Path

from support.fakenvml import FakeNvml

from hpcbench.hw import placement

FIXTURE = Path(__file__).parent / "fixtures" / "cpu_topology" / "2x56c-smt.lscpu"


def sysfs_from_lscpu(root: Path) -> list[int]:
    """cpuN/topology/thread_siblings_list files for the fixture's layout; the CPUs."""
    cores: dict[tuple[str, str], list[int]] = {}
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("#"):
            continue
        cpu, core, socket, _node = line.split(",")
        cores.setdefault((socket, core), []).append(int(cpu))
    for threads in cores.values():
        for cpu in threads:
            topo = root / f"cpu{cpu}" / "topology"
            topo.mkdir(parents=True)
            (topo / "thread_siblings_list").write_text(",".join(str(t) for t in sorted(threads)) + "\n")
    return sorted(c for threads in cores.values() for c in threads)


def test_parse_cpu_list() -> None:
    assert placement.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert placement.parse_cpu_list("5") == [5]


def test_two_socket_placement(tmp_path: Path) -> None:
    cpus = sysfs_from_lscpu(tmp_path)
    assert len(cpus) == 224
    siblings = placement.thread_siblings(tmp_path, cpus)
    assert siblings[0] == (0, 112) and siblings[167] == (55, 167)
    near = placement.near_cpus(FakeNvml(), range(8), 224)
    numa0 = [*range(0, 56), *range(112, 168)]
    numa1 = [*range(56, 112), *range(168, 224)]
    assert near == {g: numa0 if g < 4 else numa1 for g in range(8)}
    plan = placement.place(cpus, range(8), near, siblings)
    # feeders: the first two free whole cores of each GPU's socket, in GPU order
    assert {g: p.feeders for g, p in plan.items()} == {
        0: (0, 1), 1: (2, 3), 2: (4, 5), 3: (6, 7), 4: (56, 57), 5: (58, 59), 6: (60, 61), 7: (62, 63)
    }  # fmt: skip
    assert plan[0].affinity == (0, 1, 112, 113) and plan[4].affinity == (56, 57, 168, 169)
    # the host load: socket 0's other 96 threads (cores 8-55, both threads) dealt among GPUs 0-3
    assert plan[0].load == (*range(8, 56, 4), *range(120, 168, 4))
    assert plan[3].load == (*range(11, 56, 4), *range(123, 168, 4))
    assert plan[4].load == (*range(64, 112, 4), *range(176, 224, 4))
    feeding = {c for p in plan.values() for c in p.affinity}
    loaded = [c for p in plan.values() for c in p.load]
    assert len(loaded) == len(set(loaded)) == 224 - 32  # each CPU once; no feeder thread or sibling
    assert not feeding & set(loaded) and sorted(feeding | set(loaded)) == cpus
    assert plan[0].as_dict()["near"] == "nvmlDeviceGetCpuAffinity"


def test_without_nvml_affinity_any_allowed_core_feeds(tmp_path: Path) -> None:
    cpus = sysfs_from_lscpu(tmp_path)
    allowed = [c for c in cpus if c < 8 or 112 <= c < 120]  # a cgroup of 8 cores with their siblings
    plan = placement.place(allowed, [0, 1], {}, placement.thread_siblings(tmp_path, allowed))
    assert plan[0].feeders == (0, 1) and plan[1].feeders == (2, 3)
    assert plan[0].load == (4, 6, 116, 118) and plan[1].load == (5, 7, 117, 119)
    assert plan[1].near == "no NVML affinity: any allowed CPU"


def test_a_cpu_without_topology_is_its_own_core(tmp_path: Path) -> None:
    assert placement.thread_siblings(tmp_path / "none", [3]) == {3: (3,)}
