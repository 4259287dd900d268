"""fio's JSON parser on real captured output of fio 2.2.10, 2.21, 3.1, 3.33 and 3.42.

The fixtures in tests/probes/storage/fixtures/fio/ were captured on this project's test machine with
capture.sh (psync, libaio and, where fio has it, io_uring); the file names say version,
engine and job. Each layout differs: io_bytes in KiB before 2.21, clat in us before 3.0,
no bw_bytes before 3.2, notes printed before the JSON by 3.x with a sync engine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpcbench.probes.storage.fio import (
    FioOutputError,
    extract_json,
    parse_fio_json,
    parse_version,
    stderr_reason,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fio"
CAPTURES = sorted(p for p in FIXTURES.glob("fio-*.json") if "error" not in p.name)
NAME = re.compile(r"fio-(?P<version>[\d.]+)-(?P<engine>io_uring|libaio|psync)-(?P<job>[a-z]+)")


def _meta(path: Path) -> dict[str, str]:
    match = NAME.match(path.name)
    assert match, path.name
    return match.groupdict()


def _bs(job: str) -> int:
    return 2**20 if job == "seqwrite" else 4096


def test_fixtures_cover_versions_and_engines() -> None:
    metas = [_meta(p) for p in CAPTURES]
    assert {m["version"] for m in metas} >= {"2.2.10", "2.21", "3.1", "3.33", "3.42"}
    assert {m["engine"] for m in metas} == {"io_uring", "libaio", "psync"}


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_every_capture_parses_consistently(path: Path) -> None:
    meta = _meta(path)
    run = parse_fio_json(path.read_text())
    assert run.version == f"fio-{meta['version']}"
    assert run.error == 0
    bs = _bs(meta["job"])
    active = [d for d in (run.read, run.write) if d.active]
    assert active, "no direction did any I/O"
    assert run.read.active == (meta["job"] in ("randread", "randrw"))
    assert run.write.active == (meta["job"] in ("seqwrite", "randrw"))
    for side in active:
        # bandwidth in B/s and io_bytes in bytes whatever the version's own units were
        assert side.bw_bytes == pytest.approx(side.iops * bs, rel=0.02)
        assert side.io_bytes == side.total_ios * bs
        # clat in microseconds whatever the version's own units were (ns from 3.0, us before)
        p50, p99, p999 = (side.clat_us(p) for p in (50.0, 99.0, 99.9))
        assert p50 is not None and p99 is not None and p999 is not None
        assert 1.0 < p50 <= p99 <= p999 < 1e6
        assert 0 < side.clat_mean_us < side.clat_max_us
    for idle in (d for d in (run.read, run.write) if not d.active):
        assert idle.iops == 0 and idle.clat_percentiles_us == {}


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_values_match_the_raw_json(path: Path) -> None:
    text = path.read_text()
    raw = extract_json(text)
    run = parse_fio_json(text)
    jobs = raw["jobs"]
    assert run.jobs == len(jobs)
    for direction in ("read", "write"):
        want_iops = sum(j[direction]["iops"] for j in jobs)
        assert getattr(run, direction).iops == pytest.approx(want_iops)
        assert getattr(run, direction).total_ios == sum(j[direction]["total_ios"] for j in jobs)
    side = run.read if run.read.active else run.write
    name = "read" if run.read.active else "write"
    if len(jobs) == 1:
        sect = jobs[0][name]
        if "clat_ns" in sect:
            assert side.clat_us(99.0) == pytest.approx(sect["clat_ns"]["percentile"]["99.000000"] / 1000)
        else:
            assert side.clat_us(99.0) == pytest.approx(sect["clat"]["percentile"]["99.000000"])
    else:  # several jobs: the worst job's percentile
        key = "clat_ns" if "clat_ns" in jobs[0][name] else "clat"
        scale = 1e-3 if key == "clat_ns" else 1.0
        worst = max(j[name][key]["percentile"]["99.900000"] for j in jobs) * scale
        assert side.clat_us(99.9) == pytest.approx(worst)


def test_old_io_bytes_in_kib_and_bw_in_kib() -> None:
    raw = json.loads((FIXTURES / "fio-2.2.10-libaio-randread.json").read_text())["jobs"][0]["read"]
    run = parse_fio_json((FIXTURES / "fio-2.2.10-libaio-randread.json").read_text())
    assert "io_kbytes" not in raw and "bw_bytes" not in raw
    assert run.read.io_bytes == raw["io_bytes"] * 1024
    assert run.read.bw_bytes == raw["bw"] * 1024


def test_notes_before_the_json_are_skipped() -> None:
    text = (FIXTURES / "fio-3.33-psync-randread.json").read_text()
    assert text.startswith("note:")
    assert parse_fio_json(text).read.iops > 0


def test_a_job_error_is_reported_with_stderr() -> None:
    run = parse_fio_json((FIXTURES / "fio-3.33-sg-error.json").read_text())
    assert run.error == 22
    reason = stderr_reason((FIXTURES / "fio-3.33-sg-error.stderr").read_text())
    assert "sg only works on block or character devices" in reason
    assert "\n" not in reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fio: engine libaio not loadable\n",
        '{"jobs": [',
        '{"fio version": "fio-3.33", "jobs": []}',
        "[1, 2]",
    ],
)
def test_bad_output_is_a_clear_error(text: str) -> None:
    with pytest.raises(FioOutputError):
        parse_fio_json(text)


def test_version_parsing() -> None:
    assert parse_version("fio-3.33") == (3, 33)
    assert parse_version("fio-2.2.10") == (2, 2, 10)
    assert parse_version("fio-3.36-12-gabc1234") == (3, 36)
    assert parse_version("") == ()


def test_stderr_reason_is_one_bounded_line() -> None:
    text = "fio: a\nfio: a\n" + "x" * 1000
    out = stderr_reason(text, limit=50)
    assert out.startswith("fio: a; x") and out.endswith("...") and len(out) == 53
    assert stderr_reason("") == ""
