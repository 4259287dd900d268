"""NVML telemetry during a GPU probe: the sampler (replayed through FakeNvml), the summary, the
reason names decoded from NVML's bitmask, and the hint a throttled shortfall gets."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
from support.fakenvml import FakeNvml
from support.nvml_models import GPU_IS_LOST, NOT_SUPPORTED

from hpcbench.core.measurement import Conditions, Measurement, Verdict
from hpcbench.engine.baselines import Baseline, Expectation
from hpcbench.engine.judge import evaluate, relative
from hpcbench.engine.suite import Band, CheckSpec, Relative
from hpcbench.hw import telemetry
from hpcbench.node import nvml
from hpcbench.node.inventory import Inventory

SM, MEM = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM
THERMAL = pynvml.nvmlClocksEventReasonHwThermalSlowdown
POWER_CAP = pynvml.nvmlClocksEventReasonSwPowerCap
IDLE = pynvml.nvmlClocksEventReasonGpuIdle
#: an H200 whose clocks a hot GPU cut: what NVML reports during a GEMM
HOT = {"clocks_event_reasons": THERMAL | POWER_CAP, "temperature": 89, "clocks": {SM: 1410, MEM: 3201}}
LOADED = {"clocks_event_reasons": 0, "temperature": 61}


def test_reason_table_matches_pynvml() -> None:
    for bit, name, advice in telemetry.REASONS:
        value = getattr(pynvml, f"nvmlClocksEventReason{name}", None)
        if value is None:  # the bits NVML only ever published under the old name
            value = getattr(pynvml, f"nvmlClocksThrottleReason{name}")
        assert value == bit, name
        assert advice
    all_bits = 0
    for bit, _, _ in telemetry.REASONS:
        all_bits |= bit
    assert all_bits == pynvml.nvmlClocksThrottleReasonAll


def test_decode_reasons() -> None:
    assert telemetry.decode_reasons(0) == []
    assert telemetry.decode_reasons(THERMAL | POWER_CAP) == ["SwPowerCap", "HwThermalSlowdown"]
    assert telemetry.decode_reasons(IDLE | 0x1000) == ["GpuIdle", "0x1000"]


def test_summarize() -> None:
    samples = [
        {"sm_clock_mhz": 1980.0, "power_w": 690.0, "reasons": POWER_CAP},
        {"sm_clock_mhz": 1410.0, "power_w": 700.0, "reasons": POWER_CAP | THERMAL},
        {"sm_clock_mhz": 1755.0, "power_w": 650.0, "reasons": 0},
        {"sm_clock_mhz": 1800.0},  # the reasons could not be read this time
    ]
    s = telemetry.summarize(samples)
    assert s["samples"] == 4 and s["sm_clock_mhz"] == {"min": 1410.0, "median": 1777.5, "max": 1980.0}
    assert s["power_w"] == {"min": 650.0, "median": 690.0, "max": 700.0}
    assert s["throttle_reasons"] == {"HwThermalSlowdown": 0.333, "SwPowerCap": 0.667}
    assert s["reasons_read"] is True and "temperature_c" not in s
    assert telemetry.summarize([]) == {"samples": 0, "throttle_reasons": {}, "reasons_read": False}


def test_throttle_hint_names_the_reasons_by_frequency() -> None:
    tel = {
        "throttle_reasons": {"GpuIdle": 0.5, "HwThermalSlowdown": 0.25, "SwPowerCap": 0.75},
        "sm_clock_mhz": {"min": 1410.0, "median": 1500.0, "max": 1980.0},
        "sm_clock_max_mhz": 1980.0,
        "power_w": {"min": 500.0, "median": 690.0, "max": 700.0},
        "power_limit_w": 700.0,
        "temperature_c": {"min": 60.0, "median": 80.0, "max": 89.0},
    }
    hint = telemetry.throttle_hint(tel)
    assert hint.startswith("GPU clocks were held down during the run: SwPowerCap in 75% of samples")
    assert hint.index("SwPowerCap") < hint.index("HwThermalSlowdown") and "GpuIdle" not in hint
    assert "SM clock median 1500 MHz of max 1980" in hint and "temperature max 89 C" in hint
    assert telemetry.throttle_hint({"throttle_reasons": {"GpuIdle": 1.0}}) == ""
    assert telemetry.throttle_hint(None) == "" and telemetry.throttle_hint({"source": None}) == ""


def sampler(fake: FakeNvml, index: int = 3) -> telemetry.Sampler:
    """Samples only when told (start() takes one; the thread waits a minute)."""
    return telemetry.Sampler(index, 60.0, nvml=fake)


def test_sampler_reads_the_gpu_through_the_nvml_seam() -> None:
    fake = FakeNvml(devices={3: LOADED})
    with sampler(fake) as s:
        s.take()
    summary = s.summary()
    assert summary["source"] == "nvml" and summary["gpu"] == 3 and summary["samples"] == 2
    assert summary["sm_clock_mhz"]["median"] == 1980.0 and summary["mem_clock_mhz"]["max"] == 3201.0
    assert summary["power_w"]["max"] == pytest.approx(609.0) and summary["power_limit_w"] == 700.0
    assert summary["temperature_c"]["max"] == 61.0 and summary["gpu_util_pct"]["min"] == 100.0
    assert summary["sm_clock_max_mhz"] == 1980.0 and summary["throttle_reasons"] == {}
    assert "nvmlDeviceGetCurrentClocksEventReasons" in fake.calls and fake.calls[-1] == "nvmlShutdown"


def test_summary_of_a_window_and_the_nearest_sample() -> None:
    import time

    fake = FakeNvml(devices={3: dict(LOADED)})
    s = sampler(fake)
    s.start()  # one loaded sample
    t0 = time.monotonic()
    fake.device_overrides[3] = HOT
    s.take()
    s.take()
    t1 = time.monotonic()
    fake.device_overrides[3] = LOADED
    s.take()
    s.stop()
    hot = s.summary(t0, t1)
    assert hot["samples"] == 2 and hot["throttle_reasons"] == {"HwThermalSlowdown": 1.0, "SwPowerCap": 1.0}
    assert hot["sm_clock_mhz"]["max"] == 1410.0
    whole = s.summary()
    assert whole["samples"] == 4 and whole["throttle_reasons"] == {
        "HwThermalSlowdown": 0.5,
        "SwPowerCap": 0.5,
    }
    empty = s.summary(t1, t1)  # no sample inside: the nearest one
    assert empty["samples"] == 1 and empty["nearest_sample"] is True


def test_sampler_without_nvml_says_why() -> None:
    s = telemetry.Sampler(0, 0.1, nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    with s:
        pass
    not_found = nvml.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert s.summary() == {"source": None, "reason": f"NVML unavailable: {not_found}"}
    gone = telemetry.Sampler(
        1, 0.1, nvml=FakeNvml(failures={("nvmlDeviceGetHandleByIndex", 1): pynvml.NVML_ERROR_GPU_IS_LOST})
    )
    with gone:
        pass
    lost = nvml.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    assert gone.summary()["reason"] == f"NVML cannot open GPU 1: nvmlDeviceGetHandleByIndex: {lost}"
    assert telemetry.Sampler(0, 0.0).summary()["reason"] == "telemetry off (telemetry_interval = 0)"
    assert telemetry.Sampler(None, 0.1, why_none="CPU").summary() == {"source": None, "reason": "CPU"}


def test_unsupported_fields_are_left_out_and_errors_kept() -> None:
    fake = FakeNvml(devices={2: {"power_usage": NOT_SUPPORTED, "temperature": GPU_IS_LOST}})
    with sampler(fake, 2) as s:
        pass
    summary = s.summary()
    assert "power_w" not in summary and "temperature_c" not in summary and "sm_clock_mhz" in summary
    lost = nvml.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    assert summary["errors"] == {"temperature_c": f"nvmlDeviceGetTemperature: {lost}"}


def test_clock_event_reasons_fall_back_to_the_old_name() -> None:
    fake = FakeNvml(
        devices={0: {"clocks_event_reasons": THERMAL}},
        failures={("nvmlDeviceGetCurrentClocksEventReasons", None): pynvml.NVML_ERROR_FUNCTION_NOT_FOUND},
    )
    reading = nvml.clock_event_reasons(fake, 0)
    assert reading.ok and reading.value == THERMAL
    assert fake.calls[-2:] == [
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
    ]

    class OldPynvml(FakeNvml):  # an nvidia-ml-py older than 12.535: only the old name exists
        nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment]

    old = OldPynvml(devices={0: {"clocks_event_reasons": POWER_CAP}})
    assert nvml.clock_event_reasons(old, 0).value == POWER_CAP


def measured(value: float, tel: dict[str, Any], subject: str = "gpu0") -> Measurement:
    samples = [value, value * 0.99]
    return Measurement.from_samples(
        "bf16",
        samples,
        "TFLOPS",
        subject,
        settings={"telemetry": tel},
        conditions=Conditions(gpu_clocks_held=telemetry.throttle_hint(tel)),
    )


def test_a_throttled_shortfall_gets_a_hint_naming_the_reason() -> None:
    fake = FakeNvml(devices={0: HOT})
    with sampler(fake, 0) as s:
        pass
    hot = s.summary()
    expected = {"gemm": {"bf16": Expectation(794.5, "TFLOPS")}}
    base = Baseline("h200", "/h200.toml", {}, {"source": "published", "date": "2026-11-28"}, expected)
    check = CheckSpec(id="gemm", probe="gemm", expand="gpu", relative=Relative("best", Band(0.9, 0.8)))
    slow = evaluate(measured(560.0, hot), check, base, Inventory.from_dict({}))
    assert slow.verdict is Verdict.FAIL
    assert "HwThermalSlowdown in 100% of samples" in slow.hint and "SwPowerCap" in slow.hint
    assert "temperature max 89 C" in slow.hint
    assert (
        evaluate(measured(790.0, hot), check, base, Inventory.from_dict({})).hint == ""
    )  # no shortfall, no hint
    cool = evaluate(
        measured(560.0, {"source": "nvml", "throttle_reasons": {}}), check, base, Inventory.from_dict({})
    )
    assert cool.verdict is Verdict.FAIL and "held down" not in cool.hint
    # the relative check against the node's best GPU gets the same hint
    rel = relative(
        {"gpu0": [measured(790.0, {})], "gpu1": [measured(600.0, hot, "gpu1")]},
        check,
        Inventory.from_dict({}),
    )
    assert rel["gpu1"][0].verdict is Verdict.FAIL and "HwThermalSlowdown" in rel["gpu1"][0].hint
