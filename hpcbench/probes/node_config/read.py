"""Readers of /proc and /sys under a root folder (``/`` on a node, a captured tree in tests).

Each is a pure parser of the file's text plus a small reader; nothing here runs a command.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hpcbench.hw.procs import Proc, processes  # noqa: F401 - node_config reads processes here too
from hpcbench.node.pci import read_text

_ESCAPE = re.compile(r"\\([0-7]{3})")
_KB = re.compile(r"^(\w+):\s+(\d+)(?:\s+kB)?$", re.MULTILINE)
_CPU = re.compile(r"^cpu(\d+)$")
#: a mount of these types is a trigger or a placeholder, not the file system the path should hold
TRIGGERS = ("autofs",)


def meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as name -> value (kB, which means KiB, for the sizes)."""
    return {m[1]: int(m[2]) for m in _KB.finditer(text)}


@dataclass(frozen=True)
class MountEntry:
    source: str
    point: str
    fstype: str
    options: tuple[str, ...]


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m[1], 8)), text)


def parse_mounts(text: str) -> dict[str, MountEntry]:
    """Mount point -> the mount that shows at it (the last one mounted there). An autofs trigger
    is left out when nothing is mounted over it: ``systemd-1 /scratch autofs`` alone is not the
    file system /scratch should hold."""
    out: dict[str, MountEntry] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        entry = MountEntry(_unescape(f[0]), _unescape(f[1]), f[2], tuple(f[3].split(",")))
        if entry.fstype in TRIGGERS:
            out.setdefault(entry.point, entry)  # kept only until a real mount covers it
        else:
            out[entry.point] = entry
    return {p: e for p, e in out.items() if e.fstype not in TRIGGERS}


def read_mounts(root: str) -> dict[str, MountEntry] | None:
    for leaf in ("proc/self/mounts", "proc/mounts"):
        text = read_text(os.path.join(root, leaf))
        if text is not None:
            return parse_mounts(text)
    return None


@dataclass(frozen=True)
class CpuLayout:
    sockets: int
    cores: int
    threads: int  # online logical CPUs
    present: int


def parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def cpu_layout(root: str) -> CpuLayout | None:
    """Sockets, physical cores and online threads from each online CPU's topology folder."""
    base = os.path.join(root, "sys/devices/system/cpu")
    online_text = read_text(f"{base}/online")
    if online_text is None:
        return None
    online = parse_cpu_list(online_text)
    present = parse_cpu_list(read_text(f"{base}/present") or online_text)
    packages: set[str] = set()
    cores: set[tuple[str, str]] = set()
    for cpu in online:
        pkg = (read_text(f"{base}/cpu{cpu}/topology/physical_package_id") or "").strip()
        core = (read_text(f"{base}/cpu{cpu}/topology/core_id") or "").strip()
        if pkg:
            packages.add(pkg)
            cores.add((pkg, core))
    return CpuLayout(len(packages), len(cores), len(online), len(present))


def loadavg(text: str) -> tuple[float, float, float] | None:
    f = text.split()
    try:
        return float(f[0]), float(f[1]), float(f[2])
    except (IndexError, ValueError):
        return None


def dmi(root: str, key: str) -> str | None:
    text = read_text(os.path.join(root, "sys/class/dmi/id", key))
    return text.strip() if text is not None else None
