"""Memory, online CPUs, NUMA memory balance and expected mounts, read from /proc and /sys.

Units: memory in GiB = bytes / 2**30. ``/proc/meminfo`` and the NUMA nodes' ``meminfo`` say
``kB`` and mean KiB (1024 bytes), so GiB = kB / 2**20. ``MemTotal`` is the memory the kernel
manages: the installed DIMMs less what firmware and the kernel reserve (typically 1-3%), so
a baseline records a healthy node's MemTotal, not the DIMMs' nominal size.
"""

from __future__ import annotations

import os
import re

from hpcbench.core.items import Item, missing
from hpcbench.node.pci import read_text

MEMINFO = "proc/meminfo"
CPU = "sys/devices/system/cpu"
NODES = "sys/devices/system/node"
MOUNTS = ("proc/self/mounts", "proc/mounts")
_KIB_PER_GIB = 2**20
_MEMTOTAL = re.compile(r"^(?:Node \d+ )?MemTotal:\s+(\d+)\s+kB", re.MULTILINE)
_NODE = re.compile(r"^node(\d+)$")
_ESCAPE = re.compile(r"\\([0-7]{3})")


def memtotal_kib(text: str) -> int | None:
    """``MemTotal`` of /proc/meminfo or of a NUMA node's meminfo, in KiB; None if absent."""
    m = _MEMTOTAL.search(text)
    return int(m[1]) if m else None


def parse_cpu_list(text: str) -> list[int]:
    """CPU numbers of a kernel CPU list: ``0-3,8,10-11`` -> [0, 1, 2, 3, 8, 10, 11]; empty text -> []."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> ``0-2,5`` (the kernel's own notation)."""
    s = sorted(set(cpus))
    out: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def parse_mounts(text: str) -> list[str]:
    """Mount points of /proc/self/mounts (``\\040`` and other octal escapes decoded)."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            points.append(_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[1]))
    return points


def memory_item(root: str) -> Item:
    path = os.path.join(root, MEMINFO)
    kib = memtotal_kib(read_text(path) or "")
    if kib is None:
        return Item("memory_gib", not_measured=f"no MemTotal in {path}")
    gib = kib / _KIB_PER_GIB
    return Item("memory_gib", gib, "GiB", True, f"MemTotal {kib} kB = {gib:.2f} GiB (1 GiB = 2^30 bytes)")


def cpu_items(root: str) -> list[Item]:
    """``online_cpus`` (judged against the baseline: firmware-disabled cores are not even present)
    and ``cpus_offline`` (present but offline: taken offline by the kernel or by hand; no baseline
    needed). With SMT switched off the sibling threads are offline by design: not counted."""
    base = os.path.join(root, CPU)
    online_text = read_text(f"{base}/online")
    if online_text is None:
        return missing(("online_cpus", "cpus_offline"), f"{base}/online not readable")
    online = parse_cpu_list(online_text)
    present = parse_cpu_list(read_text(f"{base}/present") or online_text)
    offline = sorted(set(present) - set(online))
    smt = (read_text(f"{base}/smt/control") or "").strip()
    detail = f"{len(online)} of {len(present)} present CPUs online"
    out = [
        Item(
            "online_cpus",
            float(len(online)),
            "CPUs",
            True,
            detail + (f"; offline: {ranges(offline)}" if offline else ""),
        )
    ]
    if offline and smt in ("off", "forceoff"):
        out.append(
            Item(
                "cpus_offline", not_measured=f"SMT is {smt}: {len(offline)} sibling threads offline by design"
            )
        )
    else:
        why = (
            f"offline: {ranges(offline)} of {len(present)} present CPUs"
            if offline
            else f"all {len(present)} present CPUs online"
        )
        out.append(Item("cpus_offline", float(len(offline)), detail=why))
    return out


def numa_item(root: str) -> Item:
    """``memory_numa_balance``: the smallest CPU-bearing NUMA node's MemTotal over the largest's.

    On a node whose sockets hold the same DIMMs a missing DIMM shows here with no baseline:
    one of 16 DIMMs of a socket gone is 15/16 = 0.9375. Memory-only nodes (CXL, HBM in flat
    mode, a GPU's memory on Grace) are left out."""
    base = os.path.join(root, NODES)
    try:
        names = sorted((int(m[1]), n) for n in os.listdir(base) if (m := _NODE.match(n)))
    except OSError:
        return Item("memory_numa_balance", not_measured=f"{base} not readable")
    sizes: dict[str, int] = {}
    for _, name in names:
        if not parse_cpu_list(read_text(f"{base}/{name}/cpulist") or ""):
            continue
        kib = memtotal_kib(read_text(f"{base}/{name}/meminfo") or "")
        if kib:
            sizes[name] = kib
    if len(sizes) < 2:
        return Item(
            "memory_numa_balance",
            not_measured=f"{len(sizes)} NUMA node(s) with CPUs and memory: nothing to compare",
        )
    small = min(sizes, key=lambda n: sizes[n])
    large = max(sizes, key=lambda n: sizes[n])
    ratio = sizes[small] / sizes[large]
    each = ", ".join(f"{n} {k / _KIB_PER_GIB:.2f} GiB" for n, k in sizes.items())
    detail = f"smallest {small} / largest {large} = {ratio:.4f} ({each})"
    return Item("memory_numa_balance", ratio, "ratio", True, detail)


def mounts_item(root: str, expected: list[str]) -> Item:
    """``mounts_missing``: how many of the expected mount points are not mounted, each named."""
    if not expected:
        return Item("mounts_missing", not_measured="no expected mounts given (parameter mounts)")
    for leaf in MOUNTS:
        path = os.path.join(root, leaf)
        text = read_text(path)
        if text is not None:
            break
    else:
        return Item("mounts_missing", not_measured=f"{os.path.join(root, MOUNTS[0])} not readable")
    mounted = set(parse_mounts(text))
    absent = [m for m in expected if (m.rstrip("/") or "/") not in mounted]
    detail = (
        f"not mounted: {', '.join(absent)}"
        if absent
        else f"all {len(expected)} mounted: {', '.join(expected)}"
    )
    return Item("mounts_missing", float(len(absent)), detail=detail)
