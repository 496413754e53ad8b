"""Calibration and evaluation reports: one PNG figure and one self-contained HTML page beside it.

The figure shows what a person signing off a bundle needs to see: float vs converted defect score per
validation image (points far from the diagonal are what quantization changed), the ROC of the defect
score with the chosen operating point, and the score distributions of good and defective parts with the
threshold and review band. The page adds the guard's measurements, the operating point with its
confidence intervals, a per-class table, the representative sample and the camera reference.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict
from inspector.metrics import roc_auc, roc_curve

GOOD_COLOR, DEFECT_COLOR = "#2a7ab0", "#d1495b"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, policy: DecisionPolicy, vertical: bool = True) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(policy.threshold, color="black", lw=1, ls="--", label=f"threshold {policy.threshold:.3f}")
    if policy.review_low is not None:
        span = ax.axvspan if vertical else ax.axhspan
        span(policy.review_low, policy.review_high, color="orange", alpha=0.2, label="review band")


def _roc(ax, curves: Iterable[Tuple[str, np.ndarray, np.ndarray]], policy: DecisionPolicy) -> None:
    """ROC of the defect score: x = false-reject rate, y = 1 - escape rate; the point is the threshold."""
    for name, scores, is_defect in curves:
        if is_defect.all() or not is_defect.any():
            continue
        fpr, tpr, _ = roc_curve(scores, is_defect)
        (line,) = ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {roc_auc(scores, is_defect):.3f})")
        fails = scores >= policy.threshold
        ax.plot((fails & ~is_defect).sum() / max((~is_defect).sum(), 1),
                (fails & is_defect).sum() / max(is_defect.sum(), 1), "o", ms=8, mfc="none", color=line.get_color())
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set(xlabel="false-reject rate (good parts failed)", ylabel="1 - escape rate (defects caught)",
           title="ROC, o = operating point", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(loc="lower right", fontsize=8)


def _histogram(ax, scores: np.ndarray, is_defect: np.ndarray, policy: DecisionPolicy, title: str) -> None:
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[~is_defect], bins=bins, color=GOOD_COLOR, alpha=0.6, label=f"good ({(~is_defect).sum()})")
    ax.hist(scores[is_defect], bins=bins, color=DEFECT_COLOR, alpha=0.6, label=f"defect ({is_defect.sum()})")
    _band(ax, policy)
    ax.set(xlabel="defect score 1 - p(good)", ylabel="images", title=title)
    ax.legend(fontsize=8)


def _scatter(ax, float_scores: np.ndarray, quant_scores: np.ndarray, is_defect: np.ndarray,
             policy: DecisionPolicy, kind: str) -> None:
    ax.scatter(float_scores[~is_defect], quant_scores[~is_defect], s=12, c=GOOD_COLOR, label="good", alpha=0.7)
    ax.scatter(float_scores[is_defect], quant_scores[is_defect], s=12, c=DEFECT_COLOR, label="defect", alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    _band(ax, policy, vertical=False)
    ax.set(xlabel="float model defect score", ylabel=f"{kind} defect score", title="float vs converted (validation)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="upper left")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _rate(r) -> str:
    r = r if isinstance(r, dict) else vars(r)
    return f"{100 * r['rate']:.2f}% ({r['count']}/{r['total']}; 95% CI {100 * r['low']:.2f}-{100 * r['high']:.2f}%)"


def _per_class(columns: Sequence[Tuple[str, dict]]) -> str:
    """One row per class, precision/recall/F1 and pass/review/fail for each named metrics set."""
    header = ["class", "support"]
    for name, _ in columns:
        header += [f"{name} precision", f"{name} recall", f"{name} F1", f"{name} pass/review/fail"]
    rows = []
    for label in columns[0][1]["per_class"]:
        row = [label, columns[0][1]["per_class"][label]["support"]]
        for _, metrics in columns:
            c = metrics["per_class"][label]
            row += [c["precision"], c["recall"], c["f1"], f"{c['passed']}/{c['review']}/{c['failed']}"]
        rows.append(row)
    return _table(header, rows)


def _decision_rows(named: Sequence[Tuple[str, dict]]) -> str:
    rows = []
    for name, m in named:
        d = m["decision"]
        auc = m["pass_fail"].get("roc_auc")
        rows.append([name, m["samples"], f"{100 * m['accuracy']:.2f}%", "n/a" if auc is None else f"{auc:.4f}",
                     _rate(d["escape"]), _rate(d["false_reject"]), _rate(d["review"])])
    return _table(["model / split", "images", "accuracy", "ROC AUC", "escape", "false reject", "review"], rows)


_STYLE = """<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}
td:first-child{text-align:left}.fail{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}
pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style>"""


def _page(title: str, body: List[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>")


def write_calibration_report(result, out_dir: str | os.PathLike) -> Tuple[Path, Path]:
    """``report.html`` and ``report.png`` for a :class:`calibration.calibrate.CalibrationResult`."""
    out_dir = Path(out_dir)
    good = result.good_index
    is_defect = result.val.labels != good
    float_scores = defect_score(result.float_val_probs, good)
    shown = result.chosen or result.candidates[-1]
    policy = shown.operating_point.policy()
    quant_scores = defect_score(shown.val_probs, good)
    kind = shown.conversion.kind

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    _scatter(axes[0], float_scores, quant_scores, is_defect, policy, kind)
    curves = [("float", float_scores, is_defect)] + [
        (c.conversion.kind, defect_score(c.val_probs, good), is_defect) for c in result.candidates]
    _roc(axes[1], curves, policy)
    _histogram(axes[2], quant_scores, is_defect, policy, f"{kind} scores (validation)")
    png = _save(fig, out_dir / "report.png")

    run, opts = result.run, result.options
    body = [result.verdict.to_html()] if result.verdict is not None else []
    if result.passed and result.bundle_path is None:
        body.append("<p class='fail'>No bundle was written: the model is NOT DEPLOYABLE (see above); "
                    "<code>--force</code> writes it anyway.</p>")
    elif result.passed:
        body.append(f"<p class='ok'>Bundle written: {html.escape(str(result.bundle_path))} ({kind}, "
                    f"{len(shown.conversion.model) / 1024:.0f} KiB; Keras model {result.keras_bytes / 1024:.0f} KiB)</p>")
    else:
        body.append(f"<p class='fail'>Calibration stopped: accuracy guard failed. No bundle was written.</p>"
                    f"<pre>{html.escape(result.message)}</pre>")
    body.append(f"<p>Run {html.escape(str(run.path))}; labels {html.escape(', '.join(run.labels))} "
                f"(good: {html.escape(run.good_class)}); input {run.spec.width}x{run.spec.height}.</p>")
    body.append(f"<img src='{png.name}' style='max-width:100%'>")

    body.append("<h2>Accuracy guard (validation split)</h2>")
    rows = [[c.parity.kind, len(c.conversion.model), f"{100 * c.parity.float_accuracy:.2f}%",
             f"{100 * c.parity.quant_accuracy:.2f}%", f"{c.parity.drop_pp:+.2f} pp", f"{c.parity.budget_pp:.2f} pp",
             f"{100 * c.parity.agreement:.1f}%", c.parity.mean_abs_score_diff,
             f"{100 * c.parity.float_escape.rate:.2f}% -> {100 * c.parity.quant_escape.rate:.2f}%",
             f"{100 * c.parity.float_false_reject.rate:.2f}% -> {100 * c.parity.quant_false_reject.rate:.2f}%",
             "pass" if c.parity.passed else "FAIL"] for c in result.candidates]
    body.append(_table(["model", "bytes", "float acc.", "converted acc.", "drop", "budget", "top-1 agreement",
                        "mean |score diff|", "escape float -> conv.", "false reject float -> conv.", "guard"], rows))
    body.append("<p>Escape and false-reject rates of both models at the converted model's threshold.</p>")

    op = shown.operating_point
    body.append("<h2>Operating point</h2>")
    band = f"; review band [{op.review_low:.4f}, {op.review_high:.4f})" if op.review_low is not None else ""
    body.append(f"<p>Target: {op.target.value.replace('_', '-')} rate &le; {100 * op.target_rate:.2f}% on the "
                f"validation split. Threshold on the defect score 1 - p({html.escape(run.good_class)}): "
                f"<b>{op.threshold:.4f}</b>{band}.</p>")
    body.append(_table(["measure", "validation (chosen on)"],
                       [["escape (defects passed)", _rate(op.escape)],
                        ["false reject (good failed)", _rate(op.false_reject)],
                        ["review", _rate(op.review)]]))
    body.append(f"<p>Intervals: {op.interval_method.value}, {100 * op.confidence:.0f}%.</p>")
    if op.note:
        body.append(f"<p class='fail'>{html.escape(op.note)}</p>")

    metrics = result.metrics(policy)
    named = [("float, validation", metrics["validation_float"])]
    if "validation" in metrics:
        named.append((f"{kind}, validation", metrics["validation"]))
    if "test_float" in metrics:
        named.append(("float, test", metrics["test_float"]))
    if "test" in metrics:
        named.append((f"{kind}, test", metrics["test"]))
    body.append("<h2>Metrics at the operating point</h2>" + _decision_rows(named))
    body.append("<h2>Per class (validation)</h2>")
    columns = [("float", metrics["validation_float"])] + ([("converted", metrics["validation"])]
                                                          if "validation" in metrics else [])
    body.append(_per_class(columns))
    if "test" in metrics:
        body.append("<h2>Per class (test)</h2>" + _per_class([("float", metrics["test_float"]),
                                                               ("converted", metrics["test"])]))

    rep = result.representative
    if rep is not None:
        body.append("<h2>Representative sample</h2>")
        body.append(f"<p>{len(rep.images)} of {rep.requested} requested images, stratified from "
                    f"{rep.available} training images: "
                    + html.escape(", ".join(f"{k} {v}" for k, v in rep.per_class.items())) + ".</p>")
        for warning in rep.warnings:
            body.append(f"<p class='fail'>{html.escape(warning)}</p>")
        if rep.skipped:
            body.append(_table(["skipped image", "reason"], [[s.path, s.reason] for s in rep.skipped]))
    if result.sensitivity:
        body.append("<h2>Layers with the largest INT8 error</h2>")
        body.append("<p>RMSE of the quantized layer output against float, in quantization steps "
                    "(QuantizationDebugger on the representative sample).</p>")
        body.append(_table(["layer", "op", "RMSE / scale"],
                           [[e.tensor[:110], e.op, e.rmse_over_scale] for e in result.sensitivity[:15]]))
    if result.commissioning is not None:
        ref = result.commissioning.reference
        body.append("<h2>Camera reference</h2>")
        body.append(_table(["field", "value"], [[k, v] for k, v in ref.model_dump(mode="json").items()]))
        for warning in result.commissioning.warnings:
            body.append(f"<p class='fail'>{html.escape(warning)}</p>")
    body.append(f"<h2>Options</h2><pre>{html.escape(opts.model_dump_json(indent=1))}</pre>")
    page = out_dir / "report.html"
    page.write_text(_page(f"Calibration report: {opts.name or run.manifest.name or run.path.name}", body))
    return page, png


def write_evaluation_report(evaluation, good_index: int, policy: DecisionPolicy,
                            out_dir: str | os.PathLike, title: Optional[str] = None,
                            verdict: Optional[DeployabilityVerdict] = None) -> Tuple[Path, Path]:
    """``report.html`` and ``report.png`` for a :class:`calibration.evaluate.EvaluationResult`."""
    out_dir = Path(out_dir)
    scores = defect_score(evaluation.probs, good_index)
    is_defect = evaluation.labels != good_index
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    _roc(axes[0], [("bundle", scores, is_defect)], policy)
    _histogram(axes[1], scores, is_defect, policy, "defect scores")
    png = _save(fig, out_dir / "report.png")
    body = ([verdict.to_html()] if verdict is not None else []) + [
            f"<p>Bundle {html.escape(evaluation.bundle)} on {html.escape(evaluation.data_root)}"
            + (f" (split {html.escape(evaluation.split)})" if evaluation.split else "") + "</p>",
            f"<img src='{png.name}' style='max-width:100%'>",
            "<h2>Metrics at the bundle's operating point</h2>", _decision_rows([("bundle", evaluation.metrics)]),
            "<h2>Per class</h2>", _per_class([("bundle", evaluation.metrics)])]
    if evaluation.skipped:
        body.append(_table(["skipped image", "reason"], [[s.path, s.reason] for s in evaluation.skipped]))
    page = out_dir / "report.html"
    page.write_text(_page(title or "Evaluation report", body))
    return page, png
