"""Root on a node users share (docs/security.md): the user ``nobody`` plants each attack in a
temporary tree, then the real ``hpcbench`` runs as root against it. Each attack is refused (exit 4,
one line naming the path) or harmless, and the root-only victim file keeps its content.

These tests run as root (CI does): they need a second, unprivileged user to plant files."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Cli, write

from hpcbench.core.exitcodes import ExitCode

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = pwd.getpwnam("nobody").pw_gid  # nogroup on Debian, nobody on Fedora
SECRET = "root's secret\n"
SUITE = """name = "health"
[[check]]
id = "membw"
probe = "fixed"
params = { value = 100.0 }
"""


@dataclass(frozen=True)
class Tree:
    top: Path  # root's, 0755: nobody can enter it, not write it
    sticky: Path  # root's, 1777: like /tmp and /run/lock
    victim: Path  # root's, 0600: what a planted link points at

    def intact(self) -> bool:
        st = self.victim.lstat()
        return self.victim.read_text() == SECRET and st.st_uid == 0 and st.st_mode & 0o777 == 0o600


@pytest.fixture()
def tree() -> Iterator[Tree]:
    if os.geteuid() != 0:
        pytest.fail("these tests plant files as the user nobody: run them as root (CI does)")
    top = Path(tempfile.mkdtemp(prefix="hpcbench-security-", dir="/tmp"))
    try:
        top.chmod(0o755)
        sticky = top / "sticky"
        sticky.mkdir()
        sticky.chmod(0o1777)
        victim = write(top / "victim", SECRET)
        victim.chmod(0o600)
        yield Tree(top, sticky, victim)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def nobody_argv(*argv: str) -> list[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed by this test"
    return [setpriv, "--reuid=nobody", f"--regid={NOGROUP}", "--clear-groups", "--", *argv]


def as_nobody(*argv: str) -> None:
    """Runs ``argv`` as the user nobody; it must succeed (the plant is in place)."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(nobody_argv(*argv), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{argv}: {done.stderr}"


def refused(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """The run was refused with exit 4 and one line naming ``words``; returns the line."""
    assert r.returncode == ExitCode.USAGE, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcbench: error: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


def suite(cli: Cli) -> str:
    return str(write(cli.workdir / "health.toml", SUITE))


# -- the lock -----------------------------------------------------------------------------------


def test_default_lock_folder_is_made_root_only_and_used(cli: Cli, tree: Tree) -> None:
    """No folder yet (as after a reboot: /run is a tmpfs): root makes it 0755, the lock 0600."""
    run_dir = tree.top / "run-hpcbench"
    del cli.env["HPCBENCH_LOCK"]
    cli.env["HPCBENCH_RUN_DIR"] = str(run_dir)
    r = cli("run", suite(cli), "--quiet")
    assert r.returncode == ExitCode.OK, r.stderr
    st = run_dir.lstat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o755)
    lock = (run_dir / "hpcbench.lock").lstat()
    assert (lock.st_uid, lock.st_mode & 0o777, lock.st_size) == (0, 0o600, 0)  # emptied when released


def test_planted_folder_with_a_symlinked_lock_at_the_default_place(cli: Cli, tree: Tree) -> None:
    """nobody makes the lock folder before root does (in a sticky folder, as /run/lock is) and
    links the lock to a root-only file: refused, nothing written through the link."""
    run_dir = tree.sticky / "hpcbench"
    as_nobody("mkdir", "-m", "0755", str(run_dir))
    as_nobody("ln", "-s", str(tree.victim), str(run_dir / "hpcbench.lock"))
    del cli.env["HPCBENCH_LOCK"]
    cli.env["HPCBENCH_RUN_DIR"] = str(run_dir)
    line = refused(cli("run", suite(cli)), str(run_dir), f"user nobody (uid {NOBODY}")
    assert tree.intact(), line
    assert not list(cli.workdir.glob("results/*/*.json"))  # nothing ran


