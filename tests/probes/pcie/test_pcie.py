"""pcie: the transfer orchestration with an engine of real CPU tensors (the CUDA engine differs
only in pinned buffers, streams and events), the link read while copies are in flight (NVML
replayed: healthy and downtrained links of H100, A100 and B200), byte counting, verification,
binding to the GPU's local CPUs, and the verdicts of the shipped nightly suite."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pynvml
import pytest
import torch
from support import ROOT
from support.fakenvml import FakeNvml
from support.results import measured, reasons

from hpcbench.core.errors import ParamError, ProbeError
from hpcbench.core.measurement import Verdict
from hpcbench.engine import judge
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.node import nvml as seam
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.pcie import probe as pcie
from hpcbench.probes.pcie.cuda import verify_copies

CHECK = next(c for c in suite_mod.load(str(ROOT / "suites" / "nightly.toml")).checks if c.id == "pcie")
NBYTES = 4 * 2**20


class CpuEngine:
    """The Engine protocol over CPU tensors: copies are synchronous, so the wall clock times them."""

    def __init__(self, nbytes: int = NBYTES, corrupt: bool = False) -> None:
        self.nbytes = nbytes
        self.host_src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8)
        self.host_dst = torch.zeros(nbytes, dtype=torch.uint8)
        self.dev_src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8)
        self.dev_dst = torch.empty(nbytes, dtype=torch.uint8)
        self.corrupt = corrupt
        self.in_flight = 0
        self.calls: list[str] = []

    def _timed(self, what: str, dst: Any, src: Any) -> float:
        self.calls.append(what)
        t0 = time.perf_counter()
        dst.copy_(src)
        if self.corrupt:
            dst[123] ^= 0xFF
        return max(time.perf_counter() - t0, 1e-9)

    def h2d(self) -> float:
        return self._timed("h2d", self.dev_dst, self.host_src)

    def d2h(self) -> float:
        return self._timed("d2h", self.host_dst, self.dev_src)

    def bidir(self) -> tuple[float, float, float]:
        up, down = self.h2d(), self.d2h()
        return up + down, up, down

    def start_load(self, copies: int) -> None:
        self.in_flight = copies

    def finish_load(self) -> None:
        self.in_flight = 0

    def verify(self) -> str | None:
        return verify_copies(
            torch,
            [("host->device", self.dev_dst, self.host_src), ("device->host", self.host_dst, self.dev_src)],
        )


def link_reader(engine: CpuEngine, fake: FakeNvml, gpu: int = 0) -> Any:
    def read() -> tuple[int | None, int | None]:
        assert engine.in_flight, "the link must be read while copies are in flight"
        now = seam.pcie_link(fake, gpu)
        return now["curr_gen"].value, now["curr_width"].value

    return read


def nvml_link(fake: FakeNvml, gpu: int = 0) -> dict[str, Any]:
    return {k: r.value for k, r in seam.pcie_link(fake, gpu).items()}


def run(fake: FakeNvml, engine: CpuEngine | None = None, gpu: int = 0) -> list[Any]:
    engine = engine or CpuEngine()
    result = pcie.measure(engine, link_reader(engine, fake, gpu), warmup=1, repeats=3)
    return pcie.build_measurements(
        result, engine.nbytes, nvml_link(fake, gpu), f"gpu{gpu}", {"size_bytes": NBYTES}
    )


def judged(ms: list[Any]) -> dict[str, Any]:
    outcome = Outcome.of(Job(CHECK, ms[0].subject, {}), ms)
    (result,) = judge.judge(CHECK, [outcome], None, Inventory.from_dict({}))
    return {e.metric: e for e in result.evaluations}


def test_transfers_byte_counting_and_order() -> None:
    engine = CpuEngine()
    ms = run(FakeNvml(model="H100"), engine)
    assert [m.metric for m in ms] == ["h2d", "d2h", "bidirectional", "link_gen_deficit", "link_width_deficit"]
    assert engine.calls[:3] == ["h2d", "d2h", "h2d"]  # warm-up: h2d, d2h, then bidir's two
    h2d, d2h, bidir = ms[:3]
    for m in (h2d, d2h, bidir):
        assert m.unit == "GB/s" and m.statistic == "median" and len(m.samples) == 3 and m.sanity is None
        assert m.convention.startswith("nvbandwidth")
    assert h2d.settings["bytes_per_transfer"] == NBYTES and bidir.settings["bytes_per_transfer"] == 2 * NBYTES
    up, down = h2d.settings["bidirectional_h2d_gbps"], h2d.settings["bidirectional_d2h_gbps"]
    assert up > 0 and down > 0  # the numbers themselves: test_reported_gbs_is_bytes_over_seconds...


class FixedEngine:
    """The Engine protocol with fixed transfer times: what each reported GB/s must be is known."""

    def __init__(
        self, nbytes: int, h2d: list[float], d2h: list[float], bidir: list[tuple[float, float, float]]
    ):
        self.nbytes = nbytes
        self.times = {"h2d": iter(h2d), "d2h": iter(d2h), "bidir": iter(bidir)}

    def h2d(self) -> float:
        return next(self.times["h2d"])

    def d2h(self) -> float:
        return next(self.times["d2h"])

    def bidir(self) -> tuple[float, float, float]:
        return next(self.times["bidir"])

    def start_load(self, copies: int) -> None:
        pass

    def finish_load(self) -> None:
        pass

    def verify(self) -> str | None:
        return None


def test_reported_gbs_is_bytes_over_seconds_over_1e9_median() -> None:
    """nvbandwidth's numbers with fixed times: the median of bytes / seconds / 1e9 per direction;
    bidirectional counts both directions' bytes over the time until both ended."""
    nbytes = 512 * 2**20  # 536,870,912 B
    h2d = [0.0125, 0.0100, 0.0110]  # median 0.011 s
    d2h = [0.0120, 0.0130, 0.0160]  # median 0.013 s
    bidir = [(0.0200, 0.0190, 0.0200), (0.0250, 0.0240, 0.0250), (0.0220, 0.0210, 0.0220)]
    engine = FixedEngine(nbytes, h2d, d2h, bidir)
    result = pcie.measure(engine, lambda: (5, 16), warmup=0, repeats=3)
    ms = pcie.build_measurements(result, nbytes, {"max_gen": 5, "max_width": 16}, "gpu0", {})
    up, down, both = ms[:3]
    assert list(up.samples) == [nbytes / t / 1e9 for t in h2d]
    assert list(both.samples) == [2 * nbytes / t / 1e9 for t, _, _ in bidir]
    # by hand: 536,870,912 B in 11 ms, in 13 ms; 1,073,741,824 B in 22 ms
    assert up.value == pytest.approx(48.80644654545454, rel=1e-12)
    assert down.value == pytest.approx(41.29776246153846, rel=1e-12)
    assert both.value == pytest.approx(48.80644654545454, rel=1e-12)
    assert up.settings["bidirectional_h2d_gbps"] == pytest.approx(536870912 / 0.0210 / 1e9, rel=1e-12)
    assert up.settings["bidirectional_d2h_gbps"] == pytest.approx(536870912 / 0.0220 / 1e9, rel=1e-12)
    assert [m.statistic for m in ms[:3]] == ["median"] * 3 and both.settings[
        "bytes_per_transfer"
    ] == 2 * nbytes


