"""The demo's summary: what the line decided against the ground truth, and an HTML page to show it.

Counts come from the controller's decisions (what the reject gate did), matched by part id to the parts
rendered into the video. An *escape* is a defective part the gate accepted; a *false reject* is a good part
it rejected. Timeouts (no result in time) are rejects, as the fail-safe controller does on a real line.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict, List

import numpy as np

from app.demo.line import LineRecord
from app.demo.video import LineVideo
from inspector.deployability import DeployabilityVerdict


def _percentile(values: List[float], q: float):
    return round(float(np.percentile(values, q)), 2) if values else None


def summarize(record: LineRecord, video: LineVideo, good_class: str, unseen: List[str], timings: Dict) -> dict:
    truth = {s.part_id: s.label for s in video.slots}
    decided = {d["part_id"]: d for d in record.decisions if d.get("part_id") in truth}
    counts = {"parts": len(truth), "decided": len(decided), "accepted": 0, "rejected": 0, "escapes": 0,
              "false_rejects": 0, "timeouts": 0, "unseen_defects": 0, "unseen_caught": 0}
    per_label: Dict[str, Dict[str, int]] = {}
    for part, label in truth.items():
        decision = decided.get(part)
        action = decision["action"] if decision else "missing"
        row = per_label.setdefault(label, {"accept": 0, "reject": 0, "missing": 0})
        row[action] += 1
        if decision is None:
            continue
        counts["accepted" if action == "accept" else "rejected"] += 1
        counts["timeouts"] += decision["reason"] == "timeout"
        is_defect = label != good_class
        counts["escapes"] += is_defect and action == "accept"
        counts["false_rejects"] += (not is_defect) and action == "reject"
        if label in unseen:
            counts["unseen_defects"] += 1
            counts["unseen_caught"] += action == "reject"
    results = list(record.results.values())
    inference = [r["inference_ms"] for r in results]
    waits = [d["wait_ms"] for d in decided.values() if d.get("wait_ms") is not None]
    stats = record.stats or {}
    captured = stats.get("frames_captured")
    return {
        "good_class": good_class,
        **counts,
        "per_label": per_label,
        "results": len(results),
        "camera_fps": round(captured / stats["uptime_s"], 2) if captured and stats.get("uptime_s") else None,
        "inference_ms_p50": _percentile(inference, 50),
        "inference_ms_p99": _percentile(inference, 99),
        "trigger_to_decision_ms_p50": _percentile(waits, 50),
        "trigger_to_decision_ms_p99": _percentile(waits, 99),
        "station_exit_code": record.station_exit,
        "events": sorted({e.get("type", "?") for e in record.events}),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def format_summary(summary: dict) -> str:
    s = summary
    lines = [
        f"parts inspected    {s['decided']}/{s['parts']}",
        f"accepted           {s['accepted']}",
        f"rejected           {s['rejected']} (of which {s['timeouts']} for a missing result)",
        f"escapes            {s['escapes']} (defective parts accepted)",
        f"false rejects      {s['false_rejects']} (good parts rejected)",
        f"unseen defects     {s['unseen_caught']}/{s['unseen_defects']} rejected (kinds never in training)",
        f"camera             {s['camera_fps']} frames/s",
        f"inference          p50 {s['inference_ms_p50']} ms, p99 {s['inference_ms_p99']} ms",
        f"trigger->decision  p50 {s['trigger_to_decision_ms_p50']} ms, p99 {s['trigger_to_decision_ms_p99']} ms",
        f"time               {s['timings_s']}",
    ]
    if s.get("deployability"):
        lines.append(f"model              {DeployabilityVerdict.from_dict(s['deployability']).summary()}")
    return "\n".join(lines)


def _plot_scores(record: LineRecord, truth: Dict[str, str], good_class: str, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r["defect_score"] for p, r in record.results.items() if truth.get(p) == good_class]
    bad = [r["defect_score"] for p, r in record.results.items() if p in truth and truth[p] != good_class]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 1, 26)
    ax.hist(good, bins=bins, alpha=0.6, label=f"good parts ({len(good)})", color="tab:green")
    ax.hist(bad, bins=bins, alpha=0.6, label=f"defective parts ({len(bad)})", color="tab:red")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("defect score 1 - p(good) on the line")
    ax.set_ylabel("parts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, summary: dict, record: LineRecord, video: LineVideo) -> Path:
    """``out/report.html``: the summary, a score plot, every part's row and the rejected parts' images."""
    truth = {s.part_id: s.label for s in video.slots}
    threshold = next((r["threshold"] for r in record.results.values()), 0.5)
    good_class = summary["good_class"]
    _plot_scores(record, truth, good_class, threshold, out / "scores.png")
    rows, images = [], []
    for d in sorted(record.decisions, key=lambda d: d.get("part_id") or ""):
        part = d.get("part_id")
        result = record.results.get(part, {})
        label = truth.get(part, "?")
        wrong = (label == good_class) == (d["action"] == "reject")
        rows.append(
            f"<tr class='{'bad' if wrong else ''}'><td>{html.escape(str(part))}</td><td>{html.escape(label)}</td>"
            f"<td>{d['action']}</td><td>{html.escape(d['reason'])}</td>"
            f"<td>{result.get('top_class', '')}</td><td>{result.get('defect_score', float('nan')):.3f}</td></tr>")
        if d["action"] == "reject" and result.get("image"):
            image = Path(result["image"])
            if not image.is_absolute():
                image = out / "line" / image
            if image.exists():
                rel = image.relative_to(out) if image.is_relative_to(out) else image
                images.append(f"<figure><img src='{html.escape(str(rel))}' width='160'><figcaption>"
                              f"{html.escape(str(part))}: {html.escape(label)}, score {result['defect_score']:.2f}"
                              f"</figcaption></figure>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Inspection line demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} td,th{{padding:2px 8px;text-align:left}}
tr.bad{{background:#fdd}} figure{{display:inline-block;margin:4px}} pre{{background:#f4f4f4;padding:1em}}</style>
</head><body><h1>Inspection line demo</h1>
{DeployabilityVerdict.from_dict(summary["deployability"]).to_html() if summary.get("deployability") else ""}
<p>Synthetic parts on a conveyor, inspected by a station (<code>inspector run</code>) in triggered mode and gated by
the line controller. Rows in red are escapes or false rejects.</p>
<pre>{html.escape(format_summary(summary))}</pre>
<p>{' &middot; '.join(f'<a href="{html.escape(p)}">{html.escape(n)} report</a>' for n, p in summary.get('reports', {}).items())}</p>
<img src="scores.png" alt="defect scores">
<h2>Rejected parts</h2>{''.join(images) or '<p>none archived</p>'}
<h2>Every part</h2><table><tr><th>part</th><th>truth</th><th>gate</th><th>reason</th><th>top class</th>
<th>defect score</th></tr>{''.join(rows)}</table>
<h2>Raw summary</h2><pre>{html.escape(json.dumps(summary, indent=1))}</pre></body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
