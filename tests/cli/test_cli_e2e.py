"""End to end through the installed CLI: records, exit codes, misbehaving probes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Cli, no_marked_processes, write

from hpcbench.core.exitcodes import ExitCode
from hpcbench.engine.record import SCHEMA_VERSION


def suite(tmp: Path, body: str, name: str = "t", require_baseline: bool = False) -> Path:
    head = f'name = "{name}"\nrequire_baseline = {"true" if require_baseline else "false"}\n'
    return write(tmp / f"{name}.toml", head + body)


def baseline(tmp: Path, expected: str, name: str = "b") -> Path:
    return write(
        tmp / f"{name}.toml",
        f"""name = "{name}"
[provenance]
source = "golden-node"
date = "2026-11-01"
nodes = 1
{expected}
""",
    )


FIXED = '[[check]]\nid = "f"\nprobe = "fixed"\nparams = {{ value = {value} }}\n'


def records(root: Path) -> list[Path]:
    return sorted(root.glob("results/*/*.json"))


def test_help_and_version(cli: Cli) -> None:
    r = cli("--help")
    assert r.returncode == 0
    assert "exit codes" in r.stdout and "run" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "hpcbench", "--version"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.startswith("hpcbench ")


def test_list_shows_builtin_and_plugin_probes_with_params(cli: Cli) -> None:
    r = cli("list")
    assert r.returncode == 0, r.stderr
    assert "cpu_membw:" in r.stdout and "fixed:" in r.stdout and "hang:" in r.stdout
    assert "-p repeats=<int>  default 10" in r.stdout
    data = json.loads(cli("list", "--format", "json").stdout)
    by_name = {p["name"]: p for p in data}
    assert {"name": "how", "type": "str", "default": "segfault"}.items() <= by_name["crash"]["params"][
        0
    ].items()
    assert by_name["cpu_membw"]["expands"] == ["numa"]


def test_cli_start_imports_no_torch_or_pandas() -> None:
    code = (
        "import sys, contextlib, io\nfrom hpcbench.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['list'])\n"
        "print(sorted(m for m in ('torch', 'pandas', 'numpy', 'rich') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_inventory_json(cli: Cli) -> None:
    r = cli("inventory", "--format", "json")
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)
    assert inv["cpu"]["threads"] >= 1 and inv["gpus"]["count"] == 0 and inv["gpus"]["reason"]
    r = cli("inventory")
    assert r.returncode == 0 and "CPU:" in r.stdout


def test_real_membw_run_writes_record_and_json_stdout(cli: Cli, tmp_path: Path) -> None:
    s = suite(
        tmp_path,
        """