@pytest.mark.parametrize("model", ["H100", "A100", "B200"])
def test_healthy_link_under_load_passes(model: str) -> None:
    ms = run(FakeNvml(model=model))
    evals = judged(ms)
    assert (
        evals["link_gen_deficit"].verdict is Verdict.PASS
        and evals["link_width_deficit"].verdict is Verdict.PASS
    )
    gen = next(m for m in ms if m.metric == "link_gen_deficit")
    assert gen.value == 0 and gen.settings["link"]["gpu_max_gen"] == (
        6 if model == "B200" else gen.settings["link"]["max_gen"]
    )


@pytest.mark.parametrize(
    ("model", "curr", "metric", "deficit", "reason"),
    [
        ("H100", (5, 8), "link_width_deficit", 8, "running Gen5 x8 under load; the link can do Gen5 x16"),
        ("B200", (4, 16), "link_gen_deficit", 1, "running Gen4 x16 under load; the link can do Gen5 x16"),
        ("A100", (3, 16), "link_gen_deficit", 1, "running Gen3 x16 under load; the link can do Gen4 x16"),
    ],
)
def test_downtrained_link_fails_with_the_reason(
    model: str, curr: tuple[int, int], metric: str, deficit: int, reason: str
) -> None:
    evals = judged(run(FakeNvml(model=model, devices={0: {"pcie_curr": curr}})))
    e = evals[metric]
    assert (e.verdict, e.measured, e.kind) == (Verdict.FAIL, deficit, "absolute")
    assert reason in e.reason


