"""Cron options end to end: --log-file, --max-age, --quiet with them, and bad values (exit 4)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import support.records as recs
from conftest import Cli, write

from hpcbench.cli.request import parse_duration
from hpcbench.core.errors import ConfigError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.engine.store import fresh_pass, name_time
from hpcbench.report.console import why_unknown

SUITE = """name = "cron"
[[check]]
id = "f"
probe = "fixed"
params = {{ value = {value} }}
"""

BASELINE = """name = "b"
[provenance]
source = "golden-node"
date = "2026-11-01"
nodes = 1
[expected.f]
score = 100.0
"""

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ hpcbench\[\d+\] cron: ")


def setup(cli: Cli, value: float = 100.0) -> None:
    write(cli.workdir / "cron.toml", SUITE.format(value=value))
    write(cli.workdir / "b.toml", BASELINE)


def records(cli: Cli) -> list[Path]:
    return sorted(cli.workdir.glob("results/*/*.json"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20h", 72000),
        ("90m", 5400),
        ("2d", 172800),
        ("1h30m", 5400),
        ("45s", 45),
        ("3600", 3600),
        ("1w", 604800),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "h", "20x", "-5m", "1h 30", "soon"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-age"):
        parse_duration(text)


def test_fresh_pass_rule() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    ok = {
        "verdict": "OK",
        "exit_code": 0,
        "started": "2026-11-28T02:00:00Z",
        "not_run": [],
        "interrupted": None,
    }
    assert fresh_pass(recs.record(**ok), now, 20 * 3600)
    assert not fresh_pass(recs.record(**ok), now, 9 * 3600)  # 10 h old
    assert not fresh_pass(recs.record(**{**ok, "verdict": "WARN", "exit_code": 1}), now, 20 * 3600)
    assert not fresh_pass(recs.record(**{**ok, "interrupted": "SIGTERM"}), now, 20 * 3600)
    assert not fresh_pass(recs.record(**{**ok, "not_run": ["b"]}), now, 20 * 3600)
    future = recs.record(**{**ok, "started": "2026-11-29T02:00:00Z"})
    assert not fresh_pass(future, now, 20 * 3600)
    assert name_time("20261128T020000Z-1.json") == datetime(2026, 11, 28, 2, tzinfo=timezone.utc)
    assert name_time("notes.json") is None


def test_log_file_gets_progress_and_summary_never_the_table(cli: Cli) -> None:
    setup(cli)
    r = cli("run", "cron.toml", "--log-file", "hpcbench.log")
    assert r.returncode == ExitCode.OK, r.stderr
    assert "verdict: OK (exit 0)" in r.stdout  # the table and its summary went to stdout
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--quiet", "--log-file", "hpcbench.log")
    assert r.returncode == ExitCode.OK and r.stdout == "" and r.stderr == ""
    lines = (cli.workdir / "hpcbench.log").read_text().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    texts = [LINE.sub("", line) for line in lines]
    assert len(texts) == 6, texts  # per run: started, one progress line, the summary
    logged = []
    for started, progress, summary in (texts[:3], texts[3:]):
        out = re.escape(str(cli.workdir / "results"))
        assert re.fullmatch(rf"run [0-9a-f]{{12}} started: 1 check\(s\), records in {out}", started)
        assert re.fullmatch(r"\[1/1\] f node: ok in \d+\.\d s", progress)
        m = re.fullmatch(rf"OK \(exit 0\) in \w+: 1 check\(s\) judged; record ({out}/\S+\.json)", summary)
        assert m, summary
        logged.append(cli.workdir / m[1])
    assert sorted(logged) == records(cli)
    assert not any("┃" in t or "verdict:" in t for t in texts)


def test_log_file_names_the_failing_checks_and_the_held_lock(cli: Cli) -> None:
    from hpcbench.engine.lock import RunLock

    setup(cli, value=50.0)
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--quiet", "--log-file", "hpcbench.log")
    assert r.returncode == ExitCode.FAIL
    assert r.stdout.startswith("hpcbench cron: FAIL: f/node (")
    with RunLock(Path(cli.env["HPCBENCH_LOCK"]), {"run_id": "other1", "suite": "nightly"}):
        r = cli("run", "cron.toml", "--quiet", "--log-file", "hpcbench.log")
    assert r.returncode == ExitCode.UNKNOWN
    log = (cli.workdir / "hpcbench.log").read_text()
    assert ": FAIL (exit 2) in " in log and f": f/node; record {cli.workdir / 'results'}/" in log
    assert "not run: another hpcbench run holds" in log and "run id other1" in log


def test_max_age_skips_after_a_recent_pass_only(cli: Cli) -> None:
    setup(cli)
    assert cli("run", "cron.toml", "--baseline", "b.toml").returncode == ExitCode.OK
    (first,) = records(cli)
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--max-age", "20h", "--log-file", "hpcbench.log")
    assert r.returncode == ExitCode.OK, r.stderr
    assert records(cli) == [first]  # nothing ran
    rel = first  # records are named by their absolute path: the output folder is absolute
    assert (
        r.stdout.startswith(f"hpcbench cron: skipped: {rel} passed (OK) ")
        and "within --max-age 20h" in r.stdout
    )
    assert r.stdout.count("\n") == 1
    assert f"cron: skipped: {rel} passed (OK)" in (cli.workdir / "hpcbench.log").read_text()
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--max-age", "20h", "--quiet")
    assert r.returncode == ExitCode.OK and r.stdout == "" and len(records(cli)) == 1
    # a record too old for --max-age: the suite runs
    data = json.loads(first.read_text())
    data["started"] = (datetime.now(timezone.utc) - timedelta(hours=21)).isoformat(timespec="seconds")
    first.write_text(json.dumps(data))
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--max-age", "20h", "--quiet")
    assert r.returncode == ExitCode.OK and len(records(cli)) == 2


def test_max_age_runs_when_the_newest_record_failed_or_the_suite_changed(cli: Cli) -> None:
    setup(cli)
    assert cli("run", "cron.toml", "--baseline", "b.toml").returncode == ExitCode.OK
    setup(cli, value=50.0)  # the suite file changed (another sha256): the old pass does not count
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--max-age", "20h", "--quiet")
    assert r.returncode == ExitCode.FAIL and len(records(cli)) == 2
    r = cli("run", "cron.toml", "--baseline", "b.toml", "--max-age", "20h", "--quiet")
    assert r.returncode == ExitCode.FAIL and len(records(cli)) == 3  # the newest is a FAIL: run again


def test_max_age_with_json_output_keeps_stdout_clean(cli: Cli) -> None:
    setup(cli)
    assert cli("run", "cron.toml").returncode == ExitCode.OK
    r = cli("run", "cron.toml", "--max-age", "1d", "--format", "json")
    assert r.returncode == ExitCode.OK and r.stdout == "" and f"skipped: {cli.workdir}/results/" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-age", "soon"), "hpcbench: error: --max-age 'soon': expected a duration"),
        (
            ("--log-file", "no/such/dir/x.log"),
            "hpcbench: error: --log-file no/such/dir/x.log: no such folder no/such/dir",
        ),
        (("--log-file", "."), "hpcbench: error: --log-file .: is a folder"),
        (("--junit", "nowhere/j.xml"), "hpcbench: error: --junit nowhere/j.xml: no such folder nowhere"),
        (
            ("--prometheus-textfile", "missing"),
            "hpcbench: error: --prometheus-textfile missing: no such folder",
        ),
    ],
)
def test_bad_operations_options_are_one_line_exit_4_and_run_nothing(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    setup(cli)
    r = cli("run", "cron.toml", *args)
    assert r.returncode == ExitCode.USAGE
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(message), r.stderr
    assert records(cli) == []


def test_existing_log_is_appended_not_replaced(cli: Cli) -> None:
    setup(cli)
    log = write(cli.workdir / "hpcbench.log", "an older line\n")
    assert cli("run", "cron.toml", "-q", "--log-file", str(log)).returncode == ExitCode.OK
    text = log.read_text()
    assert text.startswith("an older line\n") and text.count("\n") == 4


def test_why_unknown_names_the_missing_baseline_and_unrun_checks() -> None:
    nobase = recs.check("membw", verdict="NOBASELINE")
    required = recs.record(suite={"name": "nightly", "require_baseline": True}, checks=[nobase], exit_code=3)
    assert why_unknown(required) == (
        "no baseline for membw, and suite nightly requires one "
        "(hpcbench baseline create RECORD -o PROFILE.toml)"
    )
    assert why_unknown(recs.record(checks=[nobase])) == ""  # not required: no reason to give
    late = recs.record(not_run=["storage"], exit_code=3)
    assert why_unknown(late) == "not run: storage"