def test_default_lock_folder_planted_as_a_symlink(cli: Cli, tree: Tree) -> None:
    """The folder itself a link to a root-only folder holding a file named like the lock."""
    private = tree.top / "private"
    private.mkdir(mode=0o700)
    victim = write(private / "hpcbench.lock", SECRET)
    as_nobody("ln", "-s", str(private), str(tree.sticky / "hpcbench"))
    del cli.env["HPCBENCH_LOCK"]
    cli.env["HPCBENCH_RUN_DIR"] = str(tree.sticky / "hpcbench")
    refused(cli("run", suite(cli)), str(tree.sticky / "hpcbench"), "not a folder")
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("how", ["--lock-file", "HPCBENCH_LOCK"])
def test_symlinked_lock_at_an_explicit_path(cli: Cli, tree: Tree, how: str) -> None:
    lock = tree.sticky / "hpcbench.lock"
    as_nobody("ln", "-s", str(tree.victim), str(lock))
    if how == "--lock-file":
        r = cli("run", suite(cli), "--lock-file", str(lock))
    else:
        cli.env["HPCBENCH_LOCK"] = str(lock)
        r = cli("run", suite(cli))
    refused(r, f"lock folder {tree.sticky}", "every user")
    assert tree.intact()


def _held_by_nobody(lock: Path) -> subprocess.Popen[bytes]:
    """nobody creates ``lock`` and holds its flock (util-linux flock) until killed."""
    proc = subprocess.Popen(
        nobody_argv("flock", str(lock), "sleep", "120"), env={"PATH": "/usr/bin:/bin"}, start_new_session=True
    )

    def held() -> bool:
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    deadline = time.monotonic() + 30
    while not held():
        assert time.monotonic() < deadline and proc.poll() is None, "nobody's flock never held"
        time.sleep(0.05)
    return proc


def test_lock_created_and_held_by_a_user_does_not_block_root(cli: Cli, tree: Tree) -> None:
    """nobody creates the lock file in a folder that was shared once (now root's, 0755) and holds
    its flock: root is refused at once (exit 4, the path and its owner named), never told "another
    run holds it", and writes nothing into the file."""
    shared = tree.top / "was-shared"
    shared.mkdir()
    shared.chmod(0o1777)
    lock = shared / "hpcbench.lock"
    proc = _held_by_nobody(lock)
    try:
        shared.chmod(0o755)  # the administrator closes the folder; nobody's file stays
        r = cli("run", suite(cli), "--lock-file", str(lock), timeout=60)
        refused(r, f"lock {lock}", f"belongs to user nobody (uid {NOBODY})")
        assert lock.stat().st_size == 0 and lock.stat().st_uid == NOBODY  # root wrote nothing
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


def test_an_older_readable_lock_held_by_a_user_is_refused_naming_the_holder(cli: Cli, tree: Tree) -> None:
    """Root's own lock, left 0644 by an older hpcbench in root's folder: nobody opened it and holds
    its flock. Root is refused (exit 4) with the holder named, not told "another run holds it"
    (which slurm-check answers with exit 0, the node left unchecked), and the file is 0600 now."""
    folder = tree.top / "run"
    folder.mkdir(mode=0o755)
    lock = write(folder / "hpcbench.lock", "")
    lock.chmod(0o644)
    proc = _held_by_nobody(lock)
    try:
        r = cli("run", suite(cli), "--lock-file", str(lock), timeout=60)
        line = refused(r, f"lock {lock}", f"held by pid {proc.pid}", f"of user nobody (uid {NOBODY})")
        assert "another hpcbench run" not in line
        assert lock.stat().st_mode & 0o777 == 0o600 and lock.stat().st_size == 0
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
    assert cli("run", suite(cli), "--lock-file", str(lock), "--quiet").returncode == ExitCode.OK


def test_lock_held_in_a_planted_default_folder_is_refused_not_waited_for(cli: Cli, tree: Tree) -> None:
    run_dir = tree.sticky / "hpcbench"
    as_nobody("mkdir", "-m", "0755", str(run_dir))
    proc = _held_by_nobody(run_dir / "hpcbench.lock")
    try:
        del cli.env["HPCBENCH_LOCK"]
        cli.env["HPCBENCH_RUN_DIR"] = str(run_dir)
        refused(cli("run", suite(cli), timeout=60), f"lock folder {run_dir}", f"user nobody (uid {NOBODY}")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


# -- records, suites, baselines, config, plugins ----------------------------------------------


