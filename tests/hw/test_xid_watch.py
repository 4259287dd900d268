"""One kernel-log source per run, XIDs filtered by the run's start: a slow journalctl can never
turn the GPU's old XIDs into new ones (hw/xid.XidWatch, used by burn and memtest)."""

from __future__ import annotations

from hpcbench.hw import xid
from hpcbench.hw.kernel_log import KernelLog, tool_of

BUS = "0000:5d:00"
JOURNAL_ARGV = "journalctl -k -b -o short-iso --no-pager -q"
#: 2026-11-29T10:00:00Z: the run's wall-clock start
START = 1795946400.0
BOOTED = START - 7200.0  # booted two hours earlier
OLD_ISO = (
    "2026-11-29T09:12:03+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:5d:00): 63, pid='<unknown>', "
    "name=<unknown>, Row Remapper: New row (0x0000000000b2a7c0) was marked for remapping\n"
)
NEW_ISO = (
    "2026-11-29T10:00:12+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:5d:00): 48, pid='<unknown>', "
    "name=<unknown>, An uncorrectable double bit error (DBE) has been detected\n"
)
#: the old XID as plain dmesg prints it: 2,523 s after boot = 09:42:03
OLD_DMESG = (
    "[ 2523.118201] NVRM: Xid (PCI:0000:5d:00): 63, pid='<unknown>', name=<unknown>, "
    "Row Remapper: New row (0x0000000000b2a7c0) was marked for remapping\n"
)


class Reader:
    """Answers each source with the logs queued for it, and records what was asked."""

    def __init__(self, answers: dict[str, list[KernelLog]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, source: str) -> KernelLog:
        self.asked.append(source)
        return self.answers[source].pop(0)


def watch(reader: Reader, source: str = "auto") -> xid.XidWatch:
    return xid.XidWatch(BUS, source, reader=reader, wall=lambda: START, booted=lambda: BOOTED)


def test_the_end_is_read_from_the_source_that_answered_the_start() -> None:
    reader = Reader(
        {
            "auto": [KernelLog(OLD_ISO, JOURNAL_ARGV)],
            "journalctl": [KernelLog(OLD_ISO + NEW_ISO, JOURNAL_ARGV)],
        }
    )
    w = watch(reader)
    w.begin()
    new = w.end()
    assert reader.asked == ["auto", "journalctl"]
    assert isinstance(new, list) and [(e.code, e.time) for e in new] == [(48, START + 12)]


def test_a_journal_that_times_out_at_the_end_is_not_measured_not_a_dmesg_fallback() -> None:
    reader = Reader(
        {
            "auto": [KernelLog(OLD_ISO, JOURNAL_ARGV)],
            "journalctl": [KernelLog(None, "journalctl", unsupported="journalctl timed out after 15 s")],
            "dmesg": [KernelLog(OLD_DMESG, "dmesg")],  # would be the old XID in another format
        }
    )
    w = watch(reader)
    w.begin()
    assert w.end() == (
        "kernel log not readable: journalctl timed out after 15 s "
        "(read from journalctl, the source of the run's start)"
    )
    assert reader.asked == ["auto", "journalctl"]


def test_old_xids_in_another_format_are_not_new() -> None:
    # whatever the two reads saw, an XID logged before the start is not the run's
    before = xid.parse_kernel_log(OLD_ISO, BOOTED)
    after = xid.parse_kernel_log(OLD_DMESG + NEW_ISO, BOOTED)
    assert after[0].time == BOOTED + 2523.118201 and after[0] != before[0]
    new = xid.new_events(before, after, START)
    assert [e.code for e in new] == [48]


def test_an_xid_of_unknown_time_is_new_only_if_the_first_read_lacked_it() -> None:
    plain = "NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    before = xid.parse_kernel_log(plain, None)
    assert before[0].time is None
    assert xid.new_events(before, xid.parse_kernel_log(plain, None), START) == []
    assert [e.code for e in xid.new_events([], xid.parse_kernel_log(plain, None), START)] == [79]


def test_the_start_second_belongs_to_the_run() -> None:
    # short-iso has whole seconds: an XID stamped 10:00:00 when the run began at 10:00:00.6 is the run's
    line = NEW_ISO.replace("10:00:12", "10:00:00")
    assert [e.code for e in xid.new_events([], xid.parse_kernel_log(line, None), START + 0.6)] == [48]


def test_tool_of_names_the_tool_or_the_file() -> None:
    assert tool_of(KernelLog("", JOURNAL_ARGV)) == "journalctl"
    assert tool_of(KernelLog("", "dmesg --time-format iso")) == "dmesg"
    assert tool_of(KernelLog("", "/var/log/kern.log")) == "/var/log/kern.log"


def test_an_unreadable_start_is_not_measured_and_no_second_read() -> None:
    reader = Reader({"none": [KernelLog(None, "none", unsupported="reading the kernel log is turned off")]})
    w = watch(reader, "none")
    w.begin()
    assert w.end() == "kernel log not readable: reading the kernel log is turned off"
    assert reader.asked == ["none"]
