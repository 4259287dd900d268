"""A GPU's error counters through NVML: ECC, row remapping, PCIe replays; read once (gpu_health)
or before and after a load (burn), and the deltas between two readings.

Every call goes through ``hpcbench.node.nvml.read``: NotSupported, NoPermission and FunctionNotFound
make a counter *unsupported* (never a failure); any other NVML error (GpuIsLost, Unknown, ...)
is a ``Reading`` with ``error``. ``deltas`` is a pure function of two ``Counters``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.node import nvml as seam


#: (name, NVML memory error type, NVML counter type) of the ECC counts nvmlDeviceGetTotalEccErrors gives
ECC_COUNTERS = (
    ("ecc_uncorrectable_volatile", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),
    ("ecc_uncorrectable_aggregate", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC"),
    ("ecc_correctable_volatile", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),
    ("ecc_correctable_aggregate", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC"),
)
#: the counters a load can move, as ``Counters`` fields (the volatile ECC counts: since the driver loaded)
DELTA_FIELDS = (
    "ecc_correctable_volatile",
    "ecc_uncorrectable_volatile",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remap_failure",
    "pcie_replay",
)


def ecc_mode(nvml: Any, h: Any) -> seam.Reading:
    """(current, pending) ECC mode, NVML_FEATURE_ENABLED or _DISABLED."""
    from hpcbench.node import nvml as seam

    r = seam.read(nvml, nvml.nvmlDeviceGetEccMode, h)
    return seam.Reading((int(r.value[0]), int(r.value[1]))) if r.ok else r


def ecc_enabled(nvml: Any, mode: tuple[int, int]) -> bool:
    return mode[0] == nvml.NVML_FEATURE_ENABLED


def ecc_count(nvml: Any, h: Any, error_type: str, counter_type: str) -> seam.Reading:
    """One ECC count (``error_type``, ``counter_type``: the NVML constants' names)."""
    from hpcbench.node import nvml as seam

    return seam.read(
        nvml, nvml.nvmlDeviceGetTotalEccErrors, h, getattr(nvml, error_type), getattr(nvml, counter_type)
    )


@dataclass(frozen=True)
class RemappedRows:
    """nvmlDeviceGetRemappedRows: rows remapped for correctable and uncorrectable errors, whether a
    remapping waits for a GPU reset, whether one failed (Ampere and later)."""

    correctable: int
    uncorrectable: int
    pending: bool
    failure: bool


def remapped_rows(nvml: Any, h: Any) -> seam.Reading:
    """A Reading of RemappedRows."""
    from hpcbench.node import nvml as seam

    r = seam.read(nvml, nvml.nvmlDeviceGetRemappedRows, h)
    if not r.ok:
        return r
    corrected, uncorrected, pending, failure = (int(v) for v in r.value)
    return seam.Reading(RemappedRows(corrected, uncorrected, bool(pending), bool(failure)))


def pcie_replay(nvml: Any, h: Any) -> seam.Reading:
    """The PCIe replay counter (link-level retransmissions since the driver loaded)."""
    from hpcbench.node import nvml as seam

    return seam.read(nvml, nvml.nvmlDeviceGetPcieReplayCounter, h)


@dataclass(frozen=True)
class Counters:
    """A GPU's error counters at one moment; a counter NVML cannot give is None and ``missing``
    says why; NVML errors met are in ``errors``."""

    ecc_correctable_volatile: int | None = None
    ecc_uncorrectable_volatile: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_failure: int | None = None  # 0 or 1
    pcie_replay: int | None = None
    missing: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in DELTA_FIELDS}
        if self.missing:
            out["missing"] = dict(self.missing)
        if self.errors:
            out["errors"] = list(self.errors)
        return out


def _why(r: seam.Reading, errors: list[str]) -> str:
    if r.error:
        errors.append(r.error)
        return f"NVML error: {r.error}"
    return r.unsupported or "no value"


def snapshot(nvml: Any, h: Any) -> Counters:
    """Every counter of ``DELTA_FIELDS`` of the GPU behind handle ``h``, now."""
    values: dict[str, int | None] = dict.fromkeys(DELTA_FIELDS)
    missing: dict[str, str] = {}
    errors: list[str] = []
    mode = ecc_mode(nvml, h)
    if not mode.ok:
        why = _why(mode, errors)
        missing.update({"ecc_correctable_volatile": why, "ecc_uncorrectable_volatile": why})
    elif not ecc_enabled(nvml, mode.value):
        why = "ECC is disabled: the GPU keeps no error counts"
        missing.update({"ecc_correctable_volatile": why, "ecc_uncorrectable_volatile": why})
    else:
        for name, etype, ctype in ECC_COUNTERS:
            if name in values:
                r = ecc_count(nvml, h, etype, ctype)
                if r.ok:
                    values[name] = int(r.value)
                else:
                    missing[name] = _why(r, errors)
    rows = remapped_rows(nvml, h)
    if rows.ok:
        values["remapped_rows_correctable"] = rows.value.correctable
        values["remapped_rows_uncorrectable"] = rows.value.uncorrectable
        values["remap_failure"] = int(rows.value.failure)
    else:
        why = _why(rows, errors)
        if rows.unsupported:
            why += " (GPUs before Ampere retire pages instead of remapping rows)"
        for name in ("remapped_rows_correctable", "remapped_rows_uncorrectable", "remap_failure"):
            missing[name] = why
    replay = pcie_replay(nvml, h)
    if replay.ok:
        values["pcie_replay"] = int(replay.value)
    else:
        missing["pcie_replay"] = _why(replay, errors)
    return Counters(**values, missing=missing, errors=tuple(errors))


@dataclass(frozen=True)
class Delta:
    """One counter before and after: ``new`` = after - before (a flag: 1 when it came on)."""

    name: str
    before: int | None
    after: int | None
    why_none: str = ""

    @property
    def new(self) -> int | None:
        if self.before is None or self.after is None:
            return None
        return max(self.after - self.before, 0)


def deltas(before: Counters, after: Counters) -> dict[str, Delta]:
    """Each counter's change between two snapshots; a counter missing in either has ``new`` None
    and the reason. A counter that went down (the driver reloaded) counts as no change."""
    out = {}
    for name in DELTA_FIELDS:
        b, a = getattr(before, name), getattr(after, name)
        why = ""
        if b is None or a is None:
            why = before.missing.get(name) or after.missing.get(name) or "not read"
        out[name] = Delta(name, b, a, why)
    return out
