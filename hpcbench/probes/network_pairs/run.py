"""One node's part of network_pairs under torchrun or srun: join, run the rounds, gather.

Every rank is one node. The ranks meet on the launch's TCPStore (``hpcbench.launch.rendezvous``,
key space ``hpcbench/network/``), announce the address of each rail their iperf3 servers listen
on (one address when no rail is named: the route to MASTER_ADDR), and go through the rounds of
``pairs.rounds``: in each pair both nodes send once, the receiver running one-off ``iperf3 -s -1``
servers (one per rail and process, port ``base_port + (rank * rails + rail) * processes + k``) and
saying so in the store, the sender running the clients of every rail at once, each bound to its
own rail address (rail i of A to rail i of B), and putting the result per rail in the store.
Before iperf3 3.16 one process sends all its streams from one thread: ``processes`` clients of one
stream each then carry the streams, and their receiver rates are summed. A barrier closes each
round, so the pairs of one round run at once and rounds do not overlap. In the end every rank
reads every pair's result, so every node computes the same analysis and writes its own record.

Imports torch (through the rendezvous); only the probe's child process under a launch does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hpcbench.hw.net import iperf, perftest, procs
from hpcbench.launch.launcher import LaunchEnv
from hpcbench.launch.rendezvous import RankFailure, Rendezvous
from hpcbench.probes.network_pairs.pairs import PairResult, rounds

POLL_S = 0.05
#: beyond the test's duration, how long a side waits for the other before it gives up
SLACK_S = 30.0


@dataclass(frozen=True)
class PairsConfig:
    meet: str
    duration_s: float
    streams: int
    bitrate: str
    base_port: int
    address: str  # "" = the address this node reaches MASTER_ADDR from; an interface name; or an IP
    timeout: float
    workdir: str
    rails: tuple[str, ...] = ()  # interfaces (or IPs), rail i of every node; () = one address
    processes: int = 1  # iperf3 client processes per rail and direction, each -P streams/processes
    #: "rdma": ib_write_bw between this node's rail i (endpoints[i]) and the peer's, out of band
    #: over the node's address; "tcp": iperf3 over the rails' addresses
    transport: str = "tcp"
    endpoints: tuple[perftest.Endpoint, ...] = ()
    rdma_bytes: int = 8388608


#: iperf3 from this version on runs each stream in its own thread (one process is enough)
THREADED = (3, 16)


def iperf3_version(text: str) -> tuple[int, int] | None:
    """``iperf 3.12 (cJSON 1.7.15)`` -> (3, 12)."""
    m = re.search(r"iperf (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def processes_for(streams: int, version: tuple[int, int] | None) -> int:
    """Client processes per rail and direction: one per stream before iperf3 3.16 (or unknown)."""
    return 1 if version is not None and version >= THREADED else streams


def local_iperf3_version() -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            ["iperf3", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return iperf3_version(done.stdout + done.stderr)


def interface_ipv4(name: str) -> str | None:
    """An interface's IPv4 address (SIOCGIFADDR); None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def my_address(address: str, launch: LaunchEnv) -> str:
    """The address other nodes reach this node's iperf3 server at."""
    if address:
        return interface_ipv4(address) or address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((launch.master_addr, launch.master_port))  # UDP: no packet is sent
        return str(s.getsockname()[0])


