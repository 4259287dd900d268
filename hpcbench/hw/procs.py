"""The processes of a node from /proc under a root folder: name (comm) and real user id.

Shared by node_config (daemons that must run, users without a job) and gpu_services
(nvidia-persistenced, nv-fabricmanager, nv-hostengine).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hpcbench.node.pci import read_text

_UID = re.compile(r"^Uid:\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    uid: int


def processes(root: str) -> list[Proc] | None:
    """Every process's name (/proc/PID/comm) and real user id; None when /proc is not readable."""
    base = os.path.join(root, "proc")
    try:
        pids = [int(n) for n in os.listdir(base) if n.isdigit()]
    except OSError:
        return None
    out = []
    for pid in sorted(pids):
        comm = read_text(f"{base}/{pid}/comm")
        status = read_text(f"{base}/{pid}/status")
        m = _UID.search(status or "")
        if comm is None or m is None:  # it ended while we read
            continue
        out.append(Proc(pid, comm.strip(), int(m[1])))
    return out
