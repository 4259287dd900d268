"""NHC's catalogue as items: each a count of what is wrong, the detail naming the first ones.

Every function takes what was read (or the root to read under) and the expected values, and
returns one ``Item``; an item nobody configured is ``not_measured`` (SKIP), never a PASS that
checked nothing. A detail starts with the item's kind and name (``mount /scratch missing``), so
the one line Slurm shows as the drain reason names what to fix.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Callable, Sequence

from hpcbench.core.items import Item
from hpcbench.node.pci import read_text
from hpcbench.probes.node_config import read, specs

_KIB_PER_GIB = 2**20
#: how many failing names a detail lists before "and N more"
SHOWN = 3


def _count(metric: str, wrong: list[str], ok: str) -> Item:
    if not wrong:
        return Item(metric, 0.0, detail=ok)
    more = f" and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
    return Item(metric, float(len(wrong)), detail="; ".join(wrong[:SHOWN]) + more)


def cpu_item(layout: read.CpuLayout | None, sockets: int, cores: int, threads: int) -> Item:
    """Sockets, physical cores and online threads against the expected ones (0: not checked)."""
    if not (sockets or cores or threads):
        return Item(
            "cpu_layout_wrong", not_measured="no expected CPU layout (cpu_sockets, cpu_cores, cpu_threads)"
        )
    if layout is None:
        return Item("cpu_layout_wrong", error="sys/devices/system/cpu/online not readable")
    wrong = [
        f"cpu {what} {have}, expected {want}"
        for what, have, want in (
            ("sockets", layout.sockets, sockets),
            ("cores", layout.cores, cores),
            ("threads", layout.threads, threads),
        )
        if want and have != want
    ]
    have = f"{layout.sockets} sockets, {layout.cores} cores, {layout.threads} threads online"
    return _count("cpu_layout_wrong", wrong, have)


def memory_items(
    info: dict[str, int] | None,
    memory_gib: float,
    tolerance: float,
    swap_min: float,
    swap_max: float,
    free_min: float,
) -> list[Item]:
    """MemTotal within ``tolerance`` of ``memory_gib``; SwapTotal in [swap_min, swap_max] GiB
    (a negative swap_max: no upper limit); MemAvailable at least ``free_min`` GiB."""
    names = ("memory_wrong", "swap_wrong", "free_memory_low")
    if info is None or "MemTotal" not in info:
        return [Item(n, error="proc/meminfo not readable") for n in names]
    total = info["MemTotal"] / _KIB_PER_GIB
    swap = info.get("SwapTotal", 0) / _KIB_PER_GIB
    avail = info.get("MemAvailable", info.get("MemFree", 0)) / _KIB_PER_GIB
    out = []
    if memory_gib > 0:
        low, high = memory_gib * (1 - tolerance), memory_gib * (1 + tolerance)
        bad = (
            []
            if low <= total <= high
            else [f"memory {total:.1f} GiB, expected {memory_gib:g} GiB ±{tolerance:.0%}"]
        )
        out.append(_count("memory_wrong", bad, f"memory {total:.1f} GiB"))
    else:
        out.append(Item("memory_wrong", not_measured="no expected memory (memory_gib)"))
    if swap_min > 0 or swap_max >= 0:
        bad = []
        if swap < swap_min:
            bad.append(f"swap {swap:.1f} GiB, expected at least {swap_min:g} GiB")
        if swap_max >= 0 and swap > swap_max:
            bad.append(f"swap {swap:.1f} GiB, expected at most {swap_max:g} GiB")
        out.append(_count("swap_wrong", bad, f"swap {swap:.1f} GiB"))
    else:
        out.append(Item("swap_wrong", not_measured="no swap limits (swap_min_gib, swap_max_gib)"))
    if free_min > 0:
        bad = (
            [] if avail >= free_min else [f"free memory {avail:.1f} GiB, expected at least {free_min:g} GiB"]
        )
        out.append(_count("free_memory_low", bad, f"free memory {avail:.1f} GiB"))
    else:
        out.append(Item("free_memory_low", not_measured="no free-memory limit (free_memory_min_gib)"))
    return out


Statvfs = Callable[[str], os.statvfs_result]


def mount_items(
    root: str,
    mounted: dict[str, read.MountEntry] | None,
    wanted: Sequence[specs.MountSpec],
    statvfs: Statvfs,
    step: Callable[[str], None],
) -> list[Item]:
    """``mounts_missing`` (an autofs trigger alone is missing), ``mounts_wrong`` (read-only where
    rw is asked, another type, source or a missing option), ``mounts_full`` (free space or free
    inodes below the limit)."""
    names = ("mounts_missing", "mounts_wrong", "mounts_full")
    if not wanted:
        return [Item(n, not_measured="no expected mounts (mounts)") for n in names]
    if mounted is None:
        return [Item(n, error="proc/self/mounts not readable") for n in names]
    missing, wrong, full = [], [], []
    for m in wanted:
        e = mounted.get(m.path)
        if e is None:
            missing.append(f"mount {m.path} missing")
            continue
        if m.rw and "rw" not in e.options:
            wrong.append(f"mount {m.path} read-only")
        if m.fstype and e.fstype != m.fstype:
            wrong.append(f"mount {m.path} type {e.fstype}, expected {m.fstype}")
        if m.source and e.source != m.source:
            wrong.append(f"mount {m.path} source {e.source}, expected {m.source}")
        absent = [o for o in m.options if o not in e.options]
        if absent:
            wrong.append(f"mount {m.path} without option {','.join(absent)}")
        if m.free or m.inodes:
            step(f"statvfs {m.path}")
            st = statvfs(os.path.join(root, m.path.lstrip("/")))
            if m.free and not m.free.met(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize):
                gib = st.f_bavail * st.f_frsize / 2**30
                pct = 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 0.0
                full.append(f"mount {m.path} free {gib:.1f} GiB ({pct:.1f}%), expected {m.free.text()}")
            if m.inodes and not m.inodes.met(st.f_favail, st.f_files):
                full.append(
                    f"mount {m.path} free inodes {st.f_favail} of {st.f_files}, expected {m.inodes.text()}"
                )
    return [
        _count("mounts_missing", missing, f"all {len(wanted)} mounted"),
        _count("mounts_wrong", wrong, "as expected"),
        _count(
            "mounts_full",
            full,
            "above their limits" if any(m.free or m.inodes for m in wanted) else "no limits",
        ),
    ]


def user_name(root: str, uid: int) -> str:
    """A user id's name from ROOT/etc/passwd, else (on this node) the name service; else the id."""
    for line in (read_text(os.path.join(root, "etc/passwd")) or "").splitlines():
        f = line.split(":")
        if len(f) > 2 and f[2] == str(uid):
            return f[0]
    if os.path.realpath(root) == "/":
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
    return str(uid)


