"""Whether the node's NVIDIA driver can run the installed torch's CUDA, said in one line before the
GPU checks start (instead of every GPU check ERRORing with torch's message).

A CUDA build runs on a driver of its major version or newer (CUDA's minor version compatibility:
any 12.x build on a driver that supports 12.0, with the minimum drivers of NVIDIA's CUDA release
notes, ``MIN_DRIVER``). The driver's CUDA is NVML's ``nvmlSystemGetCudaDriverVersion_v2`` (the
inventory's ``gpus.cuda_version``); the torch build's CUDA is read from ``torch/version.py``
without importing torch (``cuda = '12.8'``; None for a CPU build).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: CUDA major version -> the oldest Linux driver that runs its builds (CUDA toolkit release notes,
#: "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version Compatibility")
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
_CUDA_LINE = re.compile(r"""^cuda\s*(?::[^=]*)?=\s*['"]([0-9.]+)['"]""", re.M)
_TORCH_VERSION_LINE = re.compile(r"""^__version__\s*(?::[^=]*)?=\s*['"]([^'"]+)['"]""", re.M)


def parse_version_file(text: str) -> tuple[str | None, str | None]:
    """(torch's version, its CUDA version) from the text of ``torch/version.py``."""
    cuda = _CUDA_LINE.search(text)
    version = _TORCH_VERSION_LINE.search(text)
    return (version[1] if version else None, cuda[1] if cuda else None)


def installed_torch() -> tuple[str | None, str | None]:
    """(version, CUDA version) of the torch this Python would import, without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    for folder in spec.submodule_search_locations:
        try:
            return parse_version_file((Path(folder) / "version.py").read_text())
        except OSError:
            continue
    return None, None


def _major_minor(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def too_old(
    driver: str | None, driver_cuda: str | None, torch_version: str | None, torch_cuda: str | None
) -> str | None:
    """The one line when the driver cannot run this torch's CUDA; None when it can or either is unknown."""
    want, have = _major_minor(torch_cuda), _major_minor(driver_cuda)
    if want is None or have is None or have[0] >= want[0]:
        return None
    need = MIN_DRIVER.get(want[0])
    needs = f"a driver >= {need} (CUDA {want[0]}.x)" if need else f"a driver for CUDA {want[0]}.x"
    return (
        f"hpcbench: the NVIDIA driver {driver or '?'} supports CUDA up to {driver_cuda}, but the installed "
        f"torch {torch_version or '?'} is built for CUDA {torch_cuda} and needs {needs}: every GPU check "
        "will fail; update the driver, or install a torch built for this driver (make install "
        "TORCH='torch==... --index-url https://download.pytorch.org/whl/cuXYZ' SYSTEM_TORCH=0, or "
        "SYSTEM_TORCH=1 to use the node's own torch)"
    )


def before_gpu_checks(inventory: Any, probe_classes: Iterable[Any]) -> str | None:
    """``too_old``'s line for a run with a GPU check on a node with GPUs; None otherwise."""
    gpus = getattr(inventory, "gpus", None)
    if gpus is None or not gpus.count:
        return None
    uses_gpu = any(
        r.kind in ("gpu", "idle_gpu") for cls in probe_classes for r in getattr(cls, "requires", ())
    )
    if not uses_gpu:
        return None
    version, cuda = installed_torch()
    return too_old(gpus.driver_version, gpus.cuda_version, version, cuda)
