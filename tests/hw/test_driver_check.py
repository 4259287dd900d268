"""One line before the GPU checks when the node's driver is too old for the installed torch's CUDA
(which driver it needs; SYSTEM_TORCH/TORCH choose another torch), from a fake NVML's driver."""

from __future__ import annotations

import pytest
from support.fakenvml import FakeNvml

from hpcbench.hw import driver_check
from hpcbench.node import nvml
from hpcbench.node.inventory import Inventory
from hpcbench.probes.burn.probe import Burn
from hpcbench.probes.cpu_membw.probe import CpuMembw

#: torch/version.py of a CUDA 13.0 wheel, in the format of the file this venv's CPU torch has
VERSION_PY = """from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'rocm', 'xpu']
__version__ = '2.11.0+cu130'
debug = False
cuda: Optional[str] = '13.0'
git_version = 'cf30153c4c131c8164ee7798e5022d810682e2cb'
hip: Optional[str] = None
"""
LINE = (
    "hpcbench: the NVIDIA driver 535.104.05 supports CUDA up to 12.2, but the installed torch "
    "2.11.0+cu130 is built for CUDA 13.0 and needs a driver >= 580.65.06 (CUDA 13.x): every GPU check "
    "will fail; update the driver, or install a torch built for this driver (make install "
    "TORCH='torch==... --index-url https://download.pytorch.org/whl/cuXYZ' SYSTEM_TORCH=0, or "
    "SYSTEM_TORCH=1 to use the node's own torch)"
)


def test_the_version_file_names_torch_and_its_cuda() -> None:
    assert driver_check.parse_version_file(VERSION_PY) == ("2.11.0+cu130", "13.0")
    version, cuda = driver_check.installed_torch()  # this venv's CPU build
    assert version is not None and version.endswith("+cpu") and cuda is None


def test_too_old_and_new_enough() -> None:
    assert driver_check.too_old("535.104.05", "12.2", "2.11.0+cu130", "13.0") == LINE
    assert driver_check.too_old("535.104.05", "12.2", "2.7.1+cu128", "12.8") is None  # minor compatibility
    assert driver_check.too_old("580.95.05", "13.0", "2.11.0+cu130", "13.0") is None
    assert driver_check.too_old("535.104.05", "12.2", "2.13.0+cpu", None) is None


def test_before_gpu_checks_reads_the_driver_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = Inventory.from_dict(
        {"cpu": {"model": "x"}, "gpus": nvml.gpu_inventory(FakeNvml(driver="535.104.05", cuda=12020))}
    )
    assert inv.gpus.driver_version == "535.104.05" and inv.gpus.cuda_version == "12.2"
    monkeypatch.setattr(driver_check, "installed_torch", lambda: ("2.11.0+cu130", "13.0"))
    assert driver_check.before_gpu_checks(inv, [Burn]) == LINE
    assert driver_check.before_gpu_checks(inv, [CpuMembw]) is None  # no GPU check in the run
    new = Inventory.from_dict(
        {"cpu": {"model": "x"}, "gpus": nvml.gpu_inventory(FakeNvml(driver="580.95.05", cuda=13000))}
    )
    assert driver_check.before_gpu_checks(new, [Burn]) is None
    none = Inventory.from_dict({"cpu": {"model": "x"}, "gpus": {"count": 0}})
    assert driver_check.before_gpu_checks(none, [Burn]) is None
