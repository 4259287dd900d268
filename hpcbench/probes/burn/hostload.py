"""Host load beside a burn: one process per CPU not feeding a GPU, pinned to it, looping STREAM's
triad and a float64 GEMM (numpy, one thread each), so that power supplies, fans and host memory
see the whole node's draw while the GPUs burn.

The workers are separate processes (``python -m hpcbench.probes.burn.hostload``) started by the
probe's child: they inherit its process group and the runner's job token, so the runner kills them
with the child whatever ends it (timeout, crash, SIGINT); the probe stops them itself when the burn
ends, and each also stops at its own deadline or when its parent is gone. Each writes what it did
(triads and GEMMs per second) to a JSON file every second; ``HostLoad.stop`` sums them up.

Counting: a triad (a = b + 3·c) counts STREAM's 24 bytes per element (numpy's two passes move
more); a GEMM of two n×n float64 matrices counts 2·n³ FLOPs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GEMM_N = 256
TRIAD_BYTES_PER_ELEMENT = 24
REPORT_S = 1.0
#: seconds a worker outlives the burn's duration before it stops by itself
GRACE_S = 30.0
STOP_WAIT_S = 3.0
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def triad_elements(mib: int) -> int:
    """Elements of each of the three float64 arrays that take ``mib`` MiB together."""
    return max(1024, mib * 2**20 // (3 * 8))


def rates(stats: dict[str, Any]) -> tuple[float, float]:
    """(triad GB/s, GEMM GFLOPS) of one worker's stats: STREAM bytes and 2·n³ FLOPs per second, 1e9."""
    seconds = float(stats.get("seconds") or 0.0)
    if seconds <= 0:
        return 0.0, 0.0
    triad = stats["triads"] * TRIAD_BYTES_PER_ELEMENT * stats["elements"] / seconds / 1e9
    gemm = stats["gemms"] * 2 * stats["gemm_n"] ** 3 / seconds / 1e9
    return triad, gemm


def work(cpu: int, seconds: float, mib: int, out: Path) -> int:
    """The worker: pin to ``cpu``, loop triad + GEMM until the deadline, SIGTERM or an orphaning."""
    from hpcbench.core.atomic import write_json

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    parent = os.getppid()
    os.sched_setaffinity(0, {cpu})
    import numpy as np

    n = triad_elements(mib)
    a, b, c = np.zeros(n), np.full(n, 2.0), np.full(n, 1.0)
    rng = np.random.default_rng(cpu)
    x, y, z = (
        rng.standard_normal((GEMM_N, GEMM_N)),
        rng.standard_normal((GEMM_N, GEMM_N)),
        np.empty((GEMM_N, GEMM_N)),
    )
    stats = {"cpu": cpu, "elements": n, "gemm_n": GEMM_N, "triads": 0, "gemms": 0, "seconds": 0.0}
    start = time.monotonic()
    deadline = start + seconds
    reported = start
    while not stop["now"] and time.monotonic() < deadline and os.getppid() == parent:
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        stats["triads"] += 1
        np.matmul(x, y, out=z)
        stats["gemms"] += 1
        now = time.monotonic()
        if now - reported >= REPORT_S:
            stats["seconds"] = now - start
            write_json(out, stats, durable=False)
            reported = now
    stats["seconds"] = time.monotonic() - start
    write_json(out, stats, durable=False)
    return 0


@dataclass
class HostLoad:
    """The running workers; ``stop()`` ends them and says what they did."""

    cpus: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    folder: Path = Path()
    own_folder: bool = False
    started: float = 0.0

    def stop(self) -> dict[str, Any]:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: the runner
                    p.wait(STOP_WAIT_S)  # kills what is left when the probe's child ends
        return self._summary()

    def _summary(self) -> dict[str, Any]:
        per_cpu, errors = [], []
        for cpu, p in zip(self.cpus, self.procs, strict=True):
            try:
                stats = json.loads((self.folder / f"hostload-{cpu}.json").read_text())
            except (OSError, ValueError):
                tail = _last_line(self.folder / f"hostload-{cpu}.log")
                why = f"CPU {cpu}: the worker reported nothing (exit {p.returncode})"
                errors.append(f"{why}: {tail}" if tail else why)
                continue
            triad, gemm = rates(stats)
            per_cpu.append(
                {
                    "cpu": cpu,
                    "triad_gbs": round(triad, 3),
                    "gemm_gflops": round(gemm, 3),
                    "seconds": round(stats["seconds"], 1),
                }
            )
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return {
            "cpus": len(per_cpu),
            "cpu_list": [r["cpu"] for r in per_cpu],
            "triad_gbs": round(sum(r["triad_gbs"] for r in per_cpu), 3),
            "gemm_gflops": round(sum(r["gemm_gflops"] for r in per_cpu), 3),
            "per_cpu": per_cpu,
            "errors": errors,
            "counting": f"triad {TRIAD_BYTES_PER_ELEMENT} B per element (STREAM), "
            f"GEMM 2*n^3 FLOPs (n = {GEMM_N}, float64); GB/s and GFLOPS are 1e9 per second",
        }


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def start(cpus: list[int], seconds: float, mib: int, workdir: str) -> HostLoad:
    """One worker per CPU in ``cpus``, each stopping by itself ``GRACE_S`` after ``seconds``."""
    own = not workdir
    folder = Path(tempfile.mkdtemp(prefix="hpcbench-hostload-")) if own else Path(workdir)
    load = HostLoad(list(cpus), folder=folder, own_folder=own, started=time.monotonic())
    env = {**os.environ, **SINGLE_THREAD}
    for cpu in cpus:
        argv = [
            sys.executable,
            "-m",
            "hpcbench.probes.burn.hostload",
            str(cpu),
            f"{seconds + GRACE_S:.1f}",
            str(mib),
            str(folder / f"hostload-{cpu}.json"),
        ]
        with open(folder / f"hostload-{cpu}.log", "wb") as log:
            load.procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            )
    return load


def main(argv: list[str]) -> int:
    cpu, seconds, mib, out = argv
    return work(int(cpu), float(seconds), int(mib), Path(out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
