"""The NVML seam's readings for the GPU probes, replayed through FakeNvml with the real
library's error codes: unsupported is never an error, affinity masks, memory peak, PCIe link,
processes, and the HPCBENCH_NVML_MODULE override."""

from __future__ import annotations

import sys
from pathlib import Path

import pynvml
import pytest
from support.fakenvml import FakeNvml
from support.nvml_models import BROKEN, MIB, MODELS, NO_PERMISSION, NOT_SUPPORTED, Err

from hpcbench.core.errors import ConfigError
from hpcbench.node import nvml as seam


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, "unsupported"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "unsupported"),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, "unsupported"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, "error"),
        (pynvml.NVML_ERROR_UNKNOWN, "error"),
        (pynvml.NVML_ERROR_TIMEOUT, "error"),
    ],
)
def test_read_tells_unsupported_from_broken(code: int, kind: str) -> None:
    fake = FakeNvml(failures={("nvmlDeviceGetPersistenceMode", 2): code})
    r = seam.read(fake, fake.nvmlDeviceGetPersistenceMode, 2)
    assert not r.ok and r.value is None
    if kind == "unsupported":
        assert r.unsupported and r.unsupported.startswith("NVML: ") and r.error is None
    else:
        assert r.unsupported is None and r.error and r.error.startswith("nvmlDeviceGetPersistenceMode: ")
    assert seam.read(fake, fake.nvmlDeviceGetPersistenceMode, 1).value == pynvml.NVML_FEATURE_ENABLED


def test_error_text_names_the_error_once() -> None:
    assert seam.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)) == "GPU is lost"
    assert seam.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)) == "Not Supported"
    text = seam.error_text(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert text == "LibraryNotFound (NVML Shared Library Not Found)"


def test_mask_to_ids_reads_64_bit_words_lowest_first() -> None:
    assert seam.mask_to_ids([0b1011]) == [0, 1, 3]
    assert seam.mask_to_ids([0, 1 << 63, 1]) == [127, 128]
    assert seam.mask_to_ids([]) == []


def test_cpu_and_memory_affinity_of_a_dgx_a100_gpu() -> None:
    fake = FakeNvml(model="A100")  # 2 x EPYC 7742 in NPS4: GPU 0 sits on NUMA node 3
    cpus = seam.cpu_affinity(fake, 0, 256)
    assert cpus.value == [*range(48, 64), *range(176, 192)]
    assert seam.memory_affinity(fake, 0, 8).value == [3]
    assert seam.memory_affinity(fake, 4, 8).value == [7]
    h100 = FakeNvml(model="H100")
    assert seam.cpu_affinity(h100, 5, 224).value == [*range(56, 112), *range(168, 224)]
    denied = FakeNvml(failures={("nvmlDeviceGetCpuAffinity", None): pynvml.NVML_ERROR_NO_PERMISSION})
    assert seam.cpu_affinity(denied, 0, 224).unsupported


@pytest.mark.parametrize(
    ("model", "peak"), [("H100", 3352.3), ("H200", 4916.7), ("A100", 2039.0), ("B200", 8183.8)]
)
def test_theoretical_memory_bandwidth_from_max_clock_and_bus_width(model: str, peak: float) -> None:
    r = seam.memory_peak(FakeNvml(model=model), 0)
    assert r.ok and r.value["peak_gbps"] == pytest.approx(peak, abs=0.1)
    assert r.value["bus_width_bits"] == MODELS[model]["bus_width"]


def test_memory_peak_unsupported_and_zero() -> None:
    fake = FakeNvml(failures={("nvmlDeviceGetMemoryBusWidth", None): pynvml.NVML_ERROR_NOT_SUPPORTED})
    assert seam.memory_peak(fake, 0).unsupported
    zero = FakeNvml(devices={0: {"bus_width": 0}})
    assert "bus 0 bits" in (seam.memory_peak(zero, 0).unsupported or "")


def test_pcie_link_current_and_max() -> None:
    fake = FakeNvml(model="B200", devices={2: {"pcie_curr": (4, 8)}})
    link = {k: r.value for k, r in seam.pcie_link(fake, 2).items()}
    assert link == {"curr_gen": 4, "curr_width": 8, "max_gen": 5, "max_width": 16, "gpu_max_gen": 6}


def test_device_processes_merge_compute_and_graphics() -> None:
    fake = FakeNvml(
        devices={
            1: {
                "compute_processes": [(4242, 70000 * MIB), (777, 512 * MIB)],
                "graphics_processes": [(4242, 100 * MIB)],
                "process_names": {4242: "/usr/bin/python3", 777: "ollama"},
            }
        }
    )
    r = seam.device_processes(fake, 1)
    assert [(p.pid, p.name, p.used_bytes) for p in r.value] == [
        (777, "ollama", 512 * MIB),
        (4242, "python3", 70000 * MIB),
    ]
    assert seam.device_processes(fake, 0).value == []


def test_gpu_processes_of_several_gpus_and_without_nvml() -> None:
    fake = FakeNvml(devices={5: BROKEN["processes"]})
    found = seam.gpu_processes([4, 5], nvml=fake)
    assert found[4] == [] and [p.pid for p in found[5]] == [4242]
    assert "nvmlShutdown" in fake.calls
    lost = FakeNvml(failures={("nvmlDeviceGetHandleByIndex", 5): pynvml.NVML_ERROR_GPU_IS_LOST})
    assert seam.gpu_processes([4, 5], nvml=lost) == {4: []}  # a GPU we cannot ask is left out
    assert seam.gpu_processes([0], nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)) == {}


def test_unknown_process_name_falls_back_to_proc(tmp_path: Path) -> None:
    import os

    me = os.getpid()
    fake = FakeNvml(devices={0: {"compute_processes": [(me, None)]}})  # NVML: name NotFound, memory unknown
    (proc,) = seam.device_processes(fake, 0).value
    assert proc.name == Path(f"/proc/{me}/comm").read_text().strip() and proc.used_bytes is None


def test_fake_replays_values_as_errors() -> None:
    fake = FakeNvml(devices={0: {"temperature": NOT_SUPPORTED, "persistence": NO_PERMISSION}})
    assert seam.read(fake, fake.nvmlDeviceGetTemperature, 0, pynvml.NVML_TEMPERATURE_GPU).unsupported
    assert seam.read(fake, fake.nvmlDeviceGetPersistenceMode, 0).unsupported
    assert isinstance(NOT_SUPPORTED, Err)


def test_module_override_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "replay_nvml.py").write_text(
        "from support.fakenvml import FakeNvml\n\ndef h100():\n    return FakeNvml(count=2, model='H100')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(seam.ENV_MODULE, "replay_nvml:h100")
    gpus = seam.gpu_inventory()
    assert gpus["count"] == 2 and gpus["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    monkeypatch.setenv(seam.ENV_MODULE, "no_such_module_anywhere:x")
    with pytest.raises(ConfigError, match="HPCBENCH_NVML_MODULE=no_such_module_anywhere:x: cannot load it"):
        seam.load()
    sys.modules.pop("replay_nvml", None)
