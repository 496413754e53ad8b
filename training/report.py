"""The run report: PNG plots and one HTML page next to metrics.json.

Plots: training curves (stage boundaries marked), test confusion matrix, per-class precision/recall/F1,
the pass/fail ROC curve with the operating point. The page shows them with the numbers a line engineer
asks first, escape rate and false-reject rate, and the test images behind them: the escapes, the false
rejects and the most confident class mistakes, each as the model input (the region of interest) with its
file name relative to the data folder, so it can be found and relabelled. Page, tables, image grids and
the shared plots come from :mod:`inspector.reporting`; the plots only training draws are here, in its
matplotlib convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from markupsafe import Markup

from inspector import reporting
from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict
from inspector.metrics import misclassified
from inspector.operating_point import Target
from inspector.reporting import Section, plots
from training.config import TrainConfig

PLOTS = {
    "curves": "curves.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "roc": "roc.png",
}


def plot_curves(history: List[dict], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plots.new_figure(2)
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
                ax.text(
                    x[i] - 0.4,
                    0.98,
                    history[i]["stage"],
                    transform=ax.get_xaxis_transform(),
                    va="top",
                    fontsize=8,
                    color="grey",
                )
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy / AUC")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        plots.style(ax, title, "epoch")
    ax_acc.set_ylim(0, 1.02)
    plots.save(fig, path)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path) -> None:
    size = 1.2 + 0.7 * len(labels)
    fig, (ax,) = plots.new_figure(panel=(size + 1.5, size))
    plots.confusion(ax, cm, labels, "test confusion matrix")
    plots.save(fig, path)


def plot_per_class(per_class: dict, path: Path) -> None:
    labels = list(per_class)
    x = np.arange(len(labels))
    fig, (ax,) = plots.new_figure(panel=(max(5, 1.1 * len(labels) + 2), 3.5))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_class[c][key] for c in labels], 0.27, label=key)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    plots.style(ax, "test precision / recall / F1 per class", grid="y")
    plots.save(fig, path)


def plot_roc(scores: np.ndarray, is_defect: np.ndarray, threshold: float, path: Path) -> None:
    fig, (ax,) = plots.new_figure(panel=(4.5, 4.5))
    plots.roc(ax, [("test", scores, is_defect)], threshold, "pass/fail on test")
    plots.save(fig, path)


def heatmaps(model, images: np.ndarray, labels: Sequence[str], good_index: int) -> Callable[[int], np.ndarray]:
    """``overlay(i)``: the class-activation heatmap over model input ``images[i]``, from the float model with
    the map head the bundle gets (:mod:`training.cam`), drawn as the station draws it."""
    from training.cam import with_class_map
    from training.model import export_model

    mapped = with_class_map(export_model(model))

    def overlay(i: int) -> np.ndarray:
        _, cells = mapped([images[i][np.newaxis].astype(np.float32)], training=False)  # the inputs as a list, as built
        return reporting.render_heatmap(images[i], np.asarray(cells)[0], labels, good_index)

    return overlay


def image_sections(
    test_data,
    probs: np.ndarray,
    labels: Sequence[str],
    good: str,
    policy: DecisionPolicy,
    limit: int,
    overlay: Optional[Callable[[int], np.ndarray]] = None,
) -> List[Section]:
    """The test images behind the numbers: escapes and false rejects at the operating point, then the most
    confident class mistakes (at most ``limit``), each captioned with its file name and, with ``overlay``,
    its heatmap beside it."""
    good_index = labels.index(good)
    scores = np.asarray(defect_score(probs, good_index)) if len(probs) else np.zeros(0)

    def tile(i: int) -> reporting.Tile:
        predicted = int(probs[i].argmax())
        return reporting.Tile(
            test_data.images[i],
            str(test_data.paths[i]),
            (
                f"{labels[test_data.labels[i]]} → {labels[predicted]} (p {probs[i, predicted]:.2f})",
                f"defect score {scores[i]:.3f}",
            ),
            overlay(i) if overlay is not None else None,
        )

    mistakes = reporting.pass_fail_mistakes(scores, test_data.labels != good_index, policy)
    wrong = misclassified(probs, test_data.labels) if len(probs) else []
    return [
        Section("Escapes and false rejects (test)", reporting.mistake_grids(mistakes, tile, limit=limit)),
        Section(
            "Misclassified test images",
            [
                f"{len(wrong)} of {len(test_data.labels)} test images got the wrong class"
                + (f"; the {min(limit, len(wrong))} most confident shown." if wrong else "."),
                reporting.image_grid([tile(i) for i in wrong[:limit]]),
            ],
        ),
    ]


def warm_start_sections(comparison: Optional[dict]) -> List[Section]:
    """Old vs new model on the same test images (a warm-started run): counts, then every part that changed."""
    if not comparison:
        return []
    old, new = comparison["old"], comparison["new"]
    counts = reporting.table(
        ["", "threshold", "escapes", "false rejects", "sent to review"],
        [
            ["previous model", old["threshold"], old["escapes"], old["false_rejects"], old["review"]],
            ["this model", new["threshold"], new["escapes"], new["false_rejects"], new["review"]],
        ],
    )
    changed = comparison["changed"]
    rows = [[c["path"], c["truth"], c["old"], c["new"], c["old_score"], c["new_score"], c["change"]] for c in changed]
    return [
        Section(
            "Compared with the previous model",
            [
                f"Warm-started from {comparison['from']}; both models on the same {comparison['images']} test "
                f"images, each at its own operating point. {len(changed)} images changed verdict.",
                counts,
                reporting.table(
                    ["image", "truth", "previous", "now", "previous score", "score", "change"],
                    rows,
                    row_classes=["bad" if c["change"] == "worse" else "" for c in changed],
                )
                if rows
                else "No test image changed verdict.",
            ],
        )
    ]


def write_report(
    run_dir: Path,
    config: TrainConfig,
    metrics: dict,
    history: List[dict],
    test_data,
    test_probs: np.ndarray,
    verdict: DeployabilityVerdict,
    model=None,
) -> Path:
    """Write the PNGs and ``report.html`` into ``run_dir`` (the verdict at the top); returns the HTML path.
    With the final Keras ``model``, the test images shown get their heatmap overlay."""
    run_dir = Path(run_dir)
    labels, good = metrics["labels"], metrics["good_class"]
    test = metrics["test"]
    pf, d = test["pass_fail"], test["decision"]
    plot_curves(history, run_dir / PLOTS["curves"])
    plot_confusion(np.array(test["confusion_matrix"]), labels, run_dir / PLOTS["confusion"])
    plot_per_class(test["per_class"], run_dir / PLOTS["per_class"])
    scores = np.asarray(defect_score(test_probs, labels.index(good))) if len(test_probs) else np.zeros(0)
    plot_roc(scores, test_data.labels != labels.index(good), pf["threshold"], run_dir / PLOTS["roc"])

    training = metrics["training"]
    pass_fail_rows = [
        ["ROC AUC (defect score 1 - p(good))", pf["roc_auc"]],
        [
            "escape rate (defects passed automatically) at the operating point",
            reporting.rate(d["escapes"], d["defects"]),
        ],
        [
            "false-reject rate (good parts failed) at the operating point",
            reporting.rate(d["false_rejects"], d["goods"]),
        ],
        ["sent to review (all parts)", reporting.rate(d["review"], d["samples"])],
        ["accuracy (all classes)", reporting.percent(test["accuracy"])],
        ["macro F1", test["macro_f1"]],
        ["validation pass/fail ROC AUC", metrics["val"]["pass_fail"]["roc_auc"]],
        ["kept weights: epoch", f"{training.get('kept_epoch')} of {training['epochs']}"],
        ["best validation pass/fail score: epoch", training.get("best_epoch")],
    ]
    imbalance = metrics["imbalance"]
    imb_rows = [
        [
            c,
            n,
            imbalance.get("class_weights", {}).get(c),
            reporting.percent(imbalance.get("sampling_probabilities", {}).get(c)),
        ]
        for c, n in imbalance["train_counts"].items()
    ]
    m = config.model
    summary = (
        f"{m.backbone.keras_name} alpha {m.alpha}{' minimalistic' if m.minimalistic else ''}, "
        f"input {m.input_size[0]}x{m.input_size[1]}, weights {m.weights}, SE ratio {m.se_ratio}; "
        f"{config.optim.optimizer.value} lr {config.optim.learning_rate:g}, batch {config.optim.batch_size}; "
        f"stages {', '.join(training['stages'])}; {training['epochs']} epochs, "
        f"{reporting.number(training['seconds_per_epoch'])} s/epoch (median)"
    )
    op = metrics["operating_point"]
    policy = op["policy"]
    band = (
        f", review band [{policy['review_low']:.4f}, {policy['review_high']:.4f})"
        if policy.get("review_low") is not None
        else ""
    )
    op_text = (
        f"Operating point: threshold {policy['threshold']:.4f}{band} on the defect score, for "
        f"{Target(op['target']).describe(op['target_rate'])} on the "
        f"{op['chosen_on']}{'; ' + op['note'] if op.get('note') else ''}. `inspector calibrate` puts this "
        f"policy into the bundle."
    )
    figures = Section(
        "Plots",
        [
            reporting.figure(PLOTS[key], caption, alt=key)
            for key, caption in (
                ("curves", "Training curves"),
                ("confusion", "Test confusion matrix"),
                ("per_class", "Per-class precision, recall, F1 (test)"),
                ("roc", "Pass/fail ROC (test)"),
            )
        ],
    )
    return reporting.write_page(
        run_dir / "report.html",
        f"Training report: {config.name}",
        verdict=verdict,
        intro=[
            summary,
            op_text,
            reporting.paragraph(
                Markup("Classes {}; good class <b>{}</b>; test set {} images.").format(
                    ", ".join(labels), good, test["samples"]
                )
            ),
        ],
        sections=[
            Section("Pass / fail (test)", [reporting.table(["metric", "value"], pass_fail_rows)]),
            *image_sections(
                test_data,
                test_probs,
                labels,
                good,
                DecisionPolicy.model_validate(policy),
                config.report.max_misclassified,
                heatmaps(model, test_data.images, labels, labels.index(good)) if model is not None else None,
            ),
            Section(
                "Per class (test)",
                [
                    reporting.table(
                        ["class", "precision", "recall", "F1", "support"],
                        [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in test["per_class"].items()],
                    )
                ],
            ),
            Section(
                f"Class imbalance: {imbalance['method']}",
                [reporting.table(["class", "train images", "class weight", "sampling share"], imb_rows)],
            ),
            *warm_start_sections(metrics.get("warm_start")),
            figures,
            Section("Files", ["metrics.json, history.json, config.json, split.json, run.json, model.keras."]),
        ],
    )
