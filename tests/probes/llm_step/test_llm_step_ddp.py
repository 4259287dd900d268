"""llm_step's ddp mode end to end: two real gloo ranks on 127.0.0.1 (torch.distributed,
DistributedDataParallel), spawned by the probe through the installed CLI; and how the spawner names
a rank that failed."""

from __future__ import annotations

import json
import statistics

import pytest
from conftest import Cli

from hpcbench.core.exitcodes import ExitCode
from hpcbench.launch import spawn
from hpcbench.node.inventory import Inventory
from hpcbench.probes.llm_step import flops as fl

SMALL = ["-p", "mode=ddp", "-p", "device=cpu", "-p", "steps=3", "-p", "warmup=1", "-p", "threads=1"]


def test_two_gloo_ranks_report_node_tokens_and_a_scaling_efficiency(cli: Cli) -> None:
    r = cli("probe", "llm_step", *SMALL, "-p", "peak_tflops=0.01", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    check = json.loads(r.stdout)["checks"][0]
    assert check["status"] == "ok", check["reason"]
    ms = {m["metric"]: m for m in check["measurements"]}
    assert sorted(ms) == ["mfu", "node_tokens_per_s", "scaling_efficiency", "step_time"]
    s = ms["scaling_efficiency"]["settings"]
    assert s["world_size"] == 2 and s["backend"] == "gloo" and s["launcher"] == "spawned"
    assert [m["rank"] for m in s["members"]] == [0, 1]
    assert s["first_loss_bits"][0] == s["first_loss_bits"][1]  # same seed, same bits on both ranks
    assert all(m["sanity"] is None for m in ms.values())  # finite, falling losses on both ranks, both phases
    tokens = fl.make_shape("tiny").tokens
    # the formulas, from the record's own numbers
    node_steps = [t / 1e3 for t in ms["step_time"]["samples"]]
    assert ms["node_tokens_per_s"]["value"] == pytest.approx(
        statistics.median(2 * tokens / t for t in node_steps), rel=1e-9
    )
    assert s["single_tokens_per_s"] == pytest.approx(statistics.median(s["alone_tokens_per_s"]), rel=1e-12)
    efficiency = ms["node_tokens_per_s"]["value"] / (2 * s["single_tokens_per_s"])
    assert ms["scaling_efficiency"]["value"] == pytest.approx(efficiency, rel=1e-12) and efficiency > 0
    assert ms["mfu"]["value"] == pytest.approx(
        statistics.median(fl.step_flops(fl.make_shape("tiny")) / t / 1e10 for t in node_steps), rel=1e-9
    )
    assert s["slowest_rank"] in (0, 1) and ms["scaling_efficiency"]["detail"].startswith(
        f"slowest rank {s['slowest_rank']} ("
    )
    assert {e["verdict"] for e in check["evaluations"]} == {"NOBASELINE"}


def test_a_rank_that_dies_during_ddp_is_named(cli: Cli) -> None:
    cli.env["HPCBENCH_TEST_LLM_STEP_FAULT"] = "1:ddp"  # rank 1 SIGKILLs itself as DDP starts
    r = cli("probe", "llm_step", *SMALL, "--format", "json")
    assert r.returncode == ExitCode.UNKNOWN, r.stderr
    check = json.loads(r.stdout)["checks"][0]
    assert check["status"] == "error"
    assert check["reason"].startswith("rank 1 of 2 died (killed by SIGKILL)"), check["reason"]


def test_a_bad_parameter_is_one_line_and_exit_4(cli: Cli) -> None:
    r = cli("probe", "llm_step", "-p", "mode=ddp", "-p", "device=1")
    assert r.returncode == ExitCode.USAGE and "Traceback" not in r.stderr
    assert "device" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_spawner_names_the_rank_that_died_first() -> None:
    codes = {1: -9, 0: 3}
    reports = {0: {"rank": 0, "config": False, "message": "rank 1 of 2 stopped responding"}}
    assert spawn.failure(2, codes, set(), reports, None) == (
        "rank 1 of 2 died (killed by SIGKILL); rank 0 reported: rank 1 of 2 stopped responding",
        spawn.DIED_HINT,
    )
    config = {1: {"rank": 1, "config": True, "message": "backend nccl: this torch has no CUDA"}}
    assert (
        spawn.failure(2, {0: 3, 1: 4}, set(), config, None)[0]
        == "rank 1: backend nccl: this torch has no CUDA"
    )
    assert spawn.failure(2, {0: 0, 1: -9}, {1}, {}, 30.0)[0] == "rank 1 of 2 did not finish within 30 s"


class _Props:
    def __init__(self, uuid: str) -> None:
        self.uuid = uuid  # torch's form: no "GPU-" prefix


class _FakeCuda:
    """torch.cuda as srun shows one task its one GPU: a single ordinal, with that GPU's UUID."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids

    def device_count(self) -> int:
        return len(self.uuids)

    def get_device_properties(self, ordinal: int) -> _Props:
        return _Props(self.uuids[ordinal])


def test_a_joined_rank_finds_its_gpu_by_uuid() -> None:
    from types import SimpleNamespace

    from hpcbench.launch.launcher import LaunchEnv
    from hpcbench.probes.llm_step import ddp

    inventory = Inventory.from_dict(
        {
            "gpus": {
                "count": 2,
                "devices": [
                    {"index": 5, "name": "NVIDIA H200", "uuid": "GPU-aaaa"},
                    {"index": 6, "name": "NVIDIA H200", "uuid": "GPU-bbbb"},
                ],
            }
        }
    )
    launch = LaunchEnv(3, 4, 1, "127.0.0.1", 29500, False, "env")
    one = SimpleNamespace(cuda=_FakeCuda(["bbbb"]))  # CUDA_VISIBLE_DEVICES=6: ordinal 0 is NVML's GPU 6
    assert ddp._joined_gpu(one, {"inventory": inventory.as_dict()}, launch) == 6
    both = SimpleNamespace(cuda=_FakeCuda(["aaaa", "bbbb"]))  # local rank 1 of a task that sees both
    assert ddp._joined_gpu(both, {"inventory": inventory.as_dict()}, launch) == 6
    unknown = SimpleNamespace(cuda=_FakeCuda(["cccc", "dddd"]))  # not in the inventory: the ordinal
    assert ddp._joined_gpu(unknown, {"inventory": inventory.as_dict()}, launch) == 1
