"""Fidelity of the cpu_membw probe against a C/OpenMP STREAM-like reference.

Both run with the same array size and thread count, interleaved in one run
(C, probe, C, probe, ...) so that a noisy neighbour hurts both alike; the best
rate per kernel of each is compared. Each probe round runs in a fresh Python
process, as the runner runs a probe, so its torch thread pool never shares a
process with the C run (importing torch is outside the probe's timed kernels).

    .venv/bin/python -m pytest benchmarks/test_membw_fidelity.py -s

Environment: HPCBENCH_MEMBW_ROUNDS (default 10), HPCBENCH_MEMBW_ELEMENTS (default:
the probe's automatic size), HPCBENCH_MEMBW_MIN_RATIO (default 0.9).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcbench.node.collector import collect
from hpcbench.probes.cpu_membw.probe import KERNELS, choose_variants, default_array_size

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = int(os.environ.get("HPCBENCH_MEMBW_ROUNDS", "10"))
MIN_RATIO = float(os.environ.get("HPCBENCH_MEMBW_MIN_RATIO", "0.9"))
REPEATS = 20
WARMUP = 2
TIMEOUT = 600
THREADS = len(os.sched_getaffinity(0))

#: one probe round in a fresh Python process: argv[1] is {"params": ..., "inventory": ...}
PROBE_SCRIPT = """
import json, sys
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.cpu_membw.probe import CpuMembw
cfg = json.loads(sys.argv[1])
ctx = ProbeContext(subject="node", inventory=cfg["inventory"])
print(json.dumps([m.as_dict() for m in CpuMembw().run(build_params(CpuMembw, cfg["params"]), ctx)]))
"""
ENV = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def stream_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: cannot build the C reference")
    exe = tmp_path_factory.mktemp("stream_ref") / "stream_ref"
    cmd = ["gcc", "-O3", "-fopenmp", "-o", str(exe), str(HERE / "stream_ref.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"cannot build the C reference with {' '.join(cmd)}: {proc.stderr.strip()[:500]}")
    return exe


def test_membw_fidelity(stream_ref: Path, benchmark: Any) -> None:
    inventory = collect()
    elements = int(os.environ.get("HPCBENCH_MEMBW_ELEMENTS", "0")) or default_array_size(
        inventory["cpu"].get("llc_bytes"), inventory["memory"].get("total_bytes")
    )
    threads = THREADS
    params = {"array_size": elements, "threads": threads, "repeats": REPEATS, "warmup": WARMUP}
    c_best = dict.fromkeys(KERNELS, 0.0)
    probe_best = dict.fromkeys(KERNELS, 0.0)
    c_rounds: list[dict[str, float]] = []
    probe_rounds: list[dict[str, float]] = []
    sanity: list[str] = []

    def c_round() -> None:  # pedantic's setup: runs before each timed probe round, untimed
        argv = [str(stream_ref), str(elements), str(REPEATS), str(WARMUP), "1"]  # huge pages, as the probe
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
        assert proc.returncode == 0, f"C reference failed ({proc.returncode}): {proc.stdout} {proc.stderr}"
        out = json.loads(proc.stdout)
        assert out["array_elements"] == elements and out["threads"] == threads
        c_rounds.append({k: out[k] for k in KERNELS})
        for k in KERNELS:
            c_best[k] = max(c_best[k], out[k])

    def probe_round() -> None:
        argv = [sys.executable, "-c", PROBE_SCRIPT, json.dumps({"params": params, "inventory": inventory})]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV, cwd=ROOT)
        assert proc.returncode == 0, f"probe failed ({proc.returncode}): {proc.stderr[-2000:]}"
        measurements = json.loads(proc.stdout)
        probe_rounds.append({m["metric"]: m["best"] for m in measurements})
        for m in measurements:
            assert m["settings"]["array_elements"] == elements and m["settings"]["torch_threads"] == threads
            assert m["settings"]["huge_pages"]
            probe_best[m["metric"]] = max(probe_best[m["metric"]], m["best"])
            if m["sanity"]:
                sanity.append(m["sanity"])

    benchmark.pedantic(probe_round, setup=c_round, rounds=ROUNDS, iterations=1)

    ratios = {k: probe_best[k] / c_best[k] for k in KERNELS}
    # a second view, for noisy machines: each round's probe/C ratio, median over rounds
    pairs = list(zip(c_rounds, probe_rounds, strict=True))
    paired = {k: statistics.median(p[k] / c[k] for c, p in pairs) for k in KERNELS}
    lines = [
        f"\ncpu_membw fidelity: {elements} float64 elements per array "
        f"({elements * 8 / 2**20:.0f} MiB), {threads} threads, best of {ROUNDS} interleaved rounds "
        f"x {REPEATS} repeats",
        f"{'kernel':<8}{'C GB/s':>10}{'probe GB/s':>12}{'ratio':>8}{'median round ratio':>20}",
    ]
    lines += [
        f"{k:<8}{c_best[k]:>10.2f}{probe_best[k]:>12.2f}{ratios[k]:>8.3f}{paired[k]:>20.3f}" for k in KERNELS
    ]
    print("\n".join(lines))
    benchmark.extra_info.update(
        {
            "array_elements": elements,
            "threads": threads,
            "rounds": ROUNDS,
            "c_gbs": c_best,
            "probe_gbs": probe_best,
            "ratios": ratios,
            "median_round_ratios": paired,
        }
    )

    assert not sanity, sanity[0]
    # Whole processes in turn: on a VM whose bandwidth moves between levels over seconds, the best
    # of each side can come from different levels. Printed as a second view; the same-arrays test
    # below is the one that must reach MIN_RATIO.
    low = {k: round(r, 3) for k, r in ratios.items() if r < MIN_RATIO}
    if low:
        print(f"(whole-process view below {MIN_RATIO}: {low}; see the same-arrays view)")


#: the probe's own kernels and the C kernels, alternated call by call on the same arrays; argv[5],
#: when given, is the same C built for torch's vector width (a third side, printed only)
SAME_ARRAYS_SCRIPT = """
import ctypes, json, os, sys
os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # as the probe does by default (huge_pages)
import torch
from hpcbench.probes.cpu_membw.probe import KERNELS, SCALAR, kernel_variants, stream_bytes, time_kernel
def load(path):
    lib = ctypes.CDLL(path)  # its libgomp is torch's (same soname): one OpenMP thread pool
    lib.stream_kernel.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 3 + [ctypes.c_long, ctypes.c_double]
    return lib
