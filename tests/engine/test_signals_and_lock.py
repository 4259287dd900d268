"""SIGTERM/SIGINT in the middle of a run, and a second concurrent run on the same node."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import Cli, marked_processes, no_marked_processes, wait_for, write

from hpcbench.core.exitcodes import ExitCode

SUITE = """name = "sig"
[[check]]
id = "first"
probe = "fixed"
params = { value = 5 }
[[check]]
id = "stuck"
probe = "hang"
timeout = 120
[[check]]
id = "never"
probe = "fixed"
"""


def worker_running(mark: str) -> bool:
    return any("hpcbench.engine.child" in " ".join(p.cmdline()) for p in marked_processes(mark))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_children_and_still_writes_the_record(
    cli: Cli, tmp_path: Path, sig: signal.Signals
) -> None:
    proc = cli.popen("run", str(write(tmp_path / "sig.toml", SUITE)), "--format", "json")
    try:
        wait_for(
            lambda: worker_running(cli.mark) and len(list(tmp_path.glob("tmp/hpcbench-run-*/stuck-*"))) == 1
        )
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.UNKNOWN, err
    rec = json.loads(out)
    by_id = {c["id"]: c for c in rec["checks"]}
    assert by_id["first"]["status"] == "ok" and by_id["first"]["measurements"][0]["value"] == 5
    assert by_id["stuck"]["status"] == "interrupted" and sig.name in by_id["stuck"]["reason"]
    assert rec["not_run"] == [{"id": "never", "reason": f"not started: interrupted by {sig.name}"}]
    assert rec["interrupted"] == sig.name
    saved = sorted(tmp_path.glob("results/*/*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text()) == rec
    no_marked_processes(cli.mark, timeout=10)  # no child left behind
    assert list((tmp_path / "tmp").iterdir()) == []  # temporary files removed


def test_second_concurrent_run_names_the_holder_and_exits(cli: Cli, tmp_path: Path) -> None:
    slow = write(
        tmp_path / "slow.toml",
        'name = "slow"\n[[check]]\nid = "s"\nprobe = "fixed"\nparams = { sleep = 30 }\n',
    )
    first = cli.popen("run", str(slow), "--quiet")
    lock_file = tmp_path / "hpcbench.lock"
    try:
        wait_for(lambda: lock_file.exists() and b"run_id" in lock_file.read_bytes())
        second = cli("run", str(slow))
        assert second.returncode == ExitCode.UNKNOWN
        assert "another hpcbench run holds" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "suite slow" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    # the lock is released: a later run goes ahead
    ok = write(tmp_path / "ok.toml", 'name = "ok"\n[[check]]\nid = "s"\nprobe = "fixed"\n')
    assert cli("run", str(ok), "--quiet").returncode == ExitCode.OK
