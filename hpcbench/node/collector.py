"""What this node is: CPU, NUMA, memory, GPUs, disks, network ports, versions and tunables.

``collect(root)`` reads procfs/sysfs files relative to ``root`` (``/`` on a real
node, a fake tree in tests) and returns a JSON-serialisable dict. A fact that
cannot be read is None; nothing here raises for a missing file. The parsers are
pure functions of file text, tested against captured files in
``tests/node/fixtures/inventory/``. torch is never imported (its version comes from
package metadata) and pynvml is imported lazily by ``hpcbench.node.nvml``.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from hpcbench import __version__
from hpcbench.node import nics
from hpcbench.node.inventory import Inventory
from hpcbench.node.pci import full_address, pci_gpus

#: file systems that hold no user data; never a storage subject
PSEUDO_FS = frozenset(
    {
        *("proc", "sysfs", "devpts", "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf"),
        *("configfs", "fusectl", "binfmt_misc", "autofs", "hugetlbfs", "devtmpfs", "nsfs", "rpc_pipefs"),
        *("efivarfs", "selinuxfs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal"),
    }
)
#: tmpfs below these is the system's own, not scratch space someone might benchmark
SYSTEM_TMPFS_DIRS = ("/dev", "/run", "/sys", "/proc")
#: block devices that are not disks
VIRTUAL_BLOCK_PREFIXES = ("loop", "ram", "zram")
#: /proc/cpuinfo on Arm has no "model name": (implementer, part) -> (vendor, model)
ARM_PARTS = {
    ("0x41", "0xd0c"): ("ARM", "Neoverse-N1"),
    ("0x41", "0xd40"): ("ARM", "Neoverse-V1"),
    ("0x41", "0xd49"): ("ARM", "Neoverse-N2"),
    ("0x41", "0xd4f"): ("ARM", "Neoverse-V2"),  # NVIDIA Grace
    ("0x41", "0xd84"): ("ARM", "Neoverse-V3"),
}
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_CPU = "sys/devices/system/cpu"


# ---------------------------------------------------------------------------
# Pure parsers: file text in, values out.


def parse_cpulist(text: str | None) -> list[int]:
    """A kernel CPU list ("0-3,8,10-11") as sorted CPU numbers; [] for None or empty."""
    cpus: set[int] = set()
    for part in (text or "").strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cpus)


def format_cpulist(cpus: Iterable[int]) -> str:
    """The inverse of parse_cpulist: [0, 1, 2, 5] -> "0-2,5"."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def parse_size(text: str | None) -> int | None:
    """A sysfs cache size ("32768K", "1M", "512") in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text or "", re.IGNORECASE)
    return int(m.group(1)) * _UNITS[m.group(2).upper()] if m else None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo (or a node's meminfo, "Node 0 " prefix dropped): kB values in bytes, counts as is."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        key = re.sub(r"^Node \d+ ", "", key.strip())
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    return values


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """/proc/cpuinfo: model, vendor, number of processors, distinct physical ids and (id, core) pairs."""
    blocks = [dict(_colon_pairs(b)) for b in re.split(r"\n\s*\n", text) if b.strip()]
    procs = [b for b in blocks if "processor" in b]
    first = procs[0] if procs else (blocks[0] if blocks else {})
    vendor = first.get("vendor_id")
    model = first.get("model name") or first.get("cpu model") or first.get("Processor")
    arm = ARM_PARTS.get((first.get("CPU implementer", ""), first.get("CPU part", "")))
    if arm and not model:
        vendor, model = vendor or arm[0], arm[1]
    elif first.get("CPU implementer") and not model:
        vendor = vendor or f"implementer {first['CPU implementer']}"
        model = f"part {first.get('CPU part', '?')}"
    packages = {b["physical id"] for b in procs if "physical id" in b}
    cores = {(b.get("physical id"), b["core id"]) for b in procs if "core id" in b}
    return {
        "model": model or "unknown",
        "vendor": vendor or "unknown",
        "processors": len(procs),
        "sockets": len(packages) or None,
        "cores": len(cores) or None,
    }


def _colon_pairs(block: str) -> Iterable[tuple[str, str]]:
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            yield key.strip(), value.strip()


def parse_bracketed(text: str | None) -> str | None:
    """The chosen value of a sysfs choice file: "always [madvise] never" -> "madvise"."""
    m = re.search(r"\[([^\]]+)\]", text or "")
    return m.group(1) if m else ((text or "").strip() or None)


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release as a dict, quotes removed."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_fields(text: str) -> list[tuple[str, str, str, str]]:
    """(device, mount point, fs type, options) of every line of /proc/self/mounts, octal escapes decoded."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            device, mountpoint, fstype, options = (_unescape(f) for f in fields[:4])
            out.append((device, mountpoint, fstype, options))
    return out


