"""The burn probe's pure helpers, every reported number pinned to its formula: windows and their
TFLOPS, sustained TFLOPS, stability and droop, the bit-for-bit comparison and its reason, the
telemetry of a run, the counter deltas, the host-load CPUs."""

from __future__ import annotations

import pytest
import torch
from support.nvml_models import HW_SLOWDOWN, POWER_BRAKE, POWER_CAP, SW_THERMAL

from hpcbench.hw import gpu_counters as gc
from hpcbench.hw import telemetry
from hpcbench.probes.burn import calc

FLOPS = 2 * 64 * 64 * 64


def test_window_tflops_is_two_m_n_k_iterations_per_second() -> None:
    assert calc.tflops(FLOPS, 30, 1.2) == FLOPS * 30 / 1.2 / 1e12
    assert calc.tflops(2 * 8192**3, 580, 1.0) == pytest.approx(637.7, abs=0.1)  # 580 GEMMs of 8192^3 in 1 s


def test_windows_close_at_the_first_batch_end_a_window_after_they_opened() -> None:
    ws = calc.Windows(1.0, FLOPS)
    assert ws.add(0.4, 10) is None and ws.add(0.8, 10) is None
    w0 = ws.add(1.2, 10)
    assert w0 == calc.Window(0, 0.0, 1.2, 30, FLOPS * 30 / 1.2 / 1e12)
    assert ws.add(2.0, 20) is None
    w1 = ws.add(2.5, 5)
    assert w1 is not None and (w1.start, w1.end, w1.iterations) == (1.2, 2.5, 25)
    assert w1.tflops == FLOPS * 25 / (2.5 - 1.2) / 1e12
    # a remainder shorter than half a window joins the window before it
    assert ws.add(2.7, 4) is None
    final = ws.finish(2.7)
    assert [w.index for w in final] == [0, 1]
    assert (final[1].start, final[1].end, final[1].iterations) == (1.2, 2.7, 29)
    assert final[1].tflops == FLOPS * 29 / (2.7 - 1.2) / 1e12
    # a longer remainder is a window of its own
    ws2 = calc.Windows(1.0, FLOPS)
    ws2.add(1.0, 10)
    ws2.add(1.6, 6)
    last = ws2.finish(1.6)[-1]
    assert (last.index, last.start, last.end, last.iterations) == (1, 1.0, 1.6, 6)


def _windows(rates: list[float], seconds: float = 1.0) -> list[calc.Window]:
    return [calc.Window(i, i * seconds, (i + 1) * seconds, 1, r) for i, r in enumerate(rates)]


def test_sustained_stability_and_droop_of_a_short_run() -> None:
    """6 s run: the warm-up and droop spans are a third of it (2 s)."""
    st = calc.stability(_windows([10.0, 9.0, 8.0, 8.0, 4.0, 8.0]), 6.0)
    assert calc.span(6.0) == 2.0
    assert st.sustained_windows == (2, 3, 4, 5) and st.sustained == 8.0  # median of 8, 8, 4, 8
    assert st.worst_window == 4 and st.stability == 4.0 / 8.0
    # droop: the last 2 s (4, 8) against the 2 s after the warm-up (8, 8), not the cold first 2 s
    assert st.first_windows == (2, 3) and st.last_windows == (4, 5)
    assert st.droop == 0.75


def test_sustained_stability_and_droop_of_a_ten_minute_run() -> None:
    """600 s in 10 s windows: the first minute is left out, droop compares the last minute with the
    minute after the warm-up (the cold first minute at 800 plays no part)."""
    rates = [800.0] * 6 + [700.0] * 48 + [650.0] * 6
    st = calc.stability(_windows(rates, 10.0), 600.0)
    assert calc.span(600.0) == 60.0
    assert st.sustained_windows == tuple(range(6, 60)) and st.sustained == 700.0
    assert st.stability == 650.0 / 700.0
    assert st.first_windows == tuple(range(6, 12)) and st.last_windows == tuple(range(54, 60))
    assert st.droop == 650.0 / 700.0


