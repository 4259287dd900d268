"""What the GPU compute probes share: device choice, the timing loop, the cache flush."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hpcbench.core.errors import ProbeError, ProbeSkip
from hpcbench.hw import torch_device as td
from hpcbench.node.inventory import Inventory

UUIDS = [f"6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a{i:02d}" for i in range(4)]
INVENTORY = Inventory.from_dict(
    {
        "gpus": {
            "count": 4,
            "devices": [{"index": i, "uuid": f"GPU-{u}", "name": "NVIDIA H200"} for i, u in enumerate(UUIDS)],
        }
    }
)
NO_GPU: dict[str, Any] = Inventory.from_dict(
    {"gpus": {"count": 0, "devices": [], "reason": "NVML unavailable"}}
)


def choose(device: int | str, inventory: dict[str, Any] = INVENTORY, **kw: Any) -> td.DeviceChoice:
    args: dict[str, Any] = {"cuda_available": True, "cuda_uuids": list(UUIDS), "torch_version": "2.13.0"}
    args.update(kw)
    return td.choose_device(device, inventory=inventory, **args)


def test_cpu_and_auto() -> None:
    assert choose("cpu") == td.DeviceChoice("cpu", how="device=cpu")
    auto = choose("auto")
    assert (auto.kind, auto.cuda_ordinal, auto.nvml_index) == ("cuda", 0, 0)
    assert choose("auto", cuda_available=False, cuda_uuids=[]).kind == "cpu"


def test_gpu_index_maps_to_cuda_ordinal_by_uuid() -> None:
    c = choose(2)
    assert (c.kind, c.cuda_ordinal, c.nvml_index) == ("cuda", 2, 2)
    # CUDA_VISIBLE_DEVICES=3,1: ordinal 0 is GPU 3, ordinal 1 is GPU 1
    c = choose(1, cuda_uuids=[UUIDS[3], UUIDS[1]], visible_devices="3,1")
    assert (c.cuda_ordinal, c.nvml_index) == (1, 1)
    assert choose("auto", cuda_uuids=[UUIDS[3], UUIDS[1]]).nvml_index == 3


def test_gpu_hidden_from_this_process_is_skipped() -> None:
    with pytest.raises(
        ProbeSkip, match=r"GPU 2 .* is not visible to this process \(CUDA_VISIBLE_DEVICES=3,1\)"
    ):
        choose(2, cuda_uuids=[UUIDS[3], UUIDS[1]], visible_devices="3,1")


def test_no_gpu_on_this_node_is_skip() -> None:
    with pytest.raises(ProbeSkip, match="^no GPU on this node$"):
        choose(0, NO_GPU, cuda_available=False, cuda_uuids=[])


def test_a_gpu_index_where_nvml_cannot_see_the_pci_buss_gpus_is_an_error() -> None:
    unseen = Inventory.from_dict(
        {"gpus": {**NO_GPU.as_dict()["gpus"], "pci_nvidia_gpus": 2, "reason": "NVML unavailable: x"}}
    )
    reason = "^no usable GPU: NVML unavailable: x; the PCI bus has 2 NVIDIA GPUs$"
    with pytest.raises(ProbeError, match=reason):
        choose(0, unseen, cuda_available=False, cuda_uuids=[])


def test_cpu_torch_on_a_gpu_node_is_an_error_with_a_hint() -> None:
    with pytest.raises(ProbeError, match="torch 2.13.0 cannot use CUDA here, though NVML lists 4 GPU") as exc:
        choose(0, cuda_available=False, cuda_uuids=[])
    assert "CUDA build of torch" in exc.value.hint


def test_unknown_index_is_an_error() -> None:
    with pytest.raises(ProbeError, match=r"GPU 9 is not on this node \(GPU indices: 0, 1, 2, 3\)"):
        choose(9)


def test_without_uuids_the_index_is_the_ordinal_only_when_nothing_hides_gpus() -> None:
    c = choose(1, cuda_uuids=[None, None, None, None])
    assert (c.cuda_ordinal, c.nvml_index) == (1, 1)
    with pytest.raises(ProbeError, match="cannot match it"):
        choose(1, cuda_uuids=[None, None], visible_devices="0,1")
    # NVML unavailable but CUDA works: the index is taken as the CUDA ordinal
    assert choose(1, NO_GPU).cuda_ordinal == 1
    with pytest.raises(ProbeError, match="torch sees 4 CUDA device"):
        choose(7, NO_GPU)


def test_normalize_uuid() -> None:
    assert td.normalize_uuid("GPU-ABC-1") == "abc-1" == td.normalize_uuid("abc-1")
    assert td.normalize_uuid(None) is None and td.normalize_uuid("") is None


def test_flush_bytes() -> None:
    assert td.flush_bytes(50 * 2**20) == 100 * 2**20  # an H100's 50 MiB L2
    assert td.flush_bytes(1024) == td.MIN_FLUSH_BYTES
    assert td.flush_bytes(None) == td.flush_bytes(0) == td.FALLBACK_FLUSH_BYTES


class TickClock:
    """A clock whose marks are a counter, so each call's 'seconds' is known exactly."""

    name = "ticks"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.t = 0

    def start(self) -> int:
        self.log.append("start")
        return self.t

    def stop(self) -> int:
        self.log.append("stop")
        return self.t

    def settle(self) -> None:
        self.log.append("settle")

    def seconds(self, marks: list[tuple[Any, Any]]) -> list[float]:
        return [float(b - a) for a, b in marks]


