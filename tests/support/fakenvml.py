"""A fake pynvml for tests: the real module's exception classes, error codes, constants and
structs (copied from the installed pynvml when a FakeNvml is made), answering with the hardware
values of ``nvml_models``. Those are typical and documented values of each GPU model, written by
hand, not recordings of a node: ``nvml_models`` says where each kind of value comes from. The
serial numbers and UUIDs below are made up in NVML's formats.

Every NVML call goes through ``_check(name, index)`` so a test can make any call fail
with a real NVML error code: ``FakeNvml(failures={("nvmlDeviceGetSerial", 1):
pynvml.NVML_ERROR_NOT_SUPPORTED})`` (index None: every device). Extend it by adding
the pynvml functions a probe calls, returning the real library's types (its structs, ctypes
arrays, ints in its units), and say in ``nvml_models`` where each new value comes from.

``model`` picks the replayed GPU model (``nvml_models.MODELS``: H100, H200, A100, B200,
V100); ``devices={3: {...}}`` overrides values of one GPU (``nvml_models.BROKEN`` holds a
broken variant of every health item). A value that is ``nvml_models.Err(code)`` raises
that NVML error.
"""

from __future__ import annotations

import ctypes
import types
from typing import Any

import pynvml

from support.nvml_models import MODELS, Err