def parse_mounts(text: str) -> list[dict[str, str]]:
    """/proc/self/mounts without pseudo file systems or system tmpfs; the last mount on a path wins."""
    mounts: dict[str, dict[str, str]] = {}
    for device, mountpoint, fstype, options in mount_fields(text):
        if fstype in PSEUDO_FS or fstype.startswith("cgroup"):
            continue
        if fstype == "tmpfs" and any(
            mountpoint == d or mountpoint.startswith(d + "/") for d in SYSTEM_TMPFS_DIRS
        ):
            continue
        mounts.pop(mountpoint, None)
        mounts[mountpoint] = dict(mountpoint=mountpoint, device=device, fstype=fstype, options=options)
    return list(mounts.values())


def llc_bytes(caches: Iterable[tuple[int, str, int | None, str]]) -> int | None:
    """Total last-level cache from (level, type, size_bytes, shared_cpu_list) of every CPU's caches.

    The LLC is the highest level that holds data; each distinct shared_cpu_list
    at that level is one instance, counted once.
    """
    data = [(lvl, size, shared) for lvl, kind, size, shared in caches if kind != "Instruction" and size]
    if not data:
        return None
    top = max(lvl for lvl, _, _ in data)
    instances = {tuple(parse_cpulist(shared)): size for lvl, size, shared in data if lvl == top}
    return sum(instances.values())


# ---------------------------------------------------------------------------
# Reading a (real or fake) file system tree.


def _read(root: str, rel: str) -> str | None:
    try:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _strip(root: str, rel: str) -> str | None:
    text = _read(root, rel)
    return text.strip() if text is not None else None


def _int(root: str, rel: str) -> int | None:
    text = _strip(root, rel)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _listdir(root: str, rel: str, pattern: str) -> list[str]:
    try:
        names = os.listdir(os.path.join(root, rel))
    except OSError:
        return []
    natural = [(n, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)]) for n in names]
    return [n for n, _ in sorted(natural, key=lambda item: item[1]) if re.fullmatch(pattern, n)]


def _online_cpus(root: str, cpuinfo: dict[str, Any]) -> list[int]:
    cpus = parse_cpulist(_read(root, f"{_CPU}/online"))
    if not cpus:
        cpus = sorted(int(n[3:]) for n in _listdir(root, _CPU, r"cpu\d+"))
    return cpus or list(range(cpuinfo["processors"]))


def _cpu(root: str, cpus: list[int], cpuinfo: dict[str, Any]) -> dict[str, Any]:
    packages, cores, caches, governors = set(), set(), [], {}
    for cpu in cpus:
        base = f"{_CPU}/cpu{cpu}"
        package = _int(root, f"{base}/topology/physical_package_id")
        if package is not None:
            packages.add(package)
        siblings = _strip(root, f"{base}/topology/core_cpus_list") or _strip(
            root, f"{base}/topology/thread_siblings_list"
        )
        if siblings:
            cores.add(tuple(parse_cpulist(siblings)))
        for index in _listdir(root, f"{base}/cache", r"index\d+"):
            level = _int(root, f"{base}/cache/{index}/level")
            if level is not None:
                size = parse_size(_strip(root, f"{base}/cache/{index}/size"))
                kind = _strip(root, f"{base}/cache/{index}/type") or "Unified"
                shared = _strip(root, f"{base}/cache/{index}/shared_cpu_list") or str(cpu)
                caches.append((level, kind, size, shared))
        governor = _strip(root, f"{base}/cpufreq/scaling_governor")
        if governor:
            governors[cpu] = governor
    return {
        "model": cpuinfo["model"],
        "vendor": cpuinfo["vendor"],
        "sockets": len(packages) or cpuinfo["sockets"] or 1,
        "cores": len(cores) or cpuinfo["cores"] or len(cpus),
        "threads": len(cpus),
        "llc_bytes": llc_bytes(caches),
        "governor": governors.get(0),
        "governors": sorted(set(governors.values())),
    }


