"""burn's GPU branch end to end without a GPU: the CUDA path forced (a runtime that says ``cuda``,
NVML index 3, with CPU tensors), NVML replayed by the fake (tests/support/fakenvml.py: an H200 under load,
nvml_models.burn_trace) one sample per second of a fixed clock, the kernel log a file. Every metric
the acceptance and nightly suites judge, loaded from their TOML: a healthy trace PASSes, one planted
fault per metric gives that metric its WARN or FAIL; a CUDA error mid-burn after the counters rose
is a FAIL with that evidence.

The clock advances 1/16 s per GEMM (1/8 s where a fault slows the GPU): every window, rate and
second is exact in binary, and the expected values below are worked out by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest
from support.fakenvml import FakeNvml
from support.nvml_models import HW_SLOWDOWN, HW_THERMAL, POWER_BRAKE, SW_THERMAL, burn_trace, ecc
from support.results import measured

from hpcbench.core.measurement import Verdict
from hpcbench.engine import baselines, suite
from hpcbench.engine.judge import judge
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.hw import torch_device as td
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.burn import loop as burn_loop
from hpcbench.probes.burn import probe as burn

BUS = "00000000:5D:00.0"
INVENTORY = Inventory.from_dict(
    {
        "cpu": {"model": "test cpu", "threads": 2},
        "gpus": {
            "count": 1,
            "devices": [{"index": 3, "name": "NVIDIA H200", "pci_bus_id": BUS, "uuid": "GPU-3"}],
        },
    }
)
DT = 0.0625  # seconds per GEMM of a healthy GPU
#: 2*64^3 FLOPs per GEMM / (1/16 s) / 1e12: a healthy window's TFLOPS
HEALTHY_TFLOPS = 8.388608e-06
DURATION = 30.0


class Settle:
    def settle(self) -> None:
        return None


def forced_cuda(torch_: Any, device_param: Any, inventory: Any, threads: int = 0, clock: Any = None) -> Any:
    """td.prepare as on a GPU: kind cuda, NVML index 3, an H200's description; CPU tensors."""
    info = {"kind": "cuda", "name": "NVIDIA H200", "capability": [9, 0], "nvml_index": 3, "how": "forced"}
    choice = td.DeviceChoice("cuda", 0, 3, "forced by the test")
    return td.Runtime(choice, torch_.device("cpu"), Settle(), info, None, "")


class Scenario:
    """The replayed GPU: seconds per GEMM by time, NVML overrides per second, what happens when."""

    def __init__(self, log: Path) -> None:
        self.t = 5000.0
        self.start: float | None = None
        self.fake = FakeNvml()
        self.log = log
        self.trace = burn_trace(int(DURATION) + 2)
        self.seconds_per_gemm: Callable[[float], float] = lambda t: DT
        self.at: dict[int, Callable[[], None]] = {}  # second -> what happens then
        self.watch: Any = None
        self.second = -1

    def clock(self) -> float:
        return self.t

    def gemm(self) -> None:
        """One GEMM's time passes; each new second: that second's NVML sample and events."""
        rel = self.t - (self.start if self.start is not None else self.t)
        self.t += self.seconds_per_gemm(rel)
        now = int(self.t - self.start) if self.start is not None else -1
        while self.start is not None and self.second < now:
            self.second += 1
            sample = self.trace[min(self.second, len(self.trace) - 1)]
            self.fake.device_overrides[3] = {**self.fake.device_overrides.get(3, {}), **sample}
            if self.second in self.at:
                self.at[self.second]()
            if self.watch is not None:
                self.watch.sampler.take()

    def reasons(self, seconds: range, mask: int) -> None:
        for s in seconds:
            self.trace[s] = {
                **self.trace[s],
                "clocks_event_reasons": self.trace[s]["clocks_event_reasons"] | mask,
            }

    def counters(self, second: int, **after: Any) -> None:
        self.at[second] = lambda: self.fake.device_overrides[3].update(after)

    def xid(self, second: int, code: int, text: str) -> None:
        def write() -> None:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")
            with open(self.log, "a") as fh:
                fh.write(
                    f"{stamp} node kernel: NVRM: Xid (PCI:0000:5d:00): {code}, pid='<unknown>', {text}\n"
                )

        self.at[second] = write


