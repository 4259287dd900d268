"""A GPU's error counters and XIDs read around a stress test, judged the same way by every test
that loads a GPU (burn, memtest): ECC (volatile corrected and uncorrected), row remapping
(correctable, uncorrectable, failure) and PCIe replays before and after (``gpu_counters``), and
the XIDs logged in between (``xid.XidWatch``: one log source, the test's start time).

Also what a CUDA error in the middle of a test means: ``fault_reason`` turns the exception and
the counters read after it into the one line of a FAIL (an uncorrectable ECC error, an XID of
this GPU, counters that rose), or None when nothing says the hardware is at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hpcbench.core.items import Item, missing
from hpcbench.hw import gpu_counters as gc
from hpcbench.hw import xid

#: counter delta metric -> (Counters field(s), what it counts)
DELTA_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "ecc_uncorrectable_new": (("ecc_uncorrectable_volatile",), "uncorrectable ECC errors"),
    "ecc_correctable_new": (("ecc_correctable_volatile",), "correctable ECC errors"),
    "remapped_rows_new": (("remapped_rows_correctable", "remapped_rows_uncorrectable"), "rows remapped"),
    "remap_failure_new": (("remap_failure",), "row remapping failure"),
    "pcie_replay_new": (("pcie_replay",), "PCIe replays"),
}
#: every metric a CounterWatch gives
METRICS = (*DELTA_METRICS, "xid_new")


def convention(metric: str) -> str:
    """Where a watched counter's value comes from."""
    return "kernel log" if metric == "xid_new" else "NVML"


#: the counters whose rise during a test that then raised a CUDA error blames the GPU
FAULT_EVIDENCE = ("ecc_uncorrectable_new", "remapped_rows_new", "remap_failure_new", "xid_new")
#: what a CUDA error says when the memory itself failed (cudaErrorECCUncorrectable's text)
ECC_ERROR_TEXT = "uncorrectable ECC error"


def delta_items(deltas: dict[str, Any], during: str = "the burn") -> list[Item]:
    """The counters' changes (``gpu_counters.deltas``) as count metrics: ``2 uncorrectable ECC
    errors during the burn (0 before, 2 after)``."""
    items = []
    for metric, (names, what) in DELTA_METRICS.items():
        ds = [deltas[n] for n in names]
        if any(d.new is None for d in ds):
            why = next(d.why_none for d in ds if d.new is None)
            items.append(Item(metric, not_measured=why))
            continue
        new = sum(d.new for d in ds)
        before, after = sum(d.before for d in ds), sum(d.after for d in ds)
        if metric == "remap_failure_new":
            detail = f"a row remapping failed during {during}" if new else "no row remapping failure"
            detail += f" (flag {before} before, {after} after)"
        else:
            detail = f"{new} {what} during {during} ({before} before, {after} after)"
        items.append(Item(metric, float(new), detail=detail))
    return items


def xid_item(new: list[xid.XidEvent] | str, bus: str | None, ignore: tuple[int, ...], during: str) -> Item:
    """``xid_new``: the XIDs of this GPU logged during the test (a string: why not known)."""
    if isinstance(new, str):
        return Item("xid_new", not_measured=new)
    counted = [e for e in new if e.code not in ignore]
    ignored = [e for e in new if e.code in ignore]
    detail = (xid.describe(counted) or "no XID") + f" on PCI {bus} during {during}"
    if ignored:
        detail += f" (not counted: {xid.describe(ignored)})"
    return Item("xid_new", float(len(counted)), detail=detail)


def read_counters(index: int, nvml: Any = None) -> gc.Counters | str:
    """GPU ``index``'s error counters now, or why NVML gave none."""
    from hpcbench.node import nvml as seam  # here: `hpcbench list` reads this module's metric names

    try:
        with seam.session(nvml) as nv:
            handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, index)
            if not handle.ok:
                return f"NVML cannot open GPU {index}: {handle.error or handle.unsupported}"
            return gc.snapshot(nv, handle.value)
    except ImportError:
        return "NVML unavailable: nvidia-ml-py (pynvml) is not installed"
    except Exception as exc:  # pynvml's NVMLError subclasses
        if not type(exc).__name__.startswith("NVMLError"):
            raise
        return f"NVML unavailable: {seam.error_text(exc)}"


class CounterWatch:
    """``begin()`` before the test, ``end()`` after it (also after it raised), then ``items()``.
    ``index`` None: nothing to watch (``why_none``, e.g. the CPU device)."""

    def __init__(
        self,
        index: int | None,
        bus: str | None,
        *,
        kernel_log: str = "auto",
        xid_ignore: tuple[int, ...] = (),
        nvml: Any = None,
        wall: Callable[[], float] = time.time,
        during: str = "the test",
        why_none: str = "",
    ) -> None:
        self.index = index
        self.xids = xid.XidWatch(bus, kernel_log, wall=wall)
        self.xid_ignore = tuple(xid_ignore)
        self.kernel_log = kernel_log
        self.nvml = nvml
        self.during = during
        self.why_none = why_none
        self.before: gc.Counters | str = why_none
        self.after: gc.Counters | str = why_none
        self.xids_new: list[xid.XidEvent] | str = why_none

    @property
    def active(self) -> bool:
        return self.index is not None

    def begin(self) -> None:
        if self.index is None:
            return
        self.before = read_counters(self.index, self.nvml)
        self.xids.begin()

    def end(self) -> None:
        if self.index is None:
            return
        self.after = read_counters(self.index, self.nvml)
        self.xids_new = self.xids.end()

    def items(self) -> list[Item]:
        """Every metric of ``METRICS``; none measured when inactive (``why_none``)."""
        if self.index is None:
            return missing(METRICS, self.why_none or "not watched")
        if isinstance(self.before, str) or isinstance(self.after, str):
            why = self.before if isinstance(self.before, str) else self.after
            items = missing(tuple(DELTA_METRICS), str(why))
        else:
            items = delta_items(gc.deltas(self.before, self.after), self.during)
        items.append(xid_item(self.xids_new, self.xids.bus, self.xid_ignore, self.during))
        return items

    def settings(self) -> dict[str, Any]:
        if self.index is None:
            return {"counters": self.why_none}
        return {
            "counters_before": self.before if isinstance(self.before, str) else self.before.as_dict(),
            "counters_after": self.after if isinstance(self.after, str) else self.after.as_dict(),
            "kernel_log": self.xids.pinned,
            "xid_ignore": list(self.xid_ignore),
        }


def is_cuda_error(exc: BaseException) -> bool:
    """A CUDA runtime error as torch raises it (``RuntimeError: CUDA error: ...``, or the
    ``torch.AcceleratorError`` of newer releases, a RuntimeError too)."""
    return isinstance(exc, RuntimeError) and "CUDA error" in str(exc)


def fault_reason(subject: str, exc: BaseException, where: str, items: list[Item]) -> str | None:
    """The FAIL line of a CUDA error in the middle of a test, when the error or the counters read
    after it say the GPU is at fault: ``gpu3: CUDA error: uncorrectable ECC error encountered during
    pattern random (pass 1, chunk 12 of 124); after it: 2 uncorrectable ECC errors during the memtest
    (0 before, 2 after); XID 48 x1 (...)``. None: nothing points at the hardware (the error stays
    an ERROR of the probe)."""
    text = " ".join(str(exc).split())
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), text).strip()
    evidence = [i.detail for i in items if i.value and i.metric in FAULT_EVIDENCE]
    if ECC_ERROR_TEXT not in text and not evidence:
        return None
    line = f"{subject}: {first} during {where}"
    if evidence:
        line += "; after it: " + "; ".join(evidence)
    return line
