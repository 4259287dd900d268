"""Spawn the ranks of a one-node torch.distributed job as child processes and watch them.

Each rank is ``python -m MODULE CONFIG.json OUTDIR`` with RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free port) in its environment; by
the convention of the rank modules (``probes/collectives/rank.py``, ``probes/llm_step/ddp.py``),
rank 0 writes OUTDIR/result.json, a rank that fails writes OUTDIR/error-RANK.json
(``{"rank", "config", "message"}``) and exits with EXIT_FAILED (EXIT_CONFIG for a configuration
problem). When one rank dies the others get GRACE_S to report, then are killed; the error names
the rank that died first. No torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hpcbench.core.errors import ProbeError
from hpcbench.launch.ranks import rank_list

EXIT_FAILED = 3
EXIT_CONFIG = 4
GRACE_S = 4.0
POLL_S = 0.05
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def exit_text(code: int) -> str:
    """'killed by SIGKILL' / 'exited with status 3' for a child's return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


#: the hint of a job one of whose ranks died
DIED_HINT = "a rank that dies is a crash or an OOM kill on that rank's device or host"


def failure(
    world: int,
    codes: dict[int, int | None],
    killed: set[int],
    reports: dict[int, dict[str, Any]],
    timed_out: float | None,
) -> tuple[str, str]:
    """(reason, hint) of a job that did not finish cleanly; the first rank seen to die is named
    first (``codes`` in the order the ranks exited). Pure."""
    died = [
        r
        for r, c in codes.items()
        if c is not None and c not in (0, EXIT_FAILED, EXIT_CONFIG) and r not in killed
    ]
    config = sorted(r for r, rep in reports.items() if rep.get("config"))
    if config:
        return f"rank {config[0]}: {reports[config[0]]['message']}", ""
    if died:
        what = "; ".join(f"rank {r} of {world} died ({exit_text(codes[r] or 0)})" for r in died)
        told = sorted(reports)
        return what + (f"; rank {told[0]} reported: {reports[told[0]]['message']}" if told else ""), DIED_HINT
    if reports:
        first = sorted(reports)[0]
        return f"rank {first}: {reports[first]['message']}", ""
    if timed_out is not None:
        left = sorted(r for r, c in codes.items() if c is None or r in killed)
        return f"{rank_list(left)} of {world} did not finish within {timed_out:g} s", ""
    bad = sorted(r for r, c in codes.items() if c)
    return "; ".join(f"rank {r} {exit_text(codes[r] or 0)}" for r in bad) or "no result from rank 0", ""


def watch(
    procs: dict[int, subprocess.Popen[bytes]], deadline_s: float
) -> tuple[dict[int, int | None], set[int], bool]:
    """Wait for the ranks; after the first failure give the rest GRACE_S, then kill them.
    (exit codes in the order seen, the ranks killed, whether the deadline passed)."""
    deadline = time.monotonic() + deadline_s
    first_failure: float | None = None
    killed: set[int] = set()
    exited: dict[int, int | None] = {}
    while True:
        for r, p in procs.items():
            if r not in exited and p.poll() is not None:
                exited[r] = p.returncode
        if len(exited) == len(procs):
            return exited, killed, False
        now = time.monotonic()
        if first_failure is None and any(exited.values()):
            first_failure = now
        late = now > deadline
        if late or (first_failure is not None and now > first_failure + GRACE_S):
            for r, p in procs.items():
                if r not in exited and p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    killed.add(r)
            for r, p in procs.items():
                exited.setdefault(r, p.wait())
            return exited, killed, late
        time.sleep(POLL_S)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""
    return ""


def spawn(
    module: str,
    config: dict[str, Any],
    world: int,
    workdir: str,
    deadline_s: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``world`` ranks of ``module`` on this node; rank 0's result, or ProbeError naming the
    rank that failed and how (its last log line when it crashed)."""
    root = Path(tempfile.mkdtemp(prefix="ranks-", dir=workdir or None))
    (root / "config.json").write_text(json.dumps(config))
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_") and k not in LAUNCH_VARS}
    base.update(env or {})
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for r in range(world):
            rank_env = {
                **base,
                "RANK": str(r),
                "WORLD_SIZE": str(world),
                "LOCAL_RANK": str(r),
                "LOCAL_WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
            with open(root / f"rank{r}.log", "wb") as log:
                procs[r] = subprocess.Popen(
                    [sys.executable, "-m", module, str(root / "config.json"), str(root)],
                    env=rank_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        codes, killed, timed_out = watch(procs, deadline_s)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    try:
        reports = {}
        for r in range(world):
            path = root / f"error-{r}.json"
            if path.is_file():
                reports[r] = json.loads(path.read_text())
        result = root / "result.json"
        if all(c == 0 for c in codes.values()) and result.is_file():
            return dict(json.loads(result.read_text()))
        reason, hint = failure(world, codes, killed, reports, deadline_s if timed_out else None)
        crashed = [
            r for r, c in codes.items() if c and c not in (EXIT_FAILED, EXIT_CONFIG) and r not in killed
        ]
        tail = _last_line(root / f"rank{crashed[0]}.log") if crashed else ""
        raise ProbeError(reason + (f" (rank {crashed[0]} log: {tail})" if tail else ""), hint=hint)
    finally:
        shutil.rmtree(root, ignore_errors=True)