def test_droop_weights_windows_by_their_seconds() -> None:
    ws = [
        calc.Window(0, 0.0, 1.0, 1, 10.0),
        calc.Window(1, 1.0, 3.0, 1, 4.0),
        calc.Window(2, 3.0, 6.0, 1, 6.0),
    ]
    assert calc.rate(ws[:2]) == (10.0 * 1 + 4.0 * 2) / 3
    st = calc.stability(ws, 6.0)
    # span 2 s: windows 1 (midpoint 2) is the span after the warm-up, window 2 (midpoint 4.5) the last
    assert st.first_windows == (1,) and st.last_windows == (2,) and st.droop == 6.0 / 4.0
    longer = [*ws, calc.Window(3, 6.0, 7.0, 1, 2.0), calc.Window(4, 7.0, 12.0, 1, 3.0)]
    st = calc.stability(longer, 12.0)  # span 4 s: after the warm-up, 3 s at 6 and 1 s at 2: rate 5
    assert st.first_windows == (2, 3) and st.last_windows == (4,)
    assert st.droop == 3.0 / 5.0


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_compare_finds_one_flipped_bit(dtype: torch.dtype) -> None:
    ref = torch.randn(4, 8, generator=torch.Generator().manual_seed(1)).to(dtype)
    assert calc.compare(torch, ref, ref.clone()) == calc.Mismatch(0, 32)
    out = ref.clone()
    _bits(out)[2, 5] ^= 1  # the lowest mantissa bit of y[2, 5]
    m = calc.compare(torch, ref, out)
    width = 8 * ref.element_size()
    want = int(_bits(ref)[2, 5]) & ((1 << width) - 1)
    assert m == calc.Mismatch(1, 32, ((2 * 8 + 5, want ^ 1, want),))
    assert torch.equal(_bits(out)[2, 5] ^ 1, _bits(ref)[2, 5])  # neither input changed


def test_compare_is_bitwise_nan_equals_itself_and_signed_zeros_differ() -> None:
    ref = torch.tensor([float("nan"), 0.0, 1.0])
    assert calc.compare(torch, ref, ref.clone()).differ == 0
    assert calc.compare(torch, ref, torch.tensor([float("nan"), -0.0, 1.0])).differ == 1
    many = calc.compare(torch, torch.zeros(100), torch.ones(100))
    assert many.differ == 100 and [o for o, _, _ in many.first] == [0, 1, 2, 3, 4]


def test_corruption_reason_names_subject_count_time_and_iteration() -> None:
    first = ((17, 0x3F81, 0x3F80), (4001 * 8192 + 2, 0xBF00, 0x3F00))
    c = calc.Corruption(312.4, 41377, calc.Mismatch(2, 67108864, first))
    assert calc.corruption_reason("gpu3", [c], 62, 8192) == (
        "gpu3: 2 of 67,108,864 elements differ from its first result at 312 s (iteration 41,377); "
        "first at y[0, 17] (0x3f81, was 0x3f80), y[4001, 2] (0xbf00, was 0x3f00)"
    )
    more = calc.Corruption(400.0, 52000, calc.Mismatch(9, 67108864, first))
    text = calc.corruption_reason("gpu3", [c, more], 80, 8192)
    assert text is not None and text.endswith("; 2 of 80 verifications found differences")
    big = calc.corruption_reason("gpu0", [calc.Corruption(5.0, 9, calc.Mismatch(7, 64, first[:1]))], 1, 8)
    assert big is not None and "y[2, 1] (0x3f81, was 0x3f80) and 6 more" in big
    assert calc.corruption_reason("gpu3", [], 62, 8192) is None
    assert (calc.seconds(312.4), calc.seconds(4.25), calc.seconds(0.04)) == ("312 s", "4.2 s", "0.0 s")
    assert c.as_dict(8192)["first"][1] == {"row": 4001, "col": 2, "found": "0xbf00", "expected": "0x3f00"}


def test_reason_seconds_and_slope_from_timed_samples() -> None:
    samples = [
        (0.0, {"reasons": 0}),
        (1.0, {"reasons": POWER_CAP}),
        (1.5, {"reasons": POWER_CAP | HW_SLOWDOWN}),
        (3.0, {}),  # reasons not read this time
    ]
    assert telemetry.reason_seconds(samples, 4.0) == {"SwPowerCap": 2.0, "HwSlowdown": 1.5, "unread": 1.0}
    assert telemetry.linear_slope([(0.0, 40.0), (10.0, 45.0), (20.0, 50.0)]) == 0.5
    assert telemetry.linear_slope([(0.0, 40.0)]) is None
    assert telemetry.linear_slope([(1.0, 40.0), (1.0, 41.0)]) is None


