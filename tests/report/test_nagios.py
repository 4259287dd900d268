"""--format nagios: one line, the Nagios state as the exit code, perfdata with absolute warn/crit."""

from __future__ import annotations

import re

from conftest import Cli, write
from support import records

from hpcbench.report import nagios

#: Nagios plugin guidelines: 'label'=value[UOM];[warn];[crit];[min];[max]
PERF = re.compile(
    r"^'[^'=]+'=-?[0-9.e+-]+(s|ms|us|%|B|KB|MB|TB|c)?;[0-9.e+:~-]*;[0-9.e+:~-]*;[0-9.e+-]*;[0-9.e+-]*$"
)


def ev(metric: str, measured: float, verdict: str, **kw: object) -> dict[str, object]:
    return {"metric": metric, "verdict": verdict, "measured": measured, "unit": kw.pop("unit", "GB/s"), **kw}


def meas(metric: str, value: float, unit: str = "GB/s", higher: bool = True) -> dict[str, object]:
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "higher_is_better": higher,
        "subject": "node",
        "samples": [value],
    }


def test_perfdata_warn_and_crit_are_absolute() -> None:
    rec = records.record(
        verdict="FAIL",
        exit_code=2,
        checks=[
            records.check(
                "membw",
                thresholds={"thresholds": {"warn": 0.9, "fail": 0.8, "above": 1.5}},
                measurements=[meas("triad", 41.0), meas("p99", 130.0, "us", higher=False)],
                evaluations=[
                    ev(
                        "triad",
                        41.0,
                        "FAIL",
                        expected=50.0,
                        ratio=0.82,
                        warn=0.9,
                        fail=0.8,
                        kind="baseline",
                        reason="41 GB/s is 82% of the expected 50 GB/s (below 90%)",
                    ),
                    ev(
                        "p99",
                        130.0,
                        "WARN",
                        unit="us",
                        expected=100.0,
                        ratio=100 / 130,
                        warn=0.9,
                        fail=0.5,
                        kind="baseline",
                        reason="130 us is 77% of the expected 100 us (below 90%)",
                    ),
                ],
            ),
            records.check(
                "xid",
                "gpu3",
                measurements=[meas("xid_errors", 2.0, "count", higher=False)],
                evaluations=[
                    ev("xid_errors", 2.0, "FAIL", unit="count", warn=None, fail=0.5, kind="absolute")
                ],
            ),
        ],
    )
    perf = nagios.perfdata(rec)
    assert perf == [
        "'membw_node_triad_GB_s'=41;45:75;40:75;0;",  # 50 x 0.9, 50 x 0.8; above 50 x 1.5
        "'membw_node_p99'=130us;111.111;200;0;",  # lower is better: alert above 100 / 0.9, 100 / 0.5
        "'xid_gpu3_xid_errors'=2;;0.5;0;",  # the suite's absolute limit
    ]
    assert all(PERF.match(p) for p in perf), perf
    text = nagios.line(rec)
    assert text.startswith("HPCBENCH CRITICAL - t on n1: 2 check(s); membw/node FAIL: 41 GB/s is 82%")
    assert text.count(" | ") == 1 and text.split(" | ")[1] == " ".join(perf)
    assert "\n" not in text


def test_states_follow_the_exit_code() -> None:
    for code, state in ((0, "OK"), (1, "WARNING"), (2, "CRITICAL"), (3, "UNKNOWN")):
        assert nagios.line(records.record(exit_code=code)).startswith(f"HPCBENCH {state} - ")
    ok = nagios.line(records.record(checks=[records.check("a")]))
    assert ok == "HPCBENCH OK - t on n1: 1 check(s), all passed"  # no judged value: no perfdata
    many = records.record(exit_code=2, checks=[records.check(f"c{i}", verdict="FAIL") for i in range(5)])
    assert "+2 more" in nagios.line(many)
    pipe = records.record(exit_code=3, checks=[records.check("x", verdict="ERROR", reason="a | b")])
    assert nagios.line(pipe).count("|") == 0  # a '|' in a reason would start the perfdata


def test_the_cli_prints_one_line_and_exits_with_the_state(cli: Cli) -> None:
    write(
        cli.workdir / "s.toml",
        '[[check]]\nid = "bw"\nprobe = "fixed"\nparams = { value = 40.0 }\n'
        "absolute = { score = { warn = 50.0, fail = 30.0 } }\n",
    )
    done = cli("run", "s.toml", "--format", "nagios")
    assert done.returncode == 1
    (only,) = done.stdout.splitlines()
    assert only.startswith("HPCBENCH WARNING - s on ")
    assert only.endswith("| 'bw_node_score_GB_s'=40;50:;30:;0;")
    again = cli("run", "s.toml", "--format", "nagios", "--max-age", "1h")  # a WARN is no recent pass
    assert again.returncode == 1
