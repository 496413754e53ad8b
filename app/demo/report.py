"""The demo's summary: what the line decided against the ground truth, and an HTML page to show it.

Counts come from the controller's decisions (what the reject gate did), matched by part id to the parts
rendered into the video. An *escape* is a defective part the gate accepted; a *false reject* is a good part
it rejected. Timeouts (no result in time) are rejects, as the fail-safe controller does on a real line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from markupsafe import Markup

from app.demo.line import LineRecord
from app.demo.video import LineVideo
from inspector import reporting
from inspector.bundle import Bundle
from inspector.decision import DecisionPolicy
from inspector.deployability import DeployabilityVerdict
from inspector.imageio import load_image
from inspector.inference import Classifier
from inspector.preprocess import Preprocessor, PreprocessSpec
from inspector.reporting import Section, plots


def _percentile(values: List[float], q: float):
    return round(float(np.percentile(values, q)), 2) if values else None


def seen_part(result: dict, video: LineVideo) -> Optional[str]:
    """The part whose slot holds the frame the station judged (``frame`` is ``name#index``); None when the
    result names no frame. A replay that fell behind the controller's clock judges a neighbour's frame."""
    _, _, index = str(result.get("frame") or "").rpartition("#")
    if not index.isdigit():
        return None
    at = int(index) / video.fps
    return next((s.part_id for s in video.slots if s.start_s <= at < s.end_s), None)


def summarize(record: LineRecord, video: LineVideo, good_class: str, unseen: List[str], timings: Dict) -> dict:
    truth = {s.part_id: s.label for s in video.slots}
    decided = {d["part_id"]: d for d in record.decisions if d.get("part_id") in truth}
    counts = {
        "parts": len(truth),
        "decided": len(decided),
        "accepted": 0,
        "rejected": 0,
        "escapes": 0,
        "false_rejects": 0,
        "timeouts": 0,
        "unseen_defects": 0,
        "unseen_caught": 0,
    }
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
    # Parts decided on another part's frame: not the model's errors but the replay lagging (a loaded machine);
    # they still count above, as the gate acted on them.
    wrong_frame = sorted(p for p, r in record.results.items() if p in truth and seen_part(r, video) not in (None, p))
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
        "wrong_frame": wrong_frame,
        "station_exit_code": record.station_exit,
        "events": sorted({e.get("type", "?") for e in record.events}),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def summary_rows(summary: dict) -> List[Tuple[str, str]]:
    """The summary as (what, value) rows: the terminal prints them, the HTML page shows them as a table."""
    s = summary
    timings = ", ".join(f"{key.removesuffix('_s')} {seconds:g} s" for key, seconds in s["timings_s"].items())
    return [
        ("parts inspected", f"{s['decided']}/{s['parts']}"),
        ("accepted", f"{s['accepted']}"),
        ("rejected", f"{s['rejected']} (of which {s['timeouts']} for a missing result)"),
        ("escapes", f"{s['escapes']} (defective parts accepted)"),
        ("false rejects", f"{s['false_rejects']} (good parts rejected)"),
        ("unseen defects", f"{s['unseen_caught']}/{s['unseen_defects']} rejected (kinds never in training)"),
        ("camera", f"{s['camera_fps']} frames/s"),
        ("inference", f"p50 {s['inference_ms_p50']} ms, p99 {s['inference_ms_p99']} ms{_mode(s)}"),
        ("trigger->decision", f"p50 {s['trigger_to_decision_ms_p50']} ms, p99 {s['trigger_to_decision_ms_p99']} ms"),
        ("time", timings),
        *_wrong_frame_rows(s.get("wrong_frame")),
        *_clock_rows(s.get("clock")),
    ]


def _mode(summary: dict) -> str:
    """`` (flip averaging hvflip)``: a flip-averaged bundle runs the model once per view, which the ms show."""
    mode = summary.get("inference_mode")
    return f" ({mode})" if mode else ""


def _wrong_frame_rows(wrong: Optional[List[str]]) -> List[Tuple[str, str]]:
    if not wrong:
        return []
    return [
        (
            "WRONG FRAME",
            f"{len(wrong)} part(s) judged on a neighbour's frame ({', '.join(wrong[:5])}{', ...' if len(wrong) > 5 else ''}): "
            "the video replay fell behind the controller's clock (a loaded machine); their counts above are not the model's",
        )
    ]


def _clock_rows(clock: Optional[dict]) -> List[Tuple[str, str]]:
    """CPU seconds per stage and the load average: on a shared machine the wall times above are inflated."""
    if not clock:
        return []
    cpu = ", ".join(f"{stage} {seconds:g} s" for stage, seconds in clock["cpu_s"].items())
    load = clock["load_average"]
    return [
        ("cpu", f"{cpu} (this process and the station)"),
        ("load average", f"{load['start'][0]:g} at start, {load.get('end', ['?'])[0]} at end (1 min, all cores)"),
    ]


def format_summary(summary: dict) -> str:
    lines = [f"{what:<19}{value}" for what, value in summary_rows(summary)]
    if summary.get("deployability"):
        lines.append(f"{'model':<19}{DeployabilityVerdict.from_dict(summary['deployability']).summary()}")
    return "\n".join(lines)


def _bundle(summary: dict) -> Optional[Bundle]:
    bundle = summary.get("bundle")
    return Bundle.load(bundle) if bundle and Path(bundle).exists() else None


def _policy(bundle: Optional[Bundle], record: LineRecord) -> DecisionPolicy:
    """The decision the station applied: the bundle's threshold and review band, else a result's threshold."""
    if bundle is not None:
        return bundle.manifest.decision
    return DecisionPolicy(threshold=next((r["threshold"] for r in record.results.values()), 0.5))


def _archived(out: Path, result: dict) -> Optional[Path]:
    """The frame the station archived for a result, if it did."""
    if not result.get("image"):
        return None
    image = Path(result["image"])
    image = image if image.is_absolute() else out / "line" / image
    return image if image.exists() else None


def _part_grid(
    out: Path, parts: List[dict], crop: Callable[[np.ndarray], np.ndarray], classifier: Optional[Classifier]
) -> List[reporting.page.Block]:
    """Tiles of the parts' archived frames cut to the region of interest the station fed the model, with the
    bundle's heatmap overlay beside each; parts without an archived frame (a timeout, the archive off) are
    named below the grid."""
    tiles, missing = [], []
    for part in parts:
        image = _archived(out, part["result"])
        if image is None:
            missing.append(f"{part['part_id']} ({part['reason']})")
            continue
        rel = image.relative_to(out) if image.is_relative_to(out) else image
        frame = load_image(image)
        tiles.append(
            reporting.Tile(
                crop(frame),
                part["part_id"],
                (
                    f"{part['truth']} → {part['action']} ({part['reason']})",
                    f"score {part['result']['defect_score']:.3f}, top class {part['result'].get('top_class', '?')}",
                    str(rel),
                ),
                reporting.heatmap_overlay(classifier, frame) if classifier is not None else None,
            )
        )
    blocks: List[reporting.page.Block] = [reporting.image_grid(tiles)]
    if missing:
        blocks.append(f"No archived frame for {', '.join(missing)}.")
    return blocks


def _plot_scores(
    record: LineRecord, truth: Dict[str, str], good_class: str, policy: DecisionPolicy, path: Path
) -> None:
    scored = [(r["defect_score"], truth[p] != good_class) for p, r in record.results.items() if p in truth]
    fig, (ax,) = plots.new_figure(panel=(6, 3.2))
    plots.score_histogram(
        ax,
        [score for score, _ in scored],
        [defect for _, defect in scored],
        policy,
        "defect scores on the line",
        unit="parts",
    )
    plots.save(fig, path)


def write_report(out: Path, summary: dict, record: LineRecord, video: LineVideo) -> Path:
    """``out/report.html``: the summary, a score plot, the escapes, false rejects and caught defects as
    region-of-interest crops of the archived frames, and every part's row."""
    truth = {s.part_id: s.label for s in video.slots}
    good_class = summary["good_class"]
    bundle = _bundle(summary)
    _plot_scores(record, truth, good_class, _policy(bundle, record), out / "scores.png")
    roi = bundle.manifest.preprocess.roi if bundle is not None else video.roi
    crop = Preprocessor(PreprocessSpec(width=1, height=1, roi=roi)).crop
    classifier = Classifier(bundle) if bundle is not None else None
    rows, marks = [], []
    groups: Dict[str, List[dict]] = {"escape": [], "false reject": [], "caught": []}
    for d in sorted(record.decisions, key=lambda d: d.get("part_id") or ""):
        part = d.get("part_id")
        result = record.results.get(part, {})
        label = truth.get(part, "?")
        defect, rejected = label != good_class, d["action"] == "reject"
        rows.append(
            [
                part,
                label,
                d["action"],
                d["reason"],
                result.get("top_class", ""),
                result.get("defect_score", float("nan")),
            ]
        )
        marks.append("bad" if defect != rejected else "")
        group = ("caught" if rejected else "escape") if defect else ("false reject" if rejected else None)
        if group and label != "?":
            groups[group].append({**d, "truth": label, "result": result})
    verdict = DeployabilityVerdict.from_dict(summary["deployability"]) if summary.get("deployability") else None
    shown_elsewhere = ("deployability", "reports", "per_label", "timings_s")
    return reporting.write_page(
        out / "report.html",
        "Inspection line demo",
        verdict=verdict,
        intro=[
            reporting.paragraph(
                Markup(
                    "Synthetic parts on a conveyor, inspected by a station (<code>inspector run</code>) in triggered "
                    "mode and gated by the line controller. Escapes (defective parts the gate accepted) come "
                    "first, each cut to the region of interest the model saw; rows in red are escapes or false "
                    "rejects."
                )
            ),
            reporting.links({f"{name} report": path for name, path in summary.get("reports", {}).items()}),
        ],
        sections=[
            Section(
                "Summary",
                [
                    reporting.table(["what", "value"], summary_rows(summary)),
                    reporting.keyed_records_table(summary["per_label"], "truth", ["accept", "reject", "missing"]),
                    reporting.figure("scores.png", alt="defect scores"),
                ],
            ),
            Section(
                f"Escapes: {len(groups['escape'])} defective parts accepted",
                _part_grid(out, groups["escape"], crop, classifier),
            ),
            Section(
                f"False rejects: {len(groups['false reject'])} good parts rejected",
                _part_grid(out, groups["false reject"], crop, classifier),
            ),
            Section(
                f"Caught: {len(groups['caught'])} defective parts rejected",
                _part_grid(out, groups["caught"], crop, classifier),
            ),
            Section(
                "Every part",
                [reporting.table(["part", "truth", "gate", "reason", "top class", "defect score"], rows, marks)],
            ),
            Section(
                "All summary fields",
                [reporting.mapping_table({k: v for k, v in summary.items() if k not in shown_elsewhere})],
            ),
        ],
    )
