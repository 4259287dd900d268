"""Processes that each stand in for a node of their own: a UTS namespace with its host name
(node-0, node-1, ...), started together, waited for together, none left running."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_as_nodes(
    cwd: Path, nodes: list[tuple[list[str], list[str], dict[str, str]]], timeout: float
) -> list[subprocess.CompletedProcess[str]]:
    """Run each ``(wrapper, argv, env)`` at once as node-<n>: ``wrapper`` (ending in ``unshare
    --uts``, e.g. behind ``ip netns exec NS``) sets the host name, then execs ``argv``. Each is
    waited for at most ``timeout`` s; whatever still runs afterwards is killed."""
    running = []
    for n, (wrapper, argv, env) in enumerate(nodes):
        script = f'hostname node-{n} && exec "$@"'
        full = [*wrapper, "sh", "-c", script, "sh", *argv]
        running.append(
            subprocess.Popen(
                full, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    done = []
    try:
        for p in running:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done
