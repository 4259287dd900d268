"""``hpcbench compare OLD NEW``: changes beyond the samples' noise, through the CLI and directly."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Cli
from support import fleetgen

from hpcbench.analysis import robust

SUITE = ("gemm", "membw", "nvme")


def test_noise_rule() -> None:
    old = [100.0, 101.0, 99.0, 100.5, 99.5]
    same = robust.compare_samples(old, [100.2, 99.8, 100.9, 99.1, 100.4], True)
    assert same.significant is False and "overlap" in same.why
    worse = robust.compare_samples(old, [90.0, 91.0, 89.0, 90.5, 89.5], True)
    assert worse.significant is True and not worse.better and worse.change == pytest.approx(-0.1)
    lat = robust.compare_samples(old, [90.0, 91.0, 89.0, 90.5, 89.5], False)  # lower latency is better
    assert lat.significant is True and lat.better
    noisy = robust.compare_samples([100, 80, 120, 90, 110], [95, 75, 115, 85, 105], True)
    assert noisy.significant is False
    few = robust.compare_samples([100.0, 101.0], [50.0, 51.0], True)
    assert few.significant is None and "fewer than 3" in few.why
    apart_but_small = robust.compare_samples([100.0, 100.0, 100.0], [100.1, 100.1, 100.1], True, k=3)
    assert apart_but_small.noise < 1e-9 and apart_but_small.significant is True  # no noise: any change counts


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("cmp")
    suite = fleetgen.suite("nightly", SUITE)
    base = fleetgen.baseline()
    old = fleetgen.write(fleetgen.record(fleetgen.Node("n1"), fleetgen.T0, suite_obj=suite, base=base), root)
    slow = fleetgen.Node("n1", slow={"gemm/gpu2/bf16": 0.9, "nvme//mnt/nvme0/read_lat_p99": 1.25})
    new = fleetgen.write(
        fleetgen.record(slow, fleetgen.T0 + timedelta(days=1), suite_obj=suite, base=base), root
    )
    quick = fleetgen.write(
        fleetgen.record(
            fleetgen.Node("n1"),
            fleetgen.T0 + timedelta(days=2),
            suite_obj=fleetgen.suite("quick", ("membw",)),
        ),
        root / "other",
    )
    return old, new, quick


def test_compare_cli_finds_the_planted_changes(cli: Cli, pair: tuple[Path, Path, Path]) -> None:
    old, new, _ = pair
    r = cli("compare", str(old), str(new), "--format", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    status = {(x["check"], x["subject"], x["metric"]): x["status"] for x in data["rows"]}
    assert status.pop(("gemm", "gpu2", "bf16")) == "worse"
    assert status.pop(("nvme", "/mnt/nvme0", "read_lat_p99")) == "better"  # latency fell by 1/1.25
    assert set(status.values()) == {"within noise"}
    assert data["worse"] == 1 and len(data["rows"]) == 16 + 4 + 2
    row = next(x for x in data["rows"] if x["subject"] == "gpu2" and x["metric"] == "bf16")
    assert row["change"] == pytest.approx(-0.1, abs=0.02) and row["noise"] < 0.02


def test_compare_cli_table_and_no_change(cli: Cli, pair: tuple[Path, Path, Path]) -> None:
    old, new, _ = pair
    r = cli("compare", str(old), str(new))
    assert r.returncode == 2
    assert "1 worse beyond the noise: gemm/gpu2 bf16" in r.stdout
    r = cli("compare", str(old), str(old))
    assert r.returncode == 0 and "0 worse beyond the noise" in r.stdout


def test_compare_folder_takes_its_newest_record_and_warns_on_suites(
    cli: Cli, pair: tuple[Path, Path, Path]
) -> None:
    old, new, quick = pair
    r = cli("compare", str(old), str(quick.parent))  # the other suite's folder
    assert r.returncode == 0, r.stderr
    assert "comparing suite 'nightly' with 'quick'" in r.stderr
    assert "only in the old record" in r.stdout and "gemm/gpu0/bf16" in r.stdout


def test_compare_bad_input(cli: Cli, pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, _ = pair
    bad = tmp_path / "trunc.json"
    bad.write_text(old.read_text()[:500])
    r = cli("compare", str(old), str(bad))
    assert r.returncode == 4 and "no usable result record" in r.stderr
    assert f"skipped {bad}" in r.stderr and "Traceback" not in r.stderr
    r = cli("compare", str(old), str(old.parent.parent))  # a folder of two suites
    assert r.returncode == 4 and "give one record file" in r.stderr


def test_compare_real_records(cli: Cli) -> None:
    seen: list[Path] = []
    for value in ("100", "70"):
        r = cli("probe", "fixed", "-p", f"value={value}", "-o", "results", "--quiet")
        assert r.returncode == 0, r.stderr
        seen += [p for p in (cli.workdir / "results").glob("*/*.json") if p not in seen]
    first, second = seen
    r = cli("compare", str(first), str(second), "--format", "json")
    assert r.returncode == 2, r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    assert row["status"] == "worse" and row["change"] == pytest.approx(-0.3)