class _Node:
    def __init__(self, cfg: PairsConfig, launch: LaunchEnv, rdzv: Rendezvous, members: list[dict[str, Any]]):
        self.cfg, self.launch, self.rdzv, self.members = cfg, launch, rdzv, members
        self.me = launch.rank
        self.store = rdzv.store
        self.n_rails = max(1, len(cfg.rails))
        self.cfg = cfg
        self.wait_s = cfg.duration_s + SLACK_S

    def _wait_key(self, key: str, deadline: float) -> bool:
        while not self.store.check([key]):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def port(self, rank: int, rail: int, k: int) -> int:
        return self.cfg.base_port + (rank * self.n_rails + rail) * self.cfg.processes + k

    def serve(self, key: str, sender: int) -> None:
        me = self.members[self.me]
        servers = []
        error = ""
        rdma = self.cfg.transport == "rdma"
        for r, addr in enumerate(me["addrs"]):
            for k in range(1 if rdma else self.cfg.processes):
                port = self.port(self.me, r, k)
                name = f"{'ib_write_bw' if rdma else 'iperf3'}-server-{key.replace('/', '-')}-{r}-{k}"
                argv = self.rdma_argv(r, port, None) if rdma else iperf.server_argv(port, addr)
                server = procs.start(argv, self.cfg.workdir, name)
                servers.append(server)
                try:
                    procs.wait_listening(server, port, 15.0, perftest.error_line if rdma else None)
                except procs.ToolFailed as exc:
                    error = error or f"rail {self.rail_name(r)}: {exc}"
        self.store.set(f"{key}/ready", json.dumps({"error": error}))
        if not error:
            deadline = time.monotonic() + self.wait_s
            while any(x.proc.poll() is None for x in servers):
                if self.store.check([f"{key}/result"]) or time.monotonic() > deadline:
                    break
                time.sleep(POLL_S)
        for server in servers:
            with contextlib.suppress(Exception):
                server.proc.wait(5)
            server.stop()

    def rail_name(self, r: int) -> str:
        return self.cfg.rails[r] if self.cfg.rails else "-"

    def rdma_argv(self, r: int, port: int, server: str | None) -> list[str]:
        seconds = max(1, int(-(-self.cfg.duration_s // 1)))
        return perftest.bw_argv(self.cfg.endpoints[r], port, self.cfg.rdma_bytes, seconds, 1, -1, server)

    def _rdma_rail(self, key: str, receiver: int, r: int) -> tuple[float, str]:
        """(Gb/s, error) of ib_write_bw from this node's rail ``r`` to the receiver's."""
        peer = self.members[receiver]
        argv = self.rdma_argv(r, self.port(receiver, r, 0), peer["addrs"][r])
        client = procs.start(argv, self.cfg.workdir, f"ib_write_bw-client-{key.replace('/', '-')}-{r}")
        try:
            out = procs.wait(client, self.wait_s, "client")
            return perftest.parse_bw(out).bw_average_gbps, ""
        except procs.ToolFailed as exc:
            return 0.0, str(exc)
        except perftest.PerftestError as exc:
            return 0.0, f"{self.rail_name(r)}: {exc}"
        finally:
            client.stop()

    def _rail(self, key: str, receiver: int, r: int) -> tuple[float, str]:
        """(Gb/s, error) of this node sending to ``receiver`` on rail ``r``."""
        if self.cfg.transport == "rdma":
            return self._rdma_rail(key, receiver, r)
        peer, me = self.members[receiver], self.members[self.me]
        per = max(1, self.cfg.streams // self.cfg.processes)
        clients = []
        for k in range(self.cfg.processes):
            argv = iperf.client_argv(
                peer["addrs"][r],
                self.port(receiver, r, k),
                self.cfg.duration_s,
                per,
                self.cfg.bitrate,
                me["addrs"][r] if self.cfg.rails else None,
            )
            name = f"iperf3-client-{key.replace('/', '-')}-{r}-{k}"
            clients.append(procs.start(argv, self.cfg.workdir, name))
        total, errors = 0.0, []
        for client in clients:
            try:
                total += iperf.parse_json(procs.wait(client, self.wait_s, "client")).receiver_gbps
            except (procs.ToolFailed, iperf.IperfError) as exc:
                errors.append(str(exc))
            finally:
                client.stop()
        return (0.0 if errors else total), "; ".join(errors)

    def send(self, key: str, receiver: int) -> None:
        peer = self.members[receiver]
        result: dict[str, object] = {"gbps": [0.0] * self.n_rails, "error": [""] * self.n_rails}
        if not self._wait_key(f"{key}/ready", time.monotonic() + self.wait_s):
            result["error"] = [
                f"{peer['host']} (rank {receiver}) never started its iperf3 server"
            ] * self.n_rails
        else:
            ready = json.loads(self.store.get(f"{key}/ready").decode())
            if ready["error"]:
                result["error"] = [f"{peer['host']}: {ready['error']}"] * self.n_rails
            else:
                with ThreadPoolExecutor(max_workers=self.n_rails) as pool:
                    done = list(pool.map(lambda r: self._rail(key, receiver, r), range(self.n_rails)))
                result = {"gbps": [g for g, _ in done], "error": [e for _, e in done]}
        self.store.set(f"{key}/result", json.dumps(result))

    def barrier(self, name: str) -> None:
        world = self.launch.world_size
        self.store.set(f"{name}/{self.me}", "1")
        keys = [f"{name}/{r}" for r in range(world)]
        deadline = time.monotonic() + self.wait_s * 2
        while not self.store.check(keys):
            if time.monotonic() > deadline:
                missing = [r for r in range(world) if not self.store.check([f"{name}/{r}"])]
                culprit = self.rdzv.diagnose()
                names = ", ".join(f"{self.members[r]['host']} (rank {r})" for r in missing)
                raise RankFailure(culprit or f"{names} did not finish {name}")
            time.sleep(POLL_S)

    def result(self, key: str) -> dict[str, list[Any]]:
        if not self.store.check([f"{key}/result"]):
            return {"gbps": [0.0] * self.n_rails, "error": ["no result"] * self.n_rails}
        return dict(json.loads(self.store.get(f"{key}/result").decode()))


def run(
    cfg: PairsConfig, launch: LaunchEnv, host: str
) -> tuple[list[dict[str, Any]], list[list[tuple[int, int]]], list[list[PairResult]], dict[str, object]]:
    """(members, schedule, every pair's result per rail, raw results by direction), the same on
    every rank."""
    rdzv = Rendezvous(launch, cfg.timeout, name="network")
    if cfg.transport == "rdma":  # perftest's out-of-band exchange: the node's address, every rail
        addrs = [my_address(cfg.address, launch)] * len(cfg.rails)
    elif cfg.rails:
        addrs = [interface_ipv4(r) or r for r in cfg.rails]
    else:
        addrs = [my_address(cfg.address, launch)]
    info = {"host": host, "addrs": addrs}
    members = [json.loads(m) for m in rdzv.join(json.dumps(info))]
    hosts = [m["host"] for m in members]
    twice = sorted({h for h in hosts if hosts.count(h) > 1})
    if twice:
        rdzv.finish()
        ranks = [str(i) for i, h in enumerate(hosts) if h in twice]
        raise RankFailure(
            f"ranks {', '.join(ranks)} are on one host ({', '.join(twice)}): the pairs mode runs one rank "
            "per node (torchrun --nproc-per-node 1, srun --ntasks-per-node 1)"
        )
    counts = {len(m["addrs"]) for m in members}
    if len(counts) > 1:
        rdzv.finish()
        each = ", ".join(f"{m['host']} {len(m['addrs'])}" for m in members)
        raise RankFailure(
            f"the nodes name different numbers of rails ({each}): give every node the same rails"
        )
    node = _Node(cfg, launch, rdzv, members)
    schedule = rounds(launch.world_size, cfg.meet)
    for r, pairs in enumerate(schedule):
        rdzv.step(f"round {r + 1} of {len(schedule)}")
        for a, b in pairs:
            if launch.rank not in (a, b):
                continue
            for sender, receiver in ((a, b), (b, a)):
                key = f"pairs/{r}/{sender}-{receiver}"
                if launch.rank == receiver:
                    node.serve(key, sender)
                else:
                    node.send(key, receiver)
        node.barrier(f"round/{r}")
    raw: dict[str, object] = {}
    results: list[list[PairResult]] = [[] for _ in range(node.n_rails)]
    for r, pairs in enumerate(schedule):
        for a, b in pairs:
            ab, ba = node.result(f"pairs/{r}/{a}-{b}"), node.result(f"pairs/{r}/{b}-{a}")
            raw[f"{hosts[a]} -> {hosts[b]}"] = ab
            raw[f"{hosts[b]} -> {hosts[a]}"] = ba
            for i in range(node.n_rails):
                errors = "; ".join(str(x["error"][i]) for x in (ab, ba) if x["error"][i])
                results[i].append(PairResult(a, b, float(ab["gbps"][i]), float(ba["gbps"][i]), errors))
    node.barrier("gathered")
    rdzv.finish()
    return members, schedule, results, raw
