"""network_rdma: perftest's orchestration on an HGX node's tree (tests/support/hgx_node.py).

The distribution's real perftest (Debian's 4.5, installed by make test) runs for what it can do
here: its --help (no CUDA) and its failure without an RDMA device. Everything else runs against
tests/probes/network/fixtures/network/replay_perftest.py, which opens perftest's out-of-band TCP socket as
perftest does and prints perftest output captured on real machines, each side its own, and
fails as the real binaries fail (captured output, exit codes, before or after listening).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from support import hgx_node
from support.fakenvml import FakeNvml

from hpcbench.core.errors import ProbeError
from hpcbench.engine import baselines, judge
from hpcbench.engine.plan import PlannedCheck, expand
from hpcbench.engine.runner import Outcome
from hpcbench.engine.suite import load
from hpcbench.hw.net import counters, perftest, procs, rdma
from hpcbench.node import collector, nics
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.network_rdma.probe import NetworkRdma

FIXTURES = Path(__file__).parent / "fixtures" / "network"
PERFTEST = FIXTURES / "perftest"
MIB = 2**20 * 8 / 1e9  # Gb/s per MB/sec of perftest


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return hgx_node.build(tmp_path / "root")


def run(root: Path, subject: str, tmp: Path, **extra: Any) -> dict[str, Any]:
    inv = collector.collect(str(root), nvml=FakeNvml())
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    values = {
        "root": str(root),
        "nic": subject,
        "duration": 1.0,
        "rdma_port_base": procs.free_port(),
        **extra,
    }
    ms = NetworkRdma().run(build_params(NetworkRdma, values), ProbeContext(subject, inv, str(work), 60))
    return {m.metric: m for m in ms}


# --- the distribution's real perftest ---------------------------------------------------------


def real_perftest() -> str:
    path = shutil.which("ib_write_bw")
    if path is None:
        pytest.fail("perftest is not installed: make tools (apt-get install perftest)")
    return path


def test_the_distribution_perftest_has_no_cuda_and_says_so_in_its_help() -> None:
    real_perftest()
    caps = rdma.capabilities("ib_write_bw")
    assert caps == perftest.Capabilities(cuda=False, cuda_bus_id=False, cuda_dmabuf=False)
    assert caps == perftest.parse_help((PERFTEST / "help_4.5_ib_write_bw.txt").read_text())
    # a perftest built with CUDA lists the options (MLNX_OFED 5.5's, as NVIDIA's documentation shows it)
    assert perftest.parse_help(
        (PERFTEST / "help_ofed5.5_cuda_lines.txt").read_text()
    ) == perftest.Capabilities(cuda=True, cuda_bus_id=True, cuda_dmabuf=False)


def test_gpu_memory_is_host_memory_with_the_reason_on_the_distribution_perftest(root: Path) -> None:
    real_perftest()
    inv = collector.collect(str(root), nvml=FakeNvml())
    port = next(p for p in nics.rdma_ports(str(root)) if p.subject == "mlx5_3:1")
    memory = rdma.choose_memory("auto", str(root), inv, port, rdma.capabilities("ib_write_bw"), None)
    assert not memory.on_gpu
    assert memory.text == "host (this perftest has no CUDA support: its --help lists no --use_cuda)"
    with pytest.raises(ProbeError, match="^use_cuda = on but this perftest has no CUDA support") as info:
        rdma.choose_memory("on", str(root), inv, port, rdma.capabilities("ib_write_bw"), None)
    assert info.value.hint.startswith("a perftest built with CUDA")


def test_the_distribution_perftest_without_a_device_is_an_error_with_its_own_line(
    root: Path, tmp_path: Path
) -> None:
    real_perftest()
    with pytest.raises(ProbeError) as info:
        run(root, "mlx5_3:1", tmp_path)
    assert str(info.value).startswith("ib_write_bw server exited with status 1 before listening on port ")
    assert str(info.value).endswith(": Unable to find the Infiniband/RoCE device")
    # had it been asked for GPU memory, its reason is getopt's line, not the usage text around it
    port = procs.free_port()
    gpu = perftest.Endpoint("mlx5_3", 1, cuda=0)
    argv = perftest.bw_argv(gpu, port, 8388608, 1, 1, -1, None)
    (tmp_path / "w").mkdir()
    with pytest.raises(ProbeError) as info:
        rdma.run_pair(argv, [*argv, "localhost"], port, str(tmp_path / "w"), 30.0, perftest.parse_bw)
    assert str(info.value) == (
        f"ib_write_bw server exited with status 1 before listening on port {port}: "
        "ib_write_bw: unrecognized option '--use_cuda=0'"
    )


# --- the stand-in ---------------------------------------------------------------------------


@pytest.fixture()
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ib_write_bw", "ib_read_lat"):
        exe = bin_dir / tool
        exe.write_text(f"#!{sys.executable}\n" + (FIXTURES / "replay_perftest.py").read_text())
        exe.chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("REPLAY_PERFTEST_LOG", str(log))
    monkeypatch.setenv("REPLAY_PERFTEST_FIXTURES", str(PERFTEST))
    monkeypatch.setenv("REPLAY_PERFTEST_HELP", str(PERFTEST / "help_ofed5.5_cuda_lines.txt"))
    monkeypatch.setenv("REPLAY_PERFTEST_FLAVOUR", "cuda")
    # the client's report with --report_gbits -D, and a server's (perftest >= 24.07, MiB/sec)
    monkeypatch.setenv(
        "REPLAY_PERFTEST_OUTPUT_IB_WRITE_BW_CLIENT", str(PERFTEST / "write_bw_post_list_gbits.txt")
    )
    monkeypatch.setenv(
        "REPLAY_PERFTEST_OUTPUT_IB_WRITE_BW_SERVER", str(PERFTEST / "write_bw_cuda_server_mib.txt")
    )
    monkeypatch.setenv("REPLAY_PERFTEST_OUTPUT_IB_READ_LAT", str(PERFTEST / "read_lat_mlx4_ib_client.txt"))
    return log


def test_gpu_memory_by_bus_id_pinned_to_the_nic_cpus(replay: Path, root: Path, tmp_path: Path) -> None:
    ms = run(root, "mlx5_3:1", tmp_path)
    assert ms["rdma_write_bw"].value == 0.48  # the client's BW average[Gb/sec], as printed
    assert ms["rdma_read_lat"].value == 1.79 and ms["rdma_read_lat_p99"].value == 1.88
    lines = replay.read_text().splitlines()
    assert lines[0] == "ib_write_bw --help"  # capabilities first
    port = ms["rdma_write_bw"].settings["ib_write_bw"].split(" -p ")[1].split()[0]
    gpu3 = "--use_cuda_bus_id=0000:5d:00.0"  # GPU 3 shares mlx5_3's PCIe switch; perftest takes its bus id
    assert (
        lines[1] == f"ib_write_bw -d mlx5_3 -i 1 -p {port} -F {gpu3} -s 8388608 -D 1 -q 1 --report_gbits "
        "--perform_warm_up"
    )
    assert lines[2] == lines[1] + " localhost"
    assert lines[3] == f"ib_read_lat -d mlx5_3 -i 1 -p {int(port) + 1} -F -s 2 -n 10000"  # host memory
    s = ms["rdma_write_bw"].settings
    assert s["rdma_memory"].startswith(
        "GPU: gpu3 (0000:5d:00.0) by --use_cuda_bus_id; nvidia_peermem is loaded"
    )
    near = sorted(set(range(0, 56)) | set(range(112, 168)))  # mlx5_3's local_cpulist 0-55,112-167
    assert s["rdma_cpus"] == (sorted(set(near) & os.sched_getaffinity(0)) or None)
    assert s["perftest_capabilities"] == {"cuda": True, "cuda_bus_id": True, "cuda_dmabuf": False}


def test_cuda_device_number_under_cuda_visible_devices(
    replay: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_cuda = tmp_path / "help_cuda_only.txt"  # the --use_cuda line of the OFED 5.5 capture alone
    only_cuda.write_text((PERFTEST / "help_ofed5.5_cuda_lines.txt").read_text().splitlines()[0] + "\n")
    monkeypatch.setenv("REPLAY_PERFTEST_HELP", str(only_cuda))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # a partial allocation: GPU 3 is CUDA device 1
    ms = run(root, "mlx5_3:1", tmp_path)
    assert " --use_cuda=1 " in replay.read_text().splitlines()[1]
    assert (
        ms["rdma_write_bw"]
        .settings["rdma_memory"]
        .startswith("GPU: gpu3 (0000:5d:00.0) as CUDA device 1 (CUDA_VISIBLE_DEVICES='2,3', PCI bus order)")
    )
    assert perftest.cuda_ordinal("0000:5d:00.0", ["0000:19:00.0", "0000:5d:00.0"], None)[0] == 1
    assert perftest.cuda_ordinal("0000:5d:00.0", ["0000:19:00.0", "0000:5d:00.0"], "0")[0] is None
    # the runner's --gpus sets UUIDs (tests/support/fakenvml.py's), in its own order: GPU 3 listed first
    uuid = "GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a{:02d}"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuid.format(3)},{uuid.format(0)}")
    ms = run(root, "mlx5_3:1", tmp_path)
    assert " --use_cuda=0 " in replay.read_text().splitlines()[-3]  # the last ib_write_bw client
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-7a2b1c3d-0000-1111-2222-333344445555")
    ms = run(root, "mlx5_3:1", tmp_path)
    assert ms["rdma_write_bw"].settings["rdma_memory"] == (
        "host (gpu3 (0000:5d:00.0) has no CUDA device number here: CUDA_VISIBLE_DEVICES="
        "'MIG-7a2b1c3d-0000-1111-2222-333344445555' names a GPU that is not mapped here (a MIG instance?))"
    )


def test_the_distribution_flavour_measures_from_host_memory(
    replay: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_PERFTEST_HELP", str(PERFTEST / "help_4.5_ib_write_bw.txt"))
    monkeypatch.setenv("REPLAY_PERFTEST_FLAVOUR", "4.5")
    ms = run(root, "mlx5_3:1", tmp_path)
    assert "--use_cuda" not in replay.read_text()
    assert ms["rdma_write_bw"].settings["rdma_memory"] == (
        "host (this perftest has no CUDA support: its --help lists no --use_cuda)"
    )
    assert ms["rdma_write_bw"].settings["rdma_memory"] in ms["rdma_write_bw"].detail


def test_unsupported_memory_type_of_a_newer_perftest_is_its_error_line(
    replay: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_PERFTEST_FLAVOUR", "25-nocuda")
    port = procs.free_port()
    argv = perftest.bw_argv(perftest.Endpoint("mlx5_0", 1, cuda=0), port, 8388608, 1, 1, -1, None)
    with pytest.raises(ProbeError) as info:
        rdma.run_pair(argv, [*argv, "localhost"], port, str(tmp_path), 30.0, perftest.parse_bw)
    assert str(info.value) == (
        f"ib_write_bw server exited with status 1 before listening on port {port}: Unsupported memory type"
    )


def test_each_side_failing_names_its_line(
    replay: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_PERFTEST_FAIL_SERVER", str(PERFTEST / "write_bw_4.5_no_device.txt"))
    no_device = r"^ib_write_bw server exited with status 1 before listening on port \d+: Unable to find the"
    with pytest.raises(ProbeError, match=no_device + r" Infiniband/RoCE device$"):
        run(root, "mlx5_0:1", tmp_path)
    monkeypatch.delenv("REPLAY_PERFTEST_FAIL_SERVER")
    monkeypatch.setenv("REPLAY_PERFTEST_FAIL_CLIENT", str(PERFTEST / "write_bw_connect_error.txt"))
    with pytest.raises(
        ProbeError, match=r"^ib_write_bw client \(client exit 1\): Couldn't connect to 192.168.125.211:18515$"
    ):
        run(root, "mlx5_0:1", tmp_path)


def test_a_port_held_by_a_stale_server_is_named(replay: Path, root: Path, tmp_path: Path) -> None:
    with socket.socket() as stale:
        stale.bind(("0.0.0.0", 0))
        stale.listen(1)
        port = stale.getsockname()[1]
        with pytest.raises(ProbeError, match=rf"^port {port} is already held by pid {os.getpid()} \("):
            run(root, "mlx5_0:1", tmp_path, rdma_port_base=port)
    assert "ib_write_bw -d" not in replay.read_text()  # nothing started against the stale one


def test_counters_read_around_the_traffic(
    replay: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ms = run(root, "mlx5_3:1", tmp_path)
    assert ms["counters_grew"].value == 0.0
    assert set(ms["rdma_write_bw"].settings["hw_counters_grown"]) == set(counters.HW_COUNTERS)
    counter = root / "sys/class/infiniband/mlx5_3/ports/1/counters/link_downed"
    monkeypatch.setenv("REPLAY_PERFTEST_BUMP", f"{counter.resolve()}:1")  # the load downs the link once
    ms = run(root, "mlx5_3:1", tmp_path)
    assert ms["counters_grew"].value == 1.0
    detail = ms["counters_grew"].detail
    assert detail.startswith("mlx5_3:1: error counters grown during the traffic, ") and detail.endswith(
        " s: link_downed +2"
    )  # the server bumps once per test: the bandwidth and the latency run


def test_a_rail_at_half_bandwidth_and_double_latency_fails(
    replay: Path, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = registry.load_all()
    check = next(c for c in load("acceptance", probes).checks if c.id == "network_rdma")
    inv = collector.collect(str(root), nvml=FakeNvml())
    jobs = expand(check, NetworkRdma, inv)
    assert isinstance(jobs, list) and [j.subject for j in jobs] == list(hgx_node.RAILS)
    planned = PlannedCheck(check, probes["network_rdma"], jobs)
    assert [len(b) for b in planned.batches()] == [8]  # every rail at once
    serial = PlannedCheck(
        check.__class__(**{**check.__dict__, "params": {**check.params, "at_once": False}}),
        probes["network_rdma"],
        jobs,
    )
    assert [len(b) for b in serial.batches()] == [1] * 8
    # every rail replays the loopback capture (8 MiB, 24056.72 MB/sec; 1.79 us); mlx5_5:1 a copy of the
    # same captures with half the bandwidth and twice the latency (derived here, not captured)
    bw = (PERFTEST / "write_bw_4.5_ib_loopback_interleaved_mb.txt").read_text()
    lat = (PERFTEST / "read_lat_mlx4_ib_client.txt").read_text()
    slow_bw, slow_lat = tmp_path / "slow_bw.txt", tmp_path / "slow_lat.txt"
    slow_bw.write_text(bw.replace("24056.74", "12028.37").replace("24056.72", "12028.36"))
    slow_lat.write_text(lat.replace(" 1.79 ", " 3.58 ").replace(" 1.88 ", " 3.76 "))
    outcomes = []
    for job in jobs:
        slow = job.subject == "mlx5_5:1"
        for side in ("CLIENT", "SERVER"):
            monkeypatch.setenv(
                f"REPLAY_PERFTEST_OUTPUT_IB_WRITE_BW_{side}",
                str(slow_bw if slow else PERFTEST / "write_bw_4.5_ib_loopback_interleaved_mb.txt"),
            )
        monkeypatch.setenv(
            "REPLAY_PERFTEST_OUTPUT_IB_READ_LAT",
            str(slow_lat if slow else PERFTEST / "read_lat_mlx4_ib_client.txt"),
        )
        ms = run(root, job.subject, tmp_path, **{k: v for k, v in job.params.items() if k != "nic"})
        outcomes.append(Outcome.of(job, list(ms.values())))
    results = {r.subject: r for r in judge.judge(check, outcomes, baselines.load("h200"), inv)}
    rel = {(s, e.metric): e for s, r in results.items() for e in r.evaluations if e.kind == "relative"}
    assert rel[("mlx5_5:1", "rdma_write_bw")].verdict.value == "FAIL"
    assert rel[("mlx5_5:1", "rdma_write_bw")].ratio == pytest.approx(0.5, rel=1e-6)
    lat_ev = rel[("mlx5_5:1", "rdma_read_lat")]  # lower is better: twice the latency is half as good
    assert lat_ev.verdict.value == "FAIL" and lat_ev.ratio == pytest.approx(0.5)
    assert rel[("mlx5_4:1", "rdma_read_lat")].verdict.value == "PASS"
    assert results["mlx5_5:1"].verdict.value == "FAIL"
    # against the h200 baseline (380 Gb/s) a 24056.72 MB/sec rail is 201.8 Gb/s: every rail FAILs it
    absolute = results["mlx5_4:1"].evaluations[0]
    assert (absolute.metric, absolute.measured) == ("rdma_write_bw", pytest.approx(24056.72 * MIB))
