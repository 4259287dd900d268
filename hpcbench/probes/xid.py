"""NVIDIA XID errors from the kernel log: a pure parser and the reader that feeds it.

The driver logs each XID as ``NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>',
name=<unknown>, GPU has fallen off the bus.`` (older drivers: ``pid=1234, ...`` or no
pid). Newer drivers also report a lost GPU over several lines without an XID (``NVRM:
The NVIDIA GPU 0000:b3:00.0`` ... ``fallen off the bus``); that counts as XID 79.

The log comes from ``journalctl -k`` (persistent, survives the ring buffer wrapping) or
``dmesg``, run with an argv list and a timeout; a log we may not read is *unsupported*,
never a failure. ``parse_kernel_log`` and ``parse_since`` are pure and tested on captured
text in ``tests/fixtures/xid/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

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
TIMEOUT_S = 15.0

_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]{2,8}:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})?[^)]*)\): "
    r"(?P<code>\d+)(?P<rest>.*)$"
)
_REST = re.compile(r"^(?:,\s*pid=(?P<pid>'[^']*'|[^,]*))?(?:,\s*name=(?P<name>[^,]*))?,?\s*(?P<msg>.*)$")
_FALLEN_START = re.compile(r"NVRM: The NVIDIA GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2})")
_ISO = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:[,.](?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:?\d{2})?\s"
)
_UPTIME = re.compile(r"^\[\s*(?P<s>\d+\.\d+)\]\s")
_SINCE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class XidEvent:
    code: int
    bus: str | None  # normalized "0000:3b:00"; None when the line names no bus
    time: float | None  # seconds since the epoch; None when the line's time is unknown
    message: str
    pid: str | None = None
    process: str | None = None


def normalize_bus(text: str | None) -> str | None:
    """A PCI address as ``dddd:bb:dd`` in lower case: ``00000000:3B:00.0`` and ``0000:3b:00`` agree."""
    if not text:
        return None
    parts = text.strip().lower().replace("pci:", "").split(":")
    if len(parts) == 2:  # bb:dd
        parts = ["0", *parts]
    if len(parts) < 3:
        return None
    try:
        return f"{int(parts[0], 16):04x}:{int(parts[1], 16):02x}:{int(parts[2].split('.')[0], 16):02x}"
    except ValueError:
        return None


def _line_time(line: str, booted: float | None) -> float | None:
    m = _ISO.match(line)
    if m:
        tz = m["tz"] or "+00:00"
        tz = "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
        frac = (m["frac"] or "0")[:6].ljust(6, "0")
        return datetime.fromisoformat(f"{m['ts']}.{frac}{tz}").timestamp()
    m = _UPTIME.match(line)
    if m and booted is not None:
        return booted + float(m["s"])
    return None


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
                    time=_line_time(line, booted),
                    message=(rest["msg"] if rest else m["rest"]).strip().rstrip("."),
                    pid=None if pid in (None, "", "<unknown>") else pid,
                    process=None if name in (None, "", "<unknown>") else name,
                )
            )
            continue
        m = _FALLEN_START.search(line)
        if m and any("fallen off the bus" in later for later in lines[i : i + 4]):
            when = _line_time(line, booted)
            fallen.append(XidEvent(79, normalize_bus(m["bus"]), when, "GPU has fallen off the bus"))
    logged_79 = {e.bus for e in events if e.code == 79}
    events += [e for e in fallen if e.bus not in logged_79]  # the same loss is often logged both ways
    return events


def parse_since(text: str, now: float | None = None) -> float | None:
    """``""`` or ``boot``: None (since boot); ``24h``, ``30m``, ``7d``, ``90s``: that long ago;
    an ISO 8601 time (``2026-11-27T00:00:00Z``; no zone means UTC). ValueError otherwise."""
    text = text.strip()
    if text in ("", "boot"):
        return None
    m = _SINCE.match(text)
    if m:
        return (time.time() if now is None else now) - float(m["n"]) * _UNIT_S[m["unit"]]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected 'boot', a duration like 24h, 30m, 7d, or an ISO 8601 time, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


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


@dataclass(frozen=True)
class KernelLog:
    """The kernel log's text and where it came from, or why it could not be read."""

    text: str | None
    source: str
    unsupported: str | None = None


def boot_time(proc_stat: str = "/proc/stat") -> float | None:
    """When this node booted (``btime`` of /proc/stat), for plain dmesg's relative timestamps."""
    try:
        with open(proc_stat, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _run(argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str] | None, str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} timed out after {timeout:g} s"
    except OSError as exc:
        return None, f"{argv[0]}: {exc}"
    return done, ""


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _journal(timeout: float) -> KernelLog | str:
    argv = ["journalctl", "-k", "-b", "-o", "short-iso", "--no-pager", "-q"]
    done, problem = _run(argv, timeout)
    if done is None:
        return problem
    err = done.stderr
    if "insufficient permissions" in err or "not seeing messages from other users" in err:
        return f"no permission to read the journal ({_first_line(err)})"
    if done.returncode != 0:
        return f"journalctl: {_first_line(err) or f'exit status {done.returncode}'}"
    if not done.stdout.strip():  # every boot logs kernel messages: this journal does not keep them
        return f"the journal holds no kernel message of this boot ({_first_line(err) or 'no entries'})"
    return KernelLog(done.stdout, " ".join(argv))


def _dmesg(timeout: float) -> KernelLog | str:
    argv = ["dmesg", "--time-format", "iso"]
    done, problem = _run(argv, timeout)
    if done is not None and done.returncode != 0 and "time-format" in done.stderr:
        argv = ["dmesg"]  # busybox's dmesg: relative timestamps, placed with the boot time
        done, problem = _run(argv, timeout)
    if done is None:
        return problem
    if done.returncode != 0:
        err = _first_line(done.stderr) or f"exit status {done.returncode}"
        if "not permitted" in err or "ermission denied" in err:
            return f"no permission to read the kernel log ({err})"
        return err
    return KernelLog(done.stdout, " ".join(argv))


def read_kernel_log(source: str, timeout: float = TIMEOUT_S) -> KernelLog:
    """The kernel log of this boot from ``source``: ``auto`` (journalctl, else dmesg),
    ``journalctl``, ``dmesg``, ``none``, or a file (e.g. /var/log/kern.log). Never raises for a
    log it cannot read; ``since()`` filters the parsed events by time."""
    if source == "none":
        return KernelLog(None, source, unsupported="reading the kernel log is turned off (kernel_log = none)")
    if source not in ("auto", "journalctl", "dmesg"):
        try:
            with open(source, encoding="utf-8", errors="replace") as fh:
                return KernelLog(fh.read(), source)
        except OSError as exc:
            return KernelLog(None, source, unsupported=f"cannot read {source}: {exc.strerror or exc}")
    reasons = []
    for tool in ("journalctl", "dmesg") if source == "auto" else (source,):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found")
            continue
        got = _journal(timeout) if tool == "journalctl" else _dmesg(timeout)
        if isinstance(got, KernelLog):
            return got
        reasons.append(got)
    return KernelLog(None, source, unsupported="; ".join(reasons))
