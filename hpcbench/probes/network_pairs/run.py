"""One node's part of the pairs mode under torchrun or srun: join, run the rounds, gather.

Every rank is one node. The ranks meet on the launch's TCPStore (``hpcbench.hw.rendezvous``,
key space ``hpcbench/network/``), announce the address their iperf3 server listens on (port
``base_port + rank``), and go through the rounds of ``pairs.rounds``: in each pair both nodes send
once, the receiver running a one-off ``iperf3 -s -1`` and saying so in the store, the sender
running the client and putting its result in the store. A barrier closes each round, so the pairs
of one round run at once and rounds do not overlap. In the end every rank reads every pair's
result, so every node computes the same analysis and writes its own record.

Imports torch (through the rendezvous); only the probe's child process under a launch does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import struct
import time
from dataclasses import dataclass

from hpcbench.hw.net import iperf, procs
from hpcbench.hw.rendezvous import RankFailure, Rendezvous
from hpcbench.launch import LaunchEnv
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
    def __init__(self, cfg: PairsConfig, launch: LaunchEnv, rdzv: Rendezvous, members: list[dict[str, str]]):
        self.cfg, self.launch, self.rdzv, self.members = cfg, launch, rdzv, members
        self.me = launch.rank
        self.store = rdzv.store
        self.wait_s = cfg.duration_s + SLACK_S

    def _wait_key(self, key: str, deadline: float) -> bool:
        while not self.store.check([key]):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def serve(self, key: str, sender: int) -> None:
        me = self.members[self.me]
        port = int(me["port"])
        server = procs.start(
            iperf.server_argv(port, me["addr"]), self.cfg.workdir, f"iperf3-server-{key.replace('/', '-')}"
        )
        try:
            procs.wait_listening(server, port, 15.0)
        except procs.ToolFailed as exc:
            self.store.set(f"{key}/ready", json.dumps({"error": str(exc)}))
            return
        self.store.set(f"{key}/ready", json.dumps({"error": ""}))
        deadline = time.monotonic() + self.wait_s
        while server.proc.poll() is None:
            if self.store.check([f"{key}/result"]) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        with contextlib.suppress(Exception):
            server.proc.wait(5)
        server.stop()

    def send(self, key: str, receiver: int) -> None:
        peer = self.members[receiver]
        result: dict[str, object] = {"gbps": 0.0, "error": ""}
        if not self._wait_key(f"{key}/ready", time.monotonic() + self.wait_s):
            result["error"] = f"{peer['host']} (rank {receiver}) never started its iperf3 server"
        else:
            ready = json.loads(self.store.get(f"{key}/ready").decode())
            if ready["error"]:
                result["error"] = f"{peer['host']}: {ready['error']}"
            else:
                argv = iperf.client_argv(
                    peer["addr"],
                    int(peer["port"]),
                    self.cfg.duration_s,
                    self.cfg.streams,
                    self.cfg.bitrate,
                    None,
                )
                client = procs.start(argv, self.cfg.workdir, f"iperf3-client-{key.replace('/', '-')}")
                try:
                    parsed = iperf.parse_json(procs.wait(client, self.wait_s, "client"))
                    result["gbps"] = parsed.receiver_gbps
                    result["sender_gbps"] = parsed.sender_gbps
                    result["retransmits"] = parsed.retransmits
                except (procs.ToolFailed, iperf.IperfError) as exc:
                    result["error"] = str(exc)
                finally:
                    client.stop()
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

    def result(self, key: str) -> dict[str, object]:
        if not self.store.check([f"{key}/result"]):
            return {"gbps": 0.0, "error": "no result"}
        return dict(json.loads(self.store.get(f"{key}/result").decode()))


def run(
    cfg: PairsConfig, launch: LaunchEnv, host: str
) -> tuple[list[dict[str, str]], list[list[tuple[int, int]]], list[PairResult], dict[str, object]]:
    """(members, schedule, every pair's result, raw results by direction), the same on every rank."""
    rdzv = Rendezvous(launch, cfg.timeout, name="network")
    info = {"host": host, "addr": my_address(cfg.address, launch), "port": str(cfg.base_port + launch.rank)}
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
    results = []
    for r, pairs in enumerate(schedule):
        for a, b in pairs:
            ab, ba = node.result(f"pairs/{r}/{a}-{b}"), node.result(f"pairs/{r}/{b}-{a}")
            raw[f"{hosts[a]} -> {hosts[b]}"] = ab
            raw[f"{hosts[b]} -> {hosts[a]}"] = ba
            errors = "; ".join(str(x["error"]) for x in (ab, ba) if x["error"])
            results.append(PairResult(a, b, float(ab["gbps"]), float(ba["gbps"]), errors))  # type: ignore[arg-type]
    node.barrier("gathered")
    rdzv.finish()
    return members, schedule, results, raw