def test_time_calls_order_warmup_flush_and_result() -> None:
    log: list[str] = []
    clock = TickClock(log)
    calls = iter(range(100))

    def fn() -> int:
        n = next(calls)
        clock.t += n + 1  # call n "takes" n + 1 ticks
        log.append("call")
        return n

    seconds, last = td.time_calls(fn, clock, warmup=2, repeats=3, flush=lambda: log.append("flush"))
    assert last == 4 and seconds == [3.0, 4.0, 5.0]
    timed = ["flush", "start", "call", "stop"]
    assert log == ["flush", "call", "flush", "call", "settle", *timed, *timed, *timed]


def test_time_alternating_interleaves_and_reverses_the_order_each_iteration() -> None:
    log: list[str] = []
    clock = TickClock(log)

    def make(name: str, ticks: int) -> Any:
        def fn() -> str:
            clock.t += ticks
            log.append(name)
            return f"{name}{len(log)}"

        return fn

    seconds, last = td.time_alternating(
        {"a": make("a", 1), "b": make("b", 5)}, clock, warmup=1, repeats=3, flush=lambda: log.append("f")
    )
    assert seconds == {"a": [1.0, 1.0, 1.0], "b": [5.0, 5.0, 5.0]}
    calls = [entry for entry in log if entry in ("a", "b")]
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a b / b a / a b
    assert log[:5] == ["f", "a", "f", "b", "settle"]
    assert log[5:9] == ["f", "start", "a", "stop"]
    assert last["a"].startswith("a") and last["b"].startswith("b")
    assert int(last["a"][1:]) < int(last["b"][1:])  # the last (third) iteration ran a, then b


def test_time_calls_warms_up_for_a_time() -> None:
    log: list[str] = []
    count = [0]

    def fn() -> None:
        count[0] += 1

    ticks = iter(range(100))  # a monotonic clock that advances 10 ms at each reading
    td.time_calls(fn, TickClock(log), warmup=0, repeats=2, warmup_s=0.05, now=lambda: next(ticks) / 100)
    # the deadline is read at 0 ms (0.05 s on); the loop's checks at 10, 20, 30, 40 ms let a call
    # through, the one at 50 ms stops: four untimed calls, then the two timed ones
    assert count[0] == 4 + 2


def test_perf_counter_clock_measures_cpu_work() -> None:
    clock = td.PerfCounterClock()
    seconds, _ = td.time_calls(lambda: sum(range(20000)), clock, warmup=1, repeats=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)


def test_cache_flush_writes_its_buffer() -> None:
    import torch

    flush = td.CacheFlush(torch, torch.device("cpu"), 4096, "test")
    flush._buf.fill_(7)
    flush()
    assert int(flush._buf.abs().sum()) == 0 and flush.describe() == {"bytes": 4096, "basis": "test"}


