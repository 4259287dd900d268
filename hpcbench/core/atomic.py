"""Atomic file writes: the reader sees the old file or the whole new one, never half of one.

Every file hpcbench writes for others to read (result records, a probe's outcome, JUnit XML,
the HTML report, CSV, baseline profiles, a rank's result) goes through here: a temporary file
beside the target (same file system), flushed and fsynced, optionally checked, then renamed
over the target, and the folder fsynced so the rename survives a crash. On any error the
temporary file is removed and the target is untouched.

Run as root, a write also refuses (``trust.Untrusted``, exit 4) a folder another user can change
(a sticky one such as ``/tmp`` will do: no one else can replace what is renamed into it) and a
target that is a symbolic link or another user's file (hpcbench.core.trust): the temporary file is
created with O_EXCL (mkstemp) and renamed, so no planted link is ever followed. The folders of
records and of the run's reports (``--junit``, ``--log-file``, ``--prometheus-textfile``) are
checked more strictly before a run: no one but root may write them, sticky or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hpcbench.core import trust

#: what a written file's mode is (mkstemp would leave 0600): readable by the monitoring user
FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_open(
    path: str | Path,
    *,
    binary: bool = False,
    newline: str | None = None,
    check: Callable[[Path], None] | None = None,
    durable: bool = True,
) -> Iterator[IO[Any]]:
    """A file object to write ``path``'s new content to; renamed into place when the block ends
    without an exception and ``check(temporary path)`` (if given) does not raise.

    ``durable=False`` skips the fsyncs (a scratch file only this run reads)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():  # as root, no folder is made through another user's link
        trust.check(folder.parent, f"writing {target.name} in", ancestor=True)
    folder.mkdir(parents=True, exist_ok=True)
    # a sticky folder (/tmp) will do: no other user can replace the file renamed into it
    trust.check(folder, f"writing {target.name} in", ancestor=True)
    trust.check_target(target, "writing")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        if binary:
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        with fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(folder)


def write_atomic(
    path: str | Path, data: str | bytes, *, check: Callable[[Path], None] | None = None, durable: bool = True
) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, binary=isinstance(data, bytes), check=check, durable=durable) as fh:
        fh.write(data)
    return Path(path)


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = None, allow_nan: bool = False, durable: bool = True
) -> Path:
    """``obj`` as JSON, newline-terminated, written atomically; NaN refused unless ``allow_nan``
    (JSON has no NaN: Python's extension is for files only hpcbench reads back)."""
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n"
    return write_atomic(path, text, durable=durable)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse to open a folder for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
