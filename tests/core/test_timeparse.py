"""The one duration grammar and the one time parser (hpcbench.core.timeparse)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hpcbench.core import timeparse
from hpcbench.core.errors import ParamError
from hpcbench.probes.base import build_params
from hpcbench.probes.gpu_health.probe import GpuHealth


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("30m1h", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5h", 5400),
        ("3600", 3600),
        ("  20H ", 72000),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert timeparse.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "h", "20x", "-5m", "1h 30", "soon", "1y"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="1h30m"):
        timeparse.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (5400, "1h30m"), (90061, "1d1h1m"), (604800, "7d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert timeparse.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-11-28T02:00:00Z", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),
        ("2026-11-28T02:00:00+00:00", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),
        ("2026-11-28T02:00:00", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),  # no zone: UTC
        ("2026-11-28 03:00:00+01:00", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),
        ("2026-11-28T03:00:00+0100", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),  # journalctl
        ("2026-11-28T02:00:00,250000+00:00", datetime(2026, 11, 28, 2, 0, 0, 250000, tzinfo=timezone.utc)),
        ("2026-11-28T02:00:00.123456789Z", datetime(2026, 11, 28, 2, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2026-11-28T02:00Z", datetime(2026, 11, 28, 2, tzinfo=timezone.utc)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=timezone.utc)),
    ],
)
def test_parse_time(text: str, want: datetime) -> None:
    got = timeparse.parse_time(text)
    assert got == want and got.utcoffset() is not None


@pytest.mark.parametrize("text", ["yesterday", "28/11/2026", "2026-11-28T25:00:00Z", ""])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        timeparse.parse_time(text)
    assert timeparse.try_time(text) is None


def test_try_time_tolerates_non_text() -> None:
    assert timeparse.try_time(None) is None and timeparse.try_time(17) is None


def test_since_durations_iso_and_boot() -> None:
    now = 1_800_000_000.0
    assert timeparse.since("boot", now) is None and timeparse.since("", now) is None
    assert timeparse.since("24h", now) == now - 86400
    assert timeparse.since("1h30m", now) == now - 5400  # refused by xid_since before the grammars merged
    assert timeparse.since("1w", now) == now - 604800
    epoch = datetime(2026, 11, 28, tzinfo=timezone.utc).timestamp()
    assert timeparse.since("2026-11-28T00:00:00Z", now) == epoch
    assert timeparse.since("2026-11-28T00:00:00", now) == epoch
    with pytest.raises(ValueError, match="1h30m"):
        timeparse.since("yesterday", now)


def test_xid_since_and_max_age_share_the_grammar() -> None:
    assert build_params(GpuHealth, {"xid_since": "1h30m"}).xid_since == "1h30m"
    with pytest.raises(ParamError, match="xid_since"):
        build_params(GpuHealth, {"xid_since": "1h 30m"})


def test_utc_stamp() -> None:
    when = datetime(2026, 11, 28, 3, 0, 13, 999, tzinfo=timezone(timedelta(hours=1)))
    assert timeparse.utc_stamp(when) == "2026-11-28T02:00:13Z"
