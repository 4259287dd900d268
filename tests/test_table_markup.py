"""The verdict table prints reasons as text: '[...]' in a reason is not rich markup."""

from __future__ import annotations

import io

import records

from hpcbench.report.table import render


def test_reason_with_brackets_is_printed_verbatim() -> None:
    reason = "[/src/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:7586"
    record = records.record(checks=[records.check("c", verdict="ERROR", reason=reason)], verdict="UNKNOWN")
    out = io.StringIO()
    render(record, None, out)
    text = "".join(out.getvalue().split())
    assert "".join(reason.split()) in text and "ERROR" in text
