"""The no-load checks of a run in one child (hpcbench.engine.batch): a read that never returns (a FIFO
nobody writes, standing in for a dead NFS mount) ends by the check's timeout or the run's deadline
with the record naming the check and the read; the checks after it still run; a child that
crashes costs only its current check; the spawned child (when another thread runs) works alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hpcbench.core.measurement import Measurement
from hpcbench.engine import batch
from hpcbench.engine.runner import _no_load
from hpcbench.probes.base import report_progress
from hpcbench.probes.registry import spec_of


def _suite(tmp: Path, fifo: Path, timeout: float) -> Path:
    path = tmp / "hang.toml"
    path.write_text(
        f"""name = "hang"
[[check]]
id = "hung"
probe = "node_config"
params = {{ files = ["{fifo} contains=x"] }}
timeout = {timeout}
absolute = {{ files_wrong = {{ fail = 0.5 }} }}

[[check]]
id = "after"
probe = "node_config"
params = {{ load_max = 100000.0 }}
timeout = 10
absolute = {{ load_high = {{ warn = 0.5 }} }}
"""
    )
    return path


def _run(tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCBENCH_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpcbench",
            "run",
            *args,
            "-o",
            str(out),
            "--lock-file",
            str(tmp / "lock"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=tmp,
    )
    (record,) = sorted(out.glob("*/*.json"))
    return done.returncode, json.loads(record.read_text())


def test_a_read_that_never_returns_is_an_error_naming_it_and_the_run_goes_on(tmp_path: Path) -> None:
    fifo = tmp_path / "dead-nfs"
    os.mkfifo(fifo)  # open() for reading blocks until a writer comes: none will
    code, record = _run(tmp_path, str(_suite(tmp_path, fifo, 2)))
    checks = {c["id"]: c for c in record["checks"]}
    assert checks["hung"]["verdict"] == "ERROR"
    assert checks["hung"]["reason"].startswith("hung: no answer after 2 s (the check's timeout), killed")
    assert f"last step: read {fifo}" in checks["hung"]["reason"]
    assert checks["after"]["verdict"] == "PASS"  # a new child ran the checks after the hung one
    assert code == 3  # ERROR: UNKNOWN


def test_the_run_deadline_ends_a_hung_read_and_what_follows_does_not_start(tmp_path: Path) -> None:
    fifo = tmp_path / "dead-nvme"
    os.mkfifo(fifo)
    # --deadline 8 keeps 5 s to judge and write: the batch must end 3 s in, long before the 600 s timeout
    code, record = _run(tmp_path, str(_suite(tmp_path, fifo, 600)), "--deadline", "8")
    checks = {c["id"]: c for c in record["checks"]}
    assert checks["hung"]["verdict"] == "ERROR"
    assert "killed at the run's deadline" in checks["hung"]["reason"]
    assert f"last step: read {fifo}" in checks["hung"]["reason"]
    assert "after" not in checks
    assert [n["id"] for n in record["not_run"]] == ["after"]
    assert "not started: it would not end before the run's deadline" in record["not_run"][0]["reason"]
    assert code == 3


@dataclass(frozen=True)
class _Params:
    crash: bool = False
    hang: bool = False


class _Probe:
    name: ClassVar[str] = "fork_only"
    description: ClassVar[str] = "crashes or answers, in a forked batch child"
    Params: ClassVar[type] = _Params
    requires: ClassVar[tuple[Any, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    no_load: ClassVar[bool] = True

    def run(self, params: _Params, ctx: Any) -> list[Measurement]:
        if params.crash:
            os.abort()
        if params.hang:  # an NVML call that never returns, as a stuck driver does
            report_progress(ctx, "NVML nvmlDeviceGetHandleByIndex(3)")
            threading.Event().wait()
        return [Measurement.from_samples("answer", [42.0], "count", ctx.subject)]


def _job(tmp: Path, name: str, **params: Any) -> batch.BatchJob:
    (tmp / name).mkdir()
    job = {
        "probe": "fork_only",
        "params": params,
        "subject": name,
        "inventory": {},
        "workdir": str(tmp / name),
    }
    return batch.BatchJob(job, 10.0, name)


def test_a_crash_costs_only_its_own_job(tmp_path: Path) -> None:
    spec = spec_of(_Probe)
    assert _no_load(spec, {})
    jobs = [_job(tmp_path, "a"), _job(tmp_path, "b", crash=True), _job(tmp_path, "c")]
    done = batch.run(jobs, tmp_path, {}, probes={"fork_only": spec})
    assert [done[i].outcome["status"] for i in range(3)] == ["ok", "error", "ok"]
    assert done[1].outcome["reason"].startswith("probe crashed: killed by SIGABRT")
    assert done[2].outcome["measurements"][0]["subject"] == "c"


def test_a_stuck_call_is_named_by_its_last_step_and_the_jobs_after_it_still_run(tmp_path: Path) -> None:
    spec = spec_of(_Probe)
    jobs = [_job(tmp_path, "gpu3", hang=True), _job(tmp_path, "gpu4")]
    jobs[0] = batch.BatchJob(jobs[0].job, 1.0, "gpu_health/gpu3")  # a 1 s timeout
    done = batch.run(jobs, tmp_path, {}, probes={"fork_only": spec})
    assert done[0].hung and done[0].outcome["status"] == "error"
    assert done[0].outcome["reason"] == (
        "hung: no answer after 1 s (the check's timeout), killed; "
        "last step: NVML nvmlDeviceGetHandleByIndex(3)"
    )
    assert done[1].outcome["status"] == "ok"


def test_with_another_thread_running_the_child_is_spawned_and_answers_alike(tmp_path: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()  # forking now would be unsafe: batch spawns python -m hpcbench.engine.batch
    try:
        (tmp_path / "w").mkdir()
        job = {
            "probe": "node_config",
            "params": {"load_max": 100000.0},
            "subject": "node",
            "inventory": {},
            "workdir": str(tmp_path / "w"),
        }
        done = batch.run([batch.BatchJob(job, 30.0, "node_config/node")], tmp_path, {})
    finally:
        stop.set()
    assert done[0].outcome["status"] == "ok"
    assert [m["metric"] for m in done[0].outcome["measurements"]] == ["load_high"]


def test_only_reading_network_probes_share_the_child() -> None:
    from hpcbench.probes.network_ports.probe import NetworkPorts
    from hpcbench.probes.network_tcp.probe import NetworkTcp
    from hpcbench.probes.network_topology.probe import NetworkTopology

    assert _no_load(spec_of(NetworkPorts), {"interval": 0.0})
    assert _no_load(spec_of(NetworkTopology), {})
    assert not _no_load(spec_of(NetworkPorts), {"interval": 1.0})  # it sleeps between reads
    assert not _no_load(spec_of(NetworkTcp), {})  # iperf3 loads the network
