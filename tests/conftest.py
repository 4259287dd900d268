"""Shared fixtures: the installed CLI, and the test-probe plugin installed as its own package."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import ROOT
from support.required import ENV as REQUIRE_SERVICES
from support.required import required

PLUGIN_SRC = ROOT / "tests" / "plugins" / "hpcbench-testprobes"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With HPCBENCH_REQUIRE_SERVICES=1 (CI) a skipped test is a failure naming why it skipped:
    every test runs there (see tests/support/required.py)."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.skipped and required() and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_SERVICES}=1 but the test skipped: {why}"


def hpcbench_exe() -> str:
    exe = Path(sys.executable).parent / "hpcbench"
    if not exe.exists():
        pytest.fail(f"the hpcbench console script is not installed beside {sys.executable}: run make test")
    return str(exe)


def pip_target(target: Path, *sources: Path) -> Path:
    """pip-installs the packages at ``sources`` into ``target`` (real distributions, entry points
    included), without their dependencies or network."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-installs tests/plugins/hpcbench-testprobes into a folder of its own (a real distribution)."""
    return pip_target(tmp_path_factory.mktemp("plugin-site"), PLUGIN_SRC)


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-installs the packages whose probes break the contract (hpcbench-brokenprobes) and the
    second package registering one of its names (hpcbench-twinprobe) into a folder of their own."""
    plugins = ROOT / "tests" / "plugins"
    return pip_target(
        tmp_path_factory.mktemp("broken-site"),
        plugins / "hpcbench-brokenprobes",
        plugins / "hpcbench-twinprobe",
    )


class Cli:
    """Runs the installed ``hpcbench`` with the test plugin on its path and a private lock and TMPDIR."""

    def __init__(self, workdir: Path, plugin_site: Path) -> None:
        self.workdir = workdir
        self.tmpdir = workdir / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.mark = uuid.uuid4().hex
        self.env = {
            **os.environ,
            "PYTHONPATH": str(plugin_site),
            "HPCBENCH_LOCK": str(workdir / "hpcbench.lock"),
            "HPCBENCH_OUTPUT": str(workdir / "results"),
            "TMPDIR": str(self.tmpdir),
            "HPCBENCH_TEST_MARK": self.mark,
        }

    def argv(self, *args: str) -> list[str]:
        return [hpcbench_exe(), *args]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture()
def cli(tmp_path: Path, plugin_site: Path) -> Cli:
    return Cli(tmp_path, plugin_site)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def describe(procs: list[psutil.Process]) -> str:
    """One line per process: pid, parent, group, state and command line (for failure messages)."""
    lines = []
    for p in procs:
        with contextlib.suppress(psutil.Error, OSError):
            cmd = " ".join(p.cmdline())[:200]
            lines.append(f"pid {p.pid} ppid {p.ppid()} pgid {os.getpgid(p.pid)} {p.status()}: {cmd}")
    return "; ".join(lines) or "none"


def no_marked_processes(mark: str, timeout: float = 15.0) -> None:
    """Wait until no process started by the ``Cli`` with this mark is left; name those that are."""
    try:
        wait_for(lambda: marked_processes(mark) == [], timeout=timeout)
    except AssertionError:
        left = describe(marked_processes(mark))
        raise AssertionError(f"still running after {timeout:g} s: {left}") from None


def marked_processes(mark: str) -> list[psutil.Process]:
    """The processes started by a ``Cli`` (they carry its HPCBENCH_TEST_MARK in their environment)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("HPCBENCH_TEST_MARK") == mark:
                found.append(proc)
    return found


# -- every record the tests write is checked against the published schema ------------------------


def record_files(folder: Path) -> list[Path]:
    """The hpcbench records of this schema version under ``folder`` (files that are no JSON, no
    record or another version's record are what some tests write on purpose)."""
    from hpcbench.engine.record import SCHEMA_VERSION

    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("schema_version") == SCHEMA_VERSION and "checks" in data:
            found.append(path)
    return found


def schema_problems(folder: Path) -> list[str]:
    from hpcbench.engine.validate import validate_file

    return [line for path in record_files(folder) for line in validate_file(path)]


@pytest.fixture(autouse=True)
def _records_match_the_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """After each test, every record it wrote under its tmp_path validates against the record
    schema (tests that damage records on purpose are marked ``damaged_records``)."""
    yield
    if request.node.get_closest_marker("damaged_records") is None:
        assert schema_problems(tmp_path) == []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "damaged_records: the test writes invalid records on purpose")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Records written into session-wide folders (fleets built once for many tests) are checked too."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or exitstatus not in (0, 1):
        return
    base = factory.getbasetemp()
    problems = [
        line
        for folder in base.iterdir()
        if folder.is_dir() and not folder.name.startswith("test_")  # per-test folders were checked
        for line in schema_problems(folder)
    ]
    if problems:
        print("\nrecords written by session fixtures that do not match the record schema:")
        print("\n".join(problems[:20]))
        session.exitstatus = 1
