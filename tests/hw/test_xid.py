"""XID parsing on captured kernel-log text, the since filter, and reading the log through real
subprocesses (stand-in journalctl/dmesg scripts on PATH that print or fail as the real ones do)."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcbench.hw import kernel_log, xid
from hpcbench.node.pci import normalize_bus

FIXTURES = Path(__file__).parent / "fixtures" / "xid"


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


def test_dmesg_iso_every_xid_with_bus_time_pid_and_message() -> None:
    events = xid.parse_kernel_log(text("dmesg_iso.txt"))
    assert [(e.code, e.bus) for e in events] == [
        (13, "0000:5d:00"),
        (13, "0000:5d:00"),
        (43, "0000:5d:00"),
        (48, "0000:5d:00"),
        (63, "0000:5d:00"),
        (79, "0000:3a:00"),
    ]
    dbe = events[3]
    assert dbe.time == pytest.approx(epoch("2026-11-28T02:05:44.882310"))
    assert dbe.pid is None and dbe.process is None  # pid='<unknown>', name=<unknown>
    assert dbe.message.startswith("An uncorrectable double bit error (DBE)")
    assert (events[2].pid, events[2].process, events[2].message) == ("18822", "python3", "Ch 00000008")
    # "NVRM: GPU 0000:3a:00.0: GPU has fallen off the bus." repeats the XID 79 line: not counted twice
    assert sum(1 for e in events if e.code == 79) == 1


def test_journal_short_iso_and_plain_dmesg_with_boot_time() -> None:
    journal = xid.parse_kernel_log(text("journal_short_iso.txt"))
    assert [(e.code, e.bus) for e in journal] == [(48, "0000:5d:00"), (63, "0000:5d:00"), (74, "0000:ab:00")]
    assert journal[2].time == pytest.approx(epoch("2026-11-28T06:30:12"))
    plain = xid.parse_kernel_log(text("dmesg_plain.txt"), booted=1_700_000_000.0)
    assert [(e.code, e.bus, e.pid) for e in plain] == [
        (94, "0000:07:00", "50112"),
        (31, "0000:0f:00", "50231"),
    ]
    assert plain[0].time == pytest.approx(1_700_000_000.0 + 3602.418806)
    assert xid.parse_kernel_log(text("dmesg_plain.txt"))[0].time is None  # no boot time: unknown


def test_multiline_fallen_off_the_bus_counts_as_xid_79() -> None:
    (event,) = xid.parse_kernel_log(text("fallen_multiline.txt"))
    assert (event.code, event.bus, event.message) == (79, "0000:b3:00", "GPU has fallen off the bus")


def test_no_xid_in_an_ordinary_boot_log() -> None:
    assert xid.parse_kernel_log(text("dmesg_iso.txt").split("NVRM: Xid")[0]) == []


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("00000000:3B:00.0", "0000:3b:00"),
        ("0000:3b:00", "0000:3b:00"),
        ("PCI:0000:3B:00", "0000:3b:00"),
        ("3b:00", "0000:3b:00"),
        ("", None),
        ("nonsense", None),
    ],
)
def test_normalize_bus_makes_nvml_and_kernel_addresses_comparable(given: str, want: str | None) -> None:
    assert normalize_bus(given) == want


def test_since_filter_keeps_events_of_unknown_time() -> None:
    events = xid.parse_kernel_log(text("dmesg_iso.txt") + text("dmesg_plain.txt"))
    kept = xid.since(events, epoch("2026-11-28T00:00:00"))
    assert [e.code for e in kept] == [48, 63, 79, 94, 31]  # 94 and 31 have no time: kept


def test_describe_counts_and_names_the_xids() -> None:
    events = xid.parse_kernel_log(text("dmesg_iso.txt"))
    assert xid.describe(events) == (
        "XID 13 x2 (graphics engine exception), XID 43 x1 (GPU stopped processing), "
        "XID 48 x1 (double-bit ECC error), XID 63 x1 (ECC page retirement or row remapping event), "
        "XID 79 x1 (GPU has fallen off the bus)"
    )


# -- reading the log: real subprocesses, stand-in tools on PATH ------------------------------


def tool(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "bin"
    b.mkdir()
    monkeypatch.setenv("PATH", f"{b}{os.pathsep}/usr/bin:/bin")
    return b


def test_auto_prefers_the_journal(bindir: Path) -> None:
    fixture = FIXTURES / "journal_short_iso.txt"
    tool(bindir, "journalctl", f'echo "$@" > {bindir}/argv; cat {fixture}\n')
    tool(bindir, "dmesg", "echo dmesg must not run >&2; exit 1\n")
    log = kernel_log.read_kernel_log("auto")
    assert log.unsupported is None and log.text == fixture.read_text()
    assert (bindir / "argv").read_text().split() == ["-k", "-b", "-o", "short-iso", "--no-pager", "-q"]


@pytest.mark.parametrize("journal", ["echo 'No journal files were found.' >&2\n", "exit 0\n"])
def test_auto_falls_back_to_dmesg_when_the_journal_keeps_no_kernel_messages(
    bindir: Path, journal: str
) -> None:
    tool(bindir, "journalctl", journal)  # no journald (containers): no files, or nothing at all
    tool(bindir, "dmesg", f"cat {FIXTURES / 'dmesg_iso.txt'}\n")
    log = kernel_log.read_kernel_log("auto")
    assert log.source == "dmesg --time-format iso" and "NVRM: Xid" in (log.text or "")


def test_no_permission_is_unsupported_not_a_failure(bindir: Path) -> None:
    tool(
        bindir,
        "journalctl",
        "echo 'Hint: You are currently not seeing messages from other users and the system.' >&2\n",
    )
    tool(bindir, "dmesg", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1\n")
    log = kernel_log.read_kernel_log("auto")
    assert log.text is None
    assert "no permission to read the journal" in (log.unsupported or "")
    assert "no permission to read the kernel log (dmesg: read kernel buffer failed" in (log.unsupported or "")


def test_busybox_dmesg_without_time_format(bindir: Path) -> None:
    tool(
        bindir,
        "dmesg",
        'if [ "$1" = "--time-format" ]; then\n'
        "  echo \"dmesg: unrecognized option '--time-format'\" >&2; exit 1\n"
        "fi\n"
        f"cat {FIXTURES / 'dmesg_plain.txt'}\n",
    )
    log = kernel_log.read_kernel_log("dmesg")
    assert log.source == "dmesg" and "Xid" in (log.text or "")


def test_a_hanging_tool_times_out(bindir: Path) -> None:
    tool(bindir, "dmesg", "exec sleep 30\n")
    log = kernel_log.read_kernel_log("dmesg", timeout=0.5)
    assert log.text is None and "timed out after 0.5 s" in (log.unsupported or "")


def test_missing_tools_file_source_and_none(
    bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(bindir))  # neither journalctl nor dmesg
    log = kernel_log.read_kernel_log("auto")
    assert log.unsupported == "journalctl not found; dmesg not found"
    assert kernel_log.read_kernel_log(str(FIXTURES / "dmesg_plain.txt")).text == text("dmesg_plain.txt")
    missing = kernel_log.read_kernel_log(str(tmp_path / "kern.log"))
    assert missing.text is None and "No such file" in (missing.unsupported or "")
    assert "turned off" in (kernel_log.read_kernel_log("none").unsupported or "")


def test_boot_time_from_proc_stat(tmp_path: Path) -> None:
    stat_file = tmp_path / "stat"
    stat_file.write_text("cpu  1 2 3\nbtime 1764316800\nprocesses 42\n")
    assert kernel_log.boot_time(str(stat_file)) == 1764316800.0
    assert kernel_log.boot_time(str(tmp_path / "none")) is None
