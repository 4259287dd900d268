"""The node_config probe's parameters as typed specs: pure parsers of one-line texts.

A suite gives each item of NHC's catalogue as a short text, parsed here (``shlex`` words,
``key=value`` options), so a wrong one is refused when the suite loads (exit 4):

- mount:   ``/scratch type=lustre source=mds@o2ib:/fs options=rw,flock rw free=10% inodes=5%``
- process: ``slurmd`` or ``munged@munge`` (a name as /proc/PID/comm shows it, and its user)
- file:    ``/etc/slurm/slurm.conf`` (exists), ``/etc/x contains=TEXT``, ``/etc/x matches=REGEX``
- dmi:     ``bios_version=2.1.3`` (a file of /sys/class/dmi/id; shell patterns allowed: ``2.1.*``)
- command: ``timeout=5 match=^OK -- /usr/local/sbin/ibcheck --quiet`` (an argv, no shell)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    pass

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$", re.IGNORECASE)
_SCALE = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
DMI_KEYS = (
    "bios_vendor",
    "bios_version",
    "bios_date",
    "bios_release",
    "board_name",
    "board_vendor",
    "board_version",
    "product_name",
    "product_version",
    "sys_vendor",
    "ec_firmware_release",
)


class SpecError(ValueError):
    """A spec text that cannot be parsed; the message says why."""


@dataclass(frozen=True)
class Amount:
    """A free-space limit: a fraction of the total (``10%``) or bytes/inodes (``50G``, ``1000``)."""

    value: float
    percent: bool

    def met(self, free: float, total: float) -> bool:
        if self.percent:
            return total <= 0 or free * 100.0 >= self.value * total
        return free >= self.value

    def text(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g}"


def amount(text: str, what: str) -> Amount:
    """``10%`` or ``50G`` (K/M/G/T are powers of 1024) or ``1000``."""
    t = text.strip()
    if t.endswith("%"):
        try:
            v = float(t[:-1])
        except ValueError:
            raise SpecError(f"{what}={text!r}: expected a percentage like 10%") from None
        if not 0 <= v <= 100:
            raise SpecError(f"{what}={text!r}: a percentage is 0-100")
        return Amount(v, True)
    m = _SIZE.match(t)
    if not m:
        raise SpecError(f"{what}={text!r}: expected 10% or a size like 50G")
    return Amount(float(m[1]) * _SCALE[m[2].upper()], False)


def _words(text: str) -> list[str]:
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SpecError(f"{text!r}: {exc}") from None
    if not words:
        raise SpecError("empty")
    return words


def _options(words: list[str], allowed: tuple[str, ...], flags: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        key, sep, value = w.partition("=")
        if not sep and key in flags:
            out[key] = "yes"
        elif sep and key in allowed:
            out[key] = value
        else:
            known = ", ".join([*(f"{a}=" for a in allowed), *flags])
            raise SpecError(f"unknown option {w!r}; known: {known}")
    return out


@dataclass(frozen=True)
class MountSpec:
    path: str
    fstype: str = ""
    source: str = ""
    options: tuple[str, ...] = ()
    rw: bool = False
    free: Amount | None = None
    inodes: Amount | None = None


def mount(text: str) -> MountSpec:
    words = _words(text)
    path = words[0]
    if not path.startswith("/"):
        raise SpecError(f"{text!r}: a mount point is an absolute path")
    o = _options(words[1:], ("type", "source", "options", "free", "inodes"), ("rw",))
    return MountSpec(
        path.rstrip("/") or "/",
        o.get("type", ""),
        o.get("source", ""),
        tuple(x for x in o.get("options", "").split(",") if x),
        "rw" in o,
        amount(o["free"], "free") if "free" in o else None,
        amount(o["inodes"], "inodes") if "inodes" in o else None,
    )


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    user: str = ""

    def text(self) -> str:
        return f"{self.name}@{self.user}" if self.user else self.name


def process(text: str) -> ProcessSpec:
    name, _, user = text.strip().partition("@")
    if not name or " " in name or "/" in name:
        raise SpecError(f"{text!r}: expected a process name (as /proc/PID/comm), optionally @user")
    return ProcessSpec(name, user)


@dataclass(frozen=True)
class FileSpec:
    path: str
    contains: str = ""
    matches: re.Pattern[str] | None = None


def file(text: str) -> FileSpec:
    words = _words(text)
    if not words[0].startswith("/"):
        raise SpecError(f"{text!r}: a file is an absolute path")
    o = _options(words[1:], ("contains", "matches"))
    pattern = None
    if "matches" in o:
        try:
            pattern = re.compile(o["matches"], re.MULTILINE)
        except re.error as exc:
            raise SpecError(f"{text!r}: matches: {exc}") from None
    return FileSpec(words[0], o.get("contains", ""), pattern)


@dataclass(frozen=True)
class DmiSpec:
    key: str
    expected: str


def dmi(text: str) -> DmiSpec:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in DMI_KEYS:
        raise SpecError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(DMI_KEYS)}")
    return DmiSpec(key, value.strip())


@dataclass(frozen=True)
class CommandSpec:
    argv: tuple[str, ...]
    timeout: float = 10.0
    match: re.Pattern[str] | None = None

    def text(self) -> str:
        import shlex

        return shlex.join(self.argv)


def command(text: str) -> CommandSpec:
    words = _words(text)
    opts: dict[str, str] = {}
    if "--" in words:
        cut = words.index("--")
        opts = _options(words[:cut], ("timeout", "match"))
        words = words[cut + 1 :]
    if not words:
        raise SpecError(f"{text!r}: no command after --")
    try:
        timeout = float(opts.get("timeout", "10"))
    except ValueError:
        raise SpecError(f"{text!r}: timeout={opts['timeout']!r} is not a number") from None
    if timeout <= 0:
        raise SpecError(f"{text!r}: timeout must be > 0")
    pattern = None
    if "match" in opts:
        try:
            pattern = re.compile(opts["match"], re.MULTILINE)
        except re.error as exc:
            raise SpecError(f"{text!r}: match: {exc}") from None
    return CommandSpec(tuple(words), timeout, pattern)
