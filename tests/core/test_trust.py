"""hpcbench.core.trust's decisions on made-up file systems (no root needed), the default lock's place,
and the lock's and the private folder's checks on real files. The attacks themselves, planted by
the user nobody against the real CLI, are in test_security.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hpcbench.core import trust
from hpcbench.core.trust import Untrusted
from hpcbench.engine import config
from hpcbench.engine.lock import RunLock, flock_holders

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK
USER = 1000  # a user running hpcbench in the tests of the non-root rules
OTHER = 65534  # nobody; its group is nogroup on Debian, nobody on Fedora
GROUP = trust.group_name(OTHER)


def st(kind: int, mode: int, uid: int = 0, gid: int = 0, nlink: int = 1) -> os.stat_result:
    return os.stat_result((kind | mode, 1, 1, nlink, uid, gid, 0, 0, 0, 0))


class FakeFs:
    """Paths to stat results, and links to their targets."""

    def __init__(self, entries: dict[str, os.stat_result], links: dict[str, str] | None = None) -> None:
        self.entries = {"/": st(DIR, 0o755), **entries}
        self.links = links or {}

    def lstat(self, path: str) -> os.stat_result:
        if path not in self.entries:
            raise FileNotFoundError(path)
        return self.entries[path]

    def readlink(self, path: str) -> str:
        return self.links[path]

    def problem(self, path: str, euid: int = 0, ancestor: bool = False) -> str | None:
        return trust.problem(path, euid, self.lstat, ancestor=ancestor, readlink=self.readlink)


TMP = {"/tmp": st(DIR, 0o1777)}


def test_roots_files_in_roots_folders_pass() -> None:
    fs = FakeFs(
        {"/etc": st(DIR, 0o755), "/etc/hpcbench": st(DIR, 0o755), "/etc/hpcbench/s.toml": st(FILE, 0o644)}
    )
    assert fs.problem("/etc/hpcbench/s.toml") is None
    assert fs.problem("/etc/hpcbench/missing/deeper.toml") is None  # what does not exist is not judged


def test_a_file_under_sticky_tmp_passes_only_when_root_owns_the_entry() -> None:
    fs = FakeFs({**TMP, "/tmp/mine": st(DIR, 0o700), "/tmp/mine/r.json": st(FILE, 0o644)})
    assert fs.problem("/tmp/mine/r.json") is None
    fs.entries["/tmp/mine"] = st(DIR, 0o755, uid=OTHER, gid=OTHER)
    why = fs.problem("/tmp/mine/r.json")
    assert why is not None and why.startswith("/tmp/mine belongs to user nobody (uid 65534) in /tmp, ")
    assert why.endswith("where every user can create files")


def test_the_last_folder_writable_by_others_is_refused_even_sticky() -> None:
    fs = FakeFs(TMP)
    assert fs.problem("/tmp") == "/tmp can be written by every user (drwxrwxrwt root:root)"
    assert fs.problem("/tmp", ancestor=True) is None  # something made in it is root's: that will do
    assert fs.problem("/tmp/new-folder") is None


def test_a_world_writable_folder_without_the_sticky_bit_is_refused_above_anything() -> None:
    fs = FakeFs(
        {"/scratch": st(DIR, 0o777), "/scratch/root": st(DIR, 0o755), "/scratch/root/s.toml": st(FILE, 0o644)}
    )
    assert (
        fs.problem("/scratch/root/s.toml") == "/scratch can be written by every user (drwxrwxrwx root:root)"
    )


def test_group_write_counts_unless_the_group_is_roots() -> None:
    fs = FakeFs({"/srv": st(DIR, 0o775, gid=0), "/srv/s.toml": st(FILE, 0o664, gid=0)})
    assert fs.problem("/srv/s.toml") is None
    fs.entries["/srv/s.toml"] = st(FILE, 0o664, gid=OTHER)
    assert (
        fs.problem("/srv/s.toml")
        == f"/srv/s.toml can be written by group {GROUP} (gid 65534) (-rw-rw-r-- root:{GROUP})"
    )


def test_a_file_another_user_owns_is_refused_even_read_only() -> None:
    fs = FakeFs({"/etc": st(DIR, 0o755), "/etc/b.toml": st(FILE, 0o444, uid=OTHER)})
    assert fs.problem("/etc/b.toml") == (
        "/etc/b.toml can be written by user nobody (uid 65534, the owner) (-r--r--r-- nobody:root)"
    )


def test_links_are_followed_and_their_targets_judged() -> None:
    fs = FakeFs(
        {
            "/etc": st(DIR, 0o755),
            "/etc/hpcbench": st(LINK, 0o777),
            "/home": st(DIR, 0o755),
            "/home/op": st(DIR, 0o755, uid=OTHER),
            "/home/op/conf": st(DIR, 0o755, uid=OTHER),
        },
        {"/etc/hpcbench": "../home/op/conf"},
    )
    assert fs.problem("/etc/hpcbench/config.toml") == (
        "/home/op can be written by user nobody (uid 65534, the owner) (drwxr-xr-x nobody:root)"
    )
    fs.entries["/home/op"] = st(DIR, 0o755)
    fs.entries["/home/op/conf"] = st(DIR, 0o755)
    assert fs.problem("/etc/hpcbench/config.toml") is None


def test_a_link_another_user_planted_in_a_sticky_folder_is_refused() -> None:
    fs = FakeFs({**TMP, "/tmp/out": st(LINK, 0o777, uid=OTHER), "/var": st(DIR, 0o755)}, {"/tmp/out": "/var"})
    assert fs.problem("/tmp/out/r.json") == (
        "/tmp/out belongs to user nobody (uid 65534) in /tmp, where every user can create files"
    )


def test_a_loop_of_links_ends() -> None:
    fs = FakeFs({"/a": st(LINK, 0o777), "/b": st(LINK, 0o777)}, {"/a": "/b", "/b": "/a"})
    assert fs.problem("/a/x") == "/a/x: too many levels of symbolic links"


def test_the_running_users_own_files_are_trusted_as_roots_are() -> None:
    fs = FakeFs(
        {
            "/home": st(DIR, 0o755),
            "/home/u": st(DIR, 0o700, uid=USER),
            "/home/u/s.toml": st(FILE, 0o644, uid=USER),
        }
    )
    assert fs.problem("/home/u/s.toml", euid=USER) is None
    assert fs.problem("/home/u/s.toml", euid=0) is not None


def test_checks_apply_as_root_only() -> None:
    fs = FakeFs({**TMP, "/tmp/s.toml": st(FILE, 0o666, uid=OTHER)})
    trust.check("/tmp/s.toml", "suite", USER, fs.lstat)  # another user: trusted with what they reach
    with pytest.raises(Untrusted) as err:
        trust.check("/tmp/s.toml", "suite", 0, fs.lstat)
    assert str(err.value).startswith("suite /tmp/s.toml: refused as root: /tmp/s.toml belongs to user nobody")


def test_own_file() -> None:
    assert trust.own_file(st(FILE, 0o600), 0) is None
    assert trust.own_file(st(LINK, 0o777), 0) == "is a symbolic link (never followed)"
    assert trust.own_file(st(stat.S_IFIFO, 0o600), 0) == "is not a regular file"
    assert trust.own_file(st(FILE, 0o600, uid=OTHER), 0) == (
        "belongs to user nobody (uid 65534), not to the running user"
    )
    assert trust.own_file(st(FILE, 0o600, nlink=2), 0) == (
        "has 2 hard links (another name could be anyone's file)"
    )


# -- where the lock is -----------------------------------------------------------------------


def test_default_lock_place() -> None:
    # root's runs share one lock whatever their environment: cron's (a session's) and slurmd's (empty)
    assert config.default_lock(0, {"XDG_RUNTIME_DIR": "/run/user/0"}) == Path("/run/hpcbench/hpcbench.lock")
    assert config.default_lock(0, {}) == Path("/run/hpcbench/hpcbench.lock")
    assert config.default_lock(USER, {"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u"}) == Path(
        "/run/user/1000/hpcbench.lock"
    )
    # no session (a user's cron job): beside the default records, in the user's home
    assert config.default_lock(USER, {"HOME": "/home/u"}) == Path(
        "/home/u/.local/state/hpcbench/hpcbench.lock"
    )
    assert config.default_lock(0, {"HPCBENCH_RUN_DIR": "/x"}) == Path("/x/hpcbench.lock")


def test_config_reports_the_default_lock(tmp_path: Path) -> None:
    empty = tmp_path / "config.toml"
    empty.write_text("")
    cfg = config.load({}, {"HOME": "/home/u", "HPCBENCH_CONFIG": str(empty)}, euid=0)
    assert (cfg.lock.value, cfg.lock.source) == (Path("/run/hpcbench/hpcbench.lock"), "default")


# -- the lock and the private folder on real files ---------------------------------------------


def test_lock_is_made_0600_and_an_older_looser_one_tightened(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "hpcbench.lock"
    with RunLock(lock, {"run_id": "a"}):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and b'"run_id": "a"' in lock.read_bytes()
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    lock.chmod(0o644)  # left by an older hpcbench: anyone could open it and hold its flock
    with RunLock(lock, {"run_id": "b"}):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_lock_refuses_a_link_a_hard_link_and_a_fifo(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "link.lock").symlink_to(victim)
    os.link(victim, folder / "hard.lock")
    os.mkfifo(folder / "fifo.lock")
    for name, why in (
        ("link.lock", "is a symbolic link (never followed)"),
        ("hard.lock", "has 2 hard links"),
        ("fifo.lock", "is not a regular file"),
    ):
        with pytest.raises(Untrusted) as err, RunLock(folder / name, {"run_id": "x"}):
            pass
        assert str(err.value).startswith(f"lock {folder / name}: refused: {why}")
    assert victim.read_text() == "keep\n"


def test_lock_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    with pytest.raises(Untrusted) as err, RunLock(folder / "hpcbench.lock", {}):
        pass
    assert str(err.value) == (
        f"lock folder {folder}: refused: can be written by every user (drwxrwxrwt); "
        "another user could plant or hold the lock"
    )
    assert not (folder / "hpcbench.lock").exists()


def test_private_dir(tmp_path: Path) -> None:
    made = trust.private_dir(tmp_path / "state" / "health")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    made.chmod(0o755)  # ours, readable by others: tightened
    assert stat.S_IMODE(trust.private_dir(made).stat().st_mode) == 0o700
    made.chmod(0o777)  # others could have planted something: refused
    with pytest.raises(Untrusted, match="can be written by every user"):
        trust.private_dir(made)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "state")
    with pytest.raises(Untrusted, match="not a folder"):
        trust.private_dir(link)


def test_flock_holders_parses_proc_locks() -> None:
    text = (
        "1: FLOCK  ADVISORY  WRITE 7539 fe:00:2179250 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 7600 fe:00:2179250 0 EOF\n"
        "2: POSIX  ADVISORY  WRITE 7541 fe:00:2179250 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 7542 08:01:2179250 0 EOF\n"
    )
    assert flock_holders(text, os.makedev(0xFE, 0), 2179250) == [7539]
    assert flock_holders(text, os.makedev(8, 1), 2179250) == [7542]
    assert flock_holders(text, os.makedev(8, 1), 1) == []


def test_a_sticky_folder_will_do_above_only_when_root_owns_it() -> None:
    fs = FakeFs({"/tmp": st(DIR, 0o1777, uid=OTHER), "/tmp/x.toml": st(FILE, 0o644)})
    assert fs.problem("/tmp/x.toml") == (
        "/tmp can be written by user nobody (uid 65534, the owner), every user (drwxrwxrwt nobody:root)"
    )
