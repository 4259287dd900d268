"""--junit FILE: one testcase per check and subject, parsed back with xml.etree."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import Cli, write
from support import records

from hpcbench.core.exitcodes import ExitCode
from hpcbench.report import junit

XSD = Path(__file__).resolve().parent / "fixtures" / "junit" / "junit.xsd"


def assert_valid(path: Path) -> None:
    """The file validates against the JUnit schema CI servers read (tests/report/fixtures/junit)."""
    import xmlschema

    schema = xmlschema.XMLSchema(str(XSD))
    errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(str(path))]
    assert errors == []


SUITE = """name = "ci"
require_baseline = false

[[check]]
id = "bw"
probe = "fixed"
params = { value = 70.0 }

[[check]]
id = "lat"
probe = "fixed"
params = { value = 5.0, metric = "p99", unit = "us", higher_is_better = false }

[[check]]
id = "numa"
probe = "fixed"
expand = "numa"
params = { value = 10.0 }

[[check]]
id = "boom"
probe = "boom"

[[check]]
id = "gpu"
probe = "needs_gpu"

[[check]]
id = "fresh"
probe = "fixed"
"""

BASELINE = """name = "golden"
[provenance]
source = "golden-node"
date = "2026-11-01"
nodes = 1
[expected.bw]
score = 100.0
[expected.lat]
p99 = 4.2
[expected.numa]
score = 10.0
"""


def test_junit_cases_failures_errors_and_skips(cli: Cli) -> None:
    write(cli.workdir / "ci.toml", SUITE)
    write(cli.workdir / "golden.toml", BASELINE)
    r = cli("run", "ci.toml", "--baseline", "golden.toml", "--junit", "out.xml", "--quiet")
    assert r.returncode == ExitCode.FAIL, r.stderr
    (path,) = cli.workdir.glob("results/*/*.json")
    record = json.loads(path.read_text())
    assert_valid(cli.workdir / "out.xml")
    root = ET.parse(cli.workdir / "out.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "ci" and suite.get("hostname") == record["host"]
    assert suite.get("timestamp") == record["started"].removesuffix("Z")  # UTC without a zone
    assert suite.get("id") == "0" and suite.get("package") == "hpcbench"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "FAIL" and props["exit_code"] == "2" and props["baseline"] == "golden"
    assert props["run_id"] == record["run_id"] and props["started_utc"] == record["started"]
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    subjects = {(c["id"], c["subject"]) for c in record["checks"]}
    assert set(cases) == {(f"ci.{cid}", subject) for cid, subject in subjects}
    assert suite.get("tests") == str(len(record["checks"]))

    (fail,) = cases[("ci.bw", "node")].findall("failure")
    assert fail.get("type") == "FAIL"
    msg = fail.get("message")
    assert msg.startswith(
        "score: measured 70 GB/s, expected 100 GB/s, ratio 0.700 (warn 0.9, fail 0.8): FAIL "
    )
    assert "70 GB/s is 70% of the expected 100 GB/s" in msg
    (warn,) = cases[("ci.lat", "node")].findall("failure")
    assert warn.get("type") == "WARN" and warn.get("message").startswith(
        "p99: measured 4.9 us, expected 4.2 us"
    )
    (err,) = cases[("ci.boom", "node")].findall("error")
    assert err.get("type") == "ERROR" and "the probe blew up on purpose" in err.get("message")
    (skip,) = cases[("ci.gpu", "node")].findall("skipped")
    assert skip.get("message") == "no GPU on this node"
    passed = cases[("ci.fresh", "node")]  # NOBASELINE where the suite does not require one: passes
    assert not passed.findall("failure") and not passed.findall("error") and not passed.findall("skipped")
    for (cls, _), case in cases.items():
        if cls == "ci.numa":
            assert not case.findall("failure") and not case.findall("error")
    n_fail = sum(1 for c in record["checks"] if c["verdict"] in ("FAIL", "WARN"))
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (str(n_fail), "1", "1")
    by_check = {c["id"]: c for c in record["checks"]}
    assert float(cases[("ci.bw", "node")].get("time")) == round(by_check["bw"]["duration"], 3)


def test_required_baseline_missing_and_checks_not_run_are_errors() -> None:
    record = records.record(
        suite={"name": "nightly", "require_baseline": True},
        verdict="UNKNOWN",
        exit_code=3,
        interrupted="SIGTERM",
        not_run=[{"id": "later", "reason": "not started: interrupted by SIGTERM"}],
        checks=[
            records.check(
                "membw",
                duration=1.5,
                evaluations=[{"metric": "triad", "verdict": "NOBASELINE", "measured": 40.0, "unit": "GB/s"}],
            )
        ],
    )
    root = junit.to_xml(record)
    cases = root.findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("nightly.membw", "node"),
        ("nightly.later", "not run"),
    ]
    assert cases[0].find("error").get("message") == "no baseline value, and this suite requires one"
    assert cases[1].find("error").get("message") == "not started: interrupted by SIGTERM"
    assert root.get("errors") == "2" and root.get("tests") == "2"


def test_the_schema_catches_what_jenkins_refuses(tmp_path: Path) -> None:
    """The schema is strict where it matters: a zoned timestamp, a text id, a missing package fail."""
    import xmlschema

    rec = records.record(checks=[records.check("bw")])
    good = tmp_path / "good.xml"
    junit.write(rec, good)
    assert_valid(good)
    schema = xmlschema.XMLSchema(str(XSD))
    text = good.read_text()
    for old, new in (
        ('timestamp="2026-11-28T02:00:00"', 'timestamp="2026-11-28T02:00:00Z"'),
        ('id="0"', 'id="r1"'),
        (' package="hpcbench"', ""),
    ):
        assert old in text, old
        bad = tmp_path / "bad.xml"
        bad.write_text(text.replace(old, new, 1))
        assert not schema.is_valid(str(bad)), new


def test_required_baseline_file_is_valid(tmp_path: Path) -> None:
    rec = records.record(
        suite={"name": "nightly", "require_baseline": True},
        interrupted="SIGTERM",
        not_run=[{"id": "later", "reason": "not started: interrupted by SIGTERM"}],
        checks=[records.check("membw", verdict="NOBASELINE"), records.check("gpu", verdict="SKIP")],
    )
    path = junit.write(rec, tmp_path / "j.xml")
    assert_valid(path)
