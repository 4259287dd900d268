"""A fake pynvml for tests: the real module's exception classes, error codes and structs,
with hardware values replayed from real nodes.

Every NVML call goes through ``_check(name, index)`` so a test can make any call fail
with a real NVML error code: ``FakeNvml(failures={("nvmlDeviceGetSerial", 1):
pynvml.NVML_ERROR_NOT_SUPPORTED})`` (index None: every device). Extend it by adding
the pynvml functions a probe calls, with values recorded from the real library.
"""

from __future__ import annotations

import types

import pynvml


class FakeNvml(types.SimpleNamespace):
    H200_BUS_IDS = ["19", "3B", "4C", "5D", "9B", "BB", "CB", "DB"]

    def __init__(self, count: int = 8, init_error: int | None = None, failures: dict | None = None) -> None:
        super().__init__()
        for name in dir(pynvml):
            if name.startswith("NVMLError") or name.startswith("NVML_ERROR_"):
                setattr(self, name, getattr(pynvml, name))
        self.count = count
        self.init_error = init_error
        self.failures = failures or {}  # (function name, index or None) -> NVML error code
        self.calls: list[str] = []

    def _check(self, fn: str, index: int | None = None) -> None:
        self.calls.append(fn)
        code = self.failures.get((fn, index), self.failures.get((fn, None)))
        if code is not None:
            raise pynvml.NVMLError(code)  # the real constructor picks the subclass

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return self.count

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return "570.124.06"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return 12080

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check("nvmlDeviceGetHandleByIndex", index)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._check("nvmlDeviceGetName", handle)
        return "NVIDIA H200"

    def nvmlDeviceGetPciInfo_v3(self, handle: int) -> pynvml.nvmlPciInfo_t:
        self._check("nvmlDeviceGetPciInfo_v3", handle)
        info = pynvml.nvmlPciInfo_t()
        info.pciDeviceId = 0x233510DE
        info.pciSubSystemId = 0x18B010DE
        info.bus = int(self.H200_BUS_IDS[handle], 16)
        info.busId = f"00000000:{self.H200_BUS_IDS[handle]}:00.0".encode()
        return info

    def nvmlDeviceGetSerial(self, handle: int) -> str:
        self._check("nvmlDeviceGetSerial", handle)
        return f"165422403{handle:04d}"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        self._check("nvmlDeviceGetUUID", handle)
        return f"GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a{handle:02d}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> pynvml.c_nvmlMemory_t:
        self._check("nvmlDeviceGetMemoryInfo", handle)
        return pynvml.c_nvmlMemory_t(total=150754820096, free=150080061440, used=674758656)
