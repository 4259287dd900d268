"""Determinism enforced, not assumed: every child runs with PyTorch's tunable ops off and a cuBLAS
workspace config deterministic mode accepts (what the environment had is recorded); the fp8 burn
runs without deterministic mode's NaN fill of each fresh output."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.utils.deterministic as det

from hpcbench.engine.runner import Runner
from hpcbench.engine.suite import single_check
from hpcbench.hw import determinism
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.burn import probe as burn

INVENTORY = Inventory.from_dict({"cpu": {"model": "test cpu", "threads": 2}, "gpus": {"count": 0}})
FAST = {
    "device": "cpu",
    "shape": 64,
    "duration_s": 0.75,
    "window_s": 0.25,
    "verify_every_s": 0.125,
    "threads": 1,
}


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, {"PYTORCH_TUNABLEOP_ENABLED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
        (
            {"PYTORCH_TUNABLEOP_ENABLED": "1", "CUBLAS_WORKSPACE_CONFIG": ":16:8"},
            {"PYTORCH_TUNABLEOP_ENABLED": "0"},
        ),
        (
            {"PYTORCH_TUNABLEOP_ENABLED": "0", "CUBLAS_WORKSPACE_CONFIG": ":0:0"},
            {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
        ),
        ({"PYTORCH_TUNABLEOP_ENABLED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}, {}),
    ],
)
def test_overrides(env: dict[str, str], want: dict[str, str]) -> None:
    assert determinism.overrides(env) == want


def test_the_childs_environment_carries_what_was_there() -> None:
    child = determinism.child_environment(
        {"PYTORCH_TUNABLEOP_ENABLED": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    )
    assert child == {
        "PYTORCH_TUNABLEOP_ENABLED": "0",
        "HPCBENCH_ENV_BEFORE": json.dumps({"PYTORCH_TUNABLEOP_ENABLED": "1"}),
    }
    assert determinism.enforce({**child, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}) == {
        "PYTORCH_TUNABLEOP_ENABLED": {"now": "0", "was": "1"},
        "CUBLAS_WORKSPACE_CONFIG": {"now": ":4096:8"},
    }


def test_enforce_sets_and_records_in_a_process_outside_the_runner() -> None:
    env = {"CUBLAS_WORKSPACE_CONFIG": ":1:1"}
    assert determinism.enforce(env) == {
        "PYTORCH_TUNABLEOP_ENABLED": {"now": "0", "was": None},
        "CUBLAS_WORKSPACE_CONFIG": {"now": ":4096:8", "was": ":1:1"},
    }
    assert env == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTORCH_TUNABLEOP_ENABLED": "0"}


def test_a_burn_child_runs_with_the_overrides_and_records_the_inherited_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTORCH_TUNABLEOP_ENABLED", "1")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")  # torch's deterministic mode would raise
    outcomes, _ = Runner(INVENTORY).run(single_check("burn", FAST, 120), registry.load_all())
    (o,) = outcomes
    assert o.status == "ok", o.reason
    assert o.measurements[0].settings["verification"]["environment"] == {
        "PYTORCH_TUNABLEOP_ENABLED": {"now": "0", "was": "1"},
        "CUBLAS_WORKSPACE_CONFIG": {"now": ":4096:8", "was": ":0:0"},
    }


@pytest.mark.parametrize(("dtype", "fill"), [("fp8", False), ("bf16", True)])
def test_fp8_runs_without_the_nan_fill(dtype: str, fill: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    original = burn.make_step

    def make_step(*args: Any) -> Any:
        step = original(*args)

        def run() -> Any:
            seen.append(det.fill_uninitialized_memory)
            return step()

        return run

    monkeypatch.setattr(burn, "make_step", make_step)
    before = det.fill_uninitialized_memory
    params = build_params(burn.Burn, {**FAST, "dtype": dtype})
    main = burn.Burn().run(params, ProbeContext(inventory=INVENTORY))[0]
    assert seen and set(seen) == {fill} and torch.are_deterministic_algorithms_enabled() is False
    assert det.fill_uninitialized_memory == before  # restored
    assert main.settings["verification"]["fill_uninitialized_memory"] is fill
