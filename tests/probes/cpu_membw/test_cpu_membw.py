"""cpu_membw: pure helpers, parameter validation, and small real runs on the CPU (no timing asserts)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from hpcbench.core.errors import ParamError, ProbeError
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.cpu_membw import probe as cpu_membw
from hpcbench.probes.cpu_membw.probe import (
    KERNELS,
    CpuMembw,
    choose_variants,
    default_array_size,
    expected_values,
    kernel_variants,
    numa_cpus,
    stream_bytes,
    time_variants,
    validate_stream,
)

MiB = 2**20
GiB = 2**30
CPUS = sorted(os.sched_getaffinity(0))
INVENTORY = Inventory.from_dict(
    {
        "cpu": {"llc_bytes": 32 * MiB},
        "memory": {"total_bytes": 16 * GiB},
        "numa": {"nodes": [{"id": 0, "cpus": CPUS}]},
    }
)


# ---------------------------------------------------------------- pure helpers


def test_stream_bytes_counts_like_stream() -> None:
    assert stream_bytes("copy", 10) == 160
    assert stream_bytes("scale", 10) == 160
    assert stream_bytes("add", 10) == 240
    assert stream_bytes("triad", 10) == 240
    assert stream_bytes("triad", 10, itemsize=4) == 120
    with pytest.raises(ValueError, match="unknown STREAM kernel"):
        stream_bytes("nstream", 10)


def test_default_array_size_is_four_times_llc() -> None:
    assert default_array_size(32 * MiB, 64 * GiB) == 4 * 32 * MiB // 8


def test_default_array_size_without_llc_falls_back() -> None:
    assert default_array_size(None, 64 * GiB) == 256 * MiB // 8
    assert default_array_size(0, None) == 256 * MiB // 8


def test_default_array_size_is_capped_by_memory() -> None:
    n = default_array_size(1 * GiB, 4 * GiB)  # 4x LLC would be 4 GiB per array
    assert 3 * n * 8 <= 4 * GiB // 4
    assert default_array_size(None, 1 * MiB) == MiB // 4 // 3 // 8
    assert default_array_size(None, 16 * 1024) == 1024  # the floor


def test_expected_values_follow_streams_recurrence() -> None:
    assert expected_values(0) == (2.0, 2.0, 0.0)
    # c = a = 2; b = 3c = 6; c = a + b = 8; a = b + 3c = 30
    assert expected_values(1) == (30.0, 6.0, 8.0)


def _arrays(iterations: int, n: int = 1000) -> dict[str, np.ndarray]:
    a, b, c = expected_values(iterations)
    return {"a": np.full(n, a), "b": np.full(n, b), "c": np.full(n, c)}


def test_validate_stream_accepts_correct_arrays() -> None:
    assert validate_stream(_arrays(12), 12) is None


def test_validate_stream_detects_a_corrupted_array() -> None:
    arrays = _arrays(5)
    arrays["b"][17] = 0.0
    reason = validate_stream(arrays, 5)
    assert reason is not None and "array b" in reason and "array a" not in reason
    assert "\n" not in reason


def test_validate_stream_detects_wrong_iteration_count_and_nan() -> None:
    assert validate_stream(_arrays(4), 5) is not None
    arrays = _arrays(3)
    arrays["c"][0] = np.nan
    reason = validate_stream(arrays, 3)
    assert reason is not None and "array c" in reason


def test_numa_cpus_from_inventory() -> None:
    inv = Inventory.from_dict({"numa": {"nodes": [{"id": 0, "cpus": [1, 0]}, {"id": 2, "cpus": [5, 4, 4]}]}})
    assert numa_cpus(inv, 2) == [4, 5] and numa_cpus(inv, 0) == [0, 1]
    with pytest.raises(ProbeError, match="NUMA node 3 has no CPUs"):
        numa_cpus(Inventory.from_dict({"numa": {"nodes": [{"id": 3, "cpus": []}]}}), 3)
    with pytest.raises(ProbeError, match="NUMA node 1 is not in .*known NUMA nodes: 0, 2"):
        numa_cpus(inv, 1)
    with pytest.raises(ProbeError, match="known NUMA nodes: none"):
        numa_cpus(Inventory.from_dict({}), 0)


# ---------------------------------------------------------------- parameters


def test_probe_attributes() -> None:
    assert CpuMembw.name == "cpu_membw"
    assert CpuMembw.requires == ()
    assert CpuMembw.expands == {"numa": "numa_node"}
    assert "\n" not in CpuMembw.description


def test_default_params() -> None:
    p = build_params(CpuMembw, {})
    assert (p.array_size, p.threads, p.repeats, p.warmup, p.numa_node) == (0, 0, 10, 2, None)


def test_params_from_text() -> None:
    p = build_params(CpuMembw, {"numa_node": "1", "repeats": "5"}, from_text=True)
    assert (p.numa_node, p.repeats) == (1, 5)
    assert build_params(CpuMembw, {"numa_node": "none"}, from_text=True).numa_node is None


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"repeats": 1}, "repeats"),
        ({"repeats": 300}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"threads": -2}, "threads"),
        ({"array_size": -5}, "array_size"),
        ({"numa_node": -1}, "numa_node"),
        ({"repeats": "ten"}, "repeats"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_param_errors(values: dict[str, object], key: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(CpuMembw, values)
    assert info.value.key == key


def test_array_too_large_for_memory_is_a_probe_error() -> None:
    inv = replace(INVENTORY, memory=replace(INVENTORY.memory, total_bytes=64 * MiB))
    with pytest.raises(ProbeError, match="do not fit"):
        CpuMembw().run(build_params(CpuMembw, {"array_size": 10_000_000}), ProbeContext(inventory=inv))


def test_unknown_numa_node_is_a_probe_error() -> None:
    params = build_params(CpuMembw, {"array_size": 10_000, "numa_node": 7})
    with pytest.raises(ProbeError, match="NUMA node 7"):
        CpuMembw().run(params, ProbeContext(inventory=INVENTORY))


# ---------------------------------------------------------------- real runs


def _run(values: dict[str, object], subject: str = "node") -> list:
    params = build_params(CpuMembw, {"array_size": 2_000_000, "repeats": 3, "warmup": 1, **values})
    return CpuMembw().run(params, ProbeContext(subject=subject, inventory=INVENTORY))


def test_small_real_run() -> None:
    ms = _run({})
    assert [m.metric for m in ms] == list(KERNELS)
    for m in ms:
        assert m.value > 0 and m.unit == "GB/s" and m.higher_is_better
        assert len(m.samples) == 3 and all(s > 0 for s in m.samples)
        assert m.value == max(m.samples)
        assert m.statistic == "best" and m.convention == "STREAM"
        assert m.sanity is None
        assert m.subject == "node"
    s = ms[0].settings
    assert s["array_elements"] == 2_000_000 and s["array_bytes_each"] == 16_000_000
    assert s["threads"] == len(CPUS) and s["cpus"] == CPUS
    assert s["numa_node"] is None and s["dtype"] == "float64"
    assert s["repeats"] == 3 and s["warmup"] == 1
    assert s["torch_version"] and s["torch_parallel_backend"] and s["torch_threads"] >= 1
    impl = {m.metric: m.settings["implementation"] for m in ms}
    assert impl["add"] == impl["triad"] == "plain" and {impl["copy"], impl["scale"]} <= {
        "plain",
        "complex128",
    }
    others = {m.metric: m.settings["other_implementations_gbs"] for m in ms}
    assert others["add"] == {} and list(others["copy"]) == [
        {"plain": "complex128"}.get(impl["copy"], "plain")
    ]
    assert all(len(v) == 3 and min(v) > 0 for v in others["scale"].values())
    assert ms[0].as_dict()["median"] > 0


def test_choose_variants_takes_the_shorter_median_and_plain_on_ties() -> None:
    times = {
        "copy": {"plain": [0.020, 0.011, 0.012], "complex128": [0.010, 0.030, 0.011]},
        "scale": {"plain": [0.010, 0.002], "complex128": [0.004, 0.008]},
        "add": {"plain": [0.012]},
        "triad": {"plain": []},
    }
    assert choose_variants(times) == {
        "copy": "complex128",
        "scale": "plain",
        "add": "plain",
        "triad": "plain",
    }


@pytest.mark.parametrize("n", [4097, 4096 * 3 + 1])
def test_odd_arrays_have_plain_kernels_only(n: int) -> None:
    import torch

    a, b, c = (torch.ones(n, dtype=torch.float64) for _ in range(3))
    assert {k: list(v) for k, v in kernel_variants(torch, a, b, c).items()} == {k: ["plain"] for k in KERNELS}


def test_every_variant_writes_exactly_what_the_plain_kernel_writes() -> None:
    import torch

    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(10_000, dtype=torch.float64, generator=gen) * 1e3 for _ in range(3)]
    variants = {k: list(v) for k, v in kernel_variants(torch, *(t.clone() for t in start)).items()}
    assert variants["copy"] == ["plain", "complex128"] and variants["scale"] == ["plain", "complex128"]
    for kernel, names in variants.items():
        results = []
        for name in names:
            a, b, c = (t.clone() for t in start)
            kernel_variants(torch, a, b, c)[kernel][name]()
            results.append((a, b, c))
        for other in results[1:]:
            assert all(torch.equal(x, y) for x, y in zip(results[0], other, strict=True)), (kernel, names)


def test_time_variants_times_every_variant_and_keeps_streams_values() -> None:
    import torch

    n = 100_000
    a, b, c = (torch.empty(n, dtype=torch.float64) for _ in range(3))
    a.fill_(2.0), b.fill_(2.0), c.fill_(0.0)
    variants = kernel_variants(torch, a, b, c)
    times = time_variants(variants, 2, 3)
    assert {k: {name: len(ts) for name, ts in by.items()} for k, by in times.items()} == {
        k: dict.fromkeys(variants[k], 3) for k in KERNELS
    }
    assert validate_stream({"a": a, "b": b, "c": c}, 5) is None  # each variant repeated in its slot


def test_explicit_threads() -> None:
    ms = _run({"threads": 1})
    assert ms[0].settings["threads"] == 1 and ms[0].settings["torch_threads"] == 1


def test_run_pinned_to_numa_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_PROC_BIND", raising=False)  # restored by monkeypatch afterwards
    monkeypatch.delenv("OMP_PLACES", raising=False)
    before = os.sched_getaffinity(0)
    try:
        ms = _run({"numa_node": 0}, subject="numa0")
        assert os.sched_getaffinity(0) == set(CPUS)
    finally:
        os.sched_setaffinity(0, before)
    for m in ms:
        assert m.subject == "numa0" and m.sanity is None
        assert m.settings["numa_node"] == 0 and m.settings["cpus"] == CPUS
        assert m.settings["threads"] == len(CPUS)
        assert m.settings["omp_proc_bind"] == "close" and m.settings["omp_places"] == "cores"


def test_failed_validation_sets_sanity_on_every_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_membw, "validate_stream", lambda arrays, iterations: "array a is wrong")
    ms = _run({})
    assert [m.sanity for m in ms] == ["array a is wrong"] * 4


def test_import_does_not_load_torch() -> None:
    code = "import sys, hpcbench.probes.cpu_membw.probe; sys.exit('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, "importing the probe module imported torch"


# ---------------------------------------------------------------- the reported numbers, pinned


def test_reported_gbs_is_streams_bytes_over_seconds_over_1e9(monkeypatch: pytest.MonkeyPatch) -> None:
    """With fixed timings each sample is STREAM's bytes (16 B per element for copy and scale, 24 B
    for add and triad) / seconds / 1e9, the value is the best sample of the implementation with
    the shorter median call, and the other implementation's samples are kept the same way."""
    from support.fixedclock import FixedClock

    n = 100_000  # even: copy and scale also run as complex128
    ms_ = 1e-3
    clock = FixedClock(
        {
            "copy/plain": [4 * ms_, 2 * ms_, 3 * ms_],  # median 3 ms
            "copy/complex128": [1 * ms_, 3.5 * ms_, 2.5 * ms_],  # median 2.5 ms: reported
            "scale/plain": [2 * ms_, 2 * ms_, 5 * ms_],  # median 2 ms: reported
            "scale/complex128": [1 * ms_, 4 * ms_, 3 * ms_],  # median 3 ms, though its best is faster
            "add/plain": [6 * ms_, 4 * ms_, 5 * ms_],
            "triad/plain": [8 * ms_, 6 * ms_, 7.5 * ms_],
        }
    )
    real = cpu_membw.kernel_variants

    def tagged(torch: object, a: object, b: object, c: object) -> dict:
        return {
            k: {name: clock.tagged(f"{k}/{name}", fn) for name, fn in by.items()}
            for k, by in real(torch, a, b, c).items()
        }

    monkeypatch.setattr(cpu_membw, "kernel_variants", tagged)
    params = build_params(CpuMembw, {"array_size": n, "repeats": 3, "warmup": 2})
    ms = {m.metric: m for m in CpuMembw(clock=clock).run(params, ProbeContext(inventory=INVENTORY))}
    assert clock.timed.count("copy/plain") == 3  # warm-up calls are not timed

    def gbs(bytes_per_element: int, seconds: list[float]) -> list[float]:
        return [bytes_per_element * n / t / 1e9 for t in seconds]

    copy, scale, add, triad = (ms[k] for k in KERNELS)
    assert copy.settings["implementation"] == "complex128" and scale.settings["implementation"] == "plain"
    assert list(copy.samples) == gbs(16, clock.script["copy/complex128"])
    assert list(scale.samples) == gbs(16, clock.script["scale/plain"])
    assert list(add.samples) == gbs(24, clock.script["add/plain"])
    assert list(triad.samples) == gbs(24, clock.script["triad/plain"])
    assert copy.settings["other_implementations_gbs"] == {"plain": gbs(16, clock.script["copy/plain"])}
    assert scale.settings["other_implementations_gbs"] == {
        "complex128": gbs(16, clock.script["scale/complex128"])
    }
    # the best sample, by hand: 1.6 MB in 1 ms, 1.6 MB in 2 ms, 2.4 MB in 4 ms and in 6 ms
    assert copy.value == pytest.approx(1.6, rel=1e-12) and scale.value == pytest.approx(0.8, rel=1e-12)
    assert add.value == pytest.approx(0.6, rel=1e-12) and triad.value == pytest.approx(0.4, rel=1e-12)
    assert all(m.unit == "GB/s" and m.sanity is None for m in ms.values())
