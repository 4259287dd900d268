"""The verdict table prints reasons as text: '[...]' in a reason is not rich markup."""

from __future__ import annotations

import io

from support import records

from hpcbench.report.table import render


def test_reason_with_brackets_is_printed_verbatim() -> None:
    reason = "[/src/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:7586"
    record = records.record(checks=[records.check("c", verdict="ERROR", reason=reason)], verdict="UNKNOWN")
    out = io.StringIO()
    render(record, None, out)
    text = "".join(out.getvalue().split())
    assert "".join(reason.split()) in text and "ERROR" in text


def test_metrics_skipped_for_one_reason_share_a_row() -> None:
    from hpcbench.report.table import rows

    why = "not measured: no NVMe controller"
    evals = [
        {"metric": m, "verdict": "SKIP", "reason": why} for m in ("nvme_media_errors", "nvme_percent_used")
    ]
    evals += [
        {"metric": "edac_corrected", "verdict": "SKIP", "reason": "not measured: no EDAC"},
        {"metric": "kernel_io_errors", "verdict": "PASS", "measured": 0.0, "unit": "count"},
    ]
    table = rows(records.record(checks=[records.check("nh", evaluations=evals)]))
    assert [r[2] for r in table] == [
        "kernel_io_errors",
        "nvme_media_errors, nvme_percent_used (2)",
        "edac_corrected",
    ]
    assert table[1][6:] == ["SKIP", why]