[[check]]
id = "membw"
probe = "cpu_membw"
params = { array_size = 1000000, repeats = 3, warmup = 1 }
[[check]]
id = "membw_numa"
probe = "cpu_membw"
params = { array_size = 1000000, repeats = 3, warmup = 1 }
expand = "numa"
metrics = ["triad"]
relative = { to = "median" }
""",
    )
    r = cli("run", str(s), "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    rec = json.loads(r.stdout)  # stdout is the record and nothing else
    files = records(tmp_path)
    assert len(files) == 1 and json.loads(files[0].read_text()) == rec
    assert files[0].parent.name == rec["host"]
    assert (
        rec["schema_version"] == SCHEMA_VERSION == 2
        and rec["suite"]["name"] == "t"
        and rec["suite"]["sha256"]
    )
    assert rec["inventory"]["cpu"]["model"] is not None
    node = [c for c in rec["checks"] if c["id"] == "membw"][0]
    assert node["status"] == "ok" and node["subject"] == "node"
    metrics = {m["metric"]: m for m in node["measurements"]}
    assert set(metrics) == {"copy", "scale", "add", "triad"}
    assert len(metrics["triad"]["samples"]) == 3 and metrics["triad"]["value"] > 0
    assert metrics["triad"]["convention"] == "STREAM" and metrics["triad"]["sanity"] is None
    assert {e["verdict"] for e in node["evaluations"]} == {"NOBASELINE"}
    numa = [c for c in rec["checks"] if c["id"] == "membw_numa"]
    assert [c["subject"] for c in numa] == [f"numa{n['id']}" for n in rec["inventory"]["numa"]["nodes"]]
    if len(numa) == 1:  # one NUMA node: membw's measurement is taken over, not taken again
        (triad,) = [m for m in numa[0]["measurements"] if m["metric"] == "triad"]
        assert triad["settings"]["reused_from"] == "membw/node" and numa[0]["duration"] == 0.0
        assert triad["value"] == metrics["triad"]["value"] and triad["subject"] == "numa0"
    else:
        assert numa[0]["params"]["numa_node"] == 0
    assert "[1/" in r.stderr  # progress went to stderr


def test_table_output_and_baseline_hint(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", str(suite(tmp_path, FIXED.format(value=50))))
    assert r.returncode == ExitCode.OK, r.stderr
    assert "NOBASELINE" in r.stdout and "hpcbench baseline create" in r.stdout
    assert "verdict: OK (exit 0)" in r.stdout


def test_exit_codes_pass_warn_fail(cli: Cli, tmp_path: Path) -> None:
    s = suite(tmp_path, FIXED.format(value=100))
    cases = {100.0: ExitCode.OK, 85.0: ExitCode.WARN, 70.0: ExitCode.FAIL}
    for expected_value, code in cases.items():
        # measured 100 against expected 100/0.85/0.7 -> ratios 1.0, 1.18, 1.43: all PASS; so invert:
        b = baseline(
            tmp_path, f"[expected.f]\nscore = {100 * 100 / expected_value}\n", name=f"b{int(expected_value)}"
        )
        r = cli("run", str(s), "--baseline", str(b), "--format", "json")
        assert r.returncode == code, (expected_value, r.stdout, r.stderr)
        rec = json.loads(r.stdout)
        ev = rec["checks"][0]["evaluations"][0]
        assert abs(ev["ratio"] - expected_value / 100) < 1e-9
        assert rec["exit_code"] == code and rec["baseline"]["matched_by"] == "chosen with --baseline"


def test_exit_code_fail_for_wrong_result(cli: Cli, tmp_path: Path) -> None:
    s = suite(tmp_path, '[[check]]\nid = "f"\nprobe = "fixed"\nparams = { sanity = "checksum mismatch" }\n')
    r = cli("run", str(s), "--baseline", str(baseline(tmp_path, "[expected.f]\nscore = 100\n")))
    assert r.returncode == ExitCode.FAIL
    assert "wrong result: checksum mismatch" in r.stdout


def test_exit_code_unknown_when_required_baseline_missing(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", str(suite(tmp_path, FIXED.format(value=1), require_baseline=True)), "--format", "json")
    assert r.returncode == ExitCode.UNKNOWN
    assert json.loads(r.stdout)["verdict"] == "UNKNOWN"


def test_fail_outranks_error_and_error_outranks_warn(cli: Cli, tmp_path: Path) -> None:
    b = baseline(tmp_path, "[expected.f]\nscore = 100\n")
    body = '[[check]]\nid = "boom"\nprobe = "boom"\n'
    r = cli("run", str(suite(tmp_path, body + FIXED.format(value=10), name="s1")), "--baseline", str(b))
    assert r.returncode == ExitCode.FAIL
    r = cli("run", str(suite(tmp_path, body + FIXED.format(value=85), name="s2")), "--baseline", str(b))
    assert r.returncode == ExitCode.UNKNOWN


def test_hang_crash_and_raise_become_errors_and_the_run_goes_on(cli: Cli, tmp_path: Path) -> None:
    body = """
[[check]]
id = "hang"
probe = "hang"
timeout = 1.5
[[check]]
id = "segv"
probe = "crash"
[[check]]
id = "abort"
probe = "crash"
params = { how = "abort" }
[[check]]
id = "boom"
probe = "boom"
[[check]]
id = "tool"
probe = "needs_tool"
[[check]]
id = "gpu"
probe = "needs_gpu"
""" + FIXED.format(value=100)
    r = cli("run", str(suite(tmp_path, body)), "--format", "json")
    assert r.returncode == ExitCode.UNKNOWN
    by_id = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert by_id["hang"]["verdict"] == "ERROR" and "timed out after 1.5 s" in by_id["hang"]["reason"]
    assert "SIGSEGV" in by_id["segv"]["reason"] and "SIGABRT" in by_id["abort"]["reason"]
    assert "RuntimeError: the probe blew up on purpose" in by_id["boom"]["reason"]
    assert by_id["tool"]["verdict"] == "ERROR" and by_id["tool"]["hint"].startswith("apt-get install")
    assert by_id["gpu"]["verdict"] == "SKIP" and by_id["gpu"]["reason"] == "no GPU on this node"
    assert by_id["f"]["status"] == "ok" and by_id["f"]["measurements"][0]["value"] == 100
    assert list((tmp_path / "tmp").iterdir()) == []  # the runner's temporary files are gone


def test_processes_that_left_the_probes_session_are_killed_when_it_ends(cli: Cli, tmp_path: Path) -> None:
    body = """