n, threads, rounds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
libs = {"c": load(sys.argv[1])}
if len(sys.argv) > 5:
    libs["c_wide"] = load(sys.argv[5])
torch.set_num_threads(threads)
a, b, c = (torch.empty(n, dtype=torch.float64) for _ in range(3))
a.fill_(2.0); b.fill_(2.0); c.fill_(0.0)
variants = kernel_variants(torch, a, b, c)  # each timed as a side; the probe's pick comes after
ptrs = (a.data_ptr(), b.data_ptr(), c.data_ptr())
def c_kernel(lib, k):
    return lambda: lib.stream_kernel(k, *ptrs, n, SCALAR)
rates = {side: {k: [] for k in KERNELS} for side in libs}
impls = {k: {impl: [] for impl in variants[k]} for k in KERNELS}
for r in range(rounds):
    for k, name in enumerate(KERNELS):
        order = [(rates[side][name], c_kernel(lib, k)) for side, lib in libs.items()]
        order += [(impls[name][impl], fn) for impl, fn in variants[name].items()]
        for into, fn in order if r % 2 == 0 else order[::-1]:
            into.append(stream_bytes(name, n) / time_kernel(fn) / 1e9)
cap = torch.backends.cpu.get_cpu_capability()
print(json.dumps({"capability": cap, "rates": rates, "impls": impls}))
"""

#: gcc flags for the vector width of torch's CPU kernels (torch.backends.cpu.get_cpu_capability())
WIDE_FLAGS = {"AVX512": ["-march=x86-64-v4", "-mprefer-vector-width=512"], "AVX2": ["-march=x86-64-v3"]}


def _build_lib(out: Path, flags: list[str]) -> str | None:
    """Build stream_ref.c as a shared library; the error text when gcc fails."""
    cmd = ["gcc", "-O3", *flags, "-fopenmp", "-shared", "-fPIC", "-o", str(out), str(HERE / "stream_ref.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return None if proc.returncode == 0 else f"{' '.join(cmd)}: {proc.stderr.strip()[:500]}"


def _capability() -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip()


def test_membw_kernels_on_the_same_arrays(tmp_path: Path) -> None:
    """The probe's kernels against the C kernels, alternated call by call on the very same arrays.

    The C reference is built as the issue asks (gcc -O3 -fopenmp: baseline SSE2 on x86-64). On
    some CPUs that code outruns any wider-vector code in the two-array kernels; to tell such an
    effect from Python overhead, the same C built for the vector width of torch's kernels runs as
    a further side, and so does torch's plain kernel where the probe chose another implementation
    (``kernel_variants``); both printed, not asserted.
    """
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: cannot build the C reference")
    lib = tmp_path / "libstream_ref.so"
    error = _build_lib(lib, [])
    if error:
        pytest.skip(f"cannot build the C reference with {error}")
    inventory = collect()
    elements = int(os.environ.get("HPCBENCH_MEMBW_ELEMENTS", "0")) or default_array_size(
        inventory["cpu"].get("llc_bytes"), inventory["memory"].get("total_bytes")
    )
    rounds = 10 * ROUNDS
    argv = [sys.executable, "-c", SAME_ARRAYS_SCRIPT, str(lib), str(elements), str(THREADS), str(rounds)]
    wide_flags = WIDE_FLAGS.get(_capability(), [])
    wide = tmp_path / "libstream_ref_wide.so"
    if wide_flags and _build_lib(wide, wide_flags) is None:
        argv.append(str(wide))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    rates = out["rates"]
    # the probe's side: per kernel the implementation the probe would report (shorter median call)
    impls = out["impls"]
    chosen = choose_variants(
        {k: {impl: [1 / r for r in rs] for impl, rs in by.items()} for k, by in impls.items()}
    )
    rates["probe"] = {k: impls[k][chosen[k]] for k in KERNELS}
    rates["plain"] = {k: impls[k]["plain"] for k in KERNELS}
    best = {side: {k: max(v) for k, v in per.items()} for side, per in rates.items()}
    ratios = {k: best["probe"][k] / best["c"][k] for k in KERNELS}
    paired = {
        side: {
            k: statistics.median(p / c for p, c in zip(per[k], rates["c"][k], strict=True)) for k in KERNELS
        }
        for side, per in rates.items()
        if side in ("probe", "c_wide")
    }
    print(
        f"\ncpu_membw kernels against C on the same arrays: {elements} float64 elements per array, "
        f"{THREADS} threads, best of {rounds} alternated calls each; torch's kernels: {out['capability']}"
    )
    has_wide = "c_wide" in rates
    head = f"{'kernel':<8}{'impl':>11}{'C GB/s':>10}{'probe GB/s':>12}{'ratio':>8}{'paired':>8}{'plain/C':>9}"
    if has_wide:
        head += f"{'C wide GB/s':>13}{'wide/C':>8}{'probe/wide':>12}"
    print(head)
    for k in KERNELS:
        line = (
            f"{k:<8}{chosen[k]:>11}{best['c'][k]:>10.2f}{best['probe'][k]:>12.2f}{ratios[k]:>8.3f}"
            f"{paired['probe'][k]:>8.3f}{best['plain'][k] / best['c'][k]:>9.3f}"
        )
        if has_wide:
            w = best["c_wide"][k]
            line += f"{w:>13.2f}{w / best['c'][k]:>8.3f}{best['probe'][k] / w:>12.3f}"
        print(line)
    print(
        "ratio: best against best; paired: median over rounds of probe / C in the same round; "
        "plain/C: torch's plain kernel, best against best"
    )
    if has_wide:
        print(f"C wide: the same C with {' '.join(wide_flags)} (torch's vector width), printed only")
    low = {k: round(r, 3) for k, r in ratios.items() if r < MIN_RATIO}
    assert not low, f"probe kernels below {MIN_RATIO} of the C kernels on the same arrays: {low}"
