"""Reading TOML config files with errors that name the file, the line and the key."""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbench.core import trust
from hpcbench.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class TomlDoc:
    path: str
    text: str
    data: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def line_of(self, key: str, table: str | None = None, index: int = 0) -> int | None:
        """Best-effort line number of ``key = ...`` inside the index-th ``[[table]]`` (or ``[table]``)."""
        lines = self.text.splitlines()
        start, end = 0, len(lines)
        if table is not None:
            header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
            starts = [i for i, line in enumerate(lines) if header.match(line)]
            if index >= len(starts):
                return None
            start = starts[index]
            following = [i for i, line in enumerate(lines) if i > start and re.match(r"^\s*\[", line)]
            end = following[0] if following else len(lines)
            if not key:
                return start + 1
        pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start, end):
            if pattern.match(lines[i]):
                return i + 1
        if table is None:  # a table of that name: [key], [[key]] or [key.sub]
            header = re.compile(r"^\s*\[\[?\s*" + re.escape(key) + r"\s*[\].]")
            for i, line in enumerate(lines):
                if header.match(line):
                    return i + 1
        return start + 1 if table is not None else None

    def error(self, where: str, message: str, line: int | None = None) -> ConfigError:
        at = f"line {line}: " if line else ""
        return ConfigError(f"{self.path}: {at}{where}: {message}")


def read(path: str | Path, what: str) -> TomlDoc:
    """Parse a TOML file; ConfigError naming the file and line on any problem (as root, also
    when another user could change the file: hpcbench.core.trust)."""
    p = Path(path)
    trust.check(p, what)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read {what} file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return TomlDoc(str(p), text, data)


def bundled_dir() -> Path:
    """The suites folder shipped with hpcbench (in the wheel, or the repository checkout)."""
    package = Path(__file__).resolve().parent.parent  # hpcbench/
    packaged = package / "suites"
    return packaged if packaged.is_dir() else package.parent / "suites"


def resolve(name_or_path: str, subdir: str, what: str, site: Sequence[Path] = ()) -> Path:
    """A file path as given, or a file by name (``quick`` -> quick.toml) in the ``site`` folders
    first, then among the bundled ones (suites/, suites/baselines/)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix == ".toml" or "/" in name_or_path:
        raise ConfigError(f"{name_or_path}: {what} file not found")
    bundled = bundled_dir() / subdir if subdir else bundled_dir()
    for folder in (*site, bundled):
        candidate = Path(folder) / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = [
        f"{', '.join(sorted(f.stem for f in Path(d).glob('*.toml'))) or 'none'} (in {d})"
        for d in (*site, bundled)
        if Path(d).is_dir()
    ]
    raise ConfigError(f"no {what} named {name_or_path!r}; known: {'; '.join(known) or 'none'}")
