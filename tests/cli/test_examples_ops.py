"""The operations examples: shell syntax of the scripts, and the Kubernetes manifest tolerating the
taint its script applies. (Slurm's scripts run for real in test_slurm.py; no cluster runs the
Kubernetes manifest here.)"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import ROOT

SCRIPTS = [
    ("bash", "examples/slurm/acceptance.sbatch"),
    ("bash", "examples/slurm/network-pairs.sbatch"),
    ("sh", "examples/slurm/hpcbench-healthcheck.sh"),
    ("sh", "examples/k8s/hpcbench-node-check.sh"),
]


@pytest.mark.parametrize(("shell", "path"), SCRIPTS)
def test_script_syntax(shell: str, path: str) -> None:
    r = subprocess.run([shell, "-n", str(ROOT / path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (ROOT / path).stat().st_mode & 0o100, f"{path} is not executable"


def test_k8s_manifest_tolerates_the_taint_its_script_sets() -> None:
    script = (ROOT / "examples/k8s/hpcbench-node-check.sh").read_text()
    manifest = (ROOT / "examples/k8s/daemonset.yaml").read_text()
    key = re.search(r"^KEY=(\S+)$", script, re.M)[1]
    assert '"$KEY/unhealthy=$SUITE:NoSchedule"' in script and '"$KEY/unhealthy:NoSchedule-"' in script
    toleration = re.search(r"- key: (\S+)\s+#.*\n\s+operator: Exists\n\s+effect: (\w+)", manifest)
    assert toleration and toleration.groups() == (f"{key}/unhealthy", "NoSchedule")
    command = re.search(r'command: \["/opt/hpcbench/(\S+)"\]', manifest)[1]
    assert command == "examples/k8s/hpcbench-node-check.sh"
    assert "fieldPath: spec.nodeName" in manifest and "${NODE_NAME:?" in script
