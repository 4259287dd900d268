"""Whether a path is under the running user's control, as sshd's StrictModes asks it.

Run as root, hpcbench reads suites, baselines, its config file, records (``--max-age``) and
plugins, and writes records, reports, logs and its lock. A path another user can change is a
path that user controls: a planted symbolic link turns root's write into a write anywhere, a
forged record skips the nightly check, a suite chooses what root runs. So as root, every such
path is walked from ``/`` down, and refused (``Untrusted``, exit 4, one line) when:

- a component (a folder, the file, a symbolic link's owner where that matters) is owned by a
  user other than root or the running user;
- a component is writable by a group other than root's (gid 0), or by every user; a folder
  writable by others is tolerated only as an ancestor with the sticky bit (``/tmp``), and then
  only when the entry below it belongs to root or the running user (no one else can rename or
  remove it there);
- the last component itself is writable by others, sticky or not (a records folder in ``/tmp``
  lets anyone plant a record next to root's).

Symbolic links are followed the way the kernel follows them, their targets walked the same way.
Access control lists are not read: a folder whose ACL lets another user write is not seen (see
docs/security.md). Other users (not root) are trusted with what they can reach: the checks apply
when the effective uid is 0. ``euid``, ``lstat`` and ``readlink`` are parameters so the
decisions are tested without root on made-up stat results; the tests of the real thing plant
files as ``nobody``.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

from hpcbench.core.errors import ConfigError

Lstat = Callable[[str], os.stat_result]
MAX_LINKS = 40  # the kernel's limit on symbolic links in one lookup


class Untrusted(ConfigError):
    """A path another user can change, refused while running as root (exit 4)."""


def strict(euid: int | None = None) -> bool:
    """Whether the checks apply: running as root."""
    return (os.geteuid() if euid is None else euid) == 0


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "?"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return "?"


def _trusted(euid: int) -> frozenset[int]:
    return frozenset({0, euid})


def writers(st: os.stat_result, euid: int) -> list[str]:
    """Who other than root and ``euid`` can change the file or folder ``st`` describes: its
    owner, a group with write permission, every user (pure)."""
    who = []
    if st.st_uid not in _trusted(euid):
        who.append(f"user {user_name(st.st_uid)} (uid {st.st_uid}, the owner)")
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        who.append(f"group {group_name(st.st_gid)} (gid {st.st_gid})")
    if st.st_mode & stat.S_IWOTH:
        who.append("every user")
    return who


def _mode(st: os.stat_result) -> str:
    return f"{stat.filemode(st.st_mode)} {user_name(st.st_uid)}:{group_name(st.st_gid)}"


def _others_can_write(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IWOTH) or bool(st.st_mode & stat.S_IWGRP and st.st_gid != 0)


def problem(
    path: str | Path,
    euid: int | None = None,
    lstat: Lstat = os.lstat,
    *,
    ancestor: bool = False,
    readlink: Callable[[str], str] = os.readlink,
) -> str | None:
    """Why ``path`` (existing or not) is not under the control of root and ``euid``: the first
    component another user can change and who can, in words; None when nothing can be said
    against it. What does not exist yet is not judged (its existing folder is). ``ancestor``:
    ``path`` is a folder something will be made in, judged like the folders above it (a sticky
    ``/tmp`` will do, where an entry of root's cannot be replaced)."""
    euid = os.geteuid() if euid is None else euid
    trusted = _trusted(euid)
    text = os.fspath(path)
    if not text.startswith("/"):
        text = os.path.join(os.getcwd(), text)
    pending = [p for p in text.split("/") if p not in ("", ".")]
    pending.reverse()  # a stack: the next component last
    current = "/"
    parent = lstat("/")
    if who := writers(parent, euid):
        return f"/ can be written by {', '.join(who)} ({_mode(parent)})"
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            current = os.path.dirname(current) or "/"
            parent = lstat(current)
            continue
        child = os.path.join(current, name)
        try:
            st = lstat(child)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        last = not pending and not ancestor
        if _others_can_write(parent):
            if not parent.st_mode & stat.S_ISVTX:
                return f"{current} can be written by {', '.join(writers(parent, euid))} ({_mode(parent)})"
            if st.st_uid not in trusted:
                return (
                    f"{child} belongs to user {user_name(st.st_uid)} (uid {st.st_uid}) in {current}, "
                    f"where {', '.join(writers(parent, euid))} can create files"
                )
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                return f"{text}: too many levels of symbolic links"
            target = readlink(child)
            if target.startswith("/"):
                current, parent = "/", lstat("/")
            pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        who = writers(st, euid)
        # a folder like /tmp (root's, sticky) is an ancestor that will do; nothing else others write
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid in trusted
        if who and (last or not sticky_dir):
            return f"{child} can be written by {', '.join(who)} ({_mode(st)})"
        current, parent = child, st
    return None


def check(
    path: str | Path, what: str, euid: int | None = None, lstat: Lstat = os.lstat, *, ancestor: bool = False
) -> None:
    """As root: Untrusted (``<what> <path>: refused as root: <why>``) when another user can change
    ``path``; nothing otherwise, and nothing when not root."""
    euid = os.geteuid() if euid is None else euid
    if not strict(euid):
        return
    why = problem(path, euid, lstat, ancestor=ancestor)
    if why:
        raise Untrusted(f"{what} {path}: refused as root: {why}")


def own_file(st: os.stat_result, euid: int) -> str | None:
    """Why an existing file is not one hpcbench may write into or replace: not a regular file,
    another user's, or a hard link (its other names could be anywhere); None when it is ours (pure)."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (never followed)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != euid:
        return f"belongs to user {user_name(st.st_uid)} (uid {st.st_uid}), not to the running user"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links (another name could be anyone's file)"
    return None


def check_target(path: str | Path, what: str, euid: int | None = None) -> None:
    """As root, before replacing ``path``: Untrusted when it exists and is not a plain file of
    the running user (a planted link, another user's file)."""
    euid = os.geteuid() if euid is None else euid
    if not strict(euid):
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    why = own_file(st, euid)
    if why:
        raise Untrusted(f"{what} {path}: refused as root: {why}")


def private_dir(path: str | Path, what: str = "state folder", euid: int | None = None) -> Path:
    """A folder only the running user can enter (0700), created if missing; Untrusted when it
    exists as a link, belongs to another user or another user can write it, or (as root) when
    another user controls a folder above it."""
    euid = os.geteuid() if euid is None else euid
    folder = Path(path)
    check(folder.parent, what, euid, ancestor=True)  # nothing made through another user's link
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"{what} {folder}: cannot create: {exc.strerror}") from None
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise Untrusted(f"{what} {folder}: refused: not a folder (a link or a file is there)")
    if st.st_uid != euid:
        raise Untrusted(
            f"{what} {folder}: refused: belongs to user {user_name(st.st_uid)} (uid {st.st_uid}), "
            "not to the running user"
        )
    if _others_can_write(st):
        raise Untrusted(
            f"{what} {folder}: refused: can be written by {', '.join(writers(st, euid))} ({_mode(st)})"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700, follow_symlinks=False)
    check(folder, what, euid)
    return folder
