"""Fidelity of the collectives probe against a plain torch.distributed all-reduce loop.

Two gloo ranks on 127.0.0.1, the same size, warm-up and iteration count, run
interleaved in one session (plain, probe, probe, plain, plain, probe, ...) so
that a noisy neighbour hurts both alike and neither always runs first. The
plain loop is what anyone would write: init the process group, all_reduce a
random float32 tensor ``warmup`` times, a barrier, then ``iters`` all-reduces
timed with perf_counter, ``LOOPS`` times per run. Its per-iteration time
(averaged over the two ranks, as the probe and nccl-tests do) gives busbw =
size / time * 2(n-1)/n. The probe is run in-process through its class with
``repeats = LOOPS``; it spawns its own two ranks exactly as ``hpcbench probe
collectives`` does. Each side's best loop over all rounds is compared.

    .venv/bin/python -m pytest benchmarks/test_collectives_fidelity.py -s

Environment: HPCBENCH_COLL_ROUNDS (default 10), HPCBENCH_COLL_BYTES (default
16 MiB), HPCBENCH_COLL_MIN_RATIO (default 0.95).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.collectives.calc import bus_factor
from hpcbench.probes.collectives.probe import Collectives

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("HPCBENCH_COLL_ROUNDS", "10"))
SIZE = int(os.environ.get("HPCBENCH_COLL_BYTES", str(16 * 2**20)))
MIN_RATIO = float(os.environ.get("HPCBENCH_COLL_MIN_RATIO", "0.95"))
RANKS = 2
ITERS = 20
WARMUP = 5
LOOPS = 3
TIMEOUT = 300

#: the plain loop, one process per rank; prints its seconds per iteration
PLAIN_RANK = """
import json, os, sys, time, datetime
import torch, torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
size, iters, warmup, loops = (int(a) for a in sys.argv[1:5])
t = torch.rand(size // 4)
seconds = []
for _ in range(loops):
    for _ in range(warmup):
        dist.all_reduce(t)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(t)
    seconds.append((time.perf_counter() - t0) / iters)
print(json.dumps({"rank": dist.get_rank(), "seconds": seconds}))
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain_busbw() -> list[float]:
    """busbw of each of the LOOPS timed loops."""
    port = free_port()
    procs = []
    for rank in range(RANKS):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(RANKS),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        argv = [sys.executable, "-c", PLAIN_RANK, str(SIZE), str(ITERS), str(WARMUP), str(LOOPS)]
        procs.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    per_rank = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"plain rank failed ({proc.returncode}): {err[-2000:]}"
        per_rank.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    factor = bus_factor("all_reduce", RANKS)
    return [SIZE / statistics.fmean(loop) / 1e9 * factor for loop in zip(*per_rank, strict=True)]


def probe_busbw(tmp: Path) -> tuple[list[float], dict[str, Any]]:
    """busbw of each of the probe's LOOPS loops at the size (its samples), and its settings."""
    params = build_params(
        Collectives,
        {
            "ops": ["all_reduce"],
            "backend": "gloo",
            "ranks": RANKS,
            "min_bytes": SIZE,
            "max_bytes": SIZE,
            "iters": ITERS,
            "warmup": WARMUP,
            "repeats": LOOPS,
        },
    )
    ctx = ProbeContext(subject="node", inventory={}, workdir=str(tmp), timeout=TIMEOUT)
    (m,) = [m for m in Collectives().run(params, ctx) if m.metric == "all_reduce_busbw_max_size"]
    assert m.sanity is None, m.sanity
    return list(m.samples), m.settings


def test_collectives_fidelity(tmp_path: Path, benchmark: Any) -> None:
    plain: list[list[float]] = []  # per round, the busbw of each loop
    probe: list[list[float]] = []
    settings: dict[str, Any] = {}

    def one_round() -> None:  # plain then probe, probe then plain, ...: neither always goes first
        def run_probe() -> None:
            loops, used = probe_busbw(tmp_path)
            probe.append(loops)
            settings.update(used)

        first, second = (lambda: plain.append(plain_busbw()), run_probe)
        if len(plain) % 2:
            first, second = second, first
        first()
        second()

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)

    assert settings["largest_bytes"] == SIZE and settings["world_size"] == RANKS
    best_plain = max(max(r) for r in plain)
    best_probe = max(max(r) for r in probe)
    ratio = best_probe / best_plain
    paired = statistics.median(max(p) / max(q) for p, q in zip(probe, plain, strict=True))
    lines = [
        f"\ncollectives fidelity: gloo all-reduce, {RANKS} ranks on 127.0.0.1, {SIZE / 2**20:g} MiB float32, "
        f"{WARMUP} warm-up + {ITERS} timed iterations, best loop of {ROUNDS} interleaved rounds "
        f"x {LOOPS} loops",
        f"{'round':<8}{'plain busbw GB/s':>18}{'probe busbw GB/s':>18}{'ratio':>8}  (best loop of each)",
    ]
    lines += [
        f"{i:<8}{max(q):>18.3f}{max(p):>18.3f}{max(p) / max(q):>8.3f}"
        for i, (q, p) in enumerate(zip(plain, probe, strict=True))
    ]
    lines.append(f"{'best':<8}{best_plain:>18.3f}{best_probe:>18.3f}{ratio:>8.3f}")
    lines.append(f"median round ratio: {paired:.3f}")
    print("\n".join(lines))
    benchmark.extra_info.update(
        {
            "bytes": SIZE,
            "ranks": RANKS,
            "plain_gbs": plain,
            "probe_gbs": probe,
            "ratio": ratio,
            "median_ratio": paired,
        }
    )
    assert ratio >= MIN_RATIO, (
        f"probe busbw is {ratio:.3f} of the plain torch.distributed loop (< {MIN_RATIO})"
    )