def _numa(root: str, cpus: list[int], total_bytes: int | None) -> dict[str, Any]:
    nodes = []
    for name in _listdir(root, "sys/devices/system/node", r"node\d+"):
        meminfo = parse_meminfo(_read(root, f"sys/devices/system/node/{name}/meminfo") or "")
        nodes.append(
            {
                "id": int(name[4:]),
                "cpus": parse_cpulist(_read(root, f"sys/devices/system/node/{name}/cpulist")),
                "memory_bytes": meminfo.get("MemTotal"),
            }
        )
    return {"nodes": nodes or [{"id": 0, "cpus": list(cpus), "memory_bytes": total_bytes}]}


def _memory(root: str, meminfo: dict[str, int]) -> dict[str, Any]:
    thp = "sys/kernel/mm/transparent_hugepage"
    return {
        "total_bytes": meminfo.get("MemTotal"),
        "hugepages": {
            "total": meminfo.get("HugePages_Total", 0),
            "free": meminfo.get("HugePages_Free", 0),
            "size_bytes": meminfo.get("Hugepagesize"),
        },
        "thp": {
            "enabled": parse_bracketed(_read(root, f"{thp}/enabled")),
            "defrag": parse_bracketed(_read(root, f"{thp}/defrag")),
        },
    }


def _block_devices(root: str) -> list[dict[str, Any]]:
    devices = []
    for name in _listdir(root, "sys/block", r"[^.].*"):
        if name.startswith(VIRTUAL_BLOCK_PREFIXES):
            continue
        sectors = _int(root, f"sys/block/{name}/size")
        devices.append(
            {
                "name": name,
                "model": _strip(root, f"sys/block/{name}/device/model") or None,
                "size_bytes": sectors * 512 if sectors is not None else None,  # always 512-byte units
                "rotational": _strip(root, f"sys/block/{name}/queue/rotational") == "1",
                "removable": _strip(root, f"sys/block/{name}/removable") == "1",
            }
        )
    return devices


def _package_version(name: str) -> str | None:
    from hpcbench.core.entrypoints import version

    return version(name)


def _gpus(root: str, nvml: Any) -> dict[str, Any]:
    """NVML's GPUs; where NVML lists none, also how many NVIDIA GPUs the PCI bus has (sysfs)."""
    from hpcbench.node.nvml import gpu_inventory

    gpus = gpu_inventory(nvml)
    if not gpus.get("count"):
        gpus["pci_nvidia_gpus"] = len(pci_gpus(os.path.join(root, "sys/bus/pci/devices")) or [])
    return gpus


def gpu_absence(inv: Inventory) -> tuple[str, str, str]:
    """Why a GPU check has no GPU to run on: (status, reason, hint). ``skip`` on a node without
    NVIDIA GPUs; ``error`` where the PCI bus has NVIDIA GPUs that NVML does not list (driver,
    libnvidia-ml or nvidia-ml-py missing): a broken GPU node must not pass as a CPU node."""
    gpus = inv.gpus
    on_bus = int(gpus.pci_nvidia_gpus or 0)
    if gpus.count or not on_bus:
        return ("skip", "no GPU on this node", "")
    why = gpus.reason or "NVML lists none"
    return (
        "error",
        f"no usable GPU: {why}; the PCI bus has {_plural(on_bus, 'NVIDIA GPU')}",
        "nvidia-smi shows whether the driver sees them; hpcbench reads them through nvidia-ml-py "
        "(pip install nvidia-ml-py)",
    )


