#!/usr/bin/env python3
"""The system tools a make target needs, installed where this user may, else the one command to run.

    python3 scripts/ensure_tools.py bench      # fio, nvme-cli
    python3 scripts/ensure_tools.py test       # those, iperf3, Slurm, munge, node_exporter, promtool
    python3 scripts/ensure_tools.py suites     # all a bundled suite may run: fio, nvme-cli, iperf3, perftest
    python3 scripts/ensure_tools.py --check test

Run by ``make bench`` and ``make test`` before anything else, with the system python3 (the
standard library only: the virtualenv may not exist yet). Nothing missing: silent, exit 0.
Something missing, as root with apt-get or dnf (and HPCBENCH_NO_INSTALL unset): installs the
packages, then checks again. Otherwise: one line naming what is missing and the command that
installs it, exit 2. ``--check`` never installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

INSTALL_TIMEOUT_S = 1800
#: folders searched besides PATH (a user's PATH often lacks the daemons in sbin)
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class Tool:
    command: str  # what must be found
    deb: str  # the Debian/Ubuntu package that provides it
    rpm: str  # the RHEL/Rocky/Fedora package (EPEL where the distribution lacks it)
    why: str


TOOLS = {
    "fio": Tool("fio", "fio", "fio", "the storage probe"),
    "nvme": Tool("nvme", "nvme-cli", "nvme-cli", "node_health's NVMe SMART log"),
    "iperf3": Tool("iperf3", "iperf3", "iperf3", "network_tcp and network_pairs (TCP bandwidth)"),
    "perftest": Tool("ib_write_bw", "perftest", "perftest", "network_rdma (RDMA bandwidth and latency)"),
    "slurmctld": Tool("slurmctld", "slurmctld", "slurm-slurmctld", "the Slurm tests"),
    "slurmd": Tool("slurmd", "slurmd", "slurm-slurmd", "the Slurm tests"),
    "scontrol": Tool("scontrol", "slurm-client", "slurm", "slurm-check and the Slurm tests"),
    "munged": Tool("munged", "munge", "munge", "the Slurm tests"),
    "losetup": Tool("losetup", "mount", "util-linux", "the storage tests' loop device"),
    "ip": Tool("ip", "iproute2", "iproute", "the network_pairs tests' network namespaces"),
    "tc": Tool("tc", "iproute2", "iproute-tc", "the network_pairs tests' paced rails"),
    "node_exporter": Tool(
        "prometheus-node-exporter",
        "prometheus-node-exporter",
        "golang-github-prometheus-node-exporter",
        "the Prometheus tests",
    ),
    "promtool": Tool(
        "promtool", "prometheus", "golang-github-prometheus", "the Prometheus textfile's lint test"
    ),
}
TARGETS = {
    "bench": ("fio", "nvme"),
    "test": (
        "fio",
        "nvme",
        "iperf3",
        "perftest",
        "ip",
        "tc",
        "losetup",
        "slurmctld",
        "slurmd",
        "scontrol",
        "munged",
        "node_exporter",
        "promtool",
    ),
    # acceptance and nightly on an RDMA node (network_rdma), the network-pairs suite (iperf3);
    # `test` runs the distribution's perftest for what it does without an RDMA device
    "suites": ("fio", "nvme", "iperf3", "perftest"),
}


def found(command: str, path: str | None = None) -> bool:
    return shutil.which(command, path=path) is not None or any(
        os.access(os.path.join(d, command), os.X_OK) for d in SBIN
    )


def missing(names: tuple[str, ...], path: str | None = None) -> list[Tool]:
    return [TOOLS[n] for n in names if not found(TOOLS[n].command, path)]


def package_manager(path: str | None = None) -> str | None:
    """apt-get or dnf, whichever this system has (apt-get first), or None."""
    return next((pm for pm in ("apt-get", "dnf") if shutil.which(pm, path=path)), None)


def packages(tools: list[Tool], manager: str | None) -> list[str]:
    return list(dict.fromkeys(t.rpm if manager == "dnf" else t.deb for t in tools))


def install_commands(tools: list[Tool], manager: str) -> list[list[str]]:
    """The argv lists that install ``tools`` with ``manager``."""
    pkgs = packages(tools, manager)
    if manager == "apt-get":
        return [
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
        ]
    return [["dnf", "install", "-y", "-q", *pkgs]]


def advice(tools: list[Tool], manager: str | None, root: bool) -> str:
    """The one line for a user who has to install ``tools`` themselves."""
    what = ", ".join(f"{t.command} ({t.why})" for t in tools)
    if manager is None:
        debs, rpms = " ".join(packages(tools, "apt-get")), " ".join(packages(tools, "dnf"))
        how = f"install the packages {debs} (Debian/Ubuntu) or {rpms} (RHEL/Fedora)"
    else:
        sudo = "" if root else "sudo "
        cmd = install_commands(tools, manager)[-1]
        how = f"{sudo}{' '.join(a for a in cmd if a not in ('-qq', '-q', '--no-install-recommends'))}"
    return f"make: missing {what}; run: {how}"


def main(argv: list[str]) -> int:
    check_only = "--check" in argv
    names = [a for a in argv if not a.startswith("--")]
    if len(names) != 1 or names[0] not in TARGETS:
        print(f"usage: ensure_tools.py [--check] {{{'|'.join(TARGETS)}}}", file=sys.stderr)
        return 4
    needed = TARGETS[names[0]]
    absent = missing(needed)
    if not absent:
        return 0
    manager = package_manager()
    root = os.geteuid() == 0
    if check_only or not root or manager is None or os.environ.get("HPCBENCH_NO_INSTALL"):
        print(advice(absent, manager, root), file=sys.stderr)
        return 2
    print(f"make: installing {' '.join(packages(absent, manager))} with {manager}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in install_commands(absent, manager):
        try:
            done = subprocess.run(cmd, env=env, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"make: {' '.join(cmd)} failed: {exc}", file=sys.stderr)
            return 2
        if done.returncode != 0:
            print(f"make: {' '.join(cmd)} exited with {done.returncode}", file=sys.stderr)
            return 2
    still = missing(needed)
    if still:
        print(advice(still, manager, root) + " (installing did not provide it)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