def _forge_pass(cli: Cli, tree: Tree, results: Path) -> Path:
    """A real passing record of the suite, copied by nobody into ``results/<host>/`` with a fresh
    name: what --max-age would take as tonight's pass."""
    r = cli("run", suite(cli), "--quiet", "-o", str(cli.workdir / "real"))
    assert r.returncode == ExitCode.OK, r.stderr
    (real,) = (cli.workdir / "real").glob("*/*.json")
    host = real.parent.name
    source = tree.top / "pass.json"
    shutil.copy(real, source)
    source.chmod(0o644)
    as_nobody("mkdir", "-p", str(results / host))
    forged = results / host / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-9.json"
    as_nobody("cp", str(source), str(forged))
    return forged


def test_world_writable_records_folder_with_a_forged_pass_never_skips(cli: Cli, tree: Tree) -> None:
    results = tree.top / "scratch-results"
    results.mkdir()
    results.chmod(0o777)  # an explicit --output on a shared scratch
    forged = _forge_pass(cli, tree, results)
    assert json.loads(forged.read_text())["verdict"] == "OK"
    r = cli("run", suite(cli), "-o", str(results), "--max-age", "1h")
    refused(r, str(results), "every user")
    assert "skipped" not in r.stdout + r.stderr
    assert len(list(results.glob("*/*.json"))) == 1  # only the forged one: nothing ran, nothing skipped


def test_max_age_ignores_a_record_another_user_owns(cli: Cli, tree: Tree) -> None:
    """A folder that was shared once (now root's): nobody's record in it is no pass of root's."""
    results = tree.top / "was-shared-results"
    results.mkdir()
    results.chmod(0o777)
    _forge_pass(cli, tree, results)
    results.chmod(0o755)
    for host_dir in results.iterdir():
        os.chown(host_dir, 0, 0)
        host_dir.chmod(0o755)
    r = cli("run", suite(cli), "-o", str(results), "--max-age", "1h", "--quiet")
    assert r.returncode == ExitCode.OK, r.stderr
    assert "skipped" not in r.stdout + r.stderr
    owners = sorted(p.stat().st_uid for p in results.glob("*/*.json"))
    assert owners == [0, NOBODY]  # root ran and wrote its own record
    again = cli("run", suite(cli), "-o", str(results), "--max-age", "1h")
    assert again.returncode == ExitCode.OK and "skipped:" in again.stdout  # its own pass does count


def test_suite_planted_by_a_user_is_refused(cli: Cli, tree: Tree) -> None:
    planted = tree.sticky / "nightly.toml"
    source = write(tree.top / "src.toml", SUITE)
    source.chmod(0o644)
    as_nobody("cp", str(source), str(planted))
    line = refused(cli("run", str(planted)), f"suite {planted}", f"belongs to user nobody (uid {NOBODY})")
    assert f"in {tree.sticky}, where every user can create files" in line


def test_world_writable_suite_and_baseline_are_refused(cli: Cli, tree: Tree) -> None:
    """Root's own files, but writable by every user (a suite) or in nobody's folder (a baseline)."""
    loose = write(tree.top / "loose.toml", SUITE)
    loose.chmod(0o666)
    refused(cli("run", str(loose)), f"suite {loose}", "every user")
    profiles = tree.top / "profiles"
    profiles.mkdir()
    os.chown(profiles, NOBODY, NOGROUP)
    baseline = write(profiles / "b.toml", 'name = "b"\n[expected.membw]\nscore = 100.0\n')
    line = refused(cli("run", suite(cli), "--baseline", str(baseline)), f"baseline {baseline}")
    assert f"{profiles} can be written by user nobody (uid {NOBODY}, the owner)" in line
    cli.env["HPCBENCH_BASELINES"] = str(profiles)  # a site folder nobody controls
    refused(cli("run", suite(cli)), f"HPCBENCH_BASELINES: baselines folder {profiles}", "nobody")


def test_config_file_of_another_user_is_refused(cli: Cli, tree: Tree) -> None:
    conf = tree.sticky / "config.toml"
    as_nobody("sh", "-c", f"echo 'output = \"/tmp\"' > {conf}")
    cli.env["HPCBENCH_CONFIG"] = str(conf)
    refused(cli("config"), f"config {conf}", "belongs to user nobody")


