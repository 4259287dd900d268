"""Is this process one rank of a distributed launch (torchrun, or srun setting RANK/WORLD_SIZE)?

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for
each worker; under srun a batch script sets them from SLURM_PROCID,
SLURM_NTASKS and SLURM_LOCALID. Only these explicit variables count: SLURM's
own variables alone never make a process a rank (a batch script's own step
would otherwise wait for ranks that never come).

Under a launch every rank runs hpcbench. The session lets local rank 0 take
the node's lock and only global rank 0 write the result record and print; the
other ranks measure with it and report through rank 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hpcbench.core.errors import ConfigError

REQUIRED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LaunchEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    #: torchrun's agent hosts the store on MASTER_PORT; the workers connect to it as clients
    agent_store: bool
    launcher: str  # "torchrun" | "env"

    @property
    def reports(self) -> bool:
        """Whether this rank writes the record and prints (global rank 0)."""
        return self.rank == 0

    @property
    def locks(self) -> bool:
        """Whether this rank takes the node's lock (local rank 0, one per node)."""
        return self.local_rank == 0


def _int(env: Mapping[str, str], key: str, low: int) -> int:
    text = env[key].strip()
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment variable {key}={text!r} is not an integer") from None
    if value < low:
        raise ConfigError(f"environment variable {key}={value} must be >= {low}")
    return value


def from_environ(env: Mapping[str, str]) -> LaunchEnv | None:
    """The launch this process belongs to; None when RANK or WORLD_SIZE is not set."""
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    missing = [k for k in REQUIRED if not env.get(k, "").strip()]
    if missing:
        raise ConfigError(
            f"RANK and WORLD_SIZE are set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not: a distributed launch needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
        )
    rank = _int(env, "RANK", 0)
    world = _int(env, "WORLD_SIZE", 1)
    if rank >= world:
        raise ConfigError(f"RANK={rank} is not below WORLD_SIZE={world}")
    port = _int(env, "MASTER_PORT", 1)
    if port > 65535:
        raise ConfigError(f"MASTER_PORT={port} is not a TCP port")
    local = _int(env, "LOCAL_RANK", 0) if env.get("LOCAL_RANK", "").strip() else rank
    torchrun = "TORCHELASTIC_RUN_ID" in env or "GROUP_RANK" in env
    return LaunchEnv(
        rank=rank,
        world_size=world,
        local_rank=local,
        master_addr=env["MASTER_ADDR"].strip(),
        master_port=port,
        agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE", "").strip() == "True",
        launcher="torchrun" if torchrun else "env",
    )