def collect(root: str = "/", *, nvml: Any = None) -> Inventory:
    """This node's inventory (see the module docstring); ``nvml`` is passed to hpcbench.node.nvml."""
    cpuinfo = parse_cpuinfo(_read(root, "proc/cpuinfo") or "")
    meminfo = parse_meminfo(_read(root, "proc/meminfo") or "")
    cpus = _online_cpus(root, cpuinfo)
    os_release = parse_os_release(_read(root, "etc/os-release") or _read(root, "usr/lib/os-release") or "")
    facts = {
        "hostname": _strip(root, "proc/sys/kernel/hostname") or socket.gethostname(),
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu(root, cpus, cpuinfo),
        "numa": _numa(root, cpus, meminfo.get("MemTotal")),
        "memory": _memory(root, meminfo),
        "tunables": {"numa_balancing": _int(root, "proc/sys/kernel/numa_balancing")},
        "os": {
            "kernel": _strip(root, "proc/sys/kernel/osrelease") or platform.release(),
            "name": os_release.get("PRETTY_NAME") or os_release.get("NAME") or platform.system(),
        },
        "versions": {
            "hpcbench": __version__,
            "python": platform.python_version(),
            "torch": _package_version("torch"),
            "nvidia_ml_py": _package_version("nvidia-ml-py"),
        },
        "gpus": _gpus(root, nvml),
        "storage": {
            "block_devices": _block_devices(root),
            "mounts": parse_mounts(_read(root, "proc/self/mounts") or ""),
        },
    }
    inv = Inventory.from_dict(facts)
    gpu_addresses = [a for d in inv.gpus.devices if (a := full_address(d.pci_bus_id))]
    return replace(inv, network=nics.collect(root, gpu_addresses))


# ---------------------------------------------------------------------------
# Human-readable rendering for `hpcbench inventory`.


def human_bytes(n: int | None) -> str:
    """1024-based sizes: 33554432 -> "32 MiB", 150754820096 -> "140.4 GiB"."""
    if n is None:
        return "?"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_lines(inv: Inventory) -> list[str]:
    """One fact per line; tolerates missing sections (records from older versions)."""
    inv = inv
    cpu, mem, gpus = inv.cpu, inv.memory, inv.gpus
    governors = cpu.governors
    governor = "/".join(governors) if len(governors) > 1 else (cpu.governor or "n/a (no cpufreq)")
    lines = [
        f"Host: {inv.hostname or '?'} (collected {inv.collected_at or '?'})",
        f"CPU: {cpu.model}, {_plural(cpu.sockets or '?', 'socket')}, "
        f"{_plural(cpu.cores or '?', 'core')}, {_plural(cpu.threads or '?', 'thread')}, "
        f"LLC {human_bytes(cpu.llc_bytes)}, governor {governor}",
    ]
    for node in inv.numa.nodes:
        lines.append(
            f"NUMA node {node.id}: CPUs {format_cpulist(node.cpus) or 'none'}, "
            f"memory {human_bytes(node.memory_bytes)}"
        )
    huge, thp = mem.hugepages, mem.thp
    lines.append(
        f"Memory: {human_bytes(mem.total_bytes)}, hugepages {huge.free} free of "
        f"{huge.total} x {human_bytes(huge.size_bytes)}, "
        f"THP enabled={thp.enabled} defrag={thp.defrag}"
    )
    lines.append(f"Tunables: numa_balancing={inv.tunables.get('numa_balancing')}")
    lines.append(f"OS: {inv.os.name or '?'}, kernel {inv.os.kernel or '?'}")
    if gpus.count:
        lines.append(f"GPUs: {gpus.count}, driver {gpus.driver_version}, CUDA {gpus.cuda_version}")
        for dev in gpus.devices:
            error = f", error: {dev.error}" if dev.error else ""
            lines.append(
                f"GPU {dev.index}: {dev.name} ({dev.pci_device_id}) "
                f"at {dev.pci_bus_id}, {human_bytes(dev.memory_bytes)}{error}"
            )
    else:
        status, reason, _ = gpu_absence(inv)
        lines.append(f"GPUs: {reason}" if status == "error" else f"GPUs: none ({gpus.reason or 'unknown'})")
    for disk in inv.storage.block_devices:
        kind = "rotational" if disk.rotational else "non-rotational"
        lines.append(
            f"Disk: {disk.name} {human_bytes(disk.size_bytes)} {kind}"
            + (", removable" if disk.removable else "")
            + (f", {disk.model}" if disk.model else "")
        )
    for mount in inv.storage.mounts:
        lines.append(f"Mount: {mount.mountpoint} {mount.fstype} on {mount.device}")
    lines += nics.summary_lines(inv.network)
    lines.append("Versions: " + ", ".join(f"{k} {v or 'n/a'}" for k, v in inv.versions.items()))
    return lines
