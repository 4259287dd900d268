"""Fidelity of the gemm probe.

On the CPU: the probe's fp32 GEMM TFLOPS against the better of a plain torch loop and a plain
numpy loop at the same size (y = x @ W^T, float32), interleaved in one process (probe, torch,
numpy, probe, ...) so a noisy neighbour hurts all alike; each side's best round median is
compared and printed side by side. Target: the probe within 5% of the better reference.

On a GPU (skipped without CUDA): bf16 at 8192^3 against the best shape of a 64-shape bf16 sweep
on the same GPU (target: within 3%), and on an H200 at least 750 TFLOPS. The sweep's top three
shapes are then re-measured against 8192^3, alternated round by round (HPCBENCH_GEMM_GPU_ROUNDS,
default 24), in the probe's burst state and after HPCBENCH_GEMM_SUSTAIN_S (default 1) seconds of
untimed calls of each shape (sustained, at the power cap); the assertion is on the burst ratio,
every ratio is printed.

    .venv/bin/python -m pytest benchmarks/test_gemm_fidelity.py -s

Environment: HPCBENCH_GEMM_SIZE (CPU, default 1024), HPCBENCH_GEMM_ROUNDS (default 8),
HPCBENCH_GEMM_MIN_RATIO (CPU, default 0.95).

The size: the probe flushes the cache before each timed call and the plain loops do not, so at
sizes whose operands fit the last-level cache the loops run warm and the probe cold; at 1024
(12 MiB of operands) the compute dominates. On the CPU the probe times torch.mm and oneDNN's
linear and reports the faster (the round's implementation is printed): where numpy's BLAS beats
torch's (OpenBLAS against MKL on AMD CPUs, ~8% at 2048), torch.mm alone could not reach it.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import pytest
import torch

from hpcbench.node.collector import collect
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.gemm.probe import Gemm

SIZE = int(os.environ.get("HPCBENCH_GEMM_SIZE", "1024"))
ROUNDS = int(os.environ.get("HPCBENCH_GEMM_ROUNDS", "8"))
MIN_RATIO = float(os.environ.get("HPCBENCH_GEMM_MIN_RATIO", "0.95"))
REPEATS = 20
WARMUP = 3


def _median_tflops(fn: Any, flops: float) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times) / 1e12


def test_cpu_fp32_gemm_against_torch_and_numpy() -> None:
    inventory = collect()
    params = build_params(
        Gemm,
        {
            "device": "cpu",
            "dtypes": ["fp32"],
            "shapes": [SIZE],
            "repeats": REPEATS,
            "warmup": WARMUP,
            "warmup_s": 0.0,
        },
    )
    n = SIZE
    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, n), dtype=np.float32)
    w_np = rng.standard_normal((n, n), dtype=np.float32)
    x_t, w_t = torch.from_numpy(x_np.copy()), torch.from_numpy(w_np.copy())
    rounds: dict[str, list[float]] = {"probe": [], "torch": [], "numpy": []}
    chosen: list[str] = []
    for r in range(ROUNDS):
        (m,) = Gemm().run(
            build_params(Gemm, {**params.__dict__, "seed": r}), ProbeContext(inventory=inventory)
        )
        assert m.sanity is None, m.sanity
        rounds["probe"].append(m.value)  # the probe's checked value: the median of its timed calls
        chosen.append(m.settings["implementation"])
        rounds["torch"].append(_median_tflops(lambda: torch.mm(x_t, w_t.t()), flops))
        rounds["numpy"].append(_median_tflops(lambda: x_np @ w_np.T, flops))
    best = {k: max(v) for k, v in rounds.items()}
    reference = max(best["torch"], best["numpy"])
    ratio = best["probe"] / reference
    print(f"\nfp32 GEMM {n}x{n}x{n} on the CPU ({torch.get_num_threads()} threads), GFLOPS, {ROUNDS} rounds:")
    print(f"{'round':>6} {'probe':>10} {'torch':>10} {'numpy':>10}  probe's implementation")
    for i in range(ROUNDS):
        row = " ".join(f"{rounds[k][i] * 1e3:>10.1f}" for k in ("probe", "torch", "numpy"))
        print(f"{i:>6} {row}  {chosen[i]}")
    print(f"{'best':>6} " + " ".join(f"{best[k] * 1e3:>10.1f}" for k in ("probe", "torch", "numpy")))
    print(
        f"probe / torch = {best['probe'] / best['torch']:.3f}, "
        f"probe / numpy = {best['probe'] / best['numpy']:.3f}"
    )
    print(f"probe / better of torch and numpy = {ratio:.3f} (target >= {MIN_RATIO})")
    assert ratio >= MIN_RATIO


def _interleaved(
    shapes: dict[str, Any], device: int | str, inventory: dict[str, Any], warmup_s: float = 0.0
) -> dict[str, list[float]]:
    """Median TFLOPS per round of each shape as the probe reports it, the shapes alternated round
    by round, timed as the probe times them (fresh inputs, warm-up, cache flush, CUDA events)."""
    import torch as t

    from hpcbench.hw import matmul as mm
    from hpcbench.hw import torch_device as td
    from hpcbench.probes.gemm import probe as g

    rt = td.prepare(t, device, inventory)
    flush, _ = td.make_flush(t, rt, True)
    out: dict[str, list[float]] = {name: [] for name in shapes}
    for r in range(GPU_ROUNDS):
        order = list(shapes.items()) if r % 2 == 0 else list(reversed(shapes.items()))
        for name, label in order:
            case = g.measure_case(
                t,
                rt,
                "bf16",
                mm.parse_shape(label),
                repeats=10,
                warmup=10,
                warmup_s=warmup_s,
                flush=flush,
                check_size=64,
                seed=100 + r,
            )
            assert case.sanity is None, case.sanity
            out[name].append(statistics.median(case.tflops))
    return out


#: 24: with 6 rounds the burst ratio's median moved between 0.944 and 1.003 over four runs on one
#: H200 (per round 0.88-1.08, the power limiter); 24 rounds take about 2 minutes there
GPU_ROUNDS = int(os.environ.get("HPCBENCH_GEMM_GPU_ROUNDS", "24"))
SUSTAIN_S = float(os.environ.get("HPCBENCH_GEMM_SUSTAIN_S", "1.0"))
TELEMETRY_KEYS = ("sm_clock", "power", "temp", "throttle")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_8192_against_the_sweep() -> None:
    inventory = collect()
    device = 0 if inventory["gpus"]["count"] else "auto"
    # like for like: 8192^3 timed exactly as each sweep shape is (10 calls after 10 warm-up calls)
    values = {"device": device, "dtypes": ["bf16"], "shapes": [8192], "repeats": 10, "sweep": True}
    params = build_params(Gemm, {**values, "sweep_repeats": 10})
    ms = {m.metric: m for m in Gemm().run(params, ProbeContext(subject="gpu0", inventory=inventory))}
    fixed, sweep = ms["bf16"], ms["bf16_sweep"]
    assert fixed.sanity is None and sweep.sanity is None
    name = fixed.settings["device"]["name"]
    best_shape = sweep.settings["sweep"]["best_shape"]
    table = sorted(sweep.settings["sweep"]["table"], key=lambda row: -row["median"])

    def impls(m: Any) -> str:
        others = m.settings.get("other_implementations_tflops", {})
        text = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in others.items())
        return f"via {m.settings['implementation']}" + (f" (other: {text})" if text else "")

    print(
        f"\nbf16 GEMM on {name}: 8192^3 {fixed.value:.1f} TFLOPS (median; best {max(fixed.samples):.1f}) "
        + impls(fixed)
    )
    print(f"sweep best {best_shape} {sweep.value:.1f} " + impls(sweep))
    print(
        "sweep, top 5 of",
        len(table),
        "shapes (median TFLOPS):",
        ", ".join(f"{row['shape']} {row['median']:.1f} {row.get('implementation')}" for row in table[:5]),
    )
    for label, m in (("8192^3", fixed), ("sweep", sweep)):
        tel = m.settings.get("telemetry", {})
        print(
            f"  telemetry {label}: "
            + ", ".join(f"{k} {v}" for k, v in tel.items() if k.startswith(TELEMETRY_KEYS))
        )
    in_sweep = fixed.value / sweep.value
    print(
        f"in one pass: 8192^3 / sweep best = {in_sweep:.3f} (the sweep's best of {len(table)} medians "
        "is biased upwards, and the two ran minutes apart)"
    )
    # the sweep's top three re-measured against 8192^3, alternated round by round: burst (as the
    # probe measures) and sustained (after SUSTAIN_S s of untimed calls of the shape: the power cap)
    top = {f"#{i + 1}": row["shape"] for i, row in enumerate(table[:3])}
    ratios = {}
    for state, warm in (("burst", 0.0), ("sustained", SUSTAIN_S)):
        rounds = _interleaved({"8192^3": "8192", **top}, device, inventory, warm)
        medians = {key: statistics.median(values) for key, values in rounds.items()}
        print(f"{state}, interleaved, {GPU_ROUNDS} rounds (median TFLOPS per round | median):")
        for key, values in rounds.items():
            row = " ".join(f"{v:.1f}" for v in values)
            print(f"  {key:>7} {top.get(key, ''):>16}: {row} | {medians[key]:.1f}")
        winner = max(top, key=lambda key: medians[key])
        paired = [a / b for a, b in zip(rounds["8192^3"], rounds[winner], strict=True)]
        ratios[state] = medians["8192^3"] / medians[winner]
        print(
            f"  {state}: 8192^3 / {top[winner]} = {ratios[state]:.3f} (medians of the rounds); "
            "per round " + " ".join(f"{r:.3f}" for r in paired)
        )
    print(f"interleaved, 8192^3 / the best: burst {ratios['burst']:.3f}, sustained {ratios['sustained']:.3f}")
    print("(target >= 0.97, asserted on the burst ratio: the probe's default state)")
    if "H200" in name:
        print(f"8192^3 / 750 TFLOPS = {fixed.value / 750:.3f} (target >= 1.0 on an H200)")
        assert fixed.value >= 750
    assert ratios["burst"] >= 0.97
