"""Launch detection (torchrun's and srun's variables) and what the session does with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli

from hpcbench.core.errors import ConfigError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.engine.lock import RunLock
from hpcbench.launch.launcher import from_environ

TORCHRUN = {
    "RANK": "3",
    "WORLD_SIZE": "16",
    "LOCAL_RANK": "3",
    "LOCAL_WORLD_SIZE": "8",
    "GROUP_RANK": "0",
    "MASTER_ADDR": "node01",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RUN_ID": "none",
    "TORCHELASTIC_USE_AGENT_STORE": "True",
}


def test_no_launch_without_rank_and_world_size() -> None:
    assert from_environ({}) is None
    assert from_environ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "MASTER_ADDR": "n1"}) is None
    assert from_environ({"RANK": "0"}) is None


def test_torchrun_worker() -> None:
    job = from_environ(TORCHRUN)
    assert job is not None
    assert (job.rank, job.world_size, job.local_rank, job.master_addr, job.master_port) == (
        3,
        16,
        3,
        "node01",
        29500,
    )
    assert job.agent_store and job.launcher == "torchrun"
    assert not job.reports and not job.locks


def test_srun_style_rank_zero() -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "n1", "MASTER_PORT": "29501"}
    job = from_environ(env)
    assert job is not None and job.reports and job.locks
    assert not job.agent_store and job.launcher == "env"


def test_local_rank_defaults_to_rank() -> None:
    job = from_environ({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "n1", "MASTER_PORT": "1"})
    assert job is not None and job.local_rank == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR, MASTER_PORT are not"),
        (
            {"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"},
            "RANK='x' is not an integer",
        ),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "not below WORLD_SIZE"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "70000"}, "not a TCP port"),
    ],
)
def test_bad_launch_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_environ(env)


# --- the session under a launch: who locks, who writes the record (no torch needed) ---

LAUNCH = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400"}


def test_other_ranks_write_no_record_and_print_nothing(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="1", LOCAL_RANK="1")
    with RunLock(Path(cli.env["HPCBENCH_LOCK"]), {"run_id": "someone-else"}):
        r = cli("probe", "fixed", "-p", "value=7")  # local rank 1 takes no lock: it runs anyway
    assert r.returncode == ExitCode.OK, r.stderr
    assert r.stdout == "" and list(cli.workdir.glob("results/*/*.json")) == []


def test_a_failing_check_on_another_rank_is_one_line_on_stderr(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="1", LOCAL_RANK="0")
    r = cli("probe", "fixed", "-p", "sanity=bits flipped")
    assert r.returncode == ExitCode.FAIL
    assert r.stdout == "" and r.stderr.strip() == "hpcbench rank 1: fixed: FAIL wrong result: bits flipped"
    assert list(cli.workdir.glob("results/*/*.json")) == []


def test_local_rank_zero_takes_the_node_lock(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="1", LOCAL_RANK="0")
    with RunLock(Path(cli.env["HPCBENCH_LOCK"]), {"run_id": "someone-else"}):
        r = cli("probe", "fixed")
    assert r.returncode == ExitCode.UNKNOWN and "someone-else" in r.stderr


def test_rank_zero_writes_the_record(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="0", LOCAL_RANK="0")
    r = cli("probe", "fixed", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    assert json.loads(r.stdout)["checks"][0]["status"] == "ok"
    assert len(list(cli.workdir.glob("results/*/*.json"))) == 1


def test_a_half_set_launch_environment_is_a_usage_error(cli: Cli) -> None:
    cli.env.update(RANK="0", WORLD_SIZE="2")
    cli.env.pop("MASTER_ADDR", None)
    cli.env.pop("MASTER_PORT", None)
    r = cli("probe", "fixed")
    assert r.returncode == ExitCode.USAGE
    assert r.stderr.startswith("hpcbench: error: RANK and WORLD_SIZE are set but MASTER_ADDR, MASTER_PORT")
