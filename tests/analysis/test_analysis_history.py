"""``hpcbench history HOST``: a node's trend, degradation against its own rolling median, since when."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import Cli
from support import fleetgen

from hpcbench.analysis import history


def test_degradation_against_the_rolling_median_of_healthy_points() -> None:
    values = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 80.0, 79.0, 80.5, 81.0, 79.5, 80.0, 80.2, 79.8]
    judged = history.degradation(values, True, window=7, tolerance=0.05)
    assert [bad for _, _, bad in judged] == [False] * 6 + [True] * 8  # a lasting drop stays a drop
    ref, ratio, _ = judged[-1]
    assert ref == pytest.approx(100.1) and ratio == pytest.approx(79.8 / 100.1)
    assert judged[0] == (None, None, False)  # fewer than 3 earlier points: not judged


def test_degradation_respects_direction_noise_and_tolerance() -> None:
    lat = [10.0, 10.1, 9.9, 10.0, 12.0]
    assert history.degradation(lat, False)[-1][2] is True  # latency up 20%
    assert history.degradation(lat, True)[-1][2] is False  # the same numbers, higher is better
    noisy = [100.0, 80.0, 120.0, 90.0, 110.0, 85.0]
    assert not any(bad for _, _, bad in history.degradation(noisy, True))  # within its own noise
    small = [100.0, 100.0, 100.0, 100.0, 97.0]
    assert history.degradation(small, True, tolerance=0.05)[-1][2] is False  # 3% is within tolerance
    assert history.degradation(small, True, tolerance=0.02)[-1][2] is True


def test_trend_per_week() -> None:
    assert history.trend([0, 7, 14], [100.0, 90.0, 80.0]) == pytest.approx(-0.1111, abs=1e-3)
    assert history.trend([0, 1], [1.0, 2.0]) is None


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 nodes x 12 nights; node002's GPU 5 HBM drops to 80% from the 9th night (2026-11-09)."""
    root = tmp_path_factory.mktemp("hist")
    suite = fleetgen.suite("nightly", ("hbm", "membw"))
    fleetgen.fleet(
        root, 4, nights=12, slow={"node002": {"hbm/gpu5": 0.8}}, slow_from_night=8, suite_obj=suite
    )
    template = json.loads(sorted((root / "node002").glob("*.json"))[-1].read_text())
    fleetgen.write_bad(root, template, hosts=("node002", "node003"))
    return root


def test_history_cli_names_the_degraded_series_and_since_when(cli: Cli, nightly: Path) -> None:
    r = cli("history", "node002", str(nightly))
    assert r.returncode == 2, r.stderr
    assert "node002: 12 records, 2026-11-01 .. 2026-11-12" in r.stdout and "1 degraded now" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "DEGRADED" in x)
    assert "hbm" in line and "gpu5" in line and "since 2026-11-09" in line and "0.8" in line
    assert "skipped" in r.stderr and "node002" in r.stderr and "not a readable result record" in r.stderr
    assert "node003" not in r.stderr  # another host's bad file is never read


def test_history_cli_json_csv_and_healthy_node(cli: Cli, nightly: Path) -> None:
    r = cli("history", "node002", str(nightly), "--format", "json", "--csv", "h.csv")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert data["records"] == 12 and data["degraded"] == 1
    (bad,) = [s for s in data["series"] if s["degraded_now"]]
    assert (bad["check"], bad["subject"], bad["metric"], bad["since"][:10]) == (
        "hbm",
        "gpu5",
        "copy",
        "2026-11-09",
    )
    assert bad["degraded_points"] == 4 and bad["trend_per_week"] < 0
    assert len(data["series"]) == 8 + 4
    with open(cli.workdir / "h.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 * 12 and sum(x["degraded"] == "True" for x in rows) == 4
    r = cli("history", "node001", str(nightly))
    assert r.returncode == 0 and "no degradation in any series" in r.stdout
    r = cli("history", "node001", str(nightly), "--all")
    assert r.returncode == 0 and r.stdout.count("nightly") >= 12


def test_history_cli_bad_input(cli: Cli, nightly: Path) -> None:
    r = cli("history", "nosuchnode", str(nightly))
    assert r.returncode == 4 and "no usable records of host 'nosuchnode'" in r.stderr
    r = cli("history", "node001", str(nightly), "--window", "1")
    assert r.returncode == 4 and "--window" in r.stderr
    r = cli("history", "node001")  # default folder results/ does not exist here
    assert r.returncode == 4 and "results: no such file or folder" in r.stderr
