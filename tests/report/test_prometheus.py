"""--prometheus-textfile DIR: names and base units (pure), then scraped from a real node_exporter
(Debian's prometheus-node-exporter, textfile collector only) on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, write
from prometheus_client.parser import text_string_to_metric_families
from support import records
from support.required import need, unavailable

from hpcbench.core.exitcodes import ExitCode
from hpcbench.report import prometheus

EXPORTER = "prometheus-node-exporter"


def test_base_units() -> None:
    family = prometheus.family
    assert family("measured", "GB/s") == ("hpcbench_measured_bytes_per_second", 1e9, False)
    assert family("expected", "TFLOPS") == ("hpcbench_expected_flops_per_second", 1e12, False)
    assert family("measured", "us") == ("hpcbench_measured_seconds", 1e-6, False)
    assert family("measured", "IOPS") == ("hpcbench_measured_io_operations_per_second", 1.0, False)
    assert family("measured", "C") == ("hpcbench_measured_celsius", 1.0, False)
    assert family("measured", "GiB/s") == ("hpcbench_measured_bytes_per_second", 2.0**30, False)
    assert family("measured", "Gb/s") == ("hpcbench_measured_bytes_per_second", 1e9 / 8, False)  # bits
    assert family("measured", "MHz") == ("hpcbench_measured_hertz", 1e6, False)
    assert family("measured", "GiB") == ("hpcbench_measured_bytes", 2.0**30, False)
    assert family("measured", "%") == ("hpcbench_measured_ratio", 0.01, False)
    # counts and flags in families of their own; an unknown unit is a label, never a suffix
    assert family("measured", "count") == ("hpcbench_counted", 1.0, False)
    assert family("expected", "count") == ("hpcbench_expected_counted", 1.0, False)
    assert family("measured", "flag") == ("hpcbench_flag", 1.0, False)
    assert family("measured", "tokens/s") == ("hpcbench_measured", 1.0, True)
    assert prometheus.file_name("probe:cpu_membw") == "hpcbench_probe_cpu_membw.prom"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """node_exporter with only the textfile collector, reading a fresh folder; yields (url, folder)."""
    exe = shutil.which(EXPORTER)
    if exe is None:
        unavailable(f"{EXPORTER} not installed (apt-get install -y {EXPORTER}; .ci/run does)")
    folder = tmp_path_factory.mktemp("textfile")
    port = _free_port()
    log = open(folder.parent / "node_exporter.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            exe,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(url)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder.parent / "node_exporter.log").read_text()) from None
                time.sleep(0.1)
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


SUITE = """name = "{name}"
[[check]]
id = "membw"
probe = "fixed"
params = {{ value = 40.0 }}
[[check]]
id = "gemm"
probe = "fixed"
params = {{ value = 80.0, metric = "bf16", unit = "TFLOPS" }}
[[check]]
id = "disk"
probe = "fixed"
params = {{ value = 120.0, metric = "randread_clat_p99", unit = "us", higher_is_better = false }}
[[check]]
id = "gpu"
probe = "needs_gpu"
"""

BASELINE = """name = "golden"
[provenance]
source = "golden-node"
date = "2026-11-01"
nodes = 1
[expected.membw]
score = 100.0
[expected.gemm]
bf16 = 80.0
[expected.disk]
randread_clat_p99 = 100.0
"""


def test_node_exporter_serves_the_runs_metrics(exporter: tuple[str, Path], cli: Cli) -> None:
    url, folder = exporter
    write(cli.workdir / "nightly.toml", SUITE.format(name="nightly"))
    write(cli.workdir / "golden.toml", BASELINE)
    r = cli("run", "nightly.toml", "--baseline", "golden.toml", "--prometheus-textfile", str(folder), "-q")
    assert r.returncode == ExitCode.FAIL, r.stderr
    (path,) = cli.workdir.glob("results/*/*.json")
    record = json.loads(path.read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["hpcbench_nightly.prom"]  # no temporary file left

    got = samples(scrape(url))
    assert got["node_textfile_scrape_error"] == [({}, 0.0)]

    def one(name: str, **labels: str) -> float:
        found = [v for lab, v in got[name] if labels.items() <= lab.items()]
        assert len(found) == 1, (name, labels, got.get(name))
        return found[0]

    base = {"suite": "nightly", "subject": "node"}
    assert one("hpcbench_measured_bytes_per_second", check="membw", metric="score", **base) == 40e9
    assert one("hpcbench_expected_bytes_per_second", check="membw", kind="baseline", **base) == 100e9
    assert one("hpcbench_performance_ratio", check="membw", metric="score", **base) == pytest.approx(0.4)
    assert one("hpcbench_measured_flops_per_second", check="gemm", metric="bf16", **base) == 80e12
    p99 = one("hpcbench_measured_seconds", check="disk", metric="randread_clat_p99", **base)
    assert p99 == pytest.approx(117.6e-6)  # the best of 120, 118.8, 117.6 us (lower is better)
    assert one("hpcbench_performance_ratio", check="disk", **base) == pytest.approx(100 / 117.6)
    assert one("hpcbench_check_verdict", check="membw", verdict="FAIL", **base) == 1.0
    assert one("hpcbench_check_verdict", check="membw", verdict="PASS", **base) == 0.0
    assert one("hpcbench_check_verdict", check="gpu", verdict="SKIP", **base) == 1.0
    assert one("hpcbench_metric_verdict", check="membw", metric="score", verdict="FAIL", **base) == 1.0
    value_families = ("hpcbench_measured_", "hpcbench_expected_", "hpcbench_performance_ratio")
    for name, series in got.items():
        if name.startswith(value_families):  # a verdict change must not make a new series
            assert all("verdict" not in labels for labels, _ in series), name
    assert one("hpcbench_last_run_exit_code", suite="nightly") == 2.0
    assert one("hpcbench_last_run_verdict", suite="nightly", verdict="FAIL") == 1.0
    assert one("hpcbench_last_run_verdict", suite="nightly", verdict="OK") == 0.0
    assert one("hpcbench_last_run_checks", suite="nightly", verdict="FAIL") == 1.0
    ended = prometheus._unix(record["ended"])
    started = prometheus._unix(record["started"])
    assert one("hpcbench_last_run_timestamp_seconds", suite="nightly") == ended
    assert one("hpcbench_last_run_duration_seconds", suite="nightly") == ended - started
    assert one("hpcbench_last_run_info", suite="nightly", baseline="golden") == 1.0
    for name in got:
        if name.startswith("hpcbench_"):
            assert not any(unit in name for unit in ("gb_s", "tflops", "_us", "gbps")), name

    # a second suite gets a file of its own; the first one's metrics stay
    write(cli.workdir / "quick.toml", SUITE.format(name="quick"))
    r = cli("run", "quick.toml", "--baseline", "golden.toml", "--prometheus-textfile", str(folder), "-q")
    assert r.returncode == ExitCode.FAIL
    got = samples(scrape(url))
    suites = {lab["suite"] for lab, _ in got["hpcbench_last_run_exit_code"]}
    assert suites == {"nightly", "quick"} and got["node_textfile_scrape_error"] == [({}, 0.0)]


def test_a_verdict_change_keeps_the_measured_series(exporter: tuple[str, Path], cli: Cli) -> None:
    """Scraped before and after the check goes from FAIL to PASS: the value series is one series
    whose value moved; the verdict moved in hpcbench_check_verdict."""
    url, folder = exporter
    write(cli.workdir / "golden.toml", BASELINE)
    suite = '[[check]]\nid = "membw"\nprobe = "fixed"\nparams = {{ value = {v} }}\n'
    for value, verdict in ((40.0, "FAIL"), (100.0, "PASS")):
        write(cli.workdir / "flip.toml", 'name = "flip"\n' + suite.format(v=value))
        done = cli(
            "run", "flip.toml", "--baseline", "golden.toml", "--prometheus-textfile", str(folder), "-q"
        )
        assert done.returncode == (2 if verdict == "FAIL" else 0), done.stderr
        got = samples(scrape(url))
        (series,) = [
            (lab, v) for lab, v in got["hpcbench_measured_bytes_per_second"] if lab["suite"] == "flip"
        ]
        assert series == (
            {"suite": "flip", "check": "membw", "subject": "node", "metric": "score"},
            value * 1e9,
        )
        verdicts = {lab["verdict"]: v for lab, v in got["hpcbench_check_verdict"] if lab["suite"] == "flip"}
        assert verdicts[verdict] == 1.0 and sum(verdicts.values()) == 1.0


def test_counts_and_flags_have_families_of_their_own(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    ms = [
        {"metric": m, "value": v, "unit": u, "higher_is_better": False, "subject": "gpu0", "samples": [v]}
        for m, v, u in (("xid_errors", 2.0, "count"), ("ecc_enabled", 1.0, "flag"), ("rate", 3.0, "tokens/s"))
    ]
    rec = records.record(checks=[records.check("h", "gpu0", measurements=ms)])
    text = generate_latest(prometheus.build_registry(rec)).decode()
    got = samples(text)
    assert got["hpcbench_counted"] == [
        ({"suite": "t", "check": "h", "subject": "gpu0", "metric": "xid_errors"}, 2.0)
    ]
    assert got["hpcbench_flag"][0][1] == 1.0
    assert got["hpcbench_measured"] == [
        ({"suite": "t", "check": "h", "subject": "gpu0", "metric": "rate", "unit": "tokens/s"}, 3.0)
    ]


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    need("promtool", "apt-get install -y prometheus")
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def test_promtool_lints_the_textfile_clean(tmp_path: Path, cli: Cli) -> None:
    """Prometheus' own linter on what --prometheus-textfile writes: a real health run, and a record
    with every family (a count, a flag, a base unit, an unknown unit, expected values and ratios)."""
    from prometheus_client import generate_latest
    from support import records

    out = tmp_path / "textfile"
    out.mkdir()
    r = cli("run", "health", "--quiet", "--prometheus-textfile", str(out))
    assert r.returncode in (0, 1, 3), r.stderr
    (written,) = out.glob("*.prom")
    lint = _promtool(written.read_text())
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    ms = [
        {"metric": m, "value": v, "unit": u, "higher_is_better": False, "subject": "gpu0", "samples": [v]}
        for m, v, u in (("xid_errors", 2.0, "count"), ("ecc_enabled", 1.0, "flag"), ("rate", 3.0, "tokens/s"),
                        ("triad", 100.0, "GB/s"))
    ]  # fmt: skip
    evals = [
        {"metric": "xid_errors", "verdict": "FAIL", "measured": 2.0, "unit": "count", "expected": 0.0,
         "kind": "absolute"},
        {"metric": "triad", "verdict": "PASS", "measured": 100.0, "unit": "GB/s", "expected": 110.0,
         "ratio": 0.91},
    ]  # fmt: skip
    rec = records.record(checks=[records.check("h", "gpu0", "FAIL", measurements=ms, evaluations=evals)])
    text = generate_latest(prometheus.build_registry(rec)).decode()
    assert "hpcbench_expected_counted" in text and "hpcbench_performance_ratio" in text
    lint = _promtool(text)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    # the linter is not silent by nature: the name this textfile once used is refused
    old = _promtool("# HELP hpcbench_count a count\n# TYPE hpcbench_count gauge\nhpcbench_count 1\n")
    assert old.returncode != 0 and 'should not have "_count" suffix' in old.stdout + old.stderr
