"""Throttle seconds a suite can FAIL on: NVML's cumulative violation counter as a before/after
delta, the other reasons from runs of >= 1 s of consecutive samples, so one 0.2 s sample of HW
slowdown (nvml.h: also reported "during PState or clock change") never FAILs a GPU while 2 s of it
does; judged by the acceptance suite as shipped."""

from __future__ import annotations

import pynvml
from support.fakenvml import FakeNvml
from support.nvml_models import GPU_IS_LOST, HW_SLOWDOWN, POWER_CAP, burn_trace

from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.engine import suite
from hpcbench.engine.judge import evaluate
from hpcbench.hw import throttle
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.burn import calc, loop
from hpcbench.probes.burn.watch import Watch

BUS = "00000000:5D:00.0"


def trace_02(masks: list[int]) -> list[tuple[float, dict]]:
    """Samples every 0.2 s from t = 100 with these clock event reason masks."""
    return [(100.0 + 0.2 * i, {"reasons": m}) for i, m in enumerate(masks)]


def test_held_seconds_counts_runs_of_a_second_or_more_only() -> None:
    one = trace_02([POWER_CAP] * 5 + [POWER_CAP | HW_SLOWDOWN] + [POWER_CAP] * 14)  # 4 s, one sample
    assert throttle.held_seconds(one, 104.0, "HwSlowdown") == 0.0
    two = trace_02([POWER_CAP] * 5 + [POWER_CAP | HW_SLOWDOWN] * 10 + [POWER_CAP] * 5)  # 2 s of it
    assert abs(throttle.held_seconds(two, 104.0, "HwSlowdown") - 2.0) < 1e-9
    # 0.8 s (4 samples), a break, 1.2 s (6 samples): only the second run counts
    split = trace_02([HW_SLOWDOWN] * 4 + [0] + [HW_SLOWDOWN] * 6 + [0])
    assert abs(throttle.held_seconds(split, 102.4, "HwSlowdown") - 1.2) < 1e-9
    # an unread sample ends a run; the last sample holds until the end
    unread = [(0.0, {"reasons": HW_SLOWDOWN}), (0.6, {}), (1.0, {"reasons": HW_SLOWDOWN})]
    assert throttle.held_seconds(unread, 2.5, "HwSlowdown") == 0.0  # 0.6 s, then one sample of 1.5 s
    assert throttle.held_seconds([(0.0, {"reasons": HW_SLOWDOWN})], 5.0, "HwSlowdown") == 0.0


def acceptance_burn() -> suite.CheckSpec:
    checks = suite.load("acceptance", registry.load_all()).checks
    return next(c for c in checks if c.id == "burn")


def verdict_of(samples: list[tuple[float, dict]], end: float) -> Verdict:
    t = calc.run_telemetry(samples, 100.0, end, {})
    item = next(i for i in calc.telemetry_items(t) if i.metric == "hw_slowdown_s")
    m = Measurement.from_samples(
        item.metric, [item.value], item.unit, "gpu3", higher_is_better=False, detail=item.detail
    )
    return evaluate(m, acceptance_burn(), None, Inventory.from_dict({})).verdict


def test_one_sample_of_hw_slowdown_passes_and_two_seconds_fail_in_acceptance() -> None:
    assert acceptance_burn().absolute["hw_slowdown_s"].fail == 0.0  # any counted second FAILs
    one = trace_02([POWER_CAP] * 5 + [POWER_CAP | HW_SLOWDOWN] + [POWER_CAP] * 14)
    assert verdict_of(one, 104.0) is Verdict.PASS
    two = trace_02([POWER_CAP] * 5 + [POWER_CAP | HW_SLOWDOWN] * 10 + [POWER_CAP] * 5)
    assert verdict_of(two, 104.0) is Verdict.FAIL


class Clock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


def replay(violations: list[dict], trace: list[dict]) -> Watch:
    """begin, timed, one sample a second, end; ``violations``: the counter at each of the three reads."""
    clock = Clock()
    fake = FakeNvml(devices={3: {**trace[0], "violation_ns": violations[0]}})
    watch = Watch(3, BUS, interval=3600.0, kernel_log="none", nvml=fake, clock=clock)
    watch.begin()
    fake.device_overrides[3]["violation_ns"] = violations[1]
    watch.timed()
    for i, sample in enumerate(trace[1:], start=1):
        clock.t = 5000.0 + i
        fake.device_overrides[3] = {**sample, "violation_ns": violations[1]}
        watch.sampler.take()
    fake.device_overrides[3]["violation_ns"] = violations[2]
    clock.t = 5000.0 + len(trace)
    watch.end()
    return watch


def test_power_cap_seconds_come_from_nvmls_counter_over_the_timed_run() -> None:
    power = pynvml.NVML_PERF_POLICY_POWER
    # 3.0 s counted during the warm-up (not the run's), then 17.25 s during the 20 s timed run
    watch = replay(
        [{power: 40_000_000_000}, {power: 43_000_000_000}, {power: 60_250_000_000}], burn_trace(20)
    )
    items = {i.metric: i for i in watch.items(5000.0, 5020.0)}
    assert items["sw_power_cap_s"].value == 17.25
    assert items["sw_power_cap_s"].detail.startswith(
        "SwPowerCap held the clocks for 17.2 s of the 20 s burn (NVML's counter)"
    )
    assert watch.settings(5000.0, 5020.0)["violation_seconds"] == {"sw_power_cap_s": 17.25}


def test_without_the_counter_the_sampled_runs_count_and_the_record_says_why() -> None:
    lost = {pynvml.NVML_PERF_POLICY_POWER: GPU_IS_LOST}
    watch = replay([lost, lost, lost], burn_trace(20))
    items = {i.metric: i for i in watch.items(5000.0, 5020.0)}
    # burn_trace: SwPowerCap from the second sample on, held until the end: 19 s in one run
    assert items["sw_power_cap_s"].value == 19.0
    assert items["sw_power_cap_s"].detail.startswith(
        "SwPowerCap active for 19.0 s of the 20 s burn, in runs of 1 s or more"
    )
    why = watch.settings(5000.0, 5020.0)["violation_seconds"]["sw_power_cap_s"]
    assert why.startswith("nvmlDeviceGetViolationStatus: ") and "GPU is lost" in why


def test_a_counter_that_went_backwards_is_no_duration() -> None:
    before = {"sw_power_cap_s": throttle.Violation(1, 9_000_000_000)}
    after = {"sw_power_cap_s": throttle.Violation(2, 1_000_000_000)}
    assert throttle.violation_seconds(before, after) == {
        "sw_power_cap_s": "the violation counter went backwards (driver reloaded?)"
    }


def test_warm_runs_untimed_batches_until_the_time_is_up() -> None:
    clock = Clock()
    steps: list[float] = []

    def step() -> None:
        clock.t += 0.25
        steps.append(clock.t)

    settled: list[int] = []
    done = loop.warm(step, 2.0, clock=clock, settle=lambda: settled.append(len(steps)))
    # batches of 1, 2, 4 (0.25 s each): 1.75 s after 7, the next batch of 8 ends at 3.75 s
    assert done == 15 and settled == [1, 3, 7, 15]
    assert loop.warm(step, 0.0, clock=clock) == 0
