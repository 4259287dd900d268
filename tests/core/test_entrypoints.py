"""hpcbench.core.entrypoints reads entry points as importlib.metadata does, without importing it:
the same entry points, in the same order, from the same distribution, on this environment and on
planted site folders (a package installed twice, an egg-info, comments, a zip archive)."""

from __future__ import annotations

import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from hpcbench.core import entrypoints

GROUP = "hpcbench.probes"


def library(group: str) -> list[tuple[str, str, str]]:
    """(name, value, "name version" of the distribution) as importlib.metadata gives them."""
    return [
        (ep.name, ep.value, f"{ep.dist.metadata['Name']} {ep.dist.metadata['Version']}")  # type: ignore[union-attr]
        for ep in metadata.entry_points(group=group)
    ]


def ours(group: str) -> list[tuple[str, str, str]]:
    return [(ep.name, ep.value, ep.dist.label() if ep.dist else "") for ep in entrypoints.find(group)]


def dist_info(site: Path, folder: str, name: str, version: str, entry_points: str | None) -> Path:
    d = site / folder
    d.mkdir(parents=True)
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description\nName: not me\n"
    )
    if entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)
    return d


@pytest.mark.parametrize("group", [GROUP, "console_scripts"])
def test_the_installed_entry_points_are_those_importlib_metadata_finds(group: str) -> None:
    found = ours(group)
    assert found == library(group)
    if group == GROUP:
        assert ("gemm", "hpcbench.probes.gemm.probe:Gemm", found[0][2]) in found


def test_planted_sites_first_of_a_name_wins_comments_and_eggs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(
        first,
        "acme_probes-1.0.dist-info",
        "acme-probes",
        "1.0",
        f"# a comment\n[console_scripts]\nacme = acme.cli:main\n\n[{GROUP}]\n# another\n"
        f"alpha = acme.alpha:Alpha\n  beta=acme.beta:Beta  \n[other]\ngamma = acme.gamma:Gamma\n",
    )
    # the same distribution (another spelling) later on the path: hidden, as Python would not import it
    dist_info(second, "Acme.Probes-2.0.dist-info", "Acme.Probes", "2.0", f"[{GROUP}]\nalpha = old:Alpha\n")
    dist_info(second, "zeta-3.dist-info", "zeta", "3", f"[{GROUP}]\nzeta = zeta.probe:Zeta\n")
    dist_info(second, "no_entry_points-1.dist-info", "no-entry-points", "1", None)
    egg = second / "legacy.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 0.9\n")
    (egg / "entry_points.txt").write_text(f"[{GROUP}]\nlegacy = legacy.mod:Old\n")
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])

    found = ours(GROUP)
    assert found == library(GROUP)
    pairs = [(n, v) for n, v, _ in found]
    assert pairs[:2] == [("alpha", "acme.alpha:Alpha"), ("beta", "acme.beta:Beta")]
    # the second folder in os.listdir's order, which the file system chooses
    assert sorted(pairs[2:]) == [("legacy", "legacy.mod:Old"), ("zeta", "zeta.probe:Zeta")]
    labels = {n: label for n, _, label in found}
    assert (labels["alpha"], labels["legacy"]) == ("acme-probes 1.0", "legacy 0.9")
    alpha = entrypoints.find(GROUP)[0]
    assert (alpha.module, alpha.attr) == ("acme.alpha", "Alpha")
    assert alpha.dist is not None and alpha.dist.path == str(first / "acme_probes-1.0.dist-info")
    assert entrypoints.version("Acme_Probes") == metadata.version("Acme_Probes") == "1.0"
    assert entrypoints.version("no-entry-points") == "1"
    assert entrypoints.version("absent") is None


def test_a_zip_archive_on_the_path_is_read_by_importlib_metadata_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.2\n")
        z.writestr("zipped-1.2.dist-info/entry_points.txt", f"[{GROUP}]\nzipped = zipped.probe:Z\n")
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert ours(GROUP) == library(GROUP) == [("zipped", "zipped.probe:Z", "zipped 1.2")]
    assert entrypoints.version("zipped") == "1.2"


def test_load_imports_the_module_and_follows_the_attribute_path() -> None:
    ep = entrypoints.EntryPoint("x", "hpcbench.core.entrypoints:EntryPoint.load", GROUP)
    assert ep.load() is entrypoints.EntryPoint.load
    assert entrypoints.EntryPoint("y", "hpcbench.core.entrypoints", GROUP).load() is entrypoints


def test_parsers() -> None:
    # ";" is configparser's comment too (importlib.metadata 3.11 raises on it)
    text = "[a]\nx = m:f\n[b]\n# c\n; c\ny = n:g [extra]\n"
    assert entrypoints.parse(text, "b") == [("y", "n:g [extra]")]
    assert entrypoints.EntryPoint("y", "n:g [extra]", "b").attr == "g"
    header = entrypoints.parse_header(["Name: a\n", "Version: 1\n", " folded\n", "\n", "Name: body\n"])
    assert header == {"name": "a", "version": "1"}
    assert entrypoints.normalized("Acme.Probes__x") == "acme_probes_x"
