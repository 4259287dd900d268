"""The progress channel of long probes: a probe appends lines to a file in its workdir
(``report_progress``), the runner tails it while the child runs and hands each line to its callback,
and the terminal shows it (rewritten in place on a TTY, plain lines otherwise, nothing with --quiet)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Runner, Tail
from hpcbench.engine.suite import single_check
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import PROGRESS_FILE, ProbeContext, report_progress
from hpcbench.report.progress import Progress


def test_report_progress_appends_one_line_and_needs_a_workdir(tmp_path: Path) -> None:
    ctx = ProbeContext(workdir=str(tmp_path))
    report_progress(ctx, "window 1: 700 TFLOPS")
    report_progress(ctx, "window 2:\n 699   TFLOPS")  # always one line
    assert (tmp_path / PROGRESS_FILE).read_text() == "window 1: 700 TFLOPS\nwindow 2: 699 TFLOPS\n"
    report_progress(ProbeContext(), "nowhere")  # outside a runner: no file, no error


def test_tail_returns_complete_lines_once(tmp_path: Path) -> None:
    path = tmp_path / PROGRESS_FILE
    tail = Tail(path)
    assert tail.lines() == []  # not written yet
    path.write_bytes(b"one\ntw")
    assert tail.lines() == ["one"]
    with open(path, "ab") as fh:
        fh.write(b"o\n\nthree\n")
    assert tail.lines() == ["two", "three"] and tail.lines() == []


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@dataclass(frozen=True)
class _Check:
    id: str = "burn"


@dataclass
class _Job:
    subject: str = "gpu3"
    check: _Check = _Check()


def test_progress_note_on_a_tty_a_pipe_and_quiet() -> None:
    logged: list[str] = []
    tty = _Stream(True)
    Progress(stream=tty, log=logged.append).note(_Job(), "window 2 (10-20 s of 600): 700 TFLOPS")
    assert tty.getvalue() == "\r\033[Kburn gpu3: window 2 (10-20 s of 600): 700 TFLOPS"
    pipe = _Stream(False)
    Progress(stream=pipe).note(_Job(), "window 2")
    assert pipe.getvalue() == "burn gpu3: window 2\n"
    quiet = _Stream(False)
    Progress(quiet=True, stream=quiet).note(_Job(), "window 2")
    assert quiet.getvalue() == "" and logged == []  # never in --log-file


def test_the_runner_hands_a_running_probes_lines_to_its_callback() -> None:
    inventory = Inventory.from_dict({"cpu": {"model": "test cpu"}, "gpus": {"count": 0}})
    lines: list[tuple[str, str]] = []

    def on_progress(job: Job, line: str) -> None:
        lines.append((job.subject, line))

    suite = single_check(
        "memtest", {"device": "cpu", "max_mib": 2, "chunk_mib": 1, "patterns": ["0x55", "0xaa"]}, 120
    )
    outcomes, _ = Runner(inventory, on_progress=on_progress).run(suite, registry.load_all())
    assert outcomes[0].status == "ok", outcomes[0].reason
    assert [subject for subject, _ in lines] == ["node", "node"]
    assert lines[0][1].startswith("pass 1 0x55: 0.00 GiB, 0 wrong, ") and lines[1][1].startswith(
        "pass 1 0xaa:"
    )
