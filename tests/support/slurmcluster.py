"""A real one-node Slurm (munged, slurmctld, slurmd from Debian's packages) on 127.0.0.1, for tests.

Everything lives in one folder: its own munge key and socket, its own slurm.conf with free
ports, state, spool, pid and log files, so it runs beside a Slurm the machine may already
have. The node is this host (``NodeName=<hostname> NodeAddr=127.0.0.1``). Needs root (the
daemons run as root, as CI does); .ci/run installs the packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo", "sbatch")
INSTALL = "apt-get install -y slurmctld slurmd slurm-client munge"


def missing() -> str | None:
    """Why this machine cannot start the cluster, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if absent:
        return f"{', '.join(absent)} not installed ({INSTALL}; .ci/run does)"
    if os.geteuid() != 0:
        return "the Slurm daemons run as root here (CI runs as root)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class SlurmCluster:
    root: Path
    node: str
    conf: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def scontrol(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [_exe("scontrol"), *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)}: {r.stderr.strip()}")
        return r

    def show_node(self) -> str:
        return self.scontrol("show", "node", self.node).stdout

    def state(self) -> tuple[str, str]:
        """(State, Reason) of the node from sinfo: e.g. ('idle', ''), ('drained', 'hpcbench: ...').

        sinfo's trailing '*' (not responding: a resumed node is until slurmctld's next ping) is dropped.
        """
        r = subprocess.run(
            [_exe("sinfo"), "-h", "-N", "-n", self.node, "-o", "%T|%E"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        state, _, reason = r.stdout.strip().partition("|")
        return state.rstrip("*"), "" if reason == "none" else reason

    def wait_state(self, wanted: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.state()[0]
            if state in wanted:
                return state
            self.check_alive()
            time.sleep(0.3)
        raise TimeoutError(f"node {self.node} is {state!r}, not {wanted} after {timeout} s; {self.logs()}")

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; {self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name} ---\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(out)

    def reset(self) -> None:
        """Back to IDLE with no reason (resume a drained node)."""
        state, reason = self.state()
        if "drain" in state or reason:
            self.scontrol("update", f"nodename={self.node}", "state=resume")
        self.wait_state({"idle"})

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


CONF = """\
ClusterName=hpcbenchtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
{extra}
NodeName={node} NodeHostname={node} NodeAddr=127.0.0.1 CPUs=1 RealMemory=100 State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def start(root: Path, extra: str = "", wait: frozenset[str] = frozenset({"idle"})) -> SlurmCluster:
    """Starts munged, slurmctld and slurmd under ``root`` and waits until the node is in ``wait``."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(
        CONF.format(node=node, root=root, ctld_port=free_port(), slurmd_port=free_port(), extra=extra)
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root=root, node=node, conf=conf, env=env)
    daemons = [
        [
            _exe("munged"),
            "--foreground",
            "--force",
            f"--socket={root}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={root}/munged.pid",
            f"--log-file={root}/munged.log",
            f"--seed-file={root}/munged.seed",
        ],
        [_exe("slurmctld"), "-D", "-i", "-f", str(conf)],
        [_exe("slurmd"), "-D", "-N", node, "-f", str(conf)],
    ]
    try:
        for argv in daemons:
            out = open(root / f"{Path(argv[0]).name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
            cluster.procs.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
            if argv[0].endswith("munged"):
                _wait_for(lambda: (root / "munge.socket").exists(), 20, cluster)
            elif argv[0].endswith("slurmctld"):
                _wait_for(lambda: cluster.scontrol("ping", check=False).returncode == 0, 60, cluster)
        cluster.wait_state(set(wait))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(cond: object, timeout: float, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        cluster.check_alive()
        time.sleep(0.2)
    raise TimeoutError(f"the cluster did not come up in {timeout} s; {cluster.logs()}")
