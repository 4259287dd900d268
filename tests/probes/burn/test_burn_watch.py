"""What the burn watches on a GPU, from replayed NVML values (tests/support/nvml_models.py: typical H200
values, see their provenance there) and a kernel log written during the run: telemetry over the run,
seconds in each throttle reason, counter deltas, new XIDs, each pinned to a fixed clock; and the
NVML counter readers gpu_health and burn share (hw/gpu_counters)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pynvml
import pytest
from support.fakenvml import FakeNvml
from support.nvml_models import (
    BROKEN,
    HW_SLOWDOWN,
    HW_THERMAL,
    MODELS,
    NOT_SUPPORTED,
    POWER_BRAKE,
    POWER_CAP,
    burn_trace,
)

from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.engine.judge import evaluate
from hpcbench.engine.suite import Band, CheckSpec
from hpcbench.hw import gpu_counters as gc
from hpcbench.node.inventory import Inventory
from hpcbench.probes.burn import calc
from hpcbench.probes.burn.watch import Watch

BUS = "00000000:5D:00.0"  # GPU 3 of the replayed H200 node
OLD_XID = (
    "2026-11-28T02:05:44+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:5d:00): 63, pid='<unknown>', "
    "name=<unknown>, Row Remapper: New row (0x0000000000b2a7c0) was marked for remapping, "
    "reset gpu to activate.\n"
)
NEW_XID = (
    "2026-11-29T10:00:12+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:5d:00): 48, pid='<unknown>', "
    "name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at "
    "partition 6, subpartition 0.\n"
)
OTHER_GPU_XID = (
    "2026-11-29T10:00:13+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:9b:00): 79, pid='<unknown>', "
    "name=<unknown>, GPU has fallen off the bus.\n"
)


#: the replayed burn's wall-clock start (2026-11-29T10:00:00Z): after OLD_XID, before NEW_XID
RUN_START = 1795946400.0


class Clock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


def replay(
    trace: list[dict], counters_after: dict | None = None, log: Path | None = None
) -> tuple[Watch, FakeNvml]:
    """A 1-sample-per-second burn of ``len(trace)`` seconds on GPU 3, then ``counters_after``."""
    clock = Clock()
    fake = FakeNvml(devices={3: dict(trace[0])})
    watch = Watch(
        3,
        BUS,
        interval=3600.0,
        kernel_log=str(log) if log else "none",
        nvml=fake,
        clock=clock,
        wall=lambda: RUN_START,
    )
    watch.begin()  # counters and log before; the sampler takes its first sample at t = 5000
    for i, sample in enumerate(trace[1:], start=1):
        clock.t = 5000.0 + i
        fake.device_overrides[3] = dict(sample)
        watch.sampler.take()
    fake.device_overrides[3].update(counters_after or {})
    if log is not None:
        with open(log, "a") as fh:
            fh.write(NEW_XID + OTHER_GPU_XID)
    clock.t = 5000.0 + len(trace)
    watch.end()  # a last sample at the end, then counters and log after
    return watch, fake


def test_a_healthy_h200_burn() -> None:
    trace = burn_trace(20)
    watch, fake = replay(trace)
    items = {i.metric: i for i in watch.items(5000.0, 5020.0)}
    tel = watch.run_telemetry(5000.0, 5020.0)
    assert tel is not None and tel.samples == 21 and tel.seconds == 20.0
    clocks = [s["clocks"][pynvml.NVML_CLOCK_SM] for s in trace] + [trace[-1]["clocks"][pynvml.NVML_CLOCK_SM]]
    assert tel.sm_clock_median == statistics.median(clocks) == 1530.0  # 21 samples: the last at the end
    assert tel.sm_clock_min == 1500.0 and tel.sm_clock_max_limit == 1980.0
    powers = [s["power_usage"] / 1000 for s in trace] + [trace[-1]["power_usage"] / 1000]
    assert tel.power_median == statistics.median(powers)
    assert tel.temperature_max == 67.0 and tel.power_limit == 700.0
    # SwPowerCap from the second sample on: 19 s of the 20 s (each sample holds until the next)
    assert tel.reason_seconds["sw_power_cap_s"] == 19.0
    assert {m: items[m].value for m in ("hw_slowdown_s", "power_brake_s", "hw_thermal_slowdown_s")} == {
        "hw_slowdown_s": 0.0,
        "power_brake_s": 0.0,
        "hw_thermal_slowdown_s": 0.0,
    }
    # temperature climbs linearly 38 -> 67 C over 19 s: the slope of the last half, per minute
    late = [(5000.0 + i, float(s["temperature"])) for i, s in enumerate(trace) if i >= 10] + [(5020.0, 67.0)]
    n = len(late)
    mt, mv = sum(t for t, _ in late) / n, sum(v for _, v in late) / n
    slope = sum((t - mt) * (v - mv) for t, v in late) / sum((t - mt) ** 2 for t, _ in late)
    assert items["temperature_slope"].value == pytest.approx(slope * 60)
    assert {m: items[m].value for m in calc.DELTA_METRICS} == dict.fromkeys(calc.DELTA_METRICS, 0.0)
    assert items["xid_new"].not_measured.startswith(
        "kernel log not readable: reading the kernel log is turned off"
    )
    assert "nvmlDeviceGetPcieReplayCounter" in fake.calls and "nvmlDeviceGetRemappedRows" in fake.calls
    settings = watch.settings(5000.0, 5020.0)
    assert settings["counters_before"]["pcie_replay"] == 0 and settings["telemetry"]["source"] == "nvml"


def test_throttling_and_new_errors_fail_with_their_numbers(tmp_path: Path) -> None:
    trace = burn_trace(20)
    for i in (5, 6, 7):  # 3 s of HW slowdown with the power brake asserted for the first 2
        trace[i] = {
            **trace[i],
            "clocks_event_reasons": POWER_CAP | HW_SLOWDOWN | (POWER_BRAKE if i < 7 else 0),
        }
        trace[i]["clocks"] = {**trace[i]["clocks"], pynvml.NVML_CLOCK_SM: 1005}
    for i in (15, 16, 17, 18):
        trace[i] = {**trace[i], "clocks_event_reasons": POWER_CAP | HW_THERMAL}
    log = tmp_path / "kern.log"
    log.write_text(OLD_XID)
    after = {
        **BROKEN["ecc_uncorrectable_volatile"],  # 2 uncorrectable since the driver loaded
        "remapped_rows": (0, 512, 0, 1),
        "pcie_replay": 85,
    }
    watch, _ = replay(trace, after, log)
    items = {i.metric: i for i in watch.items(5000.0, 5020.0)}
    assert items["hw_slowdown_s"].value == 3.0 and items["power_brake_s"].value == 2.0
    assert items["hw_thermal_slowdown_s"].value == 4.0
    assert items["hw_slowdown_s"].detail == (
        "HwSlowdown active for 3.0 s of the 20 s burn, in runs of 1 s or more "
        "(SM clock min 1005 MHz of max 1980, max 67 C)"
    )
    assert items["ecc_uncorrectable_new"].value == 2.0
    assert (
        items["ecc_uncorrectable_new"].detail
        == "2 uncorrectable ECC errors during the burn (0 before, 2 after)"
    )
    assert items["remapped_rows_new"].value == 512.0 and items["remap_failure_new"].value == 1.0
    assert items["pcie_replay_new"].value == 85.0
    # the XID already in the log before and the other GPU's XID are not this burn's
    assert items["xid_new"].value == 1.0
    assert items["xid_new"].detail == "XID 48 x1 (double-bit ECC error) on PCI 0000:5d:00 during the burn"
    check = CheckSpec(
        id="burn",
        probe="burn",
        absolute={
            "hw_slowdown_s": Band(None, 0.0),
            "power_brake_s": Band(None, 0.0),
            "hw_thermal_slowdown_s": Band(0.0, None),
            "xid_new": Band(None, 0.5),
            "ecc_uncorrectable_new": Band(None, 0.5),
            "remap_failure_new": Band(None, 0.5),
            "pcie_replay_new": Band(None, 80.0),
        },
    )
    verdicts = {}
    for metric in check.absolute:
        item = items[metric]
        m = Measurement.from_samples(
            metric, [item.value], item.unit, "gpu3", higher_is_better=False, detail=item.detail
        )
        ev = evaluate(m, check, None, Inventory.from_dict({}))
        verdicts[metric] = ev.verdict
        assert item.detail in ev.reason  # the reason quotes the numbers
    assert verdicts == {
        "hw_slowdown_s": Verdict.FAIL,
        "power_brake_s": Verdict.FAIL,
        "hw_thermal_slowdown_s": Verdict.WARN,
        "xid_new": Verdict.FAIL,
        "ecc_uncorrectable_new": Verdict.FAIL,
        "remap_failure_new": Verdict.FAIL,
        "pcie_replay_new": Verdict.FAIL,
    }


def test_counters_nvml_cannot_give_are_not_measured_with_the_reason() -> None:
    fake = FakeNvml(
        model="V100", devices={3: {"pcie_replay": NOT_SUPPORTED}}
    )  # no row remapping before Ampere
    watch = Watch(3, BUS, interval=3600.0, kernel_log="none", nvml=fake, clock=Clock())
    watch.begin()
    watch.end()
    items = {i.metric: i for i in watch.items(4999.0, 5001.0)}
    assert items["remap_failure_new"].value is None
    assert (
        "GPUs before Ampere retire pages instead of remapping rows" in items["remap_failure_new"].not_measured
    )
    assert items["pcie_replay_new"].not_measured.startswith("NVML: Not Supported")
    assert items["ecc_uncorrectable_new"].value == 0.0
    ecc_off = FakeNvml(devices={3: BROKEN["ecc_enabled"]})
    snap = gc.snapshot(ecc_off, 3)
    assert snap.ecc_uncorrectable_volatile is None
    assert snap.missing["ecc_uncorrectable_volatile"] == "ECC is disabled: the GPU keeps no error counts"


def test_a_gpu_nvml_cannot_open_is_an_nvml_error_per_metric() -> None:
    import pynvml as p

    fake = FakeNvml(failures={("nvmlDeviceGetHandleByIndex", 3): p.NVML_ERROR_GPU_IS_LOST})
    watch = Watch(3, BUS, interval=3600.0, kernel_log="none", nvml=fake, clock=Clock())
    watch.begin()
    watch.end()
    items = {i.metric: i for i in watch.items(4999.0, 5001.0)}
    assert all(items[m].value is None for m in (*calc.TELEMETRY_METRICS, *calc.DELTA_METRICS))
    assert items["ecc_uncorrectable_new"].not_measured.startswith("NVML cannot open GPU 3")
    assert items["sm_clock_median"].not_measured.startswith("NVML cannot open GPU 3")


def test_the_cpu_device_watches_nothing() -> None:
    watch = Watch(None, None, interval=0.2, why_none="the CPU device has no NVML telemetry")
    watch.begin()
    watch.end()
    assert watch.items(0.0, 1.0) == [] and not watch.active
    assert watch.settings(0.0, 1.0) == {
        "telemetry": {"source": None, "reason": "the CPU device has no NVML telemetry"}
    }
    assert {i.metric for i in watch.unwatched()} == set(calc.WATCH_METRICS)


def test_gpu_counters_snapshot_and_deltas_from_the_fake() -> None:
    fake = FakeNvml(devices={2: {"remapped_rows": (3, 1, 1, 0), "pcie_replay": 7}})
    before = gc.snapshot(fake, 2)
    assert before == gc.Counters(0, 0, 3, 1, 0, 7)
    fake.device_overrides[2] = {
        "remapped_rows": (3, 2, 0, 1),
        "pcie_replay": 9,
        **BROKEN["ecc_correctable_volatile"],
    }
    d = gc.deltas(before, gc.snapshot(fake, 2))
    assert {k: v.new for k, v in d.items()} == {
        "ecc_correctable_volatile": 5000,
        "ecc_uncorrectable_volatile": 0,
        "remapped_rows_correctable": 0,
        "remapped_rows_uncorrectable": 1,
        "remap_failure": 1,
        "pcie_replay": 2,
    }
    assert MODELS["H200"]["pcie_replay"] == 0