def run_burn(monkeypatch: pytest.MonkeyPatch, sc: Scenario, subject: str = "gpu3") -> list:
    monkeypatch.setattr(td, "prepare", forced_cuda)
    original_step, original_watch = burn.make_step, burn.Burn._watch

    def make_step(*args: Any) -> Any:
        step = original_step(*args)

        def timed() -> Any:
            out = step()
            sc.gemm()
            return out

        return timed

    def watch(self: burn.Burn, *args: Any) -> Any:
        sc.watch = original_watch(self, *args)
        return sc.watch

    monkeypatch.setattr(burn, "make_step", make_step)
    monkeypatch.setattr(burn.Burn, "_watch", watch)
    original_run = burn_loop.run

    def run(*args: Any, **kw: Any) -> Any:
        sc.start = kw["started"]  # the timed run begins: second 0 of the trace
        return original_run(*args, **kw)

    monkeypatch.setattr(burn_loop, "run", run)
    params = build_params(
        burn.Burn,
        {
            "device": 3,
            "shape": 64,
            "duration_s": DURATION,
            "window_s": 5.0,
            "verify_every_s": 5.0,
            "warmup_s": 0,
            "telemetry_interval": 3600.0,  # the scenario takes one sample per second of its clock
            "kernel_log": str(sc.log),
        },
    )
    probe = burn.Burn(nvml=sc.fake, clock=sc.clock)
    return probe.run(params, ProbeContext(subject=subject, inventory=INVENTORY, timeout=900))


def site_baseline(tmp_path: Path) -> baselines.Baseline:
    """A golden node's (measured, not an estimate) sustained value: the healthy TFLOPS."""
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "site"\n[provenance]\nsource = "golden-node"\ndate = "2026-12-03"\nnodes = 1\n'
        f'[expected.burn]\nbf16_sustained = {{ value = {HEALTHY_TFLOPS}, unit = "TFLOPS" }}\n'
    )
    return baselines.load(str(path))


def verdicts(ms: list, suite_name: str, base: baselines.Baseline) -> dict[str, Verdict]:
    check = next(c for c in suite.load(suite_name, registry.load_all()).checks if c.id == "burn")
    outcome = Outcome.of(Job(check, "gpu3", {}), ms)
    (result,) = judge(check, [outcome], base, INVENTORY)
    out: dict[str, Verdict] = {}
    for e in result.evaluations:
        if e.kind == "relative":  # one GPU here: the comparison with its siblings is SKIP
            assert e.verdict is Verdict.SKIP
            continue
        key = "sanity" if e.kind == "sanity" else e.metric
        out[key] = e.verdict
    return out


def test_a_healthy_trace_passes_acceptance_and_nightly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sc = Scenario(tmp_path / "kern.log")
    sc.log.write_text("")
    ms = run_burn(monkeypatch, sc)
    by = {m.metric: m for m in measured(ms)}
    main = by["bf16_sustained"]
    assert main.sanity is None and main.value == HEALTHY_TFLOPS
    # 30 s in 5 s windows of 80 GEMMs each; sustained: windows 3-6 (after the first 10 s)
    assert [w["iterations"] for w in main.settings["windows"]] == [80] * 6
    assert main.settings["sustained_windows"] == [3, 4, 5, 6]
    assert by["stability"].value == 1.0 and by["droop"].value == 1.0
    assert by["droop"].settings["first_windows"] == [3, 4] and by["droop"].settings["last_windows"] == [5, 6]
    assert main.settings["verification"]["every_output"]["checked"] == 480
    # burn_trace: SwPowerCap from second 1 on; NVML's violation counter did not move (fake): 0 s
    assert by["sw_power_cap_s"].value == 0.0
    base = site_baseline(tmp_path)
    for name in ("acceptance", "nightly"):
        got = verdicts(ms, name, base)
        assert set(got.values()) == {Verdict.PASS}, (name, got)
        judged = suite.load(name, registry.load_all())
        metrics = next(c for c in judged.checks if c.id == "burn").metrics
        assert set(got) == set(metrics)  # every metric the suite judges was measured and judged


def slow(t0: float, t1: float, factor: float) -> Callable[[float], float]:
    return lambda t: DT * factor if t0 <= t < t1 else DT