class FakeBlasTorch:
    """torch.backends.cuda.preferred_blas_library's contract (a getter that returns an enum with
    ``.name`` "Cublas"/"Cublaslt", a setter by lower-case name), counting the sets."""

    def __init__(self, current: str = "Cublas") -> None:
        self.current = SimpleNamespace(name=current)
        self.sets: list[str] = []
        self.backends = SimpleNamespace(cuda=SimpleNamespace(preferred_blas_library=self.choose))

    def choose(self, backend: Any = None) -> Any:
        if backend is not None:
            name = backend if isinstance(backend, str) else backend.name.lower()
            self.sets.append(name)
            self.current = SimpleNamespace(name={"cublas": "Cublas", "cublaslt": "Cublaslt"}[name])
        return self.current


def test_through_blas_sets_the_library_only_when_it_differs_and_restores_torchs_choice() -> None:
    from hpcbench.hw import cuda_only

    torch = FakeBlasTorch("Cublas")
    seen: list[str] = []
    calls = {
        name: cuda_only.through_blas(torch, name, lambda: seen.append(torch.current.name))
        for name in ("cublas", "cublaslt")
    }
    with cuda_only.preferred_blas_restored(torch):
        for name in ("cublas", "cublas", "cublaslt", "cublaslt", "cublas"):
            calls[name]()
    assert seen == ["Cublas", "Cublas", "Cublaslt", "Cublaslt", "Cublas"]  # each call ran on its library
    assert torch.sets == ["cublaslt", "cublas"]  # set only on a change; torch's choice was cuBLAS already
    only = FakeBlasTorch("Cublas")
    with cuda_only.preferred_blas_restored(only):
        cuda_only.through_blas(only, "cublas", lambda: None)()
    assert only.sets == []  # the default (cuBLAS only) never touches torch's setting
    lt = FakeBlasTorch("Cublaslt")  # e.g. TORCH_BLAS_PREFER_CUBLASLT=1
    with cuda_only.preferred_blas_restored(lt):
        cuda_only.through_blas(lt, "cublas", lambda: None)()
    assert lt.sets == ["cublas", "cublaslt"] and lt.current.name == "Cublaslt"


def test_through_blas_on_a_torch_without_the_switch_runs_the_call_as_it_is() -> None:
    """torch 2.1-2.2 (pyproject allows >= 2.1) have no preferred_blas_library: cuBLAS only."""
    from hpcbench.hw import cuda_only

    old_torch = SimpleNamespace(backends=SimpleNamespace(cuda=SimpleNamespace()))
    call = lambda: "ran"  # noqa: E731
    assert not cuda_only.has_cublaslt(old_torch)
    with cuda_only.preferred_blas_restored(old_torch):
        assert cuda_only.through_blas(old_torch, "cublas", call) is call
        assert call() == "ran"


@pytest.mark.parametrize(
    ("dtype", "kind", "cc", "has_fp8", "expect"),
    [
        ("fp8", "cuda", (9, 0), True, None),
        ("fp8", "cuda", (8, 9), True, None),
        ("fp8", "cuda", (8, 0), True, "compute capability >= 8.9"),
        ("fp8", "cuda", (9, 0), False, "has no torch._scaled_mm"),
        ("fp8", "cpu", None, True, None),
        ("tf32", "cpu", None, True, "not of the CPU"),
        ("tf32", "cuda", (8, 0), True, None),
        ("tf32", "cuda", (7, 0), True, "compute capability >= 8.0"),
        ("bf16", "cuda", (7, 5), True, "this GPU has 7.5"),
        ("bf16", "cpu", None, False, None),
        ("fp32", "cuda", (6, 0), False, None),
        ("fp16", "cuda", (7, 0), False, None),
    ],
)
def test_dtype_unsupported(
    dtype: str, kind: str, cc: tuple[int, int] | None, has_fp8: bool, expect: str | None
) -> None:
    reason = td.dtype_unsupported(dtype, kind, cc, has_fp8=has_fp8, torch_version="2.13.0")
    if expect is None:
        assert reason is None
    else:
        assert reason is not None and expect in reason and reason.startswith(f"{dtype}:")