def test_plugin_another_user_can_change_is_never_imported(cli: Cli, tree: Tree, plugin_site: Path) -> None:
    """The test probes installed in a folder nobody owns: broken ("refused as root"), not loaded."""
    site = tree.top / "site"
    shutil.copytree(plugin_site, site, symlinks=True)
    marker = tree.top / "plugin-ran"
    init = site / "hpcbench_testprobes" / "__init__.py"
    init.write_text(f"open({str(marker)!r}, 'w').close()\n" + init.read_text())  # what nobody could add
    for folder, dirs, files in os.walk(site):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), NOBODY, NOGROUP)
    os.lchown(site, NOBODY, NOGROUP)
    cli.env["PYTHONPATH"] = str(site)
    listed = cli("list")
    assert listed.returncode == ExitCode.OK, listed.stderr
    (fixed,) = [ln for ln in listed.stdout.splitlines() if ln.startswith("fixed:")]
    assert fixed.startswith("fixed: BROKEN: refused as root, not loaded: ") and "nobody" in fixed
    line = refused(cli("run", suite(cli)), "fixed", "refused as root")
    assert not marker.exists(), line  # the plugin's code never ran as root


# -- files root writes: textfile, JUnit, log -------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("--prometheus-textfile", "hpcbench_health.prom"),
        ("--junit", "junit.xml"),
        ("--log-file", "hpcbench.log"),
    ],
)
def test_symlinked_report_in_a_shared_folder_is_refused(cli: Cli, tree: Tree, option: str, name: str) -> None:
    as_nobody("ln", "-s", str(tree.victim), str(tree.sticky / name))
    value = str(tree.sticky) if option == "--prometheus-textfile" else str(tree.sticky / name)
    refused(cli("run", suite(cli), option, value), option, str(tree.sticky), "every user")
    assert tree.intact()
    assert not list(cli.workdir.glob("results/*/*.json"))  # refused before anything ran


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("--prometheus-textfile", "hpcbench_health.prom"),
        ("--junit", "junit.xml"),
        ("--log-file", "hpcbench.log"),
    ],
)
def test_report_folder_of_another_user_with_a_planted_link_is_refused(
    cli: Cli, tree: Tree, option: str, name: str
) -> None:
    """node_exporter's textfile folder (or a report folder) that a user owns."""
    folder = tree.top / "textfile"
    folder.mkdir()
    os.chown(folder, NOBODY, NOGROUP)
    as_nobody("ln", "-s", str(tree.victim), str(folder / name))
    value = str(folder) if option == "--prometheus-textfile" else str(folder / name)
    refused(
        cli("run", suite(cli), option, value), option, str(folder), f"user nobody (uid {NOBODY}, the owner)"
    )
    assert tree.intact()


def test_report_target_that_is_a_link_or_anothers_file_is_refused_at_write_time(
    cli: Cli, tree: Tree, tmp_path: Path
) -> None:
    """Root's own folder: a link (root's) or a file of nobody's found there is not replaced."""
    out = tmp_path / "reports"
    out.mkdir()
    link = out / "junit.xml"
    link.symlink_to(tree.victim)
    refused(cli("run", suite(cli), "--junit", str(link)), f"--junit {link}", "symbolic link")
    other = out / "other.xml"
    other.write_text("nobody's\n")
    os.chown(other, NOBODY, NOGROUP)
    refused(cli("run", suite(cli), "--junit", str(other)), f"--junit {other}", "belongs to user nobody")
    assert other.read_text() == "nobody's\n" and tree.intact()
    log = out / "ops.log"
    log.symlink_to(tree.victim)
    refused(cli("run", suite(cli), "--log-file", str(log)), f"--log-file {log}", "symbolic link")
    assert tree.intact()


def test_a_file_written_by_hand_into_sticky_tmp_never_follows_a_planted_link(cli: Cli, tree: Tree) -> None:
    """``baseline create -o`` (and --csv, --html) into a sticky folder: a link planted at the name
    is refused; a free name is written, root's, where no one else can replace it."""
    r = cli("run", suite(cli), "--quiet")
    assert r.returncode == ExitCode.OK, r.stderr
    (record,) = cli.workdir.glob("results/*/*.json")
    planted = tree.sticky / "golden.toml"
    as_nobody("ln", "-s", str(tree.victim), str(planted))
    line = refused(
        cli("baseline", "create", str(record), "-o", str(planted), "--force"), f"writing {planted}"
    )
    assert "is a symbolic link (never followed)" in line and tree.intact()
    free = tree.sticky / "mine.toml"
    done = cli("baseline", "create", str(record), "-o", str(free))
    assert done.returncode == ExitCode.OK, done.stderr
    assert free.lstat().st_uid == 0 and 'name = "mine"' in free.read_text()
    assert list(tree.sticky.glob(".*")) == []  # no temporary file left
