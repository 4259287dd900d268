"""Is the node configured as the site expects: NHC's catalogue, as parameters (no load, milliseconds).

``node_health`` counts the errors the hardware reports (EDAC, AER, NVMe, kernel log); this probe
compares what the node *is* with what the site says it must be: CPU sockets, cores and online
threads; memory, swap and free memory; mounts present (an autofs trigger is not the mount),
read-write, of the expected type, source and options, with free space and inodes; processes
that must run (as their user) and must not; users with processes and no job here (Slurm);
files that must exist, contain or match; DMI/BIOS versions; the load average; commands (an
argv with a timeout) that must succeed. Each item is a count of what is wrong whose detail
names the first ones (``mount /scratch missing``); an item the suite does not configure is
SKIP. Everything is read under ``root`` (``/``, or a captured tree in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeSkip
from hpcbench.core.items import Item, to_measurements
from hpcbench.node.pci import read_text
from hpcbench.probes.base import ProbeContext, Requirement, check, report_progress

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.probes.node_config import catalog, read

NAME = "node_config"
METRICS = (
    "cpu_layout_wrong",
    "memory_wrong",
    "swap_wrong",
    "free_memory_low",
    "mounts_missing",
    "mounts_wrong",
    "mounts_full",
    "processes_missing",
    "processes_forbidden",
    "users_without_job",
    "files_wrong",
    "dmi_wrong",
    "load_high",
    "commands_failed",
)
SQUEUE = ["squeue", "--noheader", "--nodelist", "{host}", "--format", "%u"]


def _parsed(key: str, kind: str, texts: list[str]) -> list[Any]:
    """``texts`` parsed by ``specs.<kind>``; ParamError naming ``key`` for the first refused. The
    parsers are imported only where there is something to parse (``hpcbench list`` builds the
    defaults, all empty)."""
    if not texts:
        return []
    from hpcbench.probes.node_config import specs

    out = []
    for t in texts:
        try:
            out.append(getattr(specs, kind)(t))
        except specs.SpecError as exc:
            check(False, NAME, key, str(exc))
    return out


@dataclass(frozen=True)
class NodeConfigParams:
    cpu_sockets: int = field(default=0, metadata={"help": "CPU sockets the node must have; 0 = not checked"})
    cpu_cores: int = field(default=0, metadata={"help": "physical cores (all sockets); 0 = not checked"})
    cpu_threads: int = field(default=0, metadata={"help": "online logical CPUs; 0 = not checked"})
    memory_gib: float = field(default=0.0, metadata={"help": "expected MemTotal in GiB; 0 = not checked"})
    memory_tolerance: float = field(default=0.03, metadata={"help": "MemTotal may differ by this fraction"})
    swap_min_gib: float = field(
        default=0.0, metadata={"help": "SwapTotal at least (GiB); 0 = no lower limit"}
    )
    swap_max_gib: float = field(
        default=-1.0, metadata={"help": "SwapTotal at most (GiB); -1 = no upper limit"}
    )
    free_memory_min_gib: float = field(default=0.0, metadata={"help": "MemAvailable at least (GiB); 0 = off"})
    mounts: list[str] = field(
        default_factory=list,
        metadata={"help": "'/scratch type=lustre source=... options=a,b rw free=10% inodes=5%' each"},
    )
    processes: list[str] = field(
        default_factory=list, metadata={"help": "processes that must run: name[@user]"}
    )
    forbidden_processes: list[str] = field(
        default_factory=list, metadata={"help": "processes that must not run"}
    )
    check_job_users: bool = field(
        default=False, metadata={"help": "users (uid >= min_uid) with processes must have a job here (Slurm)"}
    )
    job_users_command: list[str] = field(
        default_factory=lambda: list(SQUEUE), metadata={"help": "prints the users with a job on {host}"}
    )
    min_uid: int = field(default=1000, metadata={"help": "users below this uid are system users"})
    allowed_users: list[str] = field(default_factory=list, metadata={"help": "users allowed without a job"})
    files: list[str] = field(
        default_factory=list,
        metadata={"help": "'/path' (exists), '/path contains=TEXT', '/path matches=REGEX'"},
    )
    dmi: list[str] = field(
        default_factory=list, metadata={"help": "'bios_version=2.1.*' (/sys/class/dmi/id)"}
    )
    load_max: float = field(default=0.0, metadata={"help": "1-minute load average at most; 0 = not checked"})
    commands: list[str] = field(
        default_factory=list, metadata={"help": "'[timeout=S] [match=REGEX] -- argv...': must exit 0"}
    )
    root: str = field(default="/", metadata={"help": "where /proc, /sys and /etc are read (tests: a tree)"})

    def __post_init__(self) -> None:
        for key in ("cpu_sockets", "cpu_cores", "cpu_threads", "min_uid"):
            check(getattr(self, key) >= 0, NAME, key, f"must be >= 0, got {getattr(self, key)}")
        check(0 <= self.memory_tolerance < 1, NAME, "memory_tolerance", "must be in [0, 1)")
        check(os.path.isdir(self.root), NAME, "root", f"{self.root!r} is not a folder")
        _parsed("mounts", "mount", self.mounts)
        _parsed("processes", "process", self.processes)
        _parsed("files", "file", self.files)
        _parsed("dmi", "dmi", self.dmi)
        _parsed("commands", "command", self.commands)
        check(not self.check_job_users or bool(self.job_users_command), NAME, "job_users_command", "empty")


#: file-system types worth expecting at a mount point (not proc, sysfs, tmpfs, cgroup, overlay...)
REAL_FS = (
    "ext4",
    "xfs",
    "btrfs",
    "zfs",
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cifs",
    "cephfs",
    "wekafs",
)
#: daemons a golden node's suite may expect, when they run there
DAEMONS = (
    "slurmd", "munged", "sshd", "chronyd", "ntpd", "nvidia-persiste", "nv-fabricmanage", "nv-hostengine",
    "dcgm-exporter", "node_exporter", "rasdaemon", "mcelog", "lustre_rmmod", "opensm", "sssd", "nslcd",
)  # fmt: skip


def observe(root: str, procs: list[read.Proc] | None) -> dict[str, Any]:
    """What this node is, for ``hpcbench baseline create --site-suite``: the values a site's
    health suite expects of nodes like it (read once more, cheaply, whatever the suite asked)."""
    from hpcbench.probes.node_config import catalog, read

    layout = read.cpu_layout(root)
    meminfo = read.meminfo(read_text(os.path.join(root, "proc/meminfo")) or "")
    mounts = read.read_mounts(root) or {}
    procs = procs if procs is not None else read.processes(root)
    running = sorted({(p.comm, catalog.user_name(root, p.uid)) for p in procs or [] if p.comm in DAEMONS})
    out: dict[str, Any] = {
        "mounts": [
            {"path": e.point, "type": e.fstype, "source": e.source, "rw": "rw" in e.options}
            for e in sorted(mounts.values(), key=lambda e: e.point)
            if e.fstype in REAL_FS
        ],
        "daemons": [f"{name}@{user}" for name, user in running],
        "dmi": {k: v for k in ("bios_version", "product_name") if (v := read.dmi(root, k))},
    }
    if layout is not None:
        out.update(cpu_sockets=layout.sockets, cpu_cores=layout.cores, cpu_threads=layout.threads)
    if "MemTotal" in meminfo:
        out["memory_gib"] = round(meminfo["MemTotal"] / 2**20, 3)
        out["swap_gib"] = round(meminfo.get("SwapTotal", 0) / 2**20, 3)
    return out


class NodeConfig:
    """NHC's catalogue: CPU layout, memory, mounts, processes, users, files, DMI, load, commands."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "node configuration as the site expects (no load): CPUs, memory, mounts, daemons, users, files, BIOS"
    )
    Params: ClassVar[type] = NodeConfigParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    no_load: ClassVar[bool] = True

    def __init__(self, statvfs: catalog.Statvfs | None = None, host: str | None = None) -> None:
        self.statvfs = statvfs or os.statvfs
        self.host = host

    def run(self, params: NodeConfigParams, ctx: ProbeContext) -> list[Measurement]:
        import socket

        from hpcbench.probes.node_config import catalog, read, specs

        root = params.root

        def step(what: str) -> None:  # a read that may hang says what it is, for the watchdog
            report_progress(ctx, what)

        procs = None
        if params.processes or params.forbidden_processes or params.check_job_users:
            procs = read.processes(root)
        users: Item
        if params.check_job_users:
            host = self.host or socket.gethostname().split(".")[0]
            step(f"job users: {' '.join(params.job_users_command)}")
            job_users, why = catalog.job_users(params.job_users_command, host, 10.0)
            users = catalog.users_item(root, procs, job_users, why, params.min_uid, params.allowed_users)
        else:
            users = Item("users_without_job", not_measured="not asked (check_job_users)")
        meminfo = read_text(os.path.join(root, "proc/meminfo"))
        items = [
            catalog.cpu_item(read.cpu_layout(root), params.cpu_sockets, params.cpu_cores, params.cpu_threads),
            *catalog.memory_items(
                read.meminfo(meminfo) if meminfo is not None else None,
                params.memory_gib,
                params.memory_tolerance,
                params.swap_min_gib,
                params.swap_max_gib,
                params.free_memory_min_gib,
            ),
            *catalog.mount_items(
                root, read.read_mounts(root), [specs.mount(m) for m in params.mounts], self.statvfs, step
            ),
            *catalog.process_items(
                root,
                procs,
                [specs.process(p) for p in params.processes],
                params.forbidden_processes,
            ),
            users,
            catalog.file_item(root, [specs.file(f) for f in params.files], step),
            catalog.dmi_item(root, [specs.dmi(d) for d in params.dmi]),
            catalog.load_item(read_text(os.path.join(root, "proc/loadavg")), params.load_max),
            catalog.command_item([specs.command(c) for c in params.commands], step),
        ]
        if all(i.value is None and not i.error for i in items):
            raise ProbeSkip("nothing to compare with: the suite sets none of node_config's expectations")
        settings: dict[str, Any] = {"root": root, "observed": observe(root, procs)}
        return to_measurements(items, ctx.subject, settings, "/proc, /sys and /etc as the site expects them")
