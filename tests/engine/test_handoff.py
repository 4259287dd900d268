"""Runner and child hand each other typed objects (hpcbench.engine.handoff) through the record's
codec: a job and a result survive the round trip, and a result a child garbled becomes one error
naming what was wrong, whichever way it came (a child's out.json or a line of the no-load batch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcbench.core import codec
from hpcbench.core.measurement import Measurement, Unmeasured
from hpcbench.engine import handoff
from hpcbench.engine.handoff import ChildResult

RESULT = ChildResult(
    "ok",
    params={"n": 3},
    measurements=(Measurement("triad", 12.5, "GB/s", True, "numa0", (12.5, 12.1), warnings=("small",)),),
    unmeasured=(Unmeasured("copy", "not_measured", "no such kernel"),),
)


def test_a_result_survives_the_file_and_the_pipe(tmp_path: Path) -> None:
    path = handoff.write(tmp_path / "out.json", RESULT)
    assert handoff.read_result(path) == RESULT
    assert handoff.decode_result(json.loads(json.dumps(codec.encode(RESULT)))) == RESULT


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "Expecting property name"),
        ('{"status": "fine"}', "status"),
        ('{"status": "ok", "measurements": [{"metric": 1}]}', "measurements"),
    ],
)
def test_a_garbled_result_is_one_error_naming_the_fault(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "out.json"
    path.write_text(text)
    got = handoff.read_result(path)
    assert got.status == "error" and got.measurements == ()
    assert got.reason.startswith("the probe's child wrote no readable result: ") and says in got.reason
    if text.startswith('{"'):  # the same dict down the batch's pipe: the same error
        assert handoff.decode_result(json.loads(text)) == got


def test_a_missing_result_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    got = handoff.read_result(tmp_path / "absent.json")
    assert got.status == "error" and "No such file" in got.reason
