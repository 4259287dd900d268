"""NVIDIA XID errors in the kernel log: a pure parser (the log is read by ``hw.kernel_log``).

The driver logs each XID as ``NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>',
name=<unknown>, GPU has fallen off the bus.`` (older drivers: ``pid=1234, ...`` or no
pid). Newer drivers also report a lost GPU over several lines without an XID (``NVRM:
The NVIDIA GPU 0000:b3:00.0`` ... ``fallen off the bus``); that counts as XID 79.

``parse_kernel_log`` is pure and tested on captured text in ``tests/hw/fixtures/xid/``.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hpcbench.hw.kernel_log import KernelLog, boot_time, line_time, read_kernel_log, tool_of
from hpcbench.node.pci import normalize_bus

#: application-caused XIDs (NVIDIA's XID catalogue: user app errors), not counted by default
DEFAULT_IGNORE = (13, 31, 43, 45)
#: what the XIDs most often seen on GPU clusters mean (NVIDIA's XID catalogue)
DESCRIPTIONS = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup after previous errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint/warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping event",
    64: "ECC page retirement or row remapping failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
}
_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]{2,8}:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})?[^)]*)\): "
    r"(?P<code>\d+)(?P<rest>.*)$"
)
_REST = re.compile(r"^(?:,\s*pid=(?P<pid>'[^']*'|[^,]*))?(?:,\s*name=(?P<name>[^,]*))?,?\s*(?P<msg>.*)$")
_FALLEN_START = re.compile(r"NVRM: The NVIDIA GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class XidEvent:
    code: int
    bus: str | None  # normalized "0000:3b:00"; None when the line names no bus
    time: float | None  # seconds since the epoch; None when the line's time is unknown
    message: str
    pid: str | None = None
    process: str | None = None


def parse_kernel_log(text: str, booted: float | None = None) -> list[XidEvent]:
    """Every XID in a kernel log (dmesg, ``dmesg --time-format iso``, ``journalctl -k -o short-iso``).

    ``booted`` (the boot time, epoch seconds) turns plain dmesg's ``[ 1843.308145]`` into a time.
    """
    events: list[XidEvent] = []
    lines = text.splitlines()
    fallen: list[XidEvent] = []
    for i, line in enumerate(lines):
        m = _XID.search(line)
        if m:
            rest = _REST.match(m["rest"])
            pid = rest["pid"].strip().strip("'") if rest and rest["pid"] else None
            name = rest["name"].strip() if rest and rest["name"] else None
            events.append(
                XidEvent(
                    code=int(m["code"]),
                    bus=normalize_bus(m["bus"]),
                    time=line_time(line, booted),
                    message=(rest["msg"] if rest else m["rest"]).strip().rstrip("."),
                    pid=None if pid in (None, "", "<unknown>") else pid,
                    process=None if name in (None, "", "<unknown>") else name,
                )
            )
            continue
        m = _FALLEN_START.search(line)
        if m and any("fallen off the bus" in later for later in lines[i : i + 4]):
            when = line_time(line, booted)
            fallen.append(XidEvent(79, normalize_bus(m["bus"]), when, "GPU has fallen off the bus"))
    logged_79 = {e.bus for e in events if e.code == 79}
    events += [e for e in fallen if e.bus not in logged_79]  # the same loss is often logged both ways
    return events


def since(events: Iterable[XidEvent], start: float | None) -> list[XidEvent]:
    """The events at or after ``start``; events of unknown time are kept (they cannot be excluded)."""
    return [e for e in events if start is None or e.time is None or e.time >= start]


def describe(events: list[XidEvent]) -> str:
    """``XID 79 x2 (GPU has fallen off the bus), XID 48 x1 (double-bit ECC error)``."""
    counts = Counter(e.code for e in events)
    parts = []
    for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        what = DESCRIPTIONS.get(code) or next((e.message for e in events if e.code == code and e.message), "")
        parts.append(f"XID {code} x{n}" + (f" ({what})" if what else ""))
    return ", ".join(parts)


def new_events(before: list[XidEvent], after: list[XidEvent], start: float) -> list[XidEvent]:
    """The events of ``after`` that are not in ``before`` and were not logged before ``start``
    (epoch seconds; the log's timestamps have whole seconds, so the start's second counts as the
    run's). An event whose time the log does not say is new when ``before`` lacks it."""
    first = math.floor(start)
    fresh = Counter(after) - Counter(before)
    return [e for e in fresh.elements() if e.time is None or e.time >= first]


class XidWatch:
    """The XIDs of one GPU (``bus``, normalized) logged while a test ran: ``begin()`` notes the
    wall-clock start and reads the log (``source``: auto, journalctl, dmesg, none or a file),
    ``end()`` reads it again from the *same* source that answered first (never a fallback: a
    different tool prints other timestamps) and returns the new events, or why they are unknown."""

    def __init__(
        self,
        bus: str | None,
        source: str = "auto",
        *,
        reader: Callable[[str], KernelLog] = read_kernel_log,
        wall: Callable[[], float] = time.time,
        booted: Callable[[], float | None] = boot_time,
    ) -> None:
        self.bus = normalize_bus(bus) if bus else None
        self.source = source
        self._reader = reader
        self._wall = wall
        self._booted = booted
        self.pinned = source
        self.start: float | None = None
        self.before: list[XidEvent] | str = "not read"

    def _read(self, source: str) -> tuple[list[XidEvent] | str, KernelLog]:
        log = self._reader(source)
        if log.text is None:
            return f"kernel log not readable: {log.unsupported}", log
        return [e for e in parse_kernel_log(log.text, self._booted()) if e.bus == self.bus], log

    def begin(self) -> None:
        if self.bus is None:
            self.before = "the GPU's PCI address is unknown"
            return
        self.start = self._wall()
        self.before, log = self._read(self.source)
        if not isinstance(self.before, str):
            self.pinned = tool_of(log)

    def end(self) -> list[XidEvent] | str:
        """The XIDs of this GPU logged since ``begin()``; a string says why they are not known."""
        if isinstance(self.before, str) or self.start is None:
            return self.before
        after, _ = self._read(self.pinned)
        if isinstance(after, str):
            return f"{after} (read from {self.pinned}, the source of the run's start)"
        return new_events(self.before, after, self.start)
