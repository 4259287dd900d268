"""What NVML reports for the GPU models the tests replay, and broken variants of each item.

**Provenance.** Every value here is a typical or documented value, written by hand; none was
captured from a node. The probes did run on real GPUs: single-GPU H200 SXM machines (driver
580.159.04, torch 2.11.0+cu130), whose measured throughput is in ``suites/baselines/h200.toml``
and ``docs/probes/gpu-telemetry.md``; their NVML readings were not recorded into these models
(the fake's default driver 570.124.06 / CUDA 12.8 and its 8-GPU HGX topology are not that
machine's). Where each kind of value comes from:

- names: the product names NVML gives these models (``nvidia-smi -L``), as public output shows them;
- PCI device ids: the PCI ID database (0x2330 H100 SXM5 80GB, 0x20B2 A100 SXM4 80GB and 0x1DB5
  V100 SXM2 32GB are in Debian 12's pci.ids; 0x2335 H200 and 0x2901 B200 are newer than it);
  subsystem ids, PCI bus ids, VBIOS and InfoROM versions: plausible values in NVML's formats;
- memory size, max memory clock and bus width: consistent with each datasheet, so that NVML's
  peak (clock x width x 2) is the documented bandwidth: H100 3352 GB/s (3.35 TB/s), H200 4917
  (4.8 TB/s), A100 2039 (2,039 GB/s), B200 8184 (8 TB/s), V100 898 (900 GB/s); H200's
  150,754,820,096 B is 143,771 MiB, what nvidia-smi shows for the 141 GB part;
- PCIe generation and width, default power limits (the datasheets' 700, 700, 400, 1000, 300 W),
  NVLink counts (18, 18, 12, 18, 6): datasheets; temperature thresholds: typical values;
- NUMA placement and CPU lists: the HGX/DGX reference topologies (2 sockets; DGX A100 in NPS4);
- which fields answer NotSupported: page retirement from Ampere on (NVML's documentation: row
  remapping replaced it); the per-link NVLink error counters on Blackwell are an assumption, not
  checked on a B200.

A value that is an ``Err`` makes the fake raise that real NVML error code (e.g. NotSupported for
page retirement, which Ampere and later replaced with row remapping).

``BROKEN`` holds, per health item, the device overrides that break it; tests apply them to
any model: ``FakeNvml(model="H100", devices={3: BROKEN["ecc_uncorrectable_volatile"]})``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pynvml as p


@dataclass(frozen=True)
class Err:
    """Replay an NVML error code instead of a value."""

    code: int


NOT_SUPPORTED = Err(p.NVML_ERROR_NOT_SUPPORTED)
NO_PERMISSION = Err(p.NVML_ERROR_NO_PERMISSION)
GPU_IS_LOST = Err(p.NVML_ERROR_GPU_IS_LOST)

UNC, COR = p.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, p.NVML_MEMORY_ERROR_TYPE_CORRECTED
VOL, AGG = p.NVML_VOLATILE_ECC, p.NVML_AGGREGATE_ECC
ON, OFF = p.NVML_FEATURE_ENABLED, p.NVML_FEATURE_DISABLED
MIB = 2**20


def ecc(uv: int = 0, ua: int = 0, cv: int = 0, ca: int = 0) -> dict[tuple[int, int], int]:
    """nvmlDeviceGetTotalEccErrors(errorType, counterType) -> count."""
    return {(UNC, VOL): uv, (UNC, AGG): ua, (COR, VOL): cv, (COR, AGG): ca}


def two_socket(cores: int, smt: bool = True) -> list[list[int]]:
    """The CPUs of each NUMA node of a 2-socket node, Linux's numbering (siblings after all cores)."""
    total = 2 * cores
    return [
        list(range(s * cores, (s + 1) * cores))
        + (list(range(total + s * cores, total + (s + 1) * cores)) if smt else [])
        for s in range(2)
    ]


def nps4_epyc(cores_per_node: int = 16, nodes: int = 8) -> list[list[int]]:
    """2 x AMD EPYC 7742 in NPS4 (DGX A100): 8 NUMA nodes of 16 cores, SMT siblings after all cores."""
    total = cores_per_node * nodes
    return [
        list(range(n * cores_per_node, (n + 1) * cores_per_node))
        + list(range(total + n * cores_per_node, total + (n + 1) * cores_per_node))
        for n in range(nodes)
    ]


_COMMON: dict[str, Any] = {
    "ecc_mode": (ON, ON),
    "ecc": ecc(),
    "retired_pages_pending": NOT_SUPPORTED,
    "remapped_rows": (0, 0, 0, 0),  # corrected rows, uncorrected rows, pending, failure
    "pcie_replay": 0,  # nvmlDeviceGetPcieReplayCounter: a healthy link retransmits nothing, or a few
    "clocks_event_reasons": p.nvmlClocksEventReasonGpuIdle,
    "temperature": 31,
    "persistence": ON,
    "nvlink_down": (),  # links reported inactive
    "nvlink_errors": {},  # (link, counter) -> count
    "compute_processes": [],  # (pid, used bytes)
    "graphics_processes": [],
    "process_names": {},
    "pcie_curr": None,  # (gen, width); None: the max
    "power_fraction": 1.0,  # enforced power limit / default limit
    # gpu_services: an HGX board's GPUs registered with the NVSwitch fabric (state, status), MIG off
    # (current, pending), application clocks at their default (None: the model's max graphics clock)
    "fabric": (p.NVML_GPU_FABRIC_STATE_COMPLETED, p.NVML_SUCCESS),
    "mig": (p.NVML_DEVICE_MIG_DISABLE, p.NVML_DEVICE_MIG_DISABLE),
    "app_clock": None,
}

