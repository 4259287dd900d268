"""gpu_membw: the copy and triad kernels, their STREAM byte counting and their verification,
run for real on the CPU device (the CUDA path differs only in the device and the event clock);
the buffer size rule; the NVML theoretical peak per GPU model."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
import torch
from support.fakenvml import FakeNvml

from hpcbench.core.errors import ParamError
from hpcbench.hw.torch_device import PerfCounterClock
from hpcbench.node.inventory import Inventory
from hpcbench.node.nvml import peak_memory_gbps
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gpu_membw import probe as gm

MIB = 2**20


def test_copy_and_triad_on_the_cpu_device() -> None:
    params = build_params(gm.GpuMembw, {"device": "cpu", "buffer_mib": 16, "repeats": 3, "warmup": 1})
    ms = gm.GpuMembw().run(params, ProbeContext(subject="node", inventory=Inventory.from_dict({})))
    assert [m.metric for m in ms] == ["copy", "triad"]
    n = 16 * MIB // 4
    copy, triad = ms
    assert copy.settings["bytes_per_call"] == 2 * 4 * n  # read a + write b
    assert triad.settings["bytes_per_call"] == 3 * 4 * n  # read a, b + write c
    for m in ms:
        assert m.sanity is None and m.unit == "GB/s" and len(m.samples) == 3 and m.statistic == "best"
        assert m.value == max(m.samples) > 0
        assert m.settings["buffer_bytes_each"] == 16 * MIB and m.settings["timer"] == "time.perf_counter"
        assert m.settings["peak_gbps"] is None and m.convention.startswith("STREAM")
        assert m.settings["telemetry"] == {"source": None, "reason": "the CPU device has no NVML telemetry"}


class CountingClock(PerfCounterClock):
    def __init__(self) -> None:
        self.starts = 0

    def start(self) -> float:
        self.starts += 1
        return super().start()


def test_measure_times_warmup_apart_and_verifies() -> None:
    clock = CountingClock()
    seconds, sanity = gm.measure(torch, torch.device("cpu"), clock, 1 << 16, warmup=2, repeats=4)
    assert sanity is None and {k: len(v) for k, v in seconds.items()} == {"copy": 4, "triad": 4}
    assert clock.starts == 8  # warm-up calls are not timed


def buffers(n: int = 4096) -> tuple[Any, Any, Any]:
    a = torch.rand(n)
    b = a.clone()
    c = a + gm.SCALAR * b
    return a, b, c


def test_verify_catches_a_wrong_copy_and_a_wrong_triad() -> None:
    a, b, c = buffers()
    assert gm.verify(torch, a, b, c) is None
    b[17] += 1.0
    b[99] = float("nan")
    assert gm.verify(torch, a, b, a + gm.SCALAR * b).startswith(
        "copy: 2 of 4096 elements differ from the source"
    )
    a, b, c = buffers()
    c[:] = 0.0  # every output wrong: the sample cannot miss them
    reason = gm.verify(torch, a, b, c) or ""
    assert reason.startswith("triad: ") and "sampled elements wrong" in reason and "expected" in reason


def test_buffer_size_rule() -> None:
    assert gm.buffer_bytes(50 * MIB, 80 * 2**30) == 1024 * MIB  # H100: 8 x 50 MiB < 1 GiB
    assert gm.buffer_bytes(126 * MIB, 180 * 2**30) == 1024 * MIB  # B200: 8 x 126 MiB is under 1 GiB
    assert gm.buffer_bytes(256 * MIB, 180 * 2**30) == 2048 * MIB  # 8 x L2
    assert gm.buffer_bytes(50 * MIB, 3 * 2**30) == 512 * MIB  # three buffers in half the free memory
    assert gm.buffer_bytes(None, None) == 1024 * MIB
    assert gm.buffer_bytes(50 * MIB, 80 * 2**30, requested_mib=64) == 64 * MIB


@pytest.mark.parametrize(
    ("model", "peak"), [("H100", 3352.3), ("H200", 4916.7), ("A100", 2039.0), ("B200", 8183.8)]
)
def test_theoretical_peak_from_nvml(model: str, peak: float) -> None:
    got = gm.theoretical_peak(2, FakeNvml(model=model))
    assert got["peak_gbps"] == pytest.approx(peak, abs=0.1)
    assert got["peak_source"].startswith("NVML: max memory clock x bus width x 2")


def test_theoretical_peak_unknown() -> None:
    lost = FakeNvml(failures={("nvmlDeviceGetHandleByIndex", 1): pynvml.NVML_ERROR_GPU_IS_LOST})
    assert gm.theoretical_peak(1, lost) == {
        "peak_gbps": None,
        "peak_source": "nvmlDeviceGetHandleByIndex: GPU is lost",
    }
    no_nvml = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert gm.theoretical_peak(0, no_nvml)["peak_source"].startswith("NVML: LibraryNotFound")
    assert gm.theoretical_peak(None)["peak_gbps"] is None


def test_params_are_validated() -> None:
    for bad in ({"device": "gpu"}, {"device": -1}, {"repeats": 1}, {"buffer_mib": -1}, {"warmup": -1}):
        with pytest.raises(ParamError):
            build_params(gm.GpuMembw, bad)
    assert build_params(gm.GpuMembw, {"device": "3"}, from_text=True).device == 3


def test_reported_gbs_is_streams_bytes_over_seconds_over_1e9() -> None:
    """With fixed timings (copy's three calls, then triad's) every sample is the bytes read plus
    written (2 x 4 B per element for copy, 3 x 4 B for triad) / seconds / 1e9; the value is the best."""
    from support.fixedclock import FixedClock

    copy_s, triad_s = [2e-3, 1.25e-3, 1.6e-3], [3e-3, 2.5e-3, 4e-3]
    clock = FixedClock(copy_s + triad_s)
    params = build_params(gm.GpuMembw, {"device": "cpu", "buffer_mib": 1, "repeats": 3, "warmup": 2})
    copy, triad = gm.GpuMembw(clock=clock).run(
        params, ProbeContext(subject="node", inventory=Inventory.from_dict({}))
    )
    n = MIB // 4
    assert len(clock.timed) == 6  # warm-up calls are not timed
    assert list(copy.samples) == [2 * 4 * n / t / 1e9 for t in copy_s]
    assert list(triad.samples) == [3 * 4 * n / t / 1e9 for t in triad_s]
    # by hand: 2 MiB in 1.25 ms = 1.6777216 GB/s; 3 MiB in 2.5 ms = 1.2582912 GB/s
    assert copy.value == pytest.approx(1.6777216, rel=1e-12)
    assert triad.value == pytest.approx(1.2582912, rel=1e-12)
    assert copy.settings["timer"] == "fixed (test)" and copy.sanity is None and triad.sanity is None


def test_theoretical_peak_is_clock_times_bus_width_times_two_in_gbs() -> None:
    # max memory clock (Hz) x bus width (bytes) x 2 (double data rate) / 1e9
    assert peak_memory_gbps(3201, 6144) == pytest.approx(4916.736, rel=1e-12)  # H200: 4.8 TB/s datasheet
    assert peak_memory_gbps(2619, 5120) == pytest.approx(3352.32, rel=1e-12)  # H100 SXM: 3.35 TB/s