def test_link_deficits_take_the_best_read_and_tolerate_gaps() -> None:
    # the first read may catch the link still retraining up from its idle state
    assert pcie.link_deficits([(1, 16), (5, 16), (5, 16)], 5, 16) == (
        0,
        0,
        "Gen5 x16 under load, the link's maximum Gen5 x16",
    )
    assert pcie.link_deficits([(4, 8), (4, 8)], 5, 16)[:2] == (1, 8)
    assert pcie.link_deficits([(None, None)], 5, 16)[:2] == (None, None)
    assert pcie.link_deficits([(5, 16)], None, None)[:2] == (None, None)


def test_without_nvml_the_link_is_not_measured() -> None:
    engine = CpuEngine()
    result = pcie.measure(engine, lambda: (None, None), warmup=0, repeats=2)
    ms = pcie.build_measurements(result, NBYTES, {"unsupported": "NVML unavailable: no module"}, "gpu0", {})
    assert [m.metric for m in measured(ms)] == ["h2d", "d2h", "bidirectional"]
    assert reasons(ms) == {
        "link_gen_deficit": "NVML unavailable: no module",
        "link_width_deficit": "NVML unavailable: no module",
    }
    evals = judged(ms)
    assert evals["link_gen_deficit"].verdict is Verdict.SKIP
    assert evals["link_width_deficit"].reason == "not measured: NVML unavailable: no module"


def test_a_corrupted_transfer_is_a_wrong_result() -> None:
    ms = run(FakeNvml(model="H200"), CpuEngine(corrupt=True))
    assert ms[0].sanity == "host->device: 1 of 4194304 bytes differ; device->host: 1 of 4194304 bytes differ"
    e = judged(ms)["h2d"]
    assert e.verdict is Verdict.FAIL and e.kind == "sanity"


@pytest.fixture()
def affinity() -> Iterator[set[int]]:
    before = os.sched_getaffinity(0)
    yield before
    os.sched_setaffinity(0, before)


@pytest.mark.parametrize(("model", "gpu"), [("H100", 0), ("A100", 0), ("A100", 4)])
def test_bind_to_the_gpus_local_cpus(model: str, gpu: int, affinity: set[int]) -> None:
    fake = FakeNvml(model=model)
    local = seam.cpu_affinity(fake, gpu, 1024).value
    out = pcie.Pcie._bind(fake, gpu, True, 8)
    assert out["gpu_local_cpus"] == local
    assert out["gpu_numa_nodes"] == [FakeNvml(model=model).model["numa"][gpu]]
    expected = pcie.bind_cpus(local, affinity)
    if expected:
        assert out["binding"] == f"bound to {len(expected)} CPUs local to the GPU" and out["cpus"] == expected
    else:  # this machine's CPUs are not among the GPU's: stay unbound, say why
        assert (
            out["binding"] == "not bound: none of the local CPUs is allowed" and set(out["cpus"]) == affinity
        )


def test_bind_off_or_unsupported(affinity: set[int]) -> None:
    out = pcie.Pcie._bind(FakeNvml(model="H100"), 0, False, 2)
    assert out["binding"] == "not bound (bind = false)" and set(out["cpus"]) == affinity
    denied = FakeNvml(failures={("nvmlDeviceGetCpuAffinity", None): pynvml.NVML_ERROR_NO_PERMISSION})
    assert (
        pcie.Pcie._bind(denied, 0, True, 2)["binding"]
        == "not bound: NVML: NoPermission (Insufficient Permissions)"
    )


def test_run_binds_then_needs_cuda(affinity: set[int]) -> None:
    inventory = Inventory.from_dict(
        {"gpus": {"count": 8, "devices": [{"index": i, "uuid": f"GPU-{i}"} for i in range(8)]}}
    )
    params = build_params(pcie.Pcie, {"gpu": 2, "size_mib": 1})
    with pytest.raises(ProbeError, match="cannot use CUDA here"):
        pcie.Pcie(nvml=FakeNvml(model="H100")).run(params, ProbeContext(subject="gpu2", inventory=inventory))
    lost = FakeNvml(failures={("nvmlDeviceGetHandleByIndex", 2): pynvml.NVML_ERROR_GPU_IS_LOST})
    with pytest.raises(ProbeError, match="GPU 2: nvmlDeviceGetHandleByIndex: GPU is lost"):
        pcie.Pcie(nvml=lost).run(params, ProbeContext(subject="gpu2", inventory=inventory))


def test_params_are_validated() -> None:
    for bad in ({"gpu": -1}, {"size_mib": 0}, {"repeats": 1}, {"warmup": -1}):
        with pytest.raises(ParamError):
            build_params(pcie.Pcie, bad)
    assert pcie.Pcie.concurrent is False and pcie.Pcie.metrics == pcie.METRICS