MODELS: dict[str, dict[str, Any]] = {
    "H100": {
        **_COMMON,
        "name": "NVIDIA H100 80GB HBM3",
        "pci_device_id": 0x233010DE,
        "pci_subsystem_id": 0x16C110DE,
        "bus_ids": ["18", "2A", "3A", "5D", "9A", "AB", "BA", "DB"],
        "memory_total": 81559 * MIB,
        "max_clocks": {p.NVML_CLOCK_GRAPHICS: 1980, p.NVML_CLOCK_SM: 1980, p.NVML_CLOCK_MEM: 2619},
        "bus_width": 5120,
        "pcie_max": (5, 16),
        "gpu_max_gen": 5,
        "thresholds": {p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 90},
        "power_default": 700000,
        "nvlinks": 18,
        "vbios": "96.00.99.00.01",
        "inforom_image": "G520.0200.00.05",
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
        "node_cpus": two_socket(56),  # 2 x Xeon Platinum 8480C
    },
    "H200": {
        **_COMMON,
        "name": "NVIDIA H200",
        "pci_device_id": 0x233510DE,
        "pci_subsystem_id": 0x18B010DE,
        "bus_ids": ["19", "3B", "4C", "5D", "9B", "BB", "CB", "DB"],
        "memory_total": 150754820096,
        "max_clocks": {p.NVML_CLOCK_GRAPHICS: 1980, p.NVML_CLOCK_SM: 1980, p.NVML_CLOCK_MEM: 3201},
        "bus_width": 6144,
        "pcie_max": (5, 16),
        "gpu_max_gen": 5,
        "thresholds": {p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 90},
        "power_default": 700000,
        "nvlinks": 18,
        "vbios": "96.00.AF.00.01",
        "inforom_image": "G520.0240.00.01",
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
        "node_cpus": two_socket(56),
    },
    "A100": {
        **_COMMON,
        "name": "NVIDIA A100-SXM4-80GB",
        "pci_device_id": 0x20B210DE,
        "pci_subsystem_id": 0x147F10DE,
        "bus_ids": ["07", "0F", "47", "4E", "87", "90", "B7", "BD"],
        "memory_total": 81920 * MIB,
        "max_clocks": {p.NVML_CLOCK_GRAPHICS: 1410, p.NVML_CLOCK_SM: 1410, p.NVML_CLOCK_MEM: 1593},
        "bus_width": 5120,
        "pcie_max": (4, 16),
        "gpu_max_gen": 4,
        "thresholds": {p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 89},
        "power_default": 400000,
        "nvlinks": 12,
        "vbios": "92.00.45.00.06",
        "inforom_image": "G506.0212.00.02",
        "fabric": NOT_SUPPORTED,  # nvmlDeviceGetGpuFabricInfo: Hopper and later (A100: fabric manager only)
        "numa": [3, 3, 1, 1, 7, 7, 5, 5],  # DGX A100, NPS4
        "node_cpus": nps4_epyc(),
    },
    "B200": {
        **_COMMON,
        "name": "NVIDIA B200",
        "pci_device_id": 0x290110DE,
        "pci_subsystem_id": 0x199910DE,
        "bus_ids": ["1B", "43", "52", "61", "9D", "C3", "D1", "DF"],
        "memory_total": 183359 * MIB,
        "max_clocks": {p.NVML_CLOCK_GRAPHICS: 1965, p.NVML_CLOCK_SM: 1965, p.NVML_CLOCK_MEM: 3996},
        "bus_width": 8192,
        "pcie_max": (5, 16),  # the HGX baseboard's link; the GPU itself can do Gen6
        "gpu_max_gen": 6,
        "thresholds": {p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 87},
        "power_default": 1000000,
        "nvlinks": 18,
        "nvlink_errors": NOT_SUPPORTED,  # per-link DL counters: NVML answers NotSupported on Blackwell
        "vbios": "97.00.5F.00.05",
        "inforom_image": "G525.0210.00.03",
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
        "node_cpus": two_socket(56),
    },
    "V100": {  # pre-Ampere: page retirement instead of row remapping
        **_COMMON,
        "name": "Tesla V100-SXM2-32GB",
        "pci_device_id": 0x1DB510DE,
        "pci_subsystem_id": 0x124910DE,
        "bus_ids": ["06", "07", "0A", "0B", "85", "86", "89", "8A"],
        "memory_total": 32768 * MIB,
        "max_clocks": {p.NVML_CLOCK_GRAPHICS: 1530, p.NVML_CLOCK_SM: 1530, p.NVML_CLOCK_MEM: 877},
        "bus_width": 4096,
        "pcie_max": (3, 16),
        "gpu_max_gen": 3,
        "thresholds": {p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 90, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 87},
        "power_default": 300000,
        "nvlinks": 6,
        "retired_pages_pending": OFF,
        "remapped_rows": NOT_SUPPORTED,
        "fabric": NOT_SUPPORTED,
        "mig": NOT_SUPPORTED,  # MIG: Ampere and later
        "vbios": "88.00.80.00.01",
        "inforom_image": "G503.0203.00.04",
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
        "node_cpus": two_socket(20),  # 2 x Xeon E5-2698 v4
    },
}