class FakeNvml(types.SimpleNamespace):
    H200_BUS_IDS = ["19", "3B", "4C", "5D", "9B", "BB", "CB", "DB"]

    def __init__(
        self,
        count: int = 8,
        init_error: int | None = None,
        failures: dict | None = None,
        model: str = "H200",
        devices: dict[int, dict[str, Any]] | None = None,
        driver: str = "570.124.06",
        cuda: int = 12080,
    ) -> None:
        super().__init__()
        for name in dir(pynvml):  # the error classes, error codes and every other NVML constant
            if name.startswith(("NVML", "nvmlClocks", "c_nvml")):  # constants, errors, structs
                setattr(self, name, getattr(pynvml, name))
        self.count = count
        self.model = MODELS[model]
        self.device_overrides = devices or {}
        self.driver = driver
        self.cuda = cuda
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
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check("nvmlDeviceGetHandleByIndex", index)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._check("nvmlDeviceGetName", handle)
        return self._v(handle, "name")

    def nvmlDeviceGetPciInfo_v3(self, handle: int) -> pynvml.nvmlPciInfo_t:
        self._check("nvmlDeviceGetPciInfo_v3", handle)
        info = pynvml.nvmlPciInfo_t()
        info.pciDeviceId = self._v(handle, "pci_device_id")
        info.pciSubSystemId = self._v(handle, "pci_subsystem_id")
        bus = self._v(handle, "bus_ids")[handle]
        info.bus = int(bus, 16)
        info.busId = f"00000000:{bus}:00.0".encode()
        return info

    def nvmlDeviceGetSerial(self, handle: int) -> str:
        self._check("nvmlDeviceGetSerial", handle)
        return f"165422403{handle:04d}"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        self._check("nvmlDeviceGetUUID", handle)
        return f"GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a{handle:02d}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> pynvml.c_nvmlMemory_t:
        self._check("nvmlDeviceGetMemoryInfo", handle)
        total = self._v(handle, "memory_total")
        return pynvml.c_nvmlMemory_t(total=total, free=total - 674758656, used=674758656)

    # -- the GPU probes' readings (gpu_health, gpu_membw, pcie, the busy check) -------------

    def _v(self, handle: int, key: str) -> Any:
        """The replayed value of ``key`` for GPU ``handle``; an ``Err`` raises its NVML error."""
        value = self.device_overrides.get(handle, {}).get(key, self.model[key])
        if isinstance(value, Err):
            raise pynvml.NVMLError(value.code)
        return value

    def nvmlDeviceGetMaxClockInfo(self, handle: int, clock_type: int) -> int:
        self._check("nvmlDeviceGetMaxClockInfo", handle)
        return self._v(handle, "max_clocks")[clock_type]

    def nvmlDeviceGetMemoryBusWidth(self, handle: int) -> int:
        self._check("nvmlDeviceGetMemoryBusWidth", handle)
        return self._v(handle, "bus_width")

    def _pcie_curr(self, handle: int) -> tuple[int, int]:
        return self._v(handle, "pcie_curr") or self._v(handle, "pcie_max")

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: int) -> int:
        self._check("nvmlDeviceGetCurrPcieLinkGeneration", handle)
        return self._pcie_curr(handle)[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: int) -> int:
        self._check("nvmlDeviceGetCurrPcieLinkWidth", handle)
        return self._pcie_curr(handle)[1]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: int) -> int:
        self._check("nvmlDeviceGetMaxPcieLinkGeneration", handle)
        return self._v(handle, "pcie_max")[0]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: int) -> int:
        self._check("nvmlDeviceGetMaxPcieLinkWidth", handle)
        return self._v(handle, "pcie_max")[1]

    def nvmlDeviceGetGpuMaxPcieLinkGeneration(self, handle: int) -> int:
        self._check("nvmlDeviceGetGpuMaxPcieLinkGeneration", handle)
        return self._v(handle, "gpu_max_gen")

    @staticmethod
    def _mask(ids: list[int], words: int) -> Any:
        array = (ctypes.c_ulonglong * words)()  # what pynvml returns: an array of 64-bit words
        for i in ids:
            if i < 64 * words:
                array[i // 64] |= 1 << (i % 64)
        return array

    def nvmlDeviceGetCpuAffinity(self, handle: int, cpu_set_size: int) -> Any:
        self._check("nvmlDeviceGetCpuAffinity", handle)
        node = self._v(handle, "numa")[handle]
        return self._mask(self._v(handle, "node_cpus")[node], cpu_set_size)

    def nvmlDeviceGetMemoryAffinity(self, handle: int, node_set_size: int, scope: int) -> Any:
        self._check("nvmlDeviceGetMemoryAffinity", handle)
        assert scope == pynvml.NVML_AFFINITY_SCOPE_NODE
        return self._mask([self._v(handle, "numa")[handle]], node_set_size)

    def _processes(self, handle: int, key: str) -> list[Any]:
        procs = []
        na = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value  # what NVML reports for unknown memory
        for pid, used in self._v(handle, key):
            info = pynvml.c_nvmlProcessInfo_v3_t(
                pid=pid,
                usedGpuMemory=na if used is None else used,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            obj = pynvml.nvmlStructToFriendlyObject(info)
            if obj.usedGpuMemory == na:  # as pynvml does
                obj.usedGpuMemory = None
            procs.append(obj)
        return procs

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        self._check("nvmlDeviceGetComputeRunningProcesses", handle)
        return self._processes(handle, "compute_processes")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        self._check("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return self._processes(handle, "graphics_processes")

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._check("nvmlSystemGetProcessName")
        for overrides in (*self.device_overrides.values(), self.model):
            if pid in overrides.get("process_names", {}):
                return overrides["process_names"][pid]
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetEccMode(self, handle: int) -> list[int]:
        self._check("nvmlDeviceGetEccMode", handle)
        return list(self._v(handle, "ecc_mode"))

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter_type: int) -> int:
        self._check("nvmlDeviceGetTotalEccErrors", handle)
        if self._v(handle, "ecc_mode")[0] != pynvml.NVML_FEATURE_ENABLED:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # no counters with ECC off
        return self._v(handle, "ecc")[(error_type, counter_type)]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: int) -> int:
        self._check("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        return self._v(handle, "retired_pages_pending")

    def nvmlDeviceGetRemappedRows(self, handle: int) -> tuple[int, int, int, int]:
        self._check("nvmlDeviceGetRemappedRows", handle)
        return tuple(self._v(handle, "remapped_rows"))

    def nvmlDeviceGetPcieReplayCounter(self, handle: int) -> int:
        self._check("nvmlDeviceGetPcieReplayCounter", handle)
        return self._v(handle, "pcie_replay")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        self._check("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return self._v(handle, "clocks_event_reasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        self._check("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return self._v(handle, "clocks_event_reasons")

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._check("nvmlDeviceGetTemperature", handle)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._v(handle, "temperature")

    def nvmlDeviceGetTemperatureThreshold(self, handle: int, threshold: int) -> int:
        self._check("nvmlDeviceGetTemperatureThreshold", handle)
        thresholds = self._v(handle, "thresholds")
        if threshold not in thresholds:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return thresholds[threshold]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: int) -> int:
        self._check("nvmlDeviceGetPowerManagementDefaultLimit", handle)
        return self._v(handle, "power_default")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._check("nvmlDeviceGetEnforcedPowerLimit", handle)
        return int(self._v(handle, "power_default") * self._v(handle, "power_fraction"))

    def nvmlDeviceGetPersistenceMode(self, handle: int) -> int:
        self._check("nvmlDeviceGetPersistenceMode", handle)
        return self._v(handle, "persistence")

    def nvmlDeviceGetGpuFabricInfo(self, handle: int, info: Any) -> int:
        """pynvml's signature: the caller passes ``byref(c_nvmlGpuFabricInfo_t())``, NVML fills it."""
        self._check("nvmlDeviceGetGpuFabricInfo", handle)
        state, status = self._v(handle, "fabric")
        target = info._obj  # the struct behind ctypes.byref
        target.state, target.status = state, status
        return pynvml.NVML_SUCCESS

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        self._check("nvmlDeviceGetMigMode", handle)
        return list(self._v(handle, "mig"))

    def nvmlDeviceGetApplicationsClock(self, handle: int, clock_type: int) -> int:
        self._check("nvmlDeviceGetApplicationsClock", handle)
        locked = self._v(handle, "app_clock")
        return locked if locked is not None else self._v(handle, "max_clocks")[clock_type]

    def nvmlDeviceGetDefaultApplicationsClock(self, handle: int, clock_type: int) -> int:
        self._check("nvmlDeviceGetDefaultApplicationsClock", handle)
        return self._v(handle, "max_clocks")[clock_type]

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        self._check("nvmlDeviceGetNvLinkState", handle)
        links = self._v(handle, "nvlinks")
        if link >= links:  # what the driver answers for a link the GPU does not have
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_DISABLED if link in self._v(handle, "nvlink_down") else 1

    def nvmlDeviceGetNvLinkErrorCounter(self, handle: int, link: int, counter: int) -> int:
        self._check("nvmlDeviceGetNvLinkErrorCounter", handle)
        return self._v(handle, "nvlink_errors").get((link, counter), 0)

    def nvmlDeviceGetVbiosVersion(self, handle: int) -> str:
        self._check("nvmlDeviceGetVbiosVersion", handle)
        return self._v(handle, "vbios")

    def nvmlDeviceGetInforomImageVersion(self, handle: int) -> str:
        self._check("nvmlDeviceGetInforomImageVersion", handle)
        return self._v(handle, "inforom_image")

    # -- telemetry of the GPU compute probes (hpcbench.hw.telemetry) ------------------------------
    # Current clocks, power and utilization of a GPU busy with a GEMM (typical values, not recorded):
    # clocks at their maximum, power at 87% of the limit, full utilization. Override per GPU
    # with devices={i: {"clocks": {...}, "power_usage": mW, "utilization": (gpu %, memory %)}}.

    def _now(self, handle: int, key: str, default: Any) -> Any:
        value = self.device_overrides.get(handle, {}).get(key, self.model.get(key, default))
        if isinstance(value, Err):
            raise pynvml.NVMLError(value.code)
        return value

    def nvmlDeviceGetClockInfo(self, handle: int, clock_type: int) -> int:
        self._check("nvmlDeviceGetClockInfo", handle)
        return self._now(handle, "clocks", self._v(handle, "max_clocks"))[clock_type]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._check("nvmlDeviceGetPowerUsage", handle)
        return self._now(handle, "power_usage", int(0.87 * self._v(handle, "power_default")))

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> pynvml.c_nvmlUtilization_t:
        self._check("nvmlDeviceGetUtilizationRates", handle)
        gpu, memory = self._now(handle, "utilization", (100, 48))
        return pynvml.c_nvmlUtilization_t(gpu=gpu, memory=memory)

    # Throttle counters: nvmlDeviceGetViolationStatus fills an nvmlViolationTime_t (referenceTime in
    # microseconds, violationTime in nanoseconds, cumulative since the driver loaded). Replay with
    # devices={i: {"violation_ns": {pynvml.NVML_PERF_POLICY_POWER: ns}}}; a policy missing from the
    # dict raises NOT_SUPPORTED as the real call does for a policy the GPU does not track.

    def nvmlDeviceGetViolationStatus(self, handle: int, policy: int) -> pynvml.c_nvmlViolationTime_t:
        self._check("nvmlDeviceGetViolationStatus", handle)
        counters = self._now(handle, "violation_ns", {pynvml.NVML_PERF_POLICY_POWER: 0})
        if policy not in counters:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        value = counters[policy]
        if isinstance(value, Err):
            raise pynvml.NVMLError(value.code)
        return pynvml.c_nvmlViolationTime_t(referenceTime=1_795_946_400_000_000, violationTime=value)
