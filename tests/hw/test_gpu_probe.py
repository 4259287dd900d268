"""The GPU probes' shared opening (hpcbench.hw.gpu_probe) and class header (probes.base.GpuProbe),
on the CPU device: CUDA's environment set before torch starts, the dtypes sorted, the device checked."""

from __future__ import annotations

import os
from typing import Any

import pytest

from hpcbench.core.errors import ParamError, ProbeError, ProbeSkip
from hpcbench.hw import gpu_probe as gp
from hpcbench.hw import torch_device as td
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import GpuProbe, Requirement

CPU_INVENTORY = Inventory.from_dict({"cpu": {"model": "Test CPU", "llc_bytes": 32 * 2**20}})
TF32_ON_CPU = td.dtype_unsupported("tf32", "cpu", None, has_fp8=True)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CUDA_DEVICE_ORDER", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.delenv(key, raising=False)


def test_the_dtypes_the_device_cannot_do_are_left_out_with_their_reason(environ: None) -> None:
    opened = gp.open_device("cpu", CPU_INVENTORY, dtypes=["fp32", "tf32", "bf16"])
    assert opened.dtypes == ["fp32", "bf16"]
    assert opened.skipped == {"tf32": TF32_ON_CPU}
    assert opened.rt.choice == td.DeviceChoice("cpu", how="device=cpu")
    assert opened.torch.__name__ == "torch"


def test_no_dtype_that_runs_is_a_skip_with_every_reason(environ: None) -> None:
    with pytest.raises(ProbeSkip) as err:
        gp.open_device("cpu", CPU_INVENTORY, dtypes=["tf32"])
    assert str(err.value) == TF32_ON_CPU


def test_cuda_reads_bus_order_and_the_probes_environment_but_a_value_already_set_wins(
    environ: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    gp.open_device("cpu", CPU_INVENTORY, environ={"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "X_HPCBENCH_T": "1"})
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ.pop("X_HPCBENCH_T") == "1"


def test_a_gpu_index_on_a_node_without_cuda_is_an_error_from_the_device_choice(environ: None) -> None:
    inventory = Inventory.from_dict({"gpus": {"count": 1, "devices": [{"index": 0, "uuid": "GPU-1"}]}})
    with pytest.raises(ProbeError, match="cannot use CUDA here"):
        gp.open_device(0, inventory)


def test_the_timed_opening_describes_the_device_the_flush_and_the_timing(environ: None) -> None:
    class Params:
        device, dtypes, threads, flush_cache = "cpu", ["fp32", "tf32"], 0, True
        repeats, warmup, warmup_s, seed = 3, 1, 0.5, 7

    opened, flush, common = gp.open_timed(Params(), CPU_INVENTORY, "x @ W^T")
    flush()  # writes the buffer
    assert opened.rt.cache_basis == "2 x the CPU's last-level cache (inventory cpu.llc_bytes)"
    assert common == {
        "device": opened.rt.info,
        "layout": "x @ W^T",
        "timer": "time.perf_counter",
        "cache_flush": {"bytes": 2 * 32 * 2**20, "basis": opened.rt.cache_basis},
        "repeats": 3,
        "warmup": 1,
        "warmup_s": 0.5,
        "seed": 7,
        "skipped_dtypes": {"tf32": TF32_ON_CPU},
    }


@pytest.mark.parametrize(
    ("value", "ok"),
    [("auto", True), ("cpu", True), (0, True), (7, True), (-1, False), ("cuda", False), (True, False)],
)
def test_check_device_param(value: Any, ok: bool) -> None:
    assert (gp.check_device_param(value) is None) is ok


@pytest.mark.parametrize("bad", [-1, "gpu0", True])
def test_a_bad_device_parameter_names_the_probe_and_the_key(bad: Any) -> None:
    with pytest.raises(ParamError) as err:
        gp.check_device("gemm", bad)
    assert (err.value.probe, err.value.key) == ("gemm", "device")
    gp.check_device("gemm", 3)
    gp.check_device("gemm", "auto")


@pytest.mark.parametrize("name", ["gemm", "attention", "burn", "memtest", "gpu_membw"])
def test_the_gpu_probes_keep_their_contract_through_the_shared_header(name: str) -> None:
    spec = registry.load(name)
    assert issubclass(spec.cls, GpuProbe)
    assert dict(spec.expands) == {"gpu": "device"}
    assert Requirement("idle_gpu") in spec.requires
    assert (Requirement("gpu") in spec.requires) == (name == "gpu_membw")  # the others run on the CPU too
    assert registry.contract_problems(spec.cls, name) == []
    assert isinstance(spec.instance(), GpuProbe)  # callable without arguments, as the worker calls it