def test_run_telemetry_and_its_items_quote_the_numbers() -> None:
    samples = [
        (100.0 + i, {"sm_clock_mhz": sm, "temperature_c": temp, "power_w": pw, "reasons": r})
        for i, (sm, temp, pw, r) in enumerate(
            [
                (1980.0, 40.0, 600.0, 0),
                (1500.0, 50.0, 700.0, POWER_CAP),
                (1005.0, 60.0, 690.0, POWER_CAP | HW_SLOWDOWN | POWER_BRAKE),
                (1500.0, 62.0, 700.0, POWER_CAP | SW_THERMAL),
                (1515.0, 66.0, 695.0, POWER_CAP),
            ]
        )
    ]
    limits = {"sm_clock_max_mhz": 1980.0, "power_limit_w": 700.0}
    t = calc.run_telemetry([(90.0, {"sm_clock_mhz": 1.0}), *samples], 100.0, 105.0, limits)
    assert t.samples == 5 and t.seconds == 5.0
    assert t.sm_clock_median == 1500.0 and t.sm_clock_min == 1005.0 and t.temperature_max == 66.0
    assert t.power_median == 695.0 and t.power_limit == 700.0
    # last half: t >= 102.5 -> (103, 62), (104, 66): 4 C per second = 240 C per minute
    assert t.temperature_slope == pytest.approx(240.0)
    # one sample of a reason is no run (hw.throttle: 2 samples and 1 s or more); SwPowerCap holds
    # from 101 to the end (105) in 4 samples
    assert t.reason_seconds == {
        "hw_slowdown_s": 0.0,
        "hw_thermal_slowdown_s": 0.0,
        "power_brake_s": 0.0,
        "sw_thermal_slowdown_s": 0.0,
        "sw_power_cap_s": 4.0,
    }
    items = {i.metric: i for i in calc.telemetry_items(t)}
    assert items["hw_slowdown_s"].value == 0.0 and items["hw_slowdown_s"].detail == (
        "HwSlowdown active for 0.0 s of the 5 s burn, in runs of 1 s or more"
    )
    assert items["sw_power_cap_s"].detail == (
        "SwPowerCap active for 4.0 s of the 5 s burn, in runs of 1 s or more "
        "(SM clock min 1005 MHz of max 1980, max 66 C)"
    )
    counted = {i.metric: i for i in calc.telemetry_items(t, {"sw_power_cap_s": 4.25})}
    assert counted["sw_power_cap_s"].value == 4.25 and counted["sw_power_cap_s"].detail == (
        "SwPowerCap held the clocks for 4.2 s of the 5 s burn (NVML's counter) "
        "(SM clock min 1005 MHz of max 1980, max 66 C)"
    )
    assert items["power_median"].detail == "median 695 W of the 700 W limit (99%)"
    assert items["sm_clock_median"].detail == "SM clock median 1500 MHz, min 1005 of max 1980"
    assert items["temperature_slope"].unit == "C/min" and not items["temperature_slope"].higher_is_better
    empty = calc.telemetry_items(calc.run_telemetry([], 0.0, 1.0, {}))
    assert {i.metric for i in empty} == {*calc.TELEMETRY_METRICS, *calc.REASON_METRICS}
    assert all(i.value is None and i.not_measured == "NVML gave no sample during the run" for i in empty)


def test_delta_items_count_what_the_burn_added() -> None:
    before = gc.Counters(0, 0, 3, 0, 0, 10)
    after = gc.Counters(12, 2, 3, 1, 1, 95)
    items = {i.metric: i for i in calc.delta_items(gc.deltas(before, after))}
    assert {m: i.value for m, i in items.items()} == {
        "ecc_uncorrectable_new": 2.0,
        "ecc_correctable_new": 12.0,
        "remapped_rows_new": 1.0,
        "remap_failure_new": 1.0,
        "pcie_replay_new": 85.0,
    }
    assert (
        items["ecc_uncorrectable_new"].detail
        == "2 uncorrectable ECC errors during the burn (0 before, 2 after)"
    )
    assert (
        items["remap_failure_new"].detail == "a row remapping failed during the burn (flag 0 before, 1 after)"
    )
    # a counter the GPU does not give (V100: no row remapping) is not measured, with the reason
    v100 = gc.Counters(0, 0, None, None, None, 0, missing={"remap_failure": "NVML: Not Supported"})
    items = {i.metric: i for i in calc.delta_items(gc.deltas(v100, v100))}
    assert items["remap_failure_new"].value is None and items["remap_failure_new"].not_measured.startswith(
        "NVML"
    )
    # a counter that went down (the driver reloaded) counts as nothing new
    assert gc.deltas(gc.Counters(pcie_replay=9), gc.Counters(pcie_replay=2))["pcie_replay"].new == 0


def test_host_load_cpus_leave_one_per_gpu_and_never_overlap() -> None:
    allowed = list(range(112))
    shares = [calc.host_load_cpus(allowed, 8, s, 8) for s in range(8)]
    assert all(len(s) == 13 for s in shares)  # 112 - 8 feeders = 104 CPUs, 13 per GPU child
    flat = sorted(c for s in shares for c in s)
    assert flat == list(range(8, 112))  # disjoint, and all of the free CPUs
    assert calc.host_load_cpus([0, 1], 1, 0, 1) == [1]  # the 2-core test machine: one CPU of load
    assert calc.host_load_cpus([0, 1], 2, 0, 1) == []
    with pytest.raises(ValueError):
        calc.host_load_cpus(allowed, 8, 8, 8)
