"""Where records go, which baselines and suites are searched, and which lock a run takes.

Each setting comes from the first of: the command line (``--output``, ``--lock-file``), the
environment (``HPCBENCH_OUTPUT``, ``HPCBENCH_BASELINES``,
``HPCBENCH_SUITES``, ``HPCBENCH_LOCK``), the site's config file (``$HPCBENCH_CONFIG``, else
``/etc/hpcbench/config.toml`` when it exists), and the built-in default. ``hpcbench config``
prints what is in force and where each value came from.

The config file (every key optional; relative paths are relative to the file's folder):

    output = "/var/lib/hpcbench/results"            # records: <output>/<host>/<UTC time>.json
    baselines = ["/etc/hpcbench/baselines"]         # site profiles, searched and matched first
    suites = ["/etc/hpcbench/suites"]               # site suites: `hpcbench run nightly` finds them
    lock = "/run/hpcbench/hpcbench.lock"            # one run per node (docs/security.md)

Path lists in the environment are separated by ``:`` (``os.pathsep``). The default output is
absolute (``/var/lib/hpcbench/results`` for root, ``$XDG_STATE_HOME/hpcbench/results`` or
``~/.local/state/hpcbench/results`` for others), so a cron job and an operator at a shell see
the same records wherever they start from (``--max-age`` reads them). The default lock is in a
folder only its user can create (``default_lock``). As root, the config file and the site
folders are refused when another user could change them (hpcbench.core.trust, docs/security.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbench.core import tomlfile, trust
from hpcbench.core.errors import ConfigError

SYSTEM_CONFIG = "/etc/hpcbench/config.toml"
KEYS = ("output", "baselines", "suites", "lock")
ENV = {
    "output": "HPCBENCH_OUTPUT",
    "baselines": "HPCBENCH_BASELINES",
    "suites": "HPCBENCH_SUITES",
    "lock": "HPCBENCH_LOCK",
}
LISTS = ("baselines", "suites")


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any  # a Path, or a tuple of Paths for the folder lists
    source: str  # "--output", "HPCBENCH_OUTPUT", the config file's path, or "default"

    def text(self) -> str:
        if isinstance(self.value, tuple):
            return os.pathsep.join(map(str, self.value)) or "(none)"
        return str(self.value)


@dataclass(frozen=True)
class Config:
    output: Setting
    baselines: Setting
    suites: Setting
    lock: Setting
    file: str | None  # the config file read, or None

    @property
    def settings(self) -> tuple[Setting, ...]:
        return (self.output, self.baselines, self.suites, self.lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_file": self.file,
            **{
                s.name: {
                    "value": [str(p) for p in s.value] if isinstance(s.value, tuple) else str(s.value),
                    "source": s.source,
                }
                for s in self.settings
            },
        }


def default_output(euid: int, environ: Mapping[str, str]) -> Path:
    if euid == 0:
        return Path("/var/lib/hpcbench/results")
    state = environ.get("XDG_STATE_HOME") or str(
        Path(environ.get("HOME") or "~").expanduser() / ".local/state"
    )
    return Path(state) / "hpcbench" / "results"


RUN_DIR = "/run/hpcbench"
#: moves the folder of the default lock (the tests' stand-in for /run/hpcbench)
RUN_DIR_ENV = "HPCBENCH_RUN_DIR"


def default_lock(euid: int, environ: Mapping[str, str]) -> Path:
    """Root: ``/run/hpcbench/hpcbench.lock`` (a folder only root can create, unlike the sticky
    ``/run/lock``: see docs/security.md); another user: ``$XDG_RUNTIME_DIR/hpcbench.lock``, else
    (no session, e.g. cron) ``$XDG_STATE_HOME/hpcbench/hpcbench.lock`` or
    ``~/.local/state/hpcbench/hpcbench.lock``; ``$HPCBENCH_RUN_DIR`` replaces the folder."""
    if environ.get(RUN_DIR_ENV):
        return Path(environ[RUN_DIR_ENV]) / "hpcbench.lock"
    if euid == 0:
        return Path(RUN_DIR) / "hpcbench.lock"
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return Path(runtime) / "hpcbench.lock"
    return default_output(euid, environ).parent / "hpcbench.lock"


def _file_values(path: str) -> dict[str, Any]:
    doc = tomlfile.read(path, "config")
    base = Path(path).resolve().parent
    out: dict[str, Any] = {}
    for key, value in doc.data.items():
        where = doc.line_of(key)
        if key not in KEYS:
            raise doc.error(f"key '{key}'", f"unknown key; expected one of {', '.join(KEYS)}", where)
        if key in LISTS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise doc.error(f"key '{key}'", f"expected a list of folders, got {value!r}", where)
            out[key] = tuple(base / Path(v).expanduser() for v in value)
        else:
            if not isinstance(value, str) or not value:
                raise doc.error(f"key '{key}'", f"expected a path, got {value!r}", where)
            out[key] = base / Path(value).expanduser()
    return out


def load(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    euid: int | None = None,
) -> Config:
    """The settings in force: ``cli`` holds what the command line gave (``output``, ``lock``; None
    where not given)."""
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    cli = cli or {}
    file = environ.get("HPCBENCH_CONFIG") or (SYSTEM_CONFIG if os.path.isfile(SYSTEM_CONFIG) else None)
    from_file = _file_values(file) if file else {}
    options = {"output": "--output", "lock": "--lock-file"}
    defaults: dict[str, Any] = {
        "output": default_output(euid, environ),
        "baselines": (),
        "suites": (),
        "lock": default_lock(euid, environ),
    }
    settings = {}
    for key in KEYS:
        given = cli.get(key) if key in options else None
        if given:
            settings[key] = Setting(key, Path(given), options[key])
            continue
        if environ.get(ENV[key]):
            raw = environ[ENV[key]]
            value = tuple(Path(p) for p in raw.split(os.pathsep) if p) if key in LISTS else Path(raw)
            settings[key] = Setting(key, value, ENV[key])
        elif key in from_file:
            settings[key] = Setting(key, from_file[key], str(file))
        else:
            settings[key] = Setting(key, defaults[key], "default")
    return Config(file=file, **settings)


def check_folders(setting: Setting) -> None:
    """ConfigError naming the setting's source when a folder of a path list does not exist (or,
    as root, when another user could change it: hpcbench.core.trust)."""
    for folder in setting.value:
        if not Path(folder).is_dir():
            raise ConfigError(f"{setting.source}: {setting.name} folder {folder} does not exist")
        trust.check(folder, f"{setting.source}: {setting.name} folder")