#: metric -> (how to plant it, the verdict acceptance gives, nightly's (None: nightly does not judge it))
FAULTS: dict[str, tuple[Callable[[Scenario], None], Verdict, Verdict | None]] = {
    # every GEMM 1.25x slower: 80% of the golden node's sustained value (fail below 90%; nightly 80%: WARN)
    "bf16_sustained": (
        lambda sc: setattr(sc, "seconds_per_gemm", lambda t: DT * 1.25),
        Verdict.FAIL,
        Verdict.WARN,
    ),
    # window 4 (15-20 s) at half speed: stability 0.5 (fail below 0.80)
    "stability": (lambda sc: setattr(sc, "seconds_per_gemm", slow(15, 20, 2.0)), Verdict.FAIL, Verdict.FAIL),
    # the last 10 s 1.25x slower: droop 0.8 (acceptance fails below 0.90; nightly: 0.8 is a WARN)
    "droop": (lambda sc: setattr(sc, "seconds_per_gemm", slow(20, 99, 1.25)), Verdict.FAIL, Verdict.WARN),
    "hw_slowdown_s": (lambda sc: sc.reasons(range(12, 14), HW_SLOWDOWN), Verdict.FAIL, Verdict.FAIL),
    "power_brake_s": (lambda sc: sc.reasons(range(12, 14), POWER_BRAKE), Verdict.FAIL, Verdict.FAIL),
    "hw_thermal_slowdown_s": (lambda sc: sc.reasons(range(12, 14), HW_THERMAL), Verdict.WARN, Verdict.WARN),
    "sw_thermal_slowdown_s": (lambda sc: sc.reasons(range(12, 14), SW_THERMAL), Verdict.WARN, Verdict.WARN),
    "xid_new": (
        lambda sc: sc.xid(15, 48, "name=<unknown>, An uncorrectable double bit error"),
        Verdict.FAIL,
        Verdict.FAIL,
    ),
    "ecc_uncorrectable_new": (lambda sc: sc.counters(29, ecc=ecc(uv=1, ua=1)), Verdict.FAIL, Verdict.FAIL),
    "ecc_correctable_new": (lambda sc: sc.counters(29, ecc=ecc(cv=11, ca=11)), Verdict.WARN, None),
    "remapped_rows_new": (lambda sc: sc.counters(29, remapped_rows=(1, 0, 1, 0)), Verdict.WARN, None),
    "remap_failure_new": (lambda sc: sc.counters(29, remapped_rows=(0, 0, 0, 1)), Verdict.FAIL, Verdict.FAIL),
    "pcie_replay_new": (lambda sc: sc.counters(29, pcie_replay=81), Verdict.FAIL, Verdict.FAIL),
}


@pytest.mark.parametrize("metric", list(FAULTS))
def test_one_planted_fault_per_metric(metric: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plant, in_acceptance, in_nightly = FAULTS[metric]
    sc = Scenario(tmp_path / "kern.log")
    sc.log.write_text("")
    plant(sc)
    ms = run_burn(monkeypatch, sc)
    base = site_baseline(tmp_path)
    assert verdicts(ms, "acceptance", base)[metric] is in_acceptance
    if in_nightly is not None:
        assert verdicts(ms, "nightly", base)[metric] is in_nightly
    by = {m.metric: m.value for m in ms}
    expected = {  # by hand: 2 s of a reason in 1 s samples; counters as planted; rates as slowed
        "bf16_sustained": HEALTHY_TFLOPS / 1.25,
        "stability": 0.5,
        "droop": 0.8,
        "hw_slowdown_s": 2.0,
        "power_brake_s": 2.0,
        "hw_thermal_slowdown_s": 2.0,
        "sw_thermal_slowdown_s": 2.0,
        "xid_new": 1.0,
        "ecc_uncorrectable_new": 1.0,
        "ecc_correctable_new": 11.0,
        "remapped_rows_new": 1.0,
        "remap_failure_new": 1.0,
        "pcie_replay_new": 81.0,
    }[metric]
    assert by[metric] == pytest.approx(expected, rel=1e-12)


def test_a_cuda_ecc_error_mid_burn_after_the_counters_rose_is_a_fail_with_the_evidence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sc = Scenario(tmp_path / "kern.log")
    sc.log.write_text("")

    def fault() -> None:
        sc.fake.device_overrides[3].update(ecc=ecc(uv=1, ua=1))
        sc.xid(15, 94, "name=python3, Contained ECC error")  # writes the log line now:
        sc.at[15]()
        raise RuntimeError("CUDA error: uncorrectable ECC error encountered\nCompile with TORCH_USE_CUDA_DSA")

    sc.at[15] = fault
    ms = run_burn(monkeypatch, sc)
    main = ms[0]
    assert main.metric == "bf16_sustained" and main.value == 0.0
    assert main.sanity == (
        "gpu3: CUDA error: uncorrectable ECC error encountered during the burn, 15 s into its 30 s; "
        "after it: 1 uncorrectable ECC errors during the burn (0 before, 1 after); "
        "XID 94 x1 (contained ECC error) on PCI 0000:5d:00 during the burn"
    )
    got = verdicts(ms, "acceptance", site_baseline(tmp_path))
    assert got["sanity"] is Verdict.FAIL and got["ecc_uncorrectable_new"] is Verdict.FAIL
    assert got["xid_new"] is Verdict.FAIL


def test_a_cuda_error_the_counters_do_not_blame_stays_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sc = Scenario(tmp_path / "kern.log")
    sc.log.write_text("")

    def fault() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    sc.at[10] = fault
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_burn(monkeypatch, sc)


def test_the_replayed_violation_counter_gives_the_power_cap_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sc = Scenario(tmp_path / "kern.log")
    sc.log.write_text("")
    power = pynvml.NVML_PERF_POLICY_POWER
    sc.at[29] = lambda: sc.fake.device_overrides[3].update(violation_ns={power: 27_500_000_000})
    ms = run_burn(monkeypatch, sc)
    assert {m.metric: m.value for m in ms}["sw_power_cap_s"] == 27.5