[[check]]
id = "returns"
probe = "detach"
[[check]]
id = "hangs"
probe = "detach"
params = { hang = true }
timeout = 2
"""
    r = cli("run", str(suite(tmp_path, body)), "--format", "json")
    assert r.returncode == ExitCode.UNKNOWN, r.stderr
    by_id = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert by_id["returns"]["status"] == "ok" and "timed out" in by_id["hangs"]["reason"]
    no_marked_processes(cli.mark, timeout=10)  # the four sleepers, each in a session of its own


def test_relative_check_flags_the_slow_subject(cli: Cli, tmp_path: Path) -> None:
    # one NUMA node on this machine: the relative check must SKIP, not pass silently
    body = (
        '[[check]]\nid = "n"\nprobe = "fixed"\nexpand = "numa"\n'
        'relative = { to = "median", warn = 0.9, fail = 0.8 }\n'
    )
    rec = json.loads(cli("run", str(suite(tmp_path, body)), "--format", "json").stdout)
    rel = [e for c in rec["checks"] for e in c["evaluations"] if e["kind"] == "relative"]
    assert rel and all(e["verdict"] == "SKIP" for e in rel)


def test_quiet_prints_nothing_when_ok_and_one_line_otherwise(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", str(suite(tmp_path, FIXED.format(value=1))), "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    b = baseline(tmp_path, "[expected.f]\nscore = 100\n")
    r = cli("run", str(suite(tmp_path, FIXED.format(value=1))), "--quiet", "--baseline", str(b))
    assert r.returncode == ExitCode.FAIL
    assert r.stdout.count("\n") == 1 and "FAIL" in r.stdout and "f/node" in r.stdout


def test_probe_command(cli: Cli) -> None:
    r = cli(
        "probe",
        "cpu_membw",
        "-p",
        "array_size=500000",
        "-p",
        "repeats=2",
        "-p",
        "warmup=0",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["suite"]["name"] == "probe:cpu_membw" and rec["checks"][0]["params"]["array_size"] == 500000


def test_baseline_create_then_pass(cli: Cli, tmp_path: Path) -> None:
    s = suite(tmp_path, FIXED.format(value=42))
    assert cli("run", str(s)).returncode == 0
    out = tmp_path / "golden.toml"
    r = cli("baseline", "create", *map(str, records(tmp_path)), "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert 'source = "golden-node"' in text and "nodes = 1" in text and "[expected.f]" in text
    r = cli("run", str(s), "--baseline", str(out), "--format", "json")
    assert r.returncode == 0
    ev = json.loads(r.stdout)["checks"][0]["evaluations"][0]
    assert ev["verdict"] == "PASS" and ev["expected"] == 42 and "golden-node" in ev["provenance"]
    # nothing already written is lost: a second create refuses to overwrite
    r = cli("baseline", "create", *map(str, records(tmp_path)), "-o", str(out))
    assert r.returncode == ExitCode.USAGE and "--force" in r.stderr and out.read_text() == text


def one_line_usage_error(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == ExitCode.USAGE, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_bad_input_is_one_line_and_exit_4(cli: Cli, tmp_path: Path) -> None:
    bad_toml = write(tmp_path / "bad.toml", 'name = "x"\n[[check]\nid = 1\n')
    r = cli("run", str(bad_toml))
    one_line_usage_error(r)
    assert str(bad_toml) in r.stderr and "line 2" in r.stderr
    bad_key = suite(
        tmp_path, '[[check]]\nid = "a"\nprobe = "cpu_membw"\nparams = { repeats = "many" }\n', "k"
    )
    r = cli("run", str(bad_key))
    one_line_usage_error(r)
    assert "line 6" in r.stderr and "repeats" in r.stderr and "integer" in r.stderr
    r = cli(
        "run",
        str(suite(tmp_path, FIXED.format(value=1), "ok")),
        "--baseline",
        str(write(tmp_path / "nb.toml", 'name = "nb"\n[expected.f]\nscore = 1\n')),
    )
    one_line_usage_error(r)
    assert "provenance" in r.stderr
    one_line_usage_error(cli("run", "no-such-suite"))
    one_line_usage_error(cli("probe", "cpu_membw", "-p", "repeats=1"))
    one_line_usage_error(cli("probe", "cpu_membw", "-p", "nonsense"))
    one_line_usage_error(cli("probe", "no_such_probe"))
    one_line_usage_error(cli("frobnicate"))
    one_line_usage_error(cli("run", "--format", "xml"))
    write(tmp_path / "afile", "")
    one_line_usage_error(cli("run", str(suite(tmp_path, FIXED.format(value=1), "o")), "--output", "afile"))
    assert records(tmp_path) == []  # nothing ran
