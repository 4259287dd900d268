"""Server and client processes of a bandwidth tool (perftest, iperf3): argv lists, timeouts, output.

The server is started first; the client starts once the server listens on its TCP port, which
is read from /proc/net/tcp (a probe connection would be taken for a client by a one-off server):
the listening socket must be the server's own (its inode among /proc/<pid>/fd), so a stale
perftest or iperf3 still holding the port is named instead of being taken for the new server.
``cpus`` pins a tool to CPUs (a NIC's local CPUs), as ``taskset`` would.
Outputs go to files (no pipe can fill and block a tool); every wait has a timeout, after which
the process is killed and the error says which side hung.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpcbench.core.errors import ProbeError

#: what to install for each tool (Debian/Ubuntu package, RHEL/Rocky package)
PERFTEST = "install perftest: apt-get install perftest (Debian/Ubuntu) or dnf install perftest (RHEL/Rocky)"
INSTALL = {
    "ib_write_bw": PERFTEST,
    "ib_read_lat": PERFTEST,
    "iperf3": "install iperf3: apt-get install iperf3 (Debian/Ubuntu) or dnf install iperf3 (RHEL/Rocky)",
}
POLL_S = 0.05
LISTEN = "0A"


class ToolFailed(Exception):
    """A server or client did not do its part; the message says which and why."""


def require(tool: str) -> str:
    """The tool's path; ProbeError (ERROR) naming the package to install when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise ProbeError(f"{tool} not found on PATH", hint=INSTALL.get(tool, ""))
    return path


def listening_sockets(text: str) -> dict[int, set[int]]:
    """TCP port -> socket inodes in LISTEN state, from the text of /proc/net/tcp or tcp6."""
    found: dict[int, set[int]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == LISTEN:
            with contextlib.suppress(ValueError, IndexError):
                found.setdefault(int(fields[1].rsplit(":", 1)[1], 16), set()).add(int(fields[9]))
    return found


def listening_ports(text: str) -> set[int]:
    """TCP ports in LISTEN state in the text of /proc/net/tcp or /proc/net/tcp6."""
    return set(listening_sockets(text))


def _listeners(port: int, proc: str) -> set[int]:
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            text = Path(proc, "net", name).read_text()
        except OSError:
            continue
        inodes |= listening_sockets(text).get(port, set())
    return inodes


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """The socket inodes a process holds open (its /proc/<pid>/fd links ``socket:[N]``)."""
    inodes = set()
    folder = Path(proc, str(pid), "fd")
    with contextlib.suppress(OSError):
        for fd in folder.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def holder(port: int, proc: str = "/proc") -> str:
    """Who listens on ``port``: ``pid 123 (ib_write_bw)``, or ``another process`` when its
    /proc entry cannot be read (another user's process, without root)."""
    inodes = _listeners(port, proc)
    with contextlib.suppress(OSError):
        for entry in Path(proc).iterdir():
            if entry.name.isdigit() and socket_inodes(int(entry.name), proc) & inodes:
                comm = (entry / "comm").read_text().strip() if (entry / "comm").exists() else "?"
                return f"pid {entry.name} ({comm})"
    return "another process"


def is_listening(port: int, proc: str = "/proc", pid: int | None = None) -> bool:
    """Whether ``port`` is in LISTEN state; with ``pid``, by a socket of that process."""
    inodes = _listeners(port, proc)
    if pid is None:
        return bool(inodes)
    return bool(inodes & socket_inodes(pid, proc))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """A running process whose output goes to a file."""

    proc: subprocess.Popen[bytes]
    output: Path
    argv: list[str]

    def text(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 3) -> str:
        kept = [ln.strip() for ln in self.text().splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def start(argv: list[str], workdir: str, name: str, cpus: frozenset[int] | None = None) -> Started:
    out = Path(workdir or ".") / f"{name}.out"
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with open(out, "wb") as fh:
        proc = subprocess.Popen(  # noqa: PLW1509 (the child makes one sched_setaffinity call before exec)
            argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin
        )
    return Started(proc, out, argv)


def port_free(port: int, proc: str = "/proc") -> None:
    """ToolFailed naming the holder when ``port`` is already listened on (a stale server)."""
    if is_listening(port, proc):
        raise ToolFailed(
            f"port {port} is already held by {holder(port, proc)}: a stale perftest or iperf3 server? "
            "(stop it, or choose another port)"
        )


def wait_listening(
    server: Started, port: int, timeout: float, explain: Callable[[str], str | None] | None = None
) -> None:
    """Until the server itself listens on ``port``; ``explain(output)`` picks the error line of
    a server that exits first (else its last lines)."""
    deadline = time.monotonic() + timeout
    while not is_listening(port, pid=server.proc.pid):
        if server.proc.poll() is not None:
            why = (explain(server.text()) if explain else None) or server.tail() or "no output"
            raise ToolFailed(
                f"{server.argv[0]} server exited with status {server.proc.returncode} before listening "
                f"on port {port}: {why}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise ToolFailed(f"{server.argv[0]} server did not listen on port {port} within {timeout:g} s")
        time.sleep(POLL_S)


def wait(started: Started, timeout: float, side: str) -> str:
    """The process's output once it exits; ToolFailed when it does not exit within ``timeout``."""
    try:
        started.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        started.stop()
        raise ToolFailed(
            f"{started.argv[0]} {side} did not finish within {timeout:g} s and was killed "
            f"({started.tail() or 'no output'})"
        ) from None
    return started.text()


def server_client(
    server_argv: list[str],
    client_argv: list[str],
    port: int,
    workdir: str,
    timeout: float,
    name: str,
    explain: Callable[[str], str | None] | None = None,
    cpus: frozenset[int] | None = None,
) -> tuple[str, str, int]:
    """Run a server, then its client; (client output, server output, client exit status)."""
    port_free(port)
    server = start(server_argv, workdir, f"{name}-server", cpus)
    try:
        wait_listening(server, port, min(timeout, 15.0), explain)
        client = start(client_argv, workdir, f"{name}-client", cpus)
        try:
            client_out = wait(client, timeout, "client")
        finally:
            client.stop()
        server_out = wait(server, 15.0, "server") if client.proc.returncode == 0 else server.text()
        return client_out, server_out, client.proc.returncode
    finally:
        server.stop()
        for side in ("server", "client"):
            with contextlib.suppress(OSError):
                os.unlink(Path(workdir or ".") / f"{name}-{side}.out")
