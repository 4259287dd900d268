"""The README's two commands set a fresh machine up: system tools installed where root may, else one
line with the command to run and an exit at once (scripts/ensure_tools.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "ensure_tools.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # what an unprivileged user can run (root's pyenv is not theirs)


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ensure_tools", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ensure_tools"] = module
    spec.loader.exec_module(module)
    return module


et = load()


def test_advice_names_what_is_missing_and_the_one_command() -> None:
    fio, iperf = et.TOOLS["fio"], et.TOOLS["iperf3"]
    assert et.advice([fio], "apt-get", root=False) == (
        "make: missing fio (the storage probe); run: sudo apt-get install -y fio"
    )
    assert et.advice([fio, iperf], "dnf", root=True) == (
        "make: missing fio (the storage probe), iperf3 (network_tcp and network_pairs (TCP bandwidth)); "
        "run: dnf install -y fio iperf3"
    )
    none = et.advice([et.TOOLS["node_exporter"]], None, root=False)
    assert none.endswith(
        "run: install the packages prometheus-node-exporter (Debian/Ubuntu) or "
        "golang-github-prometheus-node-exporter (RHEL/Fedora)"
    )


def test_install_commands_and_packages() -> None:
    slurm = [et.TOOLS[n] for n in ("slurmctld", "slurmd", "scontrol", "munged")]
    assert et.packages(slurm, "apt-get") == ["slurmctld", "slurmd", "slurm-client", "munge"]
    assert et.packages(slurm, "dnf") == ["slurm-slurmctld", "slurm-slurmd", "slurm", "munge"]
    assert et.install_commands([et.TOOLS["fio"]], "apt-get") == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "fio"],
    ]
    assert et.install_commands([et.TOOLS["fio"]], "dnf") == [["dnf", "install", "-y", "-q", "fio"]]
    assert set(et.TARGETS["bench"]) <= set(et.TARGETS["test"])
    assert set(et.TARGETS["bench"]) <= set(et.TARGETS["suites"])


def test_suites_target_names_the_network_tools(tmp_path: Path) -> None:
    """`make tools`: what acceptance runs on an RDMA node, perftest included, in one line."""
    path = bare_path(tmp_path, "apt-get")
    env = {**os.environ, "PATH": path}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "suites"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "ib_write_bw (network_rdma (RDMA bandwidth and latency))" in lines[0]
    assert "iperf3 (network_tcp and network_pairs (TCP bandwidth))" in lines[0]
    # nvme lives in sbin, which ensure_tools also searches: listed only where nvme-cli is absent
    assert re.search(r"; run: apt-get install -y fio( nvme-cli)? iperf3 perftest$", lines[0]), lines[0]


def bare_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (links to the real ones): fio and the rest are not on it."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real, f"{tool} is needed by this test: apt-get install -y {tool}"
        (folder / tool).symlink_to(real)
    return str(folder)


def as_nobody(argv: list[str], cwd: Path, path: str) -> subprocess.CompletedProcess[str]:
    """``argv`` as the unprivileged user nobody, with ``path`` as its PATH."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed by this test"
    env = {"PATH": path, "HOME": str(cwd), "LANG": "C.UTF-8"}
    cmd = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def fresh_clone() -> Iterator[Path]:
    """A clone of this repository's HEAD that the user nobody owns, in a folder nobody can reach
    (pytest's own temporary folders are root's alone)."""
    if os.geteuid() != 0:
        pytest.fail("this test runs commands as the user nobody: run it as root (CI does)")
    top = Path(tempfile.mkdtemp(prefix="hpcbench-clone-", dir="/tmp"))
    try:
        clone = top / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(folder, name), 65534, 65534)
        os.lchown(top, 65534, 65534)
        yield clone
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize(
    ("target", "line"), [("bench", "fio (the storage probe)"), ("test", "fio (the storage probe)")]
)
def test_readme_commands_stop_at_once_where_tools_cannot_be_installed(
    fresh_clone: Path, target: str, line: str
) -> None:
    """No fio on PATH, no root: the command says what to run, in one line, and creates nothing."""
    path = bare_path(fresh_clone.parent, "make", "apt-get")
    done = as_nobody(["make", target, f"PYTHON={SYSTEM_PYTHON}"], fresh_clone, path)
    assert done.returncode == 2, done.stderr
    ours = [ln for ln in done.stderr.splitlines() if ln.startswith("make: missing")]
    assert len(ours) == 1 and line in ours[0] and "; run: sudo apt-get install -y fio" in ours[0], done.stderr
    assert not (fresh_clone / ".venv").exists()  # stopped before the virtualenv
    assert "Traceback" not in done.stderr


def test_ensure_tools_is_silent_when_nothing_is_missing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "bench"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    bad = subprocess.run([sys.executable, str(SCRIPT), "deploy"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 4 and bad.stderr.startswith("usage: ensure_tools.py")


def test_check_only_never_installs(tmp_path: Path) -> None:
    path = bare_path(tmp_path, "apt-get")
    env = {**os.environ, "PATH": path}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "bench"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("make: missing fio (the storage probe); run: ")


def test_as_root_with_apt_get_a_missing_fio_gets_installed() -> None:
    """Removes the fio package, then lets ensure_tools install it again (CI: root, apt-get)."""
    if not os.environ.get("HPCBENCH_REQUIRE_SERVICES"):
        pytest.skip("removes and reinstalls the fio package: run by make test (HPCBENCH_REQUIRE_SERVICES=1)")
    assert os.geteuid() == 0 and shutil.which("apt-get") and shutil.which("dpkg"), "needs root and apt-get"
    subprocess.run(["dpkg", "--remove", "fio"], check=True, capture_output=True, timeout=300)
    try:
        assert shutil.which("fio") is None
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "bench"], capture_output=True, text=True, timeout=1800
        )
        assert done.returncode == 0, done.stderr
        assert "make: installing fio with apt-get" in done.stderr
        assert shutil.which("fio") is not None
    finally:
        if shutil.which("fio") is None:  # leave the machine as it was for the storage tests
            subprocess.run(["apt-get", "install", "-y", "-qq", "fio"], capture_output=True, timeout=1800)
