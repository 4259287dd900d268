"""The state folder: readings one health run keeps for the next (error counters with their time),
so that growth is judged against the previous run instead of by reading twice a second apart.

Where: ``/var/lib/hpcbench/state`` as root, else ``$XDG_STATE_HOME/hpcbench`` (default
``~/.local/state/hpcbench``). Created 0700; a folder that exists but belongs to another user, or
that others may write, is refused (a root health check must never read what a user planted).
Each reading is one JSON file, written atomically: ``{"time": <epoch s>, "boot": <epoch s>,
"values": {...}}``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_STATE = "/var/lib/hpcbench/state"
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class StateError(Exception):
    """The state folder cannot be used safely; the message says why."""


def default_dir() -> Path:
    if os.geteuid() == 0:
        return Path(ROOT_STATE)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "hpcbench"


def ensure(folder: Path) -> Path:
    """``folder`` created 0700 if absent; StateError when it is not ours alone."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise StateError(f"state folder {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"state folder {folder} is not a folder (a link or a file)")
    if st.st_uid != os.geteuid():
        raise StateError(
            f"state folder {folder} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateError(f"state folder {folder} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
    return folder


@dataclass(frozen=True)
class Reading:
    time: float
    boot: float | None
    values: dict[str, Any]


def _path(folder: Path, name: str) -> Path:
    return folder / f"{_NAME.sub('_', name)}.json"


def load(folder: Path, name: str) -> Reading | None:
    """The previous reading named ``name``, or None (none yet, or unreadable: a new start)."""
    path = _path(ensure(folder), name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as fh:
            data = json.load(fh)
        return Reading(float(data["time"]), data.get("boot"), dict(data["values"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(folder: Path, name: str, reading: Reading) -> None:
    from hpcbench.core.atomic import write_json

    path = _path(ensure(folder), name)
    write_json(path, {"time": reading.time, "boot": reading.boot, "values": reading.values}, durable=False)