def process_items(
    root: str,
    procs: list[read.Proc] | None,
    must: Sequence[specs.ProcessSpec],
    must_not: Sequence[str],
) -> list[Item]:
    """``processes_missing`` (a daemon not running, or not as its user), ``processes_forbidden``."""
    if procs is None and (must or must_not):
        return [Item(n, error="proc not readable") for n in ("processes_missing", "processes_forbidden")]
    names: dict[str, set[str]] = {}
    for p in procs or []:
        names.setdefault(p.comm, set()).add(user_name(root, p.uid))
    out = []
    if must:
        gone = []
        for s in must:
            users = names.get(s.name[:15])  # comm is cut at 15 characters
            if users is None:
                gone.append(f"process {s.name} not running")
            elif s.user and s.user not in users:
                gone.append(f"process {s.name} not running as {s.user} (as {', '.join(sorted(users))})")
        out.append(_count("processes_missing", gone, f"all {len(must)} running"))
    else:
        out.append(Item("processes_missing", not_measured="no processes that must run (processes)"))
    if must_not:
        found = [f"process {n} running (forbidden)" for n in must_not if n[:15] in names]
        out.append(_count("processes_forbidden", found, f"none of {len(must_not)} running"))
    else:
        out.append(Item("processes_forbidden", not_measured="no forbidden processes (forbidden_processes)"))
    return out


