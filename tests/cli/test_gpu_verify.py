"""``make gpu-verify`` on a machine without a GPU: one line saying so, exit 3, nothing run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import ROOT

SCRIPT = ROOT / "scripts" / "gpu_verify.py"


def verify(path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_without_nvidia_smi_one_line_and_exit_3(tmp_path: Path) -> None:
    r = verify(str(tmp_path))  # nothing on PATH
    assert r.returncode == 3 and r.stderr == ""
    assert r.stdout == "gpu-verify: no NVIDIA GPU here (nvidia-smi not found): nothing run\n"


def test_with_a_driver_that_does_not_answer_one_line_and_exit_3(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"  # what nvidia-smi prints with the kernel module not loaded (exit 9)
    smi.write_text(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        'Make sure that the latest NVIDIA driver is installed and running."\nexit 9\n'
    )
    smi.chmod(0o755)
    r = verify(f"{tmp_path}:/usr/bin:/bin")
    assert r.returncode == 3
    assert r.stdout == (
        "gpu-verify: no NVIDIA GPU here (nvidia-smi -L lists no GPU (NVIDIA-SMI has failed because it "
        "couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
        "and running.)): nothing run\n"
    )


def test_the_make_target_runs_the_script() -> None:
    # under `make test` the parent's MAKEFLAGS would add "make[1]: Leaving directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    r = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "pyproject.toml", "gpu-verify",
         "GPU_VERIFY_ARGS=--gpu 1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == ".venv/bin/python scripts/gpu_verify.py --gpu 1"