#: per health item, device overrides that break it (what a broken GPU's NVML reports)
BROKEN: dict[str, dict[str, Any]] = {
    "nvml_errors": {"temperature": GPU_IS_LOST},
    "ecc_enabled": {"ecc_mode": (OFF, ON)},
    "ecc_uncorrectable_volatile": {"ecc": ecc(uv=2, ua=2)},
    "ecc_uncorrectable_aggregate": {"ecc": ecc(ua=1)},
    "ecc_correctable_volatile": {"ecc": ecc(cv=5000, ca=5000)},
    "ecc_correctable_aggregate": {"ecc": ecc(ca=250000)},
    "retired_pages_pending": {"retired_pages_pending": ON},
    "remapped_rows_pending": {"remapped_rows": (3, 1, 1, 0)},
    "remapped_rows_failed": {"remapped_rows": (0, 512, 0, 1)},
    "hw_slowdown": {
        "clocks_event_reasons": p.nvmlClocksEventReasonHwSlowdown
        | p.nvmlClocksEventReasonHwPowerBrakeSlowdown
    },
    "sw_thermal_slowdown": {"clocks_event_reasons": p.nvmlClocksEventReasonSwThermalSlowdown},
    "temperature_margin": {"temperature": 88},
    "power_limit_ratio": {"power_fraction": 0.5},
    "persistence_mode": {"persistence": OFF},
    "nvlink_down": {"nvlink_down": (3, 5)},
    "nvlink_errors": {
        "nvlink_errors": {(2, p.NVML_NVLINK_ERROR_DL_REPLAY): 40, (2, p.NVML_NVLINK_ERROR_DL_RECOVERY): 3}
    },
    "processes": {"compute_processes": [(4242, 70000 * MIB)], "process_names": {4242: "python3"}},
    # gpu_services
    "fabric_not_ready": {"fabric": (p.NVML_GPU_FABRIC_STATE_IN_PROGRESS, p.NVML_SUCCESS)},
    "fabric_failed": {"fabric": (p.NVML_GPU_FABRIC_STATE_COMPLETED, p.NVML_ERROR_TIMEOUT)},
    "mig_wrong": {"mig": (p.NVML_DEVICE_MIG_ENABLE, p.NVML_DEVICE_MIG_ENABLE)},
    "mig_pending": {"mig": (p.NVML_DEVICE_MIG_DISABLE, p.NVML_DEVICE_MIG_ENABLE)},
    "app_clocks_locked": {"app_clock": 1410},
}


#: Clock event reason bits the burn traces use (pynvml's own values)
POWER_CAP = p.nvmlClocksEventReasonSwPowerCap
HW_SLOWDOWN = p.nvmlClocksEventReasonHwSlowdown
HW_THERMAL = p.nvmlClocksEventReasonHwThermalSlowdown
POWER_BRAKE = p.nvmlClocksEventReasonHwPowerBrakeSlowdown
SW_THERMAL = p.nvmlClocksEventReasonSwThermalSlowdown


def burn_trace(seconds: int = 20, temp_start: int = 38, temp_end: int = 67) -> list[dict[str, Any]]:
    """An H200 under a sustained bf16 GEMM, one sample per second: device overrides for FakeNvml.

    The first second at the maximum SM clock (1980 MHz, no reason), then the 700 W power limit:
    SwPowerCap set, SM clock 1500-1545 MHz, power 690-700 W; the temperature climbing linearly from
    ``temp_start`` to ``temp_end``. Typical values, not a recording: shaped after what hpcbench's
    gemm probe measured on one H200 SXM (docs/probes/gemm.md: 1980 MHz in a burst; after 1-3 s of
    load SM clock median ~1520 MHz, 700 W, SwPowerCap in 83-94% of the samples); the temperatures
    are those of an air-cooled HGX under load, not measured.
    """
    out = []
    for i in range(seconds):
        temp = temp_start + (temp_end - temp_start) * i // max(seconds - 1, 1)
        if i == 0:
            clocks, power, reasons = 1980, 612000, 0
        else:
            clocks, power, reasons = (1500, 1545, 1515, 1530)[i % 4], 690000 + 2500 * (i % 5), POWER_CAP
        out.append(
            {
                "clocks": {p.NVML_CLOCK_SM: clocks, p.NVML_CLOCK_MEM: 3201, p.NVML_CLOCK_GRAPHICS: clocks},
                "power_usage": min(power, 700000),
                "temperature": temp,
                "clocks_event_reasons": reasons,
                "utilization": (100, 38),
            }
        )
    return out
