"""Mutation check of the numbers a user reads: unit and factor mistakes must fail a test.

Each mutant is one plausible mistake in a reporting line or a statistic (GB/s computed with
2**30 instead of 1e9, a bus factor of 1, the MAD scale, a threshold, a ratio turned around...):
a file, the exact original text (which must occur once), its replacement, and the test files
that must kill it. The script copies the source tree (hpcbench/, tests/, suites/, pyproject.toml)
to a temporary folder once, checks that the listed tests pass there unmutated, then applies each
mutant to the copy alone, runs its tests (``pytest -x``, with the copy first on ``PYTHONPATH`` so
the copy's ``hpcbench`` is the one imported), and restores the file. The working tree is never
touched. A mutant survives when its tests all pass; the script exits 1 when any survives.

Why not mutmut or cosmic-ray: they generate operator mutations (a number +1, ``<`` to ``<=``) over
whole files and run the suite for each; the mistakes that matter here are unit conventions
(1e9 against 2**30, nanoseconds against microseconds, KiB against kB) that no generic operator
produces, and the curated list runs in minutes on two cores.

    .venv/bin/python benchmarks/mutants.py            # all of them (make mutants)
    .venv/bin/python benchmarks/mutants.py -k busbw   # those whose id contains "busbw"
    .venv/bin/python benchmarks/mutants.py --list

Only in-process tests can kill a mutant: tests that start the ``hpcbench`` command give it a
PYTHONPATH of their own, so it imports the working tree, not the mutated copy. Every listed test
file holds in-process tests of the mutated line.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("hpcbench", "tests", "suites", "pyproject.toml", "examples")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    what: str


M = Mutant
CPU = "tests/probes/cpu_membw/test_cpu_membw.py"
GPU = "tests/probes/gpu_membw/test_gpu_membw.py"
PCIE = "tests/probes/pcie/test_pcie.py"
GEMM = "tests/probes/gemm/test_gemm.py"
ATTN = "tests/probes/attention/test_attention.py"
COLL = "tests/probes/collectives/test_collectives_math.py"
STOR = "tests/probes/storage/test_storage.py"
FIO = "tests/probes/storage/test_fio_parse.py"
ROBUST = "tests/analysis/test_analysis_robust.py"
CHECKS = "tests/engine/test_checks.py"
STATS = "tests/core/test_stats.py"
MATMUL = "tests/hw/test_matmul.py"
BURN = "tests/probes/burn/test_burn_math.py"
MEMTEST = "tests/probes/memtest/test_memtest.py"
THROTTLE = "tests/hw/test_throttle.py"
CHECKSUM = "tests/probes/burn/test_burn_checksum.py"
HEALTH = "tests/probes/node_health/test_node_health.py"
NET = (
    "tests/probes/network/test_network_tools.py",
    "tests/probes/network/test_network_health.py",
    "tests/probes/network/test_network_sysfs.py",
)
RAILS = ("tests/probes/network/test_network_rails.py", "tests/probes/network/test_network_rdma.py")

MUTANTS: tuple[Mutant, ...] = (
    # -- the five
    M("cpu_membw-gbs-2**30", "hpcbench/probes/cpu_membw/probe.py",
      "stream_bytes(k, n) / t / 1e9", "stream_bytes(k, n) / t / 2**30", (CPU,),
      "cpu_membw GB/s as GiB/s"),
    M("gpu_membw-gbs-2**30", "hpcbench/probes/gpu_membw/probe.py",
      "moved_bytes(kernel, n) / s / 1e9", "moved_bytes(kernel, n) / s / 2**30", (GPU,),
      "gpu_membw GB/s as GiB/s"),
    M("pcie-gbps-2**30", "hpcbench/probes/pcie/probe.py",
      "return nbytes / seconds / 1e9", "return nbytes / seconds / 2**30", (PCIE,),
      "pcie.gbps as GiB/s"),
    M("attention-tflops-2**40", "hpcbench/probes/attention/probe.py",
      "case.flops / s / 1e12", "case.flops / s / 2**40", (ATTN,),
      "attention TFLOPS with 2**40"),
    M("robust-z-scale", "hpcbench/analysis/robust.py",
      "Z_SCALE = 0.6745", "Z_SCALE = 1.4826", (ROBUST,),
      "modified z-score scaled by 1.4826 instead of 0.6745"),
    # -- the probes' reporting lines
    M("stream-triad-bytes", "hpcbench/probes/cpu_membw/probe.py",
      '"add": 3, "triad": 3}', '"add": 3, "triad": 2}', (CPU,),
      "STREAM triad counted as 16 B per element, not 24"),
    M("stream-copy-bytes", "hpcbench/probes/cpu_membw/probe.py",
      '{"copy": 2, "scale": 2,', '{"copy": 3, "scale": 2,', (CPU,),
      "STREAM copy counted as 24 B per element, not 16"),
    M("gpu_membw-triad-buffers", "hpcbench/probes/gpu_membw/probe.py",
      'BUFFERS_MOVED = {"copy": 2, "triad": 3}', 'BUFFERS_MOVED = {"copy": 2, "triad": 2}', (GPU,),
      "gpu_membw triad counted as 2 buffers"),
    M("gpu-peak-ddr", "hpcbench/node/nvml.py",
      "bus_width_bits / 8 * 2 / 1e9", "bus_width_bits / 8 / 1e9", (GPU,),
      "NVML peak bandwidth without the double data rate"),
    M("gemm-flops-2mnk", "hpcbench/hw/matmul.py",
      "return 2 * shape.m * shape.n * shape.k", "return shape.m * shape.n * shape.k", (GEMM, MATMUL),
      "GEMM FLOPs m*n*k instead of 2*m*n*k"),
    M("gemm-tflops-2**40", "hpcbench/hw/matmul.py",
      "gemm_flops(shape) / seconds / 1e12", "gemm_flops(shape) / seconds / 2**40", (GEMM, MATMUL),
      "GEMM TFLOPS with 2**40"),
    M("fastest-longest", "hpcbench/core/stats.py",
      "return min(medians, key=", "return max(medians, key=", (GEMM, CPU),
      "the slower implementation reported (longest median time)"),
    M("attention-causal-half", "hpcbench/probes/attention/calc.py",
      "forward /= 2", "forward /= 1", (ATTN,),
      "causal attention counted as full"),
    M("attention-fwd-bwd-factor", "hpcbench/probes/attention/calc.py",
      '"fwd_bwd": 3.5', '"fwd_bwd": 3.0', (ATTN,),
      "forward+backward as 3x the forward FLOPs, not 3.5x"),
    M("busbw-allreduce-factor", "hpcbench/probes/collectives/calc.py",
      "return 2 * (ranks - 1) / ranks", "return (ranks - 1) / ranks", (COLL,),
      "all-reduce busbw factor (n-1)/n instead of 2(n-1)/n"),
    M("busbw-gather-factor", "hpcbench/probes/collectives/calc.py",
      "        return (ranks - 1) / ranks\n", "        return 1.0\n", (COLL,),
      "all-gather/reduce-scatter busbw factor 1 instead of (n-1)/n"),
    M("algbw-2**30", "hpcbench/probes/collectives/calc.py",
      "return size_bytes / seconds / 1e9", "return size_bytes / seconds / 2**30", (COLL,),
      "collectives algbw in GiB/s"),
    M("collectives-rank-time-max", "hpcbench/probes/collectives/calc.py",
      "return statistics.fmean(per_rank_seconds)", "return max(per_rank_seconds)", (COLL,),
      "time of a size: the slowest rank instead of nccl-tests' mean over ranks"),
    M("busbw-avg-max", "hpcbench/probes/collectives/probe.py",
      'average = sum(row["busbw_gbs"] for row in rows) / len(rows)',
      'average = max(row["busbw_gbs"] for row in rows)', (COLL,),
      "average busbw as the best size's"),
    M("pcie-bidir-bytes", "hpcbench/probes/pcie/probe.py",
      "[total for total, _, _ in result.bidir], 2 * nbytes)",
      "[total for total, _, _ in result.bidir], nbytes)", (PCIE,),
      "bidirectional counting one direction's bytes"),
    M("pcie-statistic-best", "hpcbench/probes/pcie/probe.py",
      'subject,\n                statistic="median",\n                convention=CONVENTION,',
      'subject,\n                statistic="best",\n                convention=CONVENTION,', (PCIE,),
      "pcie reporting the best transfer, not nvbandwidth's median"),
    M("storage-bw-2**30", "hpcbench/probes/storage/probe.py",
      "s.bw_bytes / 1e9", "s.bw_bytes / 2**30", (STOR,),
      "storage bandwidth in GiB/s"),
    M("fio-bw-kib-as-kb", "hpcbench/probes/storage/fio.py",
      '_num(section, "bw") * 1024.0', '_num(section, "bw") * 1000.0', (STOR, FIO),
      "fio < 3.2 bandwidth (KiB/s) read as kB/s"),
    M("fio-clat-ns-as-us", "hpcbench/probes/storage/fio.py",
      'clat, scale = section["clat_ns"], 1e-3', 'clat, scale = section["clat_ns"], 1.0', (STOR, FIO),
      "fio 3.x latency in ns reported as us"),
    M("fio-clat-us-as-ms", "hpcbench/probes/storage/fio.py",
      'clat, scale = section["clat"], 1.0', 'clat, scale = section["clat"], 1e-3', (STOR, FIO),
      "fio < 3 latency in us divided by 1000"),
    M("fio-io-bytes-kib", "hpcbench/probes/storage/fio.py",
      'int(_num(section, "io_bytes")) * 1024', 'int(_num(section, "io_bytes")) * 1000', (STOR, FIO),
      "fio < 2.21 io_bytes (KiB) read as kB"),
    M("fio-iops-merge-max", "hpcbench/probes/storage/fio.py",
      "iops=sum(p.iops for p in parts)", "iops=max(p.iops for p in parts)", (FIO,),
      "IOPS of several jobs: the best job's, not the sum"),
    M("fio-percentile-merge-best", "hpcbench/probes/storage/fio.py",
      "worst[key] = max(worst.get(key, 0.0), value)", "worst[key] = min(worst.get(key, value), value)",
      (FIO,),
      "latency percentile of several jobs: the best job's, not the worst"),
    M("storage-percentile-labels", "hpcbench/probes/storage/probe.py",
      'LATENCY_SUFFIX = {50.0: "p50", 99.0: "p99", 99.9: "p999"}',
      'LATENCY_SUFFIX = {50.0: "p50", 99.0: "p999", 99.9: "p99"}', (STOR,),
      "clat_p99 reporting fio's 99.9th percentile and clat_p999 its 99th"),
    # -- the statistics
    M("mad-to-sigma", "hpcbench/analysis/robust.py",
      "MAD_TO_SIGMA = 1.4826", "MAD_TO_SIGMA = 1.0", (ROBUST,),
      "robust spread = MAD, not 1.4826 MAD"),
    M("pooled-spread-no-half", "hpcbench/analysis/robust.py",
      "np.sqrt((spread(a) ** 2 + spread(b) ** 2) / 2)", "np.sqrt(spread(a) ** 2 + spread(b) ** 2)", (ROBUST,),
      "compare's pooled spread without the /2"),
    M("compare-k", "hpcbench/analysis/robust.py",
      "higher_is_better: bool, k: float = 3.0", "higher_is_better: bool, k: float = 2.0", (ROBUST,),
      "compare counts changes beyond 2 x noise, not 3"),
    M("trim-threshold", "hpcbench/analysis/robust.py",
      "def trimmed(values: Any, k: float = 3.5", "def trimmed(values: Any, k: float = 3.0", (ROBUST,),
      "trimming threshold 3 instead of 3.5"),
    M("fleet-baseline-k", "hpcbench/analysis/fleet_baseline.py",
      "K = 3.5", "K = 3.0", (ROBUST,),
      "fleet baseline trims at 3 instead of 3.5"),
    M("trim-one-round", "hpcbench/analysis/robust.py",
      "max_rounds: int = 20", "max_rounds: int = 1", (ROBUST,),
      "trimming stops after one round"),
    M("fleet-k", "hpcbench/analysis/fleet.py",
      "    k: float = 3.5\n", "    k: float = 3.0\n", (ROBUST,),
      "fleet flags scores below -3 instead of -3.5"),
    M("robust-ratio-direction", "hpcbench/analysis/robust.py",
      "np.where(higher_is_better, value / reference, reference / value)",
      "np.where(higher_is_better, value / reference, value / reference)", (ROBUST,),
      "fleet ratio of a lower-is-better metric not inverted"),
    M("score-direction", "hpcbench/analysis/robust.py",
      "diff = np.where(higher_is_better, value - median, median - value)",
      "diff = np.where(higher_is_better, value - median, value - median)", (ROBUST,),
      "robust score of a lower-is-better metric not flipped"),
    M("checks-ratio-direction", "hpcbench/engine/judge.py",
      "return expected / measured if measured else", "return measured / expected if measured else", (CHECKS,),
      "verdict ratio of a lower-is-better metric not inverted"),
    M("history-noise-k", "hpcbench/analysis/history.py",
      "NOISE_K = 3.0", "NOISE_K = 2.0", (ROBUST,),
      "history degraded beyond 2 robust spreads, not 3"),
    M("best-direction", "hpcbench/core/stats.py",
      "return max(samples) if higher_is_better else min(samples)",
      "return min(samples) if higher_is_better else max(samples)", (CPU, GPU),
      "the best sample of a higher-is-better metric taken as the smallest"),
    # the probes that came with the burn-in issue (#14)
    M("burn-tflops-2**40", "hpcbench/probes/burn/calc.py",
      "return flops_per_iteration * iterations / seconds / 1e12",
      "return flops_per_iteration * iterations / seconds / 2**40", (BURN,),
      "burn window TFLOPS with 2**40"),
    M("burn-stability-best", "hpcbench/probes/burn/calc.py",
      "worst = min(after, key=lambda w: w.tflops)", "worst = max(after, key=lambda w: w.tflops)", (BURN,),
      "burn stability from the best window instead of the worst"),
    M("memtest-gbs-one-way", "hpcbench/probes/memtest/calc.py",
      "return (bytes_written + bytes_read) / seconds / 1e9", "return bytes_written / seconds / 1e9",
      (MEMTEST,), "memtest GB/s counting the writes only"),
    M("memtest-gbs-2**30", "hpcbench/probes/memtest/calc.py",
      "return (bytes_written + bytes_read) / seconds / 1e9",
      "return (bytes_written + bytes_read) / seconds / 2**30", (MEMTEST,), "memtest GB/s with 2**30"),
    M("node-health-gib-kB", "hpcbench/probes/node_health/system.py",
      "_KIB_PER_GIB = 2**20", "_KIB_PER_GIB = 10**6", (HEALTH,),
      "node_health memory in GB-ish (kB / 1e6) instead of GiB"),
    # the network probes (#15)
    M("perftest-mb-1e6", "hpcbench/hw/net/perftest.py",
      '"MB/sec": 2**20 * 8 / 1e9', '"MB/sec": 1e6 * 8 / 1e9', NET,
      "perftest's MB/sec read as 1e6 bytes (it divides by 2**20)"),
    M("perftest-bytes-not-bits", "hpcbench/hw/net/perftest.py",
      '"MiB/sec": 2**20 * 8 / 1e9', '"MiB/sec": 2**20 / 1e9', NET,
      "perftest's MiB/sec as bytes, not bits"),
    M("iperf3-receiver-2**30", "hpcbench/hw/net/iperf.py",
      'receiver_gbps=float(received["bits_per_second"]) / 1e9',
      'receiver_gbps=float(received["bits_per_second"]) / 2**30', NET, "iperf3 receiver Gb/s with 2**30"),
    M("iperf3-sender-as-receiver", "hpcbench/hw/net/iperf.py",
      'receiver_gbps=float(received["bits_per_second"]) / 1e9',
      'receiver_gbps=float(sent["bits_per_second"]) / 1e9', NET,
      "iperf3 bandwidth taken from the sender, not the receiver"),
    M("eth-rate-mbps", "hpcbench/node/nics.py",
      "return self.speed_mbps / 1000 if self.speed_mbps is not None else None",
      "return self.speed_mbps / 1024 if self.speed_mbps is not None else None", NET,
      "Ethernet rate Mb/s / 1024"),
    # the rails and the counters (#24)
    M("counter-saturated-passes", "hpcbench/hw/net/health.py",
      "if saturated(base_name(n), after[n]):", "if False:", RAILS,
      "a counter at its maximum taken as no growth (a PASS)"),
    M("counter-rate-per-minute", "hpcbench/hw/net/health.py",
      "rate = d * 3600.0 / seconds", "rate = d * 60.0 / seconds", NET,
      "error rates per minute, not per hour"),
    M("cuda-nvml-index", "hpcbench/hw/net/perftest.py",
      "return shown.index(mine), f", "return ordered.index(mine), f", RAILS,
      "--use_cuda given the NVML index, not the CUDA number under CUDA_VISIBLE_DEVICES"),
    # burn and memtest on a heat-soaked GPU (#23)
    M("throttle-violation-ns-as-us", "hpcbench/hw/throttle.py",
      "(a.violation_ns - b.violation_ns) / 1e9", "(a.violation_ns - b.violation_ns) / 1e6", (THROTTLE,),
      "NVML's violationTime (ns) read as microseconds"),
    M("throttle-one-sample-run", "hpcbench/hw/throttle.py",
      "MIN_RUN_SAMPLES = 2", "MIN_RUN_SAMPLES = 1", (THROTTLE, BURN),
      "a single sample of a throttle reason counted as a run"),
    M("burn-droop-cold-first-span", "hpcbench/probes/burn/calc.py",
      "first = [w for w in windows if warm <= (w.start + w.end) / 2 < 2 * warm]",
      "first = [w for w in windows if (w.start + w.end) / 2 < warm]", (BURN,),
      "droop against the cold first span, not the span after the warm-up"),
    M("checksum-window-first-iteration", "hpcbench/probes/burn/loop.py",
      "window_first, window_start = result.iterations + 1, t",
      "window_first, window_start = result.iterations, t", (CHECKSUM,),
      "a flip's verify window starting one iteration early"),
    M("memtest-computed-traffic", "hpcbench/probes/memtest/calc.py",
      "return (2 * n, n) if name in COMPUTED else (n, 0)", "return (n, 0)", (MEMTEST,),
      "memtest traffic of a computed pattern counted as one write"),
)  # fmt: skip


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)  # sysfs fixtures hold links
        elif src.exists():
            shutil.copy2(src, dest / name)


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[bool, str, float]:
    """(all passed, the first failing test or the last line, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {TIMEOUT_S} s", time.monotonic() - t0
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    last = out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"
    return proc.returncode == 0, (failed[0] if failed else last), time.monotonic() - t0


def imported_from(copy: Path) -> str:
    code = "import hpcbench; print(hpcbench.__file__)"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, timeout=60
    )
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only the mutants whose id contains this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.id]
    if args.list:
        for m in chosen:
            print(f"{m.id:28} {m.file}: {m.what}  [{', '.join(m.tests)}]")
        return 0
    if not chosen:
        print(f"mutants: no mutant id contains {args.k!r}", file=sys.stderr)
        return 4
    with tempfile.TemporaryDirectory(prefix="hpcbench-mutants-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        where = imported_from(copy)
        if not where.startswith(str(copy)):
            print(f"mutants: the copy's hpcbench is not the one imported ({where})", file=sys.stderr)
            return 3
        for m in chosen:  # every mutation must apply to exactly one place
            count = (copy / m.file).read_text().count(m.original)
            if count != 1:
                print(f"mutants: {m.id}: the original text occurs {count} times in {m.file}", file=sys.stderr)
                return 3
        tests = tuple(sorted({t for m in chosen for t in m.tests}))
        ok, detail, secs = run_tests(copy, tests)
        print(
            f"unmutated copy: {'pass' if ok else 'FAIL'} ({len(tests)} test files, {secs:.0f} s)", flush=True
        )
        if not ok:
            print(f"mutants: the listed tests fail without any mutation: {detail}", file=sys.stderr)
            return 3
        survivors = []
        for m in chosen:
            path = copy / m.file
            text = path.read_text()
            path.write_text(text.replace(m.original, m.replacement, 1))
            try:
                passed, detail, secs = run_tests(copy, m.tests)
            finally:
                path.write_text(text)
            status = "SURVIVED" if passed else "killed"
            print(f"{status:8} {m.id:28} {secs:5.1f} s  {m.what}; {detail}", flush=True)
            if passed:
                survivors.append(m.id)
        print(f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed, {len(survivors)} survived")
        if survivors:
            print("survived: " + ", ".join(survivors))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
