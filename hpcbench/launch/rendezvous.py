"""Rendezvous of the ranks of a distributed launch: who joined, who is alive, who is behind.

Shared by the probes whose ranks meet across nodes (collectives, the network probe's pairs).
Every rank connects to one TCPStore (hosted by rank 0, or by torchrun's agent
when ``TORCHELASTIC_USE_AGENT_STORE=True``), takes a fresh key namespace under
``hpcbench/<name>/`` (a per-rank invocation counter, so the checks of one torchrun job never
see each other's keys), announces itself and waits for the others until the timeout:
a rank that never arrives is named. After the join each rank bumps a
heartbeat counter from a thread of its own and records the step it starts;
when a collective fails or times out, ``diagnose`` names the ranks whose
heartbeat stopped (dead or hung) or that are behind.

Imports torch; only the rank processes import this module.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import timedelta
from typing import Any

import torch.distributed as dist

from hpcbench.launch.launcher import LaunchEnv
from hpcbench.launch.ranks import behind_ranks, rank_list, stalled_ranks

HEARTBEAT_S = 0.5
#: a heartbeat counter that does not move for this long means the rank is gone or hung
STALL_S = 2.5
POLL_S = 0.05
FINISH_WAIT_S = 10.0
#: gloo prefixes its errors with its source file: "[/path/to/pair.cc:553] Connection closed by peer"
_SOURCE_PREFIX = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")


class RankFailure(Exception):
    """A rank could not take part: the message names the missing or failed ranks."""


class Rendezvous:
    def __init__(self, launch: LaunchEnv, timeout: float, name: str = "collectives") -> None:
        self.launch = launch
        self.rank = launch.rank
        self.world = launch.world_size
        self.timeout = timeout
        self.where = f"{launch.master_addr}:{launch.master_port}"
        self.host_role = "torchrun's agent on the first node" if launch.agent_store else "rank 0"
        self.step_names: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        base = self._connect()
        seq = int(base.add(f"hpcbench/{name}/seq/{self.rank}", 1))
        self.prefix = f"hpcbench/{name}/{seq}/"
        self._base = base
        self.store: Any = dist.PrefixStore(self.prefix, base)

    # -- joining -------------------------------------------------------------
    def _connect(self, is_master: bool | None = None) -> Any:
        master = (self.rank == 0 and not self.launch.agent_store) if is_master is None else is_master
        try:
            return dist.TCPStore(
                self.launch.master_addr,
                self.launch.master_port,
                world_size=None,
                is_master=master,
                timeout=timedelta(seconds=self.timeout),
                wait_for_workers=False,
            )
        except Exception as exc:
            if master:
                raise RankFailure(f"rank 0 cannot host the rendezvous store on {self.where}: {exc}") from None
            raise RankFailure(
                f"rank 0 never joined: the rendezvous store at {self.where} (hosted by {self.host_role}) "
                f"could not be reached within {self.timeout:g} s"
            ) from None

    def pg_store(self) -> Any:
        """The store init_process_group uses: a namespace of this invocation's own."""
        return dist.PrefixStore("pg/", self.store)

    def join(self, info: str) -> list[str]:
        """Announce this rank with ``info``, wait for all of them; every rank's info."""
        self.store.set(f"arrived/{self.rank}", info)
        keys = [f"arrived/{r}" for r in range(self.world)]
        deadline = time.monotonic() + self.timeout
        while not self.store.check(keys):
            if time.monotonic() > deadline:
                missing = [r for r in range(self.world) if not self.store.check([f"arrived/{r}"])]
                raise RankFailure(
                    f"{rank_list(missing)} of {self.world} never joined within {self.timeout:g} s "
                    f"(rendezvous {self.where})"
                )
            time.sleep(POLL_S)
        infos = [self.store.get(k).decode() for k in keys]
        self._thread = threading.Thread(target=self._beat, name="hpcbench-heartbeat", daemon=True)
        self._thread.start()
        return infos

    def _beat(self) -> None:
        try:  # a connection of its own, so a blocked main-thread store call never stops the beat
            store = dist.PrefixStore(self.prefix, self._connect(is_master=False))
            while not self._stop.is_set():
                store.add(f"hb/{self.rank}", 1)
                self._stop.wait(HEARTBEAT_S)
        except Exception:  # the store is gone: diagnose() says so
            return

    # -- progress and diagnosis ---------------------------------------------
    def step(self, name: str) -> None:
        """Record that this rank starts step ``name`` (outside every timed region)."""
        self.step_names.append(name)
        self.store.set(f"step/{self.rank}", str(len(self.step_names) - 1))

    def current(self) -> str:
        return self.step_names[-1] if self.step_names else "the start"

    def _read(self, key: str) -> int | None:
        try:
            return int(self.store.add(key, 0))
        except Exception:
            return None

    def diagnose(self) -> str:
        """Which ranks are dead, hung or behind, as one phrase; '' when all look alive and level."""
        before = {r: self._read(f"hb/{r}") for r in range(self.world)}
        if any(v is None for v in before.values()):
            return (
                f"the rendezvous store at {self.where} is gone: {self.host_role} died or is unreachable"
                + ("" if self.launch.agent_store else " (rank 0 is missing)")
            )
        time.sleep(STALL_S)
        after = {r: self._read(f"hb/{r}") for r in range(self.world)}
        stalled = stalled_ranks({r: v for r, v in before.items() if v is not None}, after, self.rank)
        if stalled:
            return f"{rank_list(stalled)} of {self.world} stopped responding (no heartbeat for {STALL_S:g} s)"
        steps = {r: v for r in range(self.world) if (v := self._read_step(r)) is not None}
        behind = behind_ranks(steps, self.rank)
        if behind:
            where = ", ".join(
                f"{r} at {self.step_names[steps[r]] if steps[r] < len(self.step_names) else steps[r]}"
                for r in behind
            )
            return f"{rank_list(behind)} of {self.world} fell behind (rank {where})"
        return ""

    def _read_step(self, rank: int) -> int | None:
        try:
            if not self.store.check([f"step/{rank}"]):
                return -1
            return int(self.store.get(f"step/{rank}"))
        except Exception:
            return None

    def failure(self, what: str, exc: BaseException) -> RankFailure:
        """A RankFailure for an exception during ``what``, naming the culprits when they are known."""
        detail = _SOURCE_PREFIX.sub("", " ".join(str(exc).split()))[:200]
        culprit = self.diagnose()
        lead = f"{culprit}; " if culprit else ""
        return RankFailure(f"{lead}rank {self.rank} failed in {what} at {self.current()}: {detail}")

    # -- the end -------------------------------------------------------------
    def finish(self) -> None:
        """Mark this rank done; rank 0 keeps a self-hosted store up until every rank is done."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.store.set(f"done/{self.rank}", "1")
            if self.rank == 0 and not self.launch.agent_store:
                keys = [f"done/{r}" for r in range(self.world)]
                deadline = time.monotonic() + FINISH_WAIT_S
                while not self.store.check(keys) and time.monotonic() < deadline:
                    time.sleep(POLL_S)
