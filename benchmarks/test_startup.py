"""Start-up time of the commands an operator types most: ``hpcbench --help`` and ``hpcbench list``.

Each is run as a subprocess (the ``hpcbench`` script beside this python, as an operator runs it),
one untimed round first, then pytest-benchmark times ``ROUNDS`` rounds of one run each and this
prints their median against issue 20's goals (0.1 s and 0.3 s on the project's VM). Two ways of
starting, each printed:

- ``pyc``: the byte-code cached (PYTHONPYCACHEPREFIX, a fresh folder the untimed round fills), as
  an installed package starts;
- ``env``: the environment as it is; where PYTHONDONTWRITEBYTECODE is set and the tree has no
  ``__pycache__``, Python compiles every module it imports at each start.

Each round waits for the command with a plain ``wait()``, bounded by a timer that kills it after
``LIMIT_S``: ``subprocess.run(..., timeout=...)`` without pipes polls the child with sleeps of up to
50 ms, which added 0.05 s to most rounds of a 0.07 s command when this benchmark used it.

No assertion on the times (a shared machine stretches any of them); tests/cli/test_startup_imports.py
pins what keeps them short, the modules each command imports.

    .venv/bin/python -m pytest benchmarks/test_startup.py -s
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROUNDS = int(os.environ.get("HPCBENCH_STARTUP_ROUNDS", "5"))
#: issue 20's goals on the project's VM, median of 5
GOALS_S = {"--help": 0.1, "list": 0.3}
#: a round that takes longer is killed (and fails the benchmark)
LIMIT_S = 120.0


def command() -> list[str]:
    script = Path(sys.executable).with_name("hpcbench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hpcbench"]


@pytest.fixture(params=["pyc", "env"])
def environment(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, str]]]:
    env = dict(os.environ)
    if request.param == "env":
        yield "env", env
        return
    cache = tempfile.mkdtemp(prefix="hpcbench-pyc-")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    try:
        yield "pyc", env
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def once(argv: list[str], env: dict[str, str]) -> None:
    """Run ``argv`` to its end: a blocking wait (woken when the child exits, not by a poll), the
    child killed should it outlive LIMIT_S."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    timer = threading.Timer(LIMIT_S, proc.kill)
    timer.start()
    try:
        code = proc.wait()
    finally:
        timer.cancel()
    assert code == 0, f"{argv} exited {code}"


@pytest.mark.parametrize("args", ["--help", "list"])
def test_startup(benchmark: Any, environment: tuple[str, dict[str, str]], args: str) -> None:
    mode, env = environment
    argv = [*command(), *args.split()]

    def run() -> None:
        once(argv, env)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    stats = benchmark.stats.stats
    goal = GOALS_S[args]
    print(
        f"\nhpcbench {args} ({mode}): median {stats.median:.3f} s of {stats.rounds} "
        f"(best {stats.min:.3f}, worst {stats.max:.3f}); goal {goal:g} s: "
        f"{'met' if stats.median < goal else 'not met'} (load average {os.getloadavg()[0]:.1f})"
    )
