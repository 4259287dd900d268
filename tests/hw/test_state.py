"""The state folder (a health run's readings kept for the next) and error-counter growth judged
against the previous health run instead of a second read a second later: nothing sleeps."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support import TESTS
from support.results import measured, reasons

from hpcbench.hw import state
from hpcbench.hw.net import since_last
from hpcbench.node import nics
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.network_ports.probe import NetworkPorts

FIXTURES = TESTS / "probes" / "network" / "fixtures" / "network"


def test_the_folder_is_created_private(tmp_path: Path) -> None:
    folder = state.ensure(tmp_path / "a" / "state")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    state.save(folder, "x", state.Reading(1.0, None, {"a": 1}))
    assert state.load(folder, "x") == state.Reading(1.0, None, {"a": 1})
    assert state.load(folder, "never-written") is None


def test_a_folder_others_may_write_or_own_is_refused(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    with pytest.raises(state.StateError, match="writable by others"):
        state.ensure(open_folder)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere-created", target_is_directory=True)
    (tmp_path / "elsewhere-created").mkdir()
    with pytest.raises(state.StateError, match="not a folder"):
        state.ensure(link)
    if os.geteuid() == 0:  # root can give a folder away: the user's planted folder
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(state.StateError, match="belongs to uid 65534"):
            state.ensure(theirs)


def results(root: str, subject: str, folder: Path) -> list[Any]:
    values = {"interval": 0.0, "root": root, "nic": subject}
    p = build_params(NetworkPorts, {**values, "since_last_run": True, "state_dir": str(folder)})
    inv = replace(Inventory(), network=nics.collect(root))
    return NetworkPorts().run(p, ProbeContext(subject, inv, ".", 60.0))


def run(root: str, subject: str, folder: Path) -> dict[str, Any]:
    return {m.metric: m for m in measured(results(root, subject, folder))}


def test_growth_since_the_previous_health_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1000.0, 1300.0])
    monkeypatch.setattr(since_last.time, "time", lambda: next(clock))
    out = results(str(FIXTURES / "hgx8"), "mlx5_2:1", tmp_path)
    assert "counters_grew" not in {m.metric for m in measured(out)}  # nothing to compare with yet
    why = reasons(out)["counters_grew"]
    assert why == "the first reading: nothing kept by a previous health run to compare with"
    # the next health run, 300 s later, finds symbol_error 0 -> 12 and link_downed 0 -> 1
    later = run(str(FIXTURES / "hgx8_counters_after"), "mlx5_2:1", tmp_path)
    assert later["counters_grew"].value == 2.0
    assert later["counters_grew"].detail == (
        "mlx5_2:1: error counters grown in 300 s: symbol_error +12 (144/h), link_downed +1"
    )


def test_a_reboot_between_runs_is_not_growth(tmp_path: Path) -> None:
    folder = state.ensure(tmp_path)
    proc_stat = tmp_path / "stat"
    proc_stat.write_text("cpu  1 2 3\nbtime 2000\n")
    state.save(folder, "network-counters-eno1", state.Reading(1500.0, 1000.0, {"rx_errors": 9}))
    prev, _, why = since_last.previous_and_now("eno1", {"rx_errors": 0}, str(folder), str(proc_stat))
    assert prev is None and why == "the first reading since the node booted (its counters started again)"
    assert state.load(folder, "network-counters-eno1").values == {"rx_errors": 0}  # kept for the next run
