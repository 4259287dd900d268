"""The kernel log of this boot, as text, and when each of its lines was written.

It comes from ``journalctl -k`` (persistent, survives the ring buffer wrapping) or ``dmesg``,
run with an argv list and a timeout, or from a file; a log we may not read is *unsupported*,
never a failure. Its parsers (``hw.xid`` for NVIDIA XIDs, the node_health probe for kernel
errors) are pure functions of the text; ``line_time`` places a line in time.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcbench.core import timeparse

if TYPE_CHECKING:  # imported where a tool is run: reading a saved log needs none of it
    import subprocess

TIMEOUT_S = 15.0
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[,.]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s")
_UPTIME = re.compile(r"^\[\s*(?P<s>\d+\.\d+)\]\s")


def line_time(line: str, booted: float | None) -> float | None:
    """When a kernel log line was written (epoch seconds): its ISO 8601 prefix (``dmesg
    --time-format iso``, ``journalctl -o short-iso``), or plain dmesg's ``[ 1843.308145]`` since
    ``booted``; None when the line says neither."""
    m = _ISO.match(line)
    if m:
        return timeparse.parse_time(m[1]).timestamp()
    m = _UPTIME.match(line)
    if m and booted is not None:
        return booted + float(m["s"])
    return None


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
    import subprocess

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


def tool_of(log: KernelLog) -> str:
    """The source to read again for the same log: ``journalctl`` or ``dmesg`` for what a tool gave
    (whatever ``auto`` fell back to), else the file. Reading the end of a run from the source that
    gave its start keeps one timestamp format for both."""
    first = log.source.split(" ", 1)[0]
    return first if first in ("journalctl", "dmesg") else log.source