def users_item(
    root: str,
    procs: list[read.Proc] | None,
    job_users: set[str] | None,
    why_not: str,
    min_uid: int,
    allowed: Sequence[str],
) -> Item:
    """``users_without_job``: users (uid >= ``min_uid``) with processes here and no job here."""
    if job_users is None:
        return Item("users_without_job", not_measured=why_not)
    if procs is None:
        return Item("users_without_job", error="proc not readable")
    strays: dict[str, int] = {}
    for p in procs:
        if p.uid < min_uid:
            continue
        name = user_name(root, p.uid)
        if name not in job_users and name not in allowed:
            strays[name] = strays.get(name, 0) + 1
    wrong = [f"user {u} has {n} process(es) and no job here" for u, n in sorted(strays.items())]
    return _count("users_without_job", wrong, f"{len(job_users)} user(s) with jobs; no stray processes")


def file_item(root: str, wanted: Sequence[specs.FileSpec], step: Callable[[str], None]) -> Item:
    """``files_wrong``: a file absent, or without the text or the pattern it must hold."""
    if not wanted:
        return Item("files_wrong", not_measured="no expected files (files)")
    wrong = []
    for f in wanted:
        step(f"read {f.path}")
        path = os.path.join(root, f.path.lstrip("/"))
        if not (f.contains or f.matches):
            if not os.path.exists(path):
                wrong.append(f"file {f.path} missing")
            continue
        text = read_text(path)
        if text is None:
            wrong.append(f"file {f.path} missing or unreadable")
        elif f.contains and f.contains not in text:
            wrong.append(f"file {f.path} lacks {f.contains!r}")
        elif f.matches and not f.matches.search(text):
            wrong.append(f"file {f.path} does not match {f.matches.pattern!r}")
    return _count("files_wrong", wrong, f"all {len(wanted)} as expected")


def dmi_item(root: str, wanted: Sequence[specs.DmiSpec]) -> Item:
    """``dmi_wrong``: a BIOS/board/product field of /sys/class/dmi/id not as expected."""
    if not wanted:
        return Item("dmi_wrong", not_measured="no expected DMI values (dmi)")
    wrong = []
    for d in wanted:
        have = read.dmi(root, d.key)
        if have is None:
            wrong.append(f"dmi {d.key} unreadable, expected {d.expected}")
        elif not fnmatch.fnmatchcase(have, d.expected):
            wrong.append(f"dmi {d.key} {have}, expected {d.expected}")
    return _count("dmi_wrong", wrong, f"all {len(wanted)} as expected")


def load_item(text: str | None, load_max: float) -> Item:
    """``load_high``: the 1-minute load average above ``load_max``."""
    if load_max <= 0:
        return Item("load_high", not_measured="no load limit (load_max)")
    got = read.loadavg(text or "")
    if got is None:
        return Item("load_high", error="proc/loadavg not readable")
    bad = [f"load {got[0]:g} (1 min), expected at most {load_max:g}"] if got[0] > load_max else []
    return _count("load_high", bad, f"load {got[0]:g} {got[1]:g} {got[2]:g}")


def command_item(commands: Sequence[specs.CommandSpec], step: Callable[[str], None]) -> Item:
    """``commands_failed``: a command that exits non-zero, does not end in its timeout, or whose
    output lacks its pattern."""
    if not commands:
        return Item("commands_failed", not_measured="no commands (commands)")
    wrong = []
    for c in commands:
        step(f"command {c.text()}")
        try:
            done = subprocess.run(
                list(c.argv),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=c.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            wrong.append(f"command {c.text()} did not end in {c.timeout:g} s")
            continue
        except OSError as exc:
            wrong.append(f"command {c.text()} could not start: {exc.strerror or exc}")
            continue
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()
            tail = f": {last[-1][:100]}" if last else ""
            wrong.append(f"command {c.text()} exited {done.returncode}{tail}")
        elif c.match and not c.match.search(done.stdout):
            wrong.append(f"command {c.text()} output does not match {c.match.pattern!r}")
    return _count("commands_failed", wrong, f"all {len(commands)} succeeded")


def job_users(argv: Sequence[str], host: str, timeout: float) -> tuple[set[str] | None, str]:
    """The users with a job on this node from Slurm (``squeue`` by default), or None and why not."""
    import shutil

    args = [a.replace("{host}", host) for a in argv]
    if not args or shutil.which(args[0]) is None:
        return None, f"{args[0] if args else 'no command'} not found: no Slurm here to say who has a job"
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return None, f"{args[0]}: {exc}"
    if done.returncode != 0:
        return None, f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:120]}"
    return {u for u in re.split(r"\s+", done.stdout) if u}, ""
