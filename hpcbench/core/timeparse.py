"""Durations and times: the one grammar every option and parameter accepts, and their text.

Durations: ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``, fractions (``1.5h``) or plain seconds
(``3600``); units s, m, h, d, w, combined largest first or in any order, without spaces.
Times: ISO 8601 (``2026-11-28T02:00:00Z``, ``2026-11-28 02:00:00.123456+01:00``,
``...+0100``); a time without a zone is UTC. ``since`` combines both for parameters such as
``xid_since``: ``boot`` (or empty), a duration ago, or a time.

Pure functions; the callers turn ValueError into their own one-line ConfigError/ParamError.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from datetime import datetime

UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HELP = "a duration such as 90s, 15m, 1h30m, 2d, 1w or plain seconds"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<hms>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_duration(text: str) -> float:
    """Seconds in a duration (see the module docstring); ValueError unless above 0."""
    t = text.strip().lower()
    seconds: float | None = None
    if _NUMBER.fullmatch(t):
        seconds = float(t)
    elif t and _PART.sub("", t) == "":
        seconds = sum(float(n) * UNIT_S[u] for n, u in _PART.findall(t))
    if seconds is None or seconds <= 0:
        raise ValueError(f"expected {DURATION_HELP}, above 0, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Whole seconds as the largest units that fit: 5400 -> ``1h30m``, 45 -> ``45s``, 0 -> ``0s``.

    parse_duration(format_duration(s)) == s for whole seconds whose text drops no seconds
    (durations of an hour or more leave the seconds out: 3725 -> ``1h2m``).
    """
    seconds = int(seconds)
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    return "".join(parts) or f"{s}s"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as an aware datetime (UTC where it names no zone); ValueError if not one."""
    from datetime import datetime

    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(f"expected an ISO 8601 time such as 2026-11-28T02:00:00Z, got {text!r}")
    hms = m["hms"] or "00:00:00"
    if hms.count(":") == 1:
        hms += ":00"
    frac = (m["frac"] or "0")[:6].ljust(6, "0")
    tz = m["tz"] or "+00:00"
    if tz == "Z":
        tz = "+00:00"
    elif len(tz) == 3:  # +01
        tz += ":00"
    elif ":" not in tz:  # +0100
        tz = f"{tz[:3]}:{tz[3:]}"
    return datetime.fromisoformat(f"{m['date']}T{hms}.{frac}{tz}")


def try_time(text: object) -> datetime | None:
    """parse_time, or None for anything that is not a time (records from elsewhere, None)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def since(text: str, now: float | None = None) -> float | None:
    """``boot`` or empty: None (since boot); a duration: that long before ``now`` (epoch
    seconds, default the current time); an ISO 8601 time. ValueError otherwise."""
    t = text.strip()
    if t in ("", "boot"):
        return None
    try:
        return (time.time() if now is None else now) - parse_duration(t)
    except ValueError:
        pass
    try:
        return parse_time(t).timestamp()
    except ValueError:
        raise ValueError(f"expected 'boot', {DURATION_HELP}, or an ISO 8601 time, got {text!r}") from None


def utc_stamp(now: datetime | None = None) -> str:
    """A UTC time to the second as records and logs write it: ``2026-11-28T02:00:13Z``."""
    from datetime import datetime, timezone

    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
