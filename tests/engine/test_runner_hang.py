"""The runner never waits forever: a child that survives SIGKILL (uninterruptible sleep in a GPU
driver after XID 79) is reported ERROR, the record is still written, later checks still run.

A child that ignores SIGTERM is not one in state D (SIGKILL ends it), so the state and the wait
are injected where the test needs a child that SIGKILL does not end."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hpcbench.cli import run as cli_run
from hpcbench.core.measurement import Verdict
from hpcbench.engine import runner
from hpcbench.engine.plan import Job
from hpcbench.engine.suite import Suite, load
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry

INVENTORY = Inventory.from_dict({"cpu": {"model": "test cpu"}, "gpus": {"count": 0, "devices": []}})


def suite_of(folder: Path, checks: str, probes: dict) -> Suite:
    path = folder / "hang.toml"
    path.write_text('name = "hang"\n' + checks)
    return load(str(path), probes)


def test_parse_state_reads_the_field_after_the_name() -> None:
    # a name with spaces and a closing parenthesis of its own: the state follows the last ')'
    assert runner.parse_state("4242 (python (gpu) x) D 1 4242 4242 0 -1 4194560") == "D"
    assert runner.parse_state("17 (sleep) S 1 17 17") == "S"
    assert runner.parse_state("") == "?"


def test_process_state_of_a_running_process_and_of_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert runner.process_state(proc.pid) in ("S", "R")
    finally:
        proc.kill()
        proc.wait(10)
    assert runner.process_state(proc.pid) == "?"  # reaped: no /proc entry


def test_reap_kills_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert runner.reap(proc, grace_s=0.2, killed_s=10) is None
    assert proc.returncode == -signal.SIGKILL


def test_reap_reports_a_child_that_outlives_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    waits: list[float] = []

    def never_exits(p: subprocess.Popen[bytes], seconds: float) -> None:
        waits.append(seconds)
        return None

    monkeypatch.setattr(runner, "wait_exit", never_exits)
    monkeypatch.setattr(runner, "process_state", lambda pid: "D")
    try:
        hung = runner.reap(proc, grace_s=3, killed_s=10)
    finally:
        proc.kill()
        proc.wait(10)
    assert waits == [3, 10]  # both waits bounded, none without a limit
    assert hung == runner.Hung(proc.pid, "D", 10)
    assert hung.reason == ("did not exit 10 s after SIGKILL (state D): the GPU or its driver may be hung")


def test_a_child_stuck_after_sigkill_is_an_error_and_the_next_check_runs(
    monkeypatch: pytest.MonkeyPatch, plugin_site: Path, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("PYTHONPATH", str(plugin_site))  # the children load the test probes too
    probes = registry.load_all()
    suite = suite_of(
        tmp_path,
        '[[check]]\nid = "stuck"\nprobe = "hang"\ntimeout = 1\n'
        '[[check]]\nid = "after"\nprobe = "fixed"\nparams = { value = 7 }\n',
        probes,
    )
    real_wait = runner.wait_exit
    stuck: list[int] = []

    def wait(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
        job_file = Path(str(proc.args[3]))  # [python, -m, hpcbench.engine.child, job.json, out.json]
        if job_file.parent.name.startswith("stuck-"):
            stuck.append(proc.pid)
            real_wait(proc, 0.01)  # really gone (SIGKILL), but reported as stuck in the kernel
            return None
        return real_wait(proc, seconds)

    monkeypatch.setattr(runner, "wait_exit", wait)
    monkeypatch.setattr(runner, "process_state", lambda pid: "D" if pid in stuck else "S")
    run = runner.Runner(INVENTORY)
    outcomes, not_run = run.run(suite, probes)
    assert not_run == []
    by_id = {o.job.check.id: o for o in outcomes}
    assert by_id["stuck"].status == "error"
    assert by_id["stuck"].reason == (
        f"did not exit {runner.KILLED_EXIT_S:g} s after SIGKILL (state D): the GPU or its driver may be hung"
    )
    assert by_id["stuck"].hint == runner.HUNG_HINT
    assert by_id["after"].status == "ok" and by_id["after"].measurements[0].value == 7
    record = cli_run.build_record(
        suite, None, (INVENTORY), "r1", "2026-12-03T11:00:00Z", outcomes, not_run, None
    )
    verdicts = {c.id: c.verdict for c in record.checks}
    assert verdicts == {"stuck": Verdict.ERROR, "after": Verdict.NOBASELINE}


def test_a_gpu_whose_child_hung_gets_no_further_child(tmp_path: Path) -> None:
    run = runner.Runner(INVENTORY)
    run._hung["gpu3"] = "burn's child on gpu3: did not exit 10 s after SIGKILL (state D)"
    suite = suite_of(tmp_path, '[[check]]\nid = "m"\nprobe = "cpu_membw"\n', registry.load_all())
    check = suite.checks[0]
    out = run._unmet(Job(check, "gpu3", {}), type("P", (), {"requires": ()}))
    assert out is not None and out.status == "error"
    assert out.reason == "not started: burn's child on gpu3: did not exit 10 s after SIGKILL (state D)"
    assert run._unmet(Job(check, "gpu2", {}), type("P", (), {"requires": ()})) is None
