"""``hpcbench report DIR -o report.html``: one self-contained HTML file of a fleet's analysis.

At the top, per suite, the nodes to drain and why, then those to check; per metric, the fleet's
distribution with the flagged nodes marked; per node (flagged ones first, up to ``max_nodes``),
measured against expected: the ratio to the fleet median and to the record's baseline. Plots
are PNG images embedded as base64 ``data:`` URIs, the style is inline: the file needs nothing
else and can be mailed or attached to a ticket.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcbench import __version__
from hpcbench.analysis.fleet import Options, SuiteFleet
from hpcbench.analysis.robust import performance_ratio

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2933;
       margin: 0 auto; max-width: 1200px; padding: 24px 32px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 2px solid #e4e7eb; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta { color: #616e7c; font-size: 12px; margin: 0 0 16px; }
.cards { display: flex; gap: 12px; margin: 12px 0; }
.card { border-radius: 8px; padding: 10px 18px; min-width: 110px; background: #f5f7fa; }
.card b { display: block; font-size: 24px; }
.card.drain { background: #ffebee; color: #b71c1c; }
.card.check { background: #fff3e0; color: #e65100; }
.card.ok { background: #e8f5e9; color: #1b5e20; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
th { background: #f5f7fa; font-weight: 600; }
td.host { font-weight: 600; white-space: nowrap; }
ul.why { margin: 0; padding-left: 18px; }
.badge { display: inline-block; border-radius: 4px; padding: 1px 7px; font-size: 12px; font-weight: 600; }
.DRAIN { background: #c62828; color: #fff; } .CHECK { background: #ef6c00; color: #fff; }
.OK { background: #2e7d32; color: #fff; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 14px 18px; }
.drainline { background: #ffebee; color: #b71c1c; border-radius: 6px; padding: 8px 12px; font-size: 15px; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; }
.node { border: 1px solid #e4e7eb; border-radius: 8px; padding: 4px 14px 10px; margin: 10px 0; }
.muted { color: #7b8794; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _reasons(reasons: list[str], limit: int = 8) -> str:
    items = "".join(f"<li>{_e(r)}</li>" for r in reasons[:limit])
    if len(reasons) > limit:
        items += f"<li class=muted>and {len(reasons) - limit} more</li>"
    return f"<ul class=why>{items}</ul>"


def _node_rows(nodes: Any) -> str:
    rows = []
    for r in nodes.itertuples():
        ratio = f"{r.worst_ratio:.2f}" if math.isfinite(r.worst_ratio) else "-"
        rows.append(
            f"<tr><td class=host>{_e(r.host)}</td><td>{_e(r.verdict)}</td><td>{ratio}</td>"
            f"<td>{_e(r.started.strftime('%Y-%m-%d %H:%M'))}</td><td>{_reasons(list(r.reasons))}</td></tr>"
        )
    head = "<tr><th>node</th><th>own verdict</th><th>worst ratio</th><th>latest record</th><th>why</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def summary(f: SuiteFleet) -> str:
    nodes = f.nodes
    counts = {s: int((nodes["status"] == s).sum()) for s in ("DRAIN", "CHECK", "OK")}
    first, last = nodes["started"].min(), nodes["started"].max()
    parts = [
        f"<h2 id='suite-{_e(f.suite)}'>Suite {_e(f.suite)}: {len(nodes)} nodes</h2>",
        f"<p class=meta>latest record of every node, {first:%Y-%m-%d} .. {last:%Y-%m-%d}</p>",
        "<div class=cards>"
        f"<div class='card drain'><b>{counts['DRAIN']}</b>to drain</div>"
        f"<div class='card check'><b>{counts['CHECK']}</b>to check</div>"
        f"<div class='card ok'><b>{counts['OK']}</b>OK</div></div>",
    ]
    drain = nodes.loc[nodes["status"] == "DRAIN"]
    check = nodes.loc[nodes["status"] == "CHECK"]
    if len(drain):
        parts.append("<h3>Nodes to drain</h3>" + _node_rows(drain))
    else:
        parts.append("<p>No node to drain: no slow outlier, no FAIL verdict.</p>")
    if len(check):
        parts.append("<h3>Nodes to check</h3>" + _node_rows(check))
    for name, counts_ in f.split.items():
        spread = ", ".join(f"{_e(v)} on {n}" for v, n in counts_.items())
        parts.append(f"<p><b>Split configuration</b>, no majority: {_e(name)}: {spread}</p>")
    return "\n".join(parts)


def with_baseline_ratio(scores: Any) -> Any:
    out = scores.copy()
    out["baseline_ratio"] = performance_ratio(
        out["value"].to_numpy(dtype=float),
        out["expected"].to_numpy(dtype=float),
        out["higher_is_better"].to_numpy(dtype=bool),
    )
    return out


def distributions(f: SuiteFleet, opts: Options) -> str:
    from hpcbench.analysis import plots

    scores = f.scores
    keys = ["check", "pool", "metric"]
    groups = {tuple(str(x) for x in k): g for k, g in scores.groupby(keys, observed=True)}
    figs = []
    metrics = f.metrics.sort_values(
        ["flagged", "check", "pool", "metric"], ascending=[False, True, True, True]
    )
    for m in metrics.itertuples():
        g = groups.get((m.check, m.pool, m.metric))
        if g is None or g.empty:
            continue
        img = plots.distribution(g, m, opts.k, opts.min_deviation)
        alt = f"{m.check} {m.pool} {m.metric} across the fleet"
        figs.append(f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{img}'></figure>")
    return (
        f"<h2>{_e(f.suite)}: per metric, the fleet's distribution</h2>"
        "<p class=meta>every node's value (per-GPU metrics: every GPU of the fleet); red: flagged slow "
        f"outliers (robust score below -{opts.k:g} and at least {opts.min_deviation:.0%} below the median); "
        "dashed: the outlier cutoff; dotted: the baseline's expected value</p>"
        f"<div class=grid>{''.join(figs)}</div>"
    )


def per_node(f: SuiteFleet, opts: Options, max_nodes: int) -> str:
    from hpcbench.analysis import plots

    scores = with_baseline_ratio(f.scores)
    by_host = {str(h): g for h, g in scores.groupby("host", observed=True)}
    shown = f.nodes.head(max_nodes)  # sorted: DRAIN, CHECK, OK, worst ratio first
    parts = [
        f"<h2>{_e(f.suite)}: per node, measured against expected</h2>",
        f"<p class=meta>{len(shown)} of {len(f.nodes)} nodes, flagged ones first; dots: the ratio to the "
        "fleet median (red: flagged), diamonds: the ratio to the record's baseline; the shaded band lies "
        f"{opts.min_deviation:.0%} or more below expected</p>",
    ]
    for r in shown.itertuples():
        rows = by_host.get(r.host)
        img = ""
        if rows is not None and not rows.empty:
            rows = rows.sort_values(["check", "pool", "metric", "subject"])
            png = plots.node_ratios(rows, r.host, opts.min_deviation)
            alt = f"{r.host} measured against expected"
            img = f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{png}'></figure>"
        why = _reasons(list(r.reasons)) if r.reasons else "<p class=muted>nothing flagged</p>"
        badge = f"<span class='badge {r.status}'>{r.status}</span>"
        note = f"<span class=muted>own verdict {_e(r.verdict)}, {_e(Path(r.file).name)}</span>"
        parts.append(
            f"<div class=node id='node-{_e(r.host)}'><h3>{_e(r.host)} {badge} {note}</h3>{why}{img}</div>"
        )
    return "\n".join(parts)


def render(
    fleets: list[SuiteFleet],
    loaded: Any,
    opts: Options,
    max_nodes: int = 40,
    sources: list[str] | None = None,
) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    drain = sorted({h for f in fleets for h in f.drain})
    head = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>hpcbench fleet report: {len(drain)} to drain</title><style>{CSS}</style></head><body>",
        "<h1>hpcbench fleet report</h1>",
        f"<p class=meta>generated {now} by hpcbench {_e(__version__)} from {_e(' '.join(sources or []))}: "
        f"{len(loaded.runs)} latest records; outlier rule: robust score below -{opts.k:g} and "
        f"{opts.min_deviation:.0%} below the fleet median, at least {opts.min_nodes} nodes</p>",
    ]
    if drain:
        head.append(f"<p class=drainline><b>Drain {len(drain)} node(s):</b> {_e(', '.join(drain))}</p>")
    else:
        head.append(
            "<p class=drainline style='background:#e8f5e9;color:#1b5e20'><b>No node to drain.</b></p>"
        )
    body = [summary(f) for f in fleets]
    body += [distributions(f, opts) + per_node(f, opts, max_nodes) for f in fleets]
    if loaded.skipped:
        items = "".join(f"<li><code>{_e(s.path)}</code>: {_e(s.reason)}</li>" for s in loaded.skipped)
        body.append(f"<h2>Skipped files</h2><ul>{items}</ul>")
    return "\n".join(head + body + ["</body></html>\n"])


def write(
    fleets: list[SuiteFleet],
    loaded: Any,
    out: Path,
    opts: Options,
    max_nodes: int = 40,
    sources: list[str] | None = None,
) -> Path:
    text = render(fleets, loaded, opts, max_nodes, sources)
    from hpcbench.core.atomic import write_atomic

    return write_atomic(out, text)
