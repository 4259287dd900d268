"""Suite files: parsing, defaults, and errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcbench.core import tomlfile
from hpcbench.core.errors import ConfigError
from hpcbench.engine import suite
from hpcbench.engine.suite import Band, Relative
from hpcbench.probes import registry

VALID = """\
name = "demo"
description = "a demo suite"
require_baseline = true
default_timeout = 60

[[check]]
id = "membw"
probe = "cpu_membw"
description = "whole node"
params = { repeats = 5 }
metrics = ["triad", "copy"]
thresholds = { warn = 0.95, fail = 0.85 }
absolute = { triad = { warn = 20.0, fail = 10.0 } }
timeout = 120

[[check]]
id = "membw_numa"
probe = "cpu_membw"
expand = "numa"
relative = { to = "best", warn = 0.9, fail = 0.7 }
"""

MINIMAL = """\
[[check]]
id = "membw"
probe = "cpu_membw"
"""


@pytest.fixture(scope="module")
def probes() -> dict[str, Any]:
    classes = registry.load_all()
    assert "cpu_membw" in classes
    return classes


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding ``needle`` (its n-th occurrence)."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[occurrence - 1]


def load_error(tmp_path: Path, text: str, probe_classes: dict[str, Any] | None = None) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        suite.load(str(path), probe_classes)
    return str(info.value), path


# ---------------------------------------------------------------------------
# valid suites


def test_valid_suite_parses(tmp_path: Path, probes: dict[str, Any]) -> None:
    path = write(tmp_path, VALID)
    s = suite.load(str(path), probes)
    assert s.name == "demo"
    assert s.description == "a demo suite"
    assert s.require_baseline is True
    assert s.path == str(path)
    assert s.sha256 == tomlfile.read(path, "suite").sha256
    assert len(s.sha256) == 64
    membw, numa = s.checks
    assert membw.id == "membw"
    assert membw.probe == "cpu_membw"
    assert membw.description == "whole node"
    assert membw.params == {"repeats": 5}
    assert membw.metrics == ("triad", "copy")
    assert membw.thresholds == Band(0.95, 0.85)
    assert membw.absolute == {"triad": Band(20.0, 10.0)}
    assert membw.relative is None
    assert membw.timeout == 120.0
    assert numa.expand == "numa"
    assert numa.relative == Relative("best", Band(0.9, 0.7))
    assert numa.timeout == 60.0  # the suite's default_timeout


def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, name="mini.toml")
    s = suite.load(str(path))
    assert s.name == "mini"  # the file's stem
    assert s.require_baseline is False
    (c,) = s.checks
    assert c.thresholds == Band(0.90, 0.80)
    assert c.expand == "none"
    assert c.metrics is None
    assert c.params == {}
    assert c.absolute == {}
    assert c.relative is None
    assert c.timeout == 300.0


def test_as_dict(tmp_path: Path) -> None:
    s = suite.load(str(write(tmp_path, VALID)))
    assert s.checks[1].as_dict() == {
        "id": "membw_numa",
        "probe": "cpu_membw",
        "params": {},
        "expand": "numa",
        "metrics": None,
        "thresholds": {"warn": 0.9, "fail": 0.8},
        "absolute": {},
        "relative": {"to": "best", "warn": 0.9, "fail": 0.7},
        "timeout": 60.0,
    }
    assert s.as_dict()["require_baseline"] is True


def test_without_probe_classes_params_are_not_validated(tmp_path: Path) -> None:
    text = MINIMAL.replace('"cpu_membw"', '"no_such_probe"') + 'params = { whatever = "x" }\n'
    s = suite.load(str(write(tmp_path, text)))
    assert s.checks[0].probe == "no_such_probe"


def test_single_check() -> None:
    s = suite.single_check("cpu_membw", {"repeats": 3}, 30.0, expand="numa")
    (c,) = s.checks
    assert (s.name, c.id, c.probe, c.params, c.timeout, c.expand) == (
        "probe:cpu_membw",
        "cpu_membw",
        "cpu_membw",
        {"repeats": 3},
        30.0,
        "numa",
    )


# ---------------------------------------------------------------------------
# errors: each names the file, the line and the key


def assert_points_at(message: str, path: Path, line: int | None, *keys: str) -> None:
    assert str(path) in message, message
    if line is not None:
        assert f"line {line}:" in message, message
    for key in keys:
        assert key in message, message


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    text = MINIMAL + "timeout = = 3\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, None, "invalid TOML")
    assert f"line {line_of(text, 'timeout = = 3')}" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        suite.load(str(tmp_path / "nope.toml"))


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = 'name = "x"\nrequire_baseline_for_all = true\n' + MINIMAL
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, 2, "'require_baseline_for_all'", "unknown key", "default_timeout")


def test_unknown_top_level_table_names_its_line(tmp_path: Path) -> None:
    # "Every error names the file, the line and the key": a misplaced [settings] table too
    text = 'name = "x"\n\n[settings]\nrequire_baseline = true\n\n' + MINIMAL
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, 3, "'settings'", "unknown key")


def test_check_entries_that_are_not_tables(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, 'check = ["membw"]\n')
    assert_points_at(message, path, None, "check")


def test_no_checks(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, 'name = "x"\n')
    assert_points_at(message, path, None, "'check'", "[[check]]")


def test_bad_top_level_types(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, 'require_baseline = "yes"\n' + MINIMAL)
    assert_points_at(message, path, 1, "'require_baseline'", "true or false")
    message, path = load_error(tmp_path, "default_timeout = -5\n" + MINIMAL)
    assert_points_at(message, path, 1, "'default_timeout'", "positive")


def test_unknown_check_key(tmp_path: Path) -> None:
    text = MINIMAL + "treshold = 0.9\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(
        message,
        path,
        line_of(text, "treshold"),
        "check[0]",
        "'membw'",
        "'treshold'",
        "unknown key",
        "thresholds",
    )


def test_missing_id(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[check]]\nprobe = "cpu_membw"\n'
    message, path = load_error(tmp_path, text)
    # no id line: the check's header line
    assert_points_at(message, path, line_of(text, "[[check]]", 2), "check[1]", "'id'")


def test_bad_id(tmp_path: Path) -> None:
    text = MINIMAL.replace('id = "membw"', 'id = "Mem BW"')
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "Mem BW"), "'id'", "'Mem BW'")


def test_duplicate_id(tmp_path: Path) -> None:
    text = MINIMAL + "\n" + MINIMAL
    message, path = load_error(tmp_path, text)
    assert_points_at(
        message, path, line_of(text, 'id = "membw"', 2), "check[1]", "'id'", "duplicate", "'membw'"
    )


def test_missing_probe(tmp_path: Path) -> None:
    text = '[[check]]\nid = "a"\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, 1, "'probe'")


def test_bad_expand(tmp_path: Path) -> None:
    text = MINIMAL + 'expand = "socket"\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "expand"), "'expand'", "'socket'", "none, numa, gpu, mount")


def test_bad_metrics(tmp_path: Path) -> None:
    text = MINIMAL + 'metrics = "triad"\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "metrics"), "'metrics'")


def test_relative_without_expand(tmp_path: Path) -> None:
    text = MINIMAL + 'relative = { to = "median", warn = 0.9 }\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "relative"), "'relative'", "expand")


def test_relative_bad_to(tmp_path: Path) -> None:
    text = MINIMAL + 'expand = "numa"\nrelative = { to = "mean", warn = 0.9 }\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "relative"), "'relative.to'", "'mean'")


def test_fail_above_warn(tmp_path: Path) -> None:
    text = MINIMAL + "thresholds = { warn = 0.8, fail = 0.9 }\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), "'thresholds'", "fail (0.9)", "warn (0.8)")


@pytest.mark.parametrize(
    ("band", "key"),
    [
        ("{ warn = 0.0, fail = 0.0 }", "thresholds.warn"),
        ("{ warn = 2.5 }", "thresholds.warn"),
        ("{ warn = 0.9, fail = -0.1 }", "thresholds.fail"),
    ],
)
def test_thresholds_out_of_range(tmp_path: Path, band: str, key: str) -> None:
    text = MINIMAL + f"thresholds = {band}\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), f"'{key}'", "0 < x <= 2")


def test_thresholds_unknown_key(tmp_path: Path) -> None:
    text = MINIMAL + "thresholds = { warn = 0.9, critical = 0.5 }\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), "'thresholds.critical'", "unknown key")


def test_thresholds_refuse_relative_only_key_to(tmp_path: Path) -> None:
    # 'to' means something in relative = {...} only; in thresholds it is a typo and must not pass silently
    text = MINIMAL + 'thresholds = { warn = 0.9, to = "best" }\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), "'thresholds.to'", "unknown key")


def test_thresholds_empty(tmp_path: Path) -> None:
    text = MINIMAL + "thresholds = {}\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), "'thresholds'", "at least one")


def test_absolute_not_a_number(tmp_path: Path) -> None:
    text = MINIMAL + 'absolute = { triad = { warn = "fast" } }\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "absolute"), "'absolute.triad.warn'", "expected a number")


@pytest.mark.parametrize("value", ['"60"', "true", "0", "-1"])
def test_bad_timeout(tmp_path: Path, value: str) -> None:
    text = MINIMAL + f"timeout = {value}\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "timeout"), "check[0]", "'timeout'")


def test_error_in_second_check_points_into_second_check(tmp_path: Path) -> None:
    text = MINIMAL + "timeout = 10\n\n" + MINIMAL.replace("membw", "other") + 'timeout = "x"\n'
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "timeout", 2), "check[1]", "'other'", "'timeout'")


def test_unknown_probe_with_registry(tmp_path: Path, probes: dict[str, Any]) -> None:
    text = MINIMAL.replace('"cpu_membw"', '"gpu_gemmm"')
    message, path = load_error(tmp_path, text, probes)
    assert_points_at(message, path, line_of(text, "probe"), "'probe'", "'gpu_gemmm'", "cpu_membw")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ("{ repeats = 1 }", ("repeats", "must be >= 2")),
        ("{ repeatz = 10 }", ("repeatz", "unknown parameter", "array_size")),
        ('{ repeats = "ten" }', ("repeats", "expected an integer")),
    ],
)
def test_bad_params_with_registry(
    tmp_path: Path, probes: dict[str, Any], params: str, words: tuple[str]
) -> None:
    text = MINIMAL + f"params = {params}\n"
    message, path = load_error(tmp_path, text, probes)
    assert_points_at(message, path, line_of(text, "params"), "'params'", "cpu_membw", *words)


def test_unsupported_expand_with_registry(tmp_path: Path, probes: dict[str, Any]) -> None:
    text = MINIMAL + 'expand = "gpu"\n'
    message, path = load_error(tmp_path, text, probes)
    assert_points_at(message, path, line_of(text, "expand"), "'expand'", "cannot expand over 'gpu'", "numa")


# ---------------------------------------------------------------------------
# bundled suites


@pytest.mark.parametrize("name", ["quick", "nightly", "acceptance"])
def test_bundled_suites_load(name: str, probes: dict[str, Any]) -> None:
    s = suite.load(name, probes)
    assert s.name == name
    assert Path(s.path).name == f"{name}.toml"
    assert s.checks
    assert all(c.probe in probes for c in s.checks)
    assert len({c.id for c in s.checks}) == len(s.checks)


def test_bundled_nightly_and_acceptance_require_a_baseline(probes: dict[str, Any]) -> None:
    assert suite.load("nightly", probes).require_baseline
    assert suite.load("acceptance", probes).require_baseline
    assert not suite.load("quick", probes).require_baseline


def test_unknown_bundled_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ConfigError) as info:
        suite.load("quik")
    message = str(info.value)
    assert "'quik'" in message
    for name in ("acceptance", "nightly", "quick"):
        assert name in message


def test_relative_with_only_a_low_warn_is_accepted(tmp_path: Path) -> None:
    # the user wrote no fail limit: a default must not make their own warn limit invalid
    text = MINIMAL + 'expand = "numa"\nrelative = { warn = 0.7 }\n'
    c = suite.load(str(write(tmp_path, text))).checks[0]
    assert c.relative is not None
    assert c.relative.to == "median"
    assert c.relative.band.warn == 0.7
    assert c.relative.band.fail is None or c.relative.band.fail <= 0.7


@pytest.mark.parametrize("above", ["1.0", "0.5", '"1.3"'])
def test_thresholds_above_must_be_a_ratio_above_one(tmp_path: Path, above: str) -> None:
    text = MINIMAL + f"thresholds = {{ warn = 0.9, fail = 0.8, above = {above} }}\n"
    message, path = load_error(tmp_path, text)
    assert_points_at(message, path, line_of(text, "thresholds"), "'thresholds.above'")


def test_thresholds_above_is_read_and_only_in_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL + "thresholds = { warn = 0.9, fail = 0.8, above = 1.3 }\n")
    (check,) = suite.load(str(path)).checks
    assert check.thresholds == Band(0.9, 0.8, above=1.3)
    assert check.as_dict()["thresholds"] == {"warn": 0.9, "fail": 0.8, "above": 1.3}
    text = MINIMAL + 'expand = "numa"\nrelative = { to = "best", warn = 0.9, above = 1.3 }\n'
    message, _ = load_error(tmp_path, text)
    assert "'relative.above'" in message and "unknown key" in message


def test_a_probe_run_borrows_the_quick_suites_limits() -> None:
    """`hpcbench probe node_health` judges its counts by the quick suite's absolute limits."""
    quick = suite.load("quick")
    lender = next(c for c in quick.checks if c.probe == "node_health")
    one = suite.single_check("node_health", {"since": "1h"}, 60.0, rules=quick)
    (check,) = one.checks
    assert check.id == "node_health" and check.params == {"since": "1h"} and check.timeout == 60.0
    assert check.absolute == lender.absolute and check.absolute["kernel_io_errors"] == Band(None, 0.5)
    assert (
        check.thresholds == lender.thresholds and check.description == "limits of quick's check node_health"
    )
    gemm = suite.single_check("gemm", {}, 60.0, expand="gpu", rules=quick).checks[0]
    assert gemm.relative is not None and gemm.relative.to == "best"  # same expansion: compared too
    assert suite.single_check("gemm", {}, 60.0, rules=quick).checks[0].relative is None
    bare = suite.single_check("fixed", {}, 60.0, rules=quick).checks[0]  # no lender: the defaults
    assert bare.absolute == {} and bare.thresholds == Band(0.9, 0.8)
