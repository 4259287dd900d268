"""A command imports only what it needs: what keeps ``hpcbench --help`` and ``hpcbench list`` quick.

Each case runs a fresh interpreter (so nothing a test imported earlier counts), does what the
command does and lists ``sys.modules``. The times themselves are measured by
benchmarks/test_startup.py; here the behaviour behind them is pinned: building the argument parser
imports neither the record, the inventory, NVML nor any heavy library, and ``hpcbench list``
(which must import every probe's class) imports none of the libraries a probe only needs to run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: a library heavier than the whole command, or one a command needs only to run a probe
HEAVY = ("torch", "numpy", "pandas", "matplotlib", "jsonschema", "pynvml", "psutil", "msgspec")
#: hpcbench modules the parser needs none of (the record's types, the inventory, NVML, the probes)
NOT_FOR_THE_PARSER = (
    "hpcbench.engine.record",
    "hpcbench.core.measurement",
    "hpcbench.core.codec",
    "hpcbench.node.inventory",
    "hpcbench.node.collector",
    "hpcbench.node.nvml",
    "hpcbench.probes.registry",
    "hpcbench.cli.slurm",
    "hpcbench.cli.run",
    "subprocess",
    "dataclasses",
)
#: what only a probe's run() uses (the device, NVML, the record's types, the inventory, workers,
#: fio's and a burn's helpers, the standard library's heavier modules), and
#: importlib.metadata (it imports the email package; hpcbench.core.entrypoints reads entry points)
NOT_FOR_LIST = (
    "importlib.metadata",
    "email",
    "hpcbench.core.measurement",
    "hpcbench.core.codec",
    "hpcbench.node.inventory",
    "hpcbench.node.collector",
    "hpcbench.node.nvml",
    "hpcbench.launch.launcher",
    "statistics",
    "subprocess",
    "hashlib",
    "socket",
    "ctypes",
    "json",
    "hpcbench.hw.torch_device",
    "hpcbench.hw.cuda_only",
    "hpcbench.hw.telemetry",
    "hpcbench.probes.burn.watch",
    "hpcbench.probes.burn.hostload",
    "hpcbench.probes.collectives.rank",
    "hpcbench.probes.pcie.cuda",
    "hpcbench.probes.storage.fs",
    "hpcbench.engine.record",
    "hpcbench.engine.runner",
)

BUILD_PARSER = "import hpcbench.cli.main as m; m.build_parser()"
LIST = (
    "import contextlib, io; from hpcbench.cli.main import main\n"
    "with contextlib.redirect_stdout(io.StringIO()) as out: code = main(['list'])\n"
    "assert code == 0 and 'gemm: ' in out.getvalue(), out.getvalue()"
)


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys\n_held = sorted(sys.modules)\nimport json\nprint(json.dumps(_held))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_building_the_parser_imports_no_record_no_inventory_no_nvml_and_no_heavy_library() -> None:
    modules = imported_by(BUILD_PARSER)
    assert "hpcbench.cli.slurm_args" in modules  # slurm-check is on the parser
    assert sorted(m for m in (*HEAVY, *NOT_FOR_THE_PARSER) if m in modules) == []


def test_help_prints_every_command_from_that_parser() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hpcbench", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for command in ("list", "run", "probe", "slurm-check", "validate", "report"):
        assert f"    {command}" in out, command


def test_list_imports_the_probes_but_nothing_they_need_only_to_run() -> None:
    modules = imported_by(LIST)
    assert {"hpcbench.probes.gemm.probe", "hpcbench.probes.burn.probe"} <= modules
    assert sorted(m for m in (*HEAVY, *NOT_FOR_LIST) if m in modules) == []


@pytest.mark.parametrize("module", ["hpcbench.engine.record", "torch"])
def test_the_check_sees_a_module_that_is_imported(module: str) -> None:
    """The negative control: the same check run after an import of a forbidden module finds it."""
    assert module in imported_by(f"{BUILD_PARSER}; import {module}")
