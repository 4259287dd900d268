"""Baseline profiles: parsing, errors, matching an inventory, choosing one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcbench.core.errors import ConfigError
from hpcbench.engine import baselines
from hpcbench.engine.baselines import Expectation, match_score
from hpcbench.node.inventory import Inventory

VALID = """\
name = "epyc-9654-2s"
description = "2 x AMD EPYC 9654"

[match]
cpu_model = "AMD EPYC 9654"

[provenance]
source = "golden-node"
date = "2026-11-28"
nodes = 3

[expected.membw]
triad = 520.0
copy = { value = 480, unit = "GB/s", source = "STREAM on node a17", estimate = true }

[expected.membw_numa]
triad = 130
"""


def write(tmp_path: Path, text: str, name: str = "b.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def load_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        baselines.load(str(path))
    return str(info.value), path


def test_parse_valid(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    b = baselines.load(str(path))
    assert b.name == "epyc-9654-2s"
    assert b.path == str(path)
    assert b.description == "2 x AMD EPYC 9654"
    assert b.match == {"cpu_model": "AMD EPYC 9654"}
    assert b.provenance == {"source": "golden-node", "date": "2026-11-28", "nodes": 3}
    assert b.expectation("membw", "triad") == Expectation(520.0)
    assert b.expectation("membw", "copy") == Expectation(
        480.0, unit="GB/s", source="STREAM on node a17", estimate=True
    )
    exp = b.expectation("membw_numa", "triad")
    assert exp is not None and exp.value == 130.0 and isinstance(exp.value, float)
    assert b.expectation("membw", "scale") is None
    assert b.expectation("nope", "triad") is None


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    text = VALID.replace('name = "epyc-9654-2s"\n', "")
    assert baselines.load(str(write(tmp_path, text, "golden.toml"))).name == "golden"


def test_provenance_text(tmp_path: Path) -> None:
    b = baselines.load(str(write(tmp_path, VALID)))
    assert b.provenance_text() == "epyc-9654-2s: golden-node, 3 nodes, 2026-11-28"
    copy = b.expectation("membw", "copy")
    assert (
        b.provenance_text(copy)
        == "epyc-9654-2s: golden-node, 3 nodes, 2026-11-28, STREAM on node a17, estimate"
    )
    one = baselines.load(str(write(tmp_path, VALID.replace("nodes = 3", "nodes = 1"))))
    assert "1 node," in one.provenance_text()


def test_as_dict(tmp_path: Path) -> None:
    d = baselines.load(str(write(tmp_path, VALID))).as_dict()
    assert d["name"] == "epyc-9654-2s"
    assert d["match"] == {"cpu_model": "AMD EPYC 9654"}
    assert d["provenance"]["source"] == "golden-node"


def test_missing_provenance(tmp_path: Path) -> None:
    text = VALID.replace('[provenance]\nsource = "golden-node"\ndate = "2026-11-28"\nnodes = 3\n', "")
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert "'provenance'" in message
    assert "[provenance]" in message


def test_missing_date(tmp_path: Path) -> None:
    text = VALID.replace('date = "2026-11-28"\n', "")
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert "'provenance.date'" in message


@pytest.mark.parametrize("source", ['"vendor"', "3"])
def test_bad_source(tmp_path: Path, source: str) -> None:
    text = VALID.replace('source = "golden-node"', f"source = {source}")
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert f"line {line_of(text, 'source = ' + source)}:" in message
    assert "'provenance.source'" in message
    assert "datasheet, golden-node, fleet-median, estimate" in message


@pytest.mark.parametrize("nodes", ["0", "true", '"3"'])
def test_bad_nodes(tmp_path: Path, nodes: str) -> None:
    text = VALID.replace("nodes = 3", f"nodes = {nodes}")
    message, _ = load_error(tmp_path, text)
    assert f"line {line_of(text, 'nodes =')}:" in message
    assert "'provenance.nodes'" in message


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("triad = 520.0", "triad = -520.0", "triad = -520.0"),
        ("triad = 520.0", "triad = 0", "triad = 0"),
        ("triad = 520.0", 'triad = "520"', 'triad = "520"'),
        ("triad = 520.0", "triad = true", "triad = true"),
        ("value = 480,", "value = -1,", "value = -1"),
    ],
)
def test_bad_expected_value(tmp_path: Path, old: str, new: str, needle: str) -> None:
    text = VALID.replace(old, new)
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert f"line {line_of(text, needle)}:" in message
    assert "expected.membw." in message
    assert "positive number" in message


def test_expected_table_unknown_key(tmp_path: Path) -> None:
    text = VALID.replace("estimate = true", "estimated = true")
    message, _ = load_error(tmp_path, text)
    assert "'expected.membw.copy'" in message
    assert "'estimated'" in message


def test_no_expected_values(tmp_path: Path) -> None:
    text = VALID.split("[expected.membw]")[0]
    message, _ = load_error(tmp_path, text)
    assert "'expected'" in message


def test_unknown_match_key(tmp_path: Path) -> None:
    text = VALID.replace('cpu_model = "AMD EPYC 9654"', 'cpu = "AMD EPYC 9654"')
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert f"line {line_of(text, 'cpu = ')}:" in message
    assert "'match.cpu'" in message
    assert "cpu_model, gpu_name, pci_device_id" in message


def test_empty_match_value(tmp_path: Path) -> None:
    text = VALID.replace('cpu_model = "AMD EPYC 9654"', 'cpu_model = ""')
    message, _ = load_error(tmp_path, text)
    assert "'match.cpu_model'" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = "version = 2\n" + VALID
    message, path = load_error(tmp_path, text)
    assert str(path) in message
    assert "line 1:" in message
    assert "'version'" in message


def test_bad_toml(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, VALID + "triad = \n")
    assert str(path) in message
    assert "invalid TOML" in message


# ---------------------------------------------------------------------------
# matching


def inventory(cpu: str | None = None, gpu: str | None = None, pci: str | None = None) -> Inventory:
    inv: dict[str, Any] = {"cpu": {"model": cpu}, "gpus": {"count": 0, "devices": []}}
    if gpu or pci:
        inv["gpus"] = {"count": 1, "devices": [{"name": gpu, "pci_device_id": pci}]}
    return Inventory.from_dict(inv)


def test_match_cpu_model_substring_case_insensitive() -> None:
    inv = inventory(cpu="AMD EPYC 9654 96-Core Processor")
    assert match_score({"cpu_model": "AMD EPYC 9654"}, inv) == 1
    assert match_score({"cpu_model": "amd epyc 9654"}, inv) == 1
    assert match_score({"cpu_model": "AMD EPYC 9754"}, inv) == 0
    assert match_score({"cpu_model": "EPYC"}, inventory(cpu=None)) == 0


def test_match_gpu_name_uses_first_gpu() -> None:
    inv = inventory(cpu="Intel Xeon", gpu="NVIDIA H200", pci="0x233510DE")
    assert match_score({"gpu_name": "H200"}, inv) == 1
    assert match_score({"gpu_name": "h100"}, inv) == 0
    assert match_score({"gpu_name": "H200"}, inventory(cpu="Intel Xeon")) == 0  # no GPU at all


def test_match_pci_device_id_exact() -> None:
    inv = inventory(gpu="NVIDIA H200", pci="0x233510DE")
    assert match_score({"pci_device_id": "0x233510de"}, inv) == 1
    assert match_score({"pci_device_id": "0x2335"}, inv) == 0  # not a substring match


def test_match_all_keys_must_match() -> None:
    inv = inventory(cpu="Intel Xeon Platinum 8480+", gpu="NVIDIA H200", pci="0x233510DE")
    assert match_score({"cpu_model": "8480", "gpu_name": "H200"}, inv) == 2
    assert match_score({"cpu_model": "8480", "gpu_name": "H200", "pci_device_id": "0x233510DE"}, inv) == 3
    assert match_score({"cpu_model": "9654", "gpu_name": "H200"}, inv) == 0


def test_empty_match_never_matches() -> None:
    assert match_score({}, inventory(cpu="anything")) == 0
    assert match_score({}, Inventory()) == 0


def test_choose_explicit_path(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    # an explicit choice wins even when the inventory does not match
    b = baselines.choose(inventory(cpu="Intel Xeon"), explicit=str(path))
    assert b is not None
    assert b.name == "epyc-9654-2s"
    assert b.matched_by == "chosen with --baseline"
    assert b.expectation("membw", "triad") == Expectation(520.0)


def test_choose_explicit_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        baselines.choose(Inventory(), explicit=str(tmp_path / "missing.toml"))


def test_choose_unknown_bundled_name() -> None:
    with pytest.raises(ConfigError, match="no baseline named 'no-such-profile'"):
        baselines.choose(Inventory(), explicit="no-such-profile")


def test_choose_without_match_returns_none() -> None:
    assert baselines.choose(inventory(cpu="Imaginary CPU 0000 that no profile describes")) is None
