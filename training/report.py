"""The run report: PNG plots and one self-contained HTML page next to metrics.json.

Plots: training curves (stage boundaries marked), test confusion matrix, per-class precision/recall/F1,
the pass/fail ROC curve with the operating point, and a grid of the most confident test mistakes. The
page shows them with the numbers a line engineer asks first: escape rate and false-reject rate.

Uses matplotlib's object API (``Figure``), never pyplot, so it needs no display and keeps no global state.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import List, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inspector.decision import defect_score
from inspector.deployability import DeployabilityVerdict
from inspector.metrics import misclassified, roc_curve
from training.config import TrainConfig

PLOTS = {
    "curves": "curves.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "roc": "roc.png",
    "misclassified": "misclassified.png",
}


def plot_curves(history: List[dict], path: Path) -> None:
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = [h["global_epoch"] for h in history]

    def series(key):
        return [np.nan if h.get(key) is None else h[key] for h in history]

    ax_loss.plot(x, series("loss"), label="train loss (smoothed labels)")
    ax_loss.plot(x, series("val_loss"), label="val loss")
    ax_acc.plot(x, series("accuracy"), label="train accuracy (augmented)")
    ax_acc.plot(x, series("val_accuracy"), label="val accuracy")
    ax_acc.plot(x, series("val_auc"), label="val pass/fail ROC AUC")
    for i in range(1, len(history)):
        if history[i]["stage"] != history[i - 1]["stage"]:
            for ax in (ax_loss, ax_acc):
                ax.axvline(x[i] - 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(x[i] - 0.4, 0.98, history[i]["stage"], transform=ax.get_xaxis_transform(),
                        va="top", fontsize=8, color="grey")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy / AUC")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_acc.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path) -> None:
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    size = 1.2 + 0.7 * len(labels)
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix (colour = row share)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)


def plot_per_class(per_class: dict, path: Path) -> None:
    labels = list(per_class)
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(5, 1.1 * len(labels) + 2), 3.5), dpi=100)
    ax = fig.subplots()
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_class[c][key] for c in labels], 0.27, label=key)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title("test precision / recall / F1 per class")
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def plot_roc(scores: np.ndarray, is_defect: np.ndarray, pass_fail: dict, path: Path) -> None:
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.subplots()
    if is_defect.any() and (~is_defect).any():
        fpr, tpr, _ = roc_curve(scores, is_defect)
        ax.plot(fpr, tpr, label=f"ROC AUC {pass_fail['roc_auc']:.4f}")
        ax.plot([pass_fail["false_reject_rate"]], [1 - pass_fail["escape_rate"]], "o",
                label=f"threshold {pass_fail['threshold']:g}")
    else:
        ax.text(0.5, 0.5, "needs good and defect test images", ha="center")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("false-reject rate (good parts failed)")
    ax.set_ylabel("defects caught (1 - escape rate)")
    ax.set_title("pass/fail on test")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                       limit: int, path: Path) -> int:
    """Grid of the most confident mistakes; returns how many images are shown."""
    wrong = misclassified(probs, y_true)[:limit]
    cols = max(1, min(6, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / cols))
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if not wrong:
        axes[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    for ax, i in zip(axes, wrong):
        pred = int(probs[i].argmax())
        ax.imshow(images[i])
        ax.set_title(f"{labels[y_true[i]]} -> {labels[pred]}\np={probs[i, pred]:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return len(wrong)


def _table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _share(count: int, total: int) -> str:
    return f"{count / total:.4f} ({count} of {total})" if total else "-"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(run_dir: Path, config: TrainConfig, metrics: dict, history: List[dict],
                 test_data, test_probs: np.ndarray, verdict: DeployabilityVerdict) -> Path:
    """Write the PNGs and ``report.html`` into ``run_dir`` (the verdict at the top); returns the HTML path."""
    run_dir = Path(run_dir)
    labels, good = metrics["labels"], metrics["good_class"]
    test = metrics["test"]
    plot_curves(history, run_dir / PLOTS["curves"])
    plot_confusion(np.array(test["confusion_matrix"]), labels, run_dir / PLOTS["confusion"])
    plot_per_class(test["per_class"], run_dir / PLOTS["per_class"])
    scores = np.asarray(defect_score(test_probs, labels.index(good))) if len(test_probs) else np.zeros(0)
    plot_roc(scores, test_data.labels != labels.index(good), test["pass_fail"], run_dir / PLOTS["roc"])
    shown = plot_misclassified(test_data.images, test_data.labels, test_probs, labels,
                               config.report.max_misclassified, run_dir / PLOTS["misclassified"])

    pf, d = test["pass_fail"], test["decision"]
    training = metrics["training"]
    per_class_rows = [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                      for c, v in test["per_class"].items()]
    pass_fail_rows = [
        ["ROC AUC (defect score 1 - p(good))", _fmt(pf["roc_auc"])],
        ["escape rate (defects passed automatically) at the operating point", _share(d["escapes"], d["defects"])],
        ["false-reject rate (good parts failed) at the operating point", _share(d["false_rejects"], d["goods"])],
        ["sent to review (all parts)", _share(d["review"], d["samples"])],
        ["accuracy (all classes)", f"{test['accuracy']:.4f}"],
        ["macro F1", f"{test['macro_f1']:.4f}"],
        ["validation pass/fail ROC AUC", _fmt(metrics["val"]["pass_fail"]["roc_auc"])],
        ["best epoch (kept weights)", f"{training.get('best_epoch')} of {training['epochs']}"],
    ]
    imbalance = metrics["imbalance"]
    imb_rows = [[c, n, _fmt(imbalance.get("class_weights", {}).get(c)),
                 _fmt(imbalance.get("sampling_probabilities", {}).get(c))] for c, n in imbalance["train_counts"].items()]
    m = config.model
    summary = (f"{m.backbone.keras_name} alpha {m.alpha}{' minimalistic' if m.minimalistic else ''}, "
               f"input {m.input_size[0]}x{m.input_size[1]}, weights {m.weights}, SE ratio {m.se_ratio}; "
               f"{config.optim.optimizer.value} lr {config.optim.learning_rate:g}, batch {config.optim.batch_size}; "
               f"stages {', '.join(training['stages'])}; {training['epochs']} epochs, "
               f"{_fmt(training['seconds_per_epoch'])} s/epoch (median)")
    op = metrics["operating_point"]
    policy = op["policy"]
    band = (f", review band [{policy['review_low']:.4f}, {policy['review_high']:.4f})"
            if policy.get("review_low") is not None else "")
    op_text = (f"Operating point: threshold {policy['threshold']:.4f}{band} on the defect score, for a "
               f"{op['target'].replace('_', '-')} rate of {100 * op['target_rate']:g}% on the {op['chosen_on']}"
               f"{'; ' + op['note'] if op.get('note') else ''}. `inspector calibrate` puts this policy into the "
               f"bundle.")
    figures = "".join(
        f'<figure><img src="{PLOTS[k]}" alt="{k}"><figcaption>{caption}</figcaption></figure>'
        for k, caption in (("curves", "Training curves"), ("confusion", "Test confusion matrix"),
                           ("per_class", "Per-class precision, recall, F1 (test)"),
                           ("roc", "Pass/fail ROC (test)"),
                           ("misclassified", f"Misclassified test images ({shown} shown, most confident first)")))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Training report {html.escape(config.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}figure{{margin:1em 0}}img{{max-width:100%}}</style>
</head><body>
<h1>Training report: {html.escape(config.name)}</h1>
{verdict.to_html()}
<p>{html.escape(summary)}</p>
<p>{html.escape(op_text)}</p>
<p>Classes {html.escape(', '.join(labels))}; good class <b>{html.escape(good)}</b>;
test set {test['samples']} images.</p>
<h2>Pass / fail (test)</h2>{_table(["metric", "value"], pass_fail_rows)}
<h2>Per class (test)</h2>{_table(["class", "precision", "recall", "F1", "support"], per_class_rows)}
<h2>Class imbalance: {html.escape(imbalance['method'])}</h2>
{_table(["class", "train images", "class weight", "sampling share"], imb_rows)}
{figures}
<p>Files: metrics.json, history.json, config.json, split.json, run.json, model.keras.</p>
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path
