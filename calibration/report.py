"""Calibration and evaluation reports: one PNG figure and one HTML page beside it.

The figure shows what a person signing off a bundle needs to see: float vs converted defect score per
validation image (points far from the diagonal are what quantization changed), the ROC of the defect
score with the chosen operating point, and the score distributions of good and defective parts with the
threshold and review band. The page adds the guard's measurements, the operating point with its
confidence intervals, a per-class table, the representative sample and the camera reference. Page,
tables and the ROC and histogram come from :mod:`inspector.reporting`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from markupsafe import Markup

from inspector import reporting
from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict
from inspector.inference import Classifier
from inspector.reporting import Section, plots


def _scatter(
    ax, float_scores: np.ndarray, quant_scores: np.ndarray, is_defect: np.ndarray, policy: DecisionPolicy, kind: str
) -> None:
    ax.scatter(float_scores[~is_defect], quant_scores[~is_defect], s=12, c=plots.GOOD_COLOR, label="good", alpha=0.7)
    ax.scatter(float_scores[is_defect], quant_scores[is_defect], s=12, c=plots.DEFECT_COLOR, label="defect", alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    plots.mark_policy(ax, policy, vertical=False)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    plots.style(ax, "float vs converted (validation)", "float model defect score", f"{kind} defect score")


def _rate(r: Any, confidence: float = 0.95) -> str:
    r = r if isinstance(r, dict) else vars(r)
    return reporting.rate(r["count"], r["total"], r["low"], r["high"], confidence)


def _per_class(columns: Sequence[Tuple[str, dict]]) -> Markup:
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
    return reporting.table(header, rows)


def _decision_rows(named: Sequence[Tuple[str, dict]]) -> Markup:
    rows = [
        [
            name,
            m["samples"],
            reporting.percent(m["accuracy"]),
            m["pass_fail"].get("roc_auc"),
            _rate(m["decision"]["escape"]),
            _rate(m["decision"]["false_reject"]),
            _rate(m["decision"]["review"]),
        ]
        for name, m in named
    ]
    return reporting.table(["model / split", "images", "accuracy", "ROC AUC", "escape", "false reject", "review"], rows)


def _skipped(skipped) -> Markup:
    return reporting.table(["skipped image", "reason"], [[s.path, s.reason] for s in skipped])


def _mistakes(
    heading: str,
    probs: np.ndarray,
    labels: np.ndarray,
    paths: Sequence[str],
    image: Callable[[int], Tuple[np.ndarray, Optional[np.ndarray]]],
    names: Sequence[str],
    good_index: int,
    policy: DecisionPolicy,
    what: str,
) -> Section:
    """The escaped and falsely rejected images at ``policy`` with their file names; ``image(i)`` gives image
    ``i`` as the model saw it and its heatmap overlay or None (only the shown ones are asked for)."""
    scores = np.asarray(defect_score(probs, good_index))

    def tile(i: int) -> reporting.Tile:
        predicted = int(probs[i].argmax())
        crop, overlay = image(i)
        return reporting.Tile(
            crop,
            str(paths[i]),
            (f"{names[labels[i]]} → {names[predicted]}", f"defect score {scores[i]:.3f}"),
            overlay,
        )

    mistakes = reporting.pass_fail_mistakes(scores, labels != good_index, policy)
    return Section(heading, reporting.mistake_grids(mistakes, tile, what=what))


def _inference_section(candidate) -> Section:
    """What each inference variant (flip averaging, tiles) buys on validation beside its cost per part."""
    chosen = candidate.bundle.manifest.inference
    rows = []
    for t in candidate.trials:
        op = t.operating_point
        rows.append(
            [
                t.name + (" (bundle)" if t.inference == chosen else ""),
                "n/a" if t.auc is None else f"{t.auc:.4f}",
                f"{op.escape.count}/{op.escape.total}",
                f"{op.false_reject.count}/{op.false_reject.total}",
                f"{t.escapes_at_budget}/{op.escape.total}",
                f"{t.ms_per_part:.1f}",
            ]
        )
    budget = reporting.percent(candidate.trials[0].false_reject_budget)
    return Section(
        "Inference: what flip averaging and tiles buy, and cost",
        [
            reporting.table(
                ["variant", "ROC AUC", "escapes", "false rejects", f"escapes at {budget} false rejects", "ms/part"],
                rows,
            ),
            f"Validation split through the station's classifier; escapes and false rejects at each variant's own "
            f"operating point; ms per part on this machine (load average {candidate.trials[0].load:.1f}), "
            f"about proportional to the model runs per part on a station.",
        ],
    )


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

    fig, axes = plots.new_figure(3)
    _scatter(axes[0], float_scores, quant_scores, is_defect, policy, kind)
    curves = [("float", float_scores, is_defect)] + [
        (c.conversion.kind, defect_score(c.val_probs, good), is_defect) for c in result.candidates
    ]
    plots.roc(axes[1], curves, policy.threshold)
    plots.score_histogram(axes[2], quant_scores, is_defect, policy, f"{kind} scores (validation)")
    png = plots.save(fig, out_dir / "report.png")

    run, opts = result.run, result.options
    intro: List[reporting.page.Block] = []
    if result.passed and result.bundle_path is None:
        intro.append(
            reporting.paragraph(
                Markup(
                    "No bundle was written: the model is NOT DEPLOYABLE (see above); "
                    "<code>--force</code> writes it anyway."
                ),
                "fail",
            )
        )
    elif result.passed:
        intro.append(
            reporting.paragraph(
                f"Bundle written: {result.bundle_path} ({kind}, {len(shown.conversion.model) / 1024:.0f} KiB; "
                f"Keras model {result.keras_bytes / 1024:.0f} KiB)",
                "ok",
            )
        )
    else:
        intro += [
            reporting.paragraph("Calibration stopped: accuracy guard failed. No bundle was written.", "fail"),
            reporting.preformatted(result.message),
        ]
    if result.precision_note:
        intro.append(reporting.paragraph(f"Precision auto: {result.precision_note}; float16 deployed.", "fail"))
    drift = result.chosen.parity.drift_warning() if result.chosen is not None else None
    if drift:
        intro.append(reporting.paragraph(f"Warning: {drift}.", "fail"))
    intro += [
        f"Run {run.path}; labels {', '.join(run.labels)} (good: {run.good_class}); "
        f"input {run.spec.width}x{run.spec.height}.",
        reporting.figure(png.name, alt="float vs converted, ROC, score histogram"),
    ]

    rows = [
        [
            c.parity.kind,
            len(c.conversion.model),
            f"{reporting.percent(c.parity.float_decision_accuracy)} -> "
            f"{reporting.percent(c.parity.quant_decision_accuracy)}",
            f"{reporting.percent(c.parity.float_accuracy)} -> {reporting.percent(c.parity.quant_accuracy)}",
            f"{c.parity.drop_pp:+.2f} pp ({c.parity.measure.value})",
            f"{c.parity.allowed_pp:.2f} pp",
            reporting.percent(c.parity.agreement),
            c.parity.mean_abs_score_diff,
            f"{reporting.percent(c.parity.float_escape.rate)} -> {reporting.percent(c.parity.quant_escape.rate)}",
            f"{reporting.percent(c.parity.float_false_reject.rate)} -> "
            f"{reporting.percent(c.parity.quant_false_reject.rate)}",
            "pass" if c.parity.passed else "FAIL",
        ]
        for c in result.candidates
    ]
    sections = [
        Section(
            "Accuracy guard (validation split)",
            [
                reporting.table(
                    [
                        "model",
                        "bytes",
                        "pass/fail acc. float -> conv.",
                        "class acc. float -> conv.",
                        "drop (guarded)",
                        "budget",
                        "top-1 agreement",
                        "mean |score diff|",
                        "escape float -> conv.",
                        "false reject float -> conv.",
                        "guard",
                    ],
                    rows,
                ),
                "Pass/fail accuracy, escape and false-reject rates of both models at the converted model's "
                "threshold (an escape or a false reject is wrong, a part sent to review is not); class accuracy is "
                "top-1 over every class. The guard applies the budget to the drop it names.",
            ],
        )
    ]

    op = shown.operating_point
    band = f"; review band [{op.review_low:.4f}, {op.review_high:.4f})" if op.review_low is not None else ""
    point = Section(
        "Operating point",
        [
            reporting.paragraph(
                Markup(
                    "Target: {} on the validation split. Threshold on the defect score 1 - p({}): <b>{:.4f}</b>{}."
                ).format(
                    op.target.describe(op.target_rate),
                    run.good_class,
                    op.threshold,
                    band,
                )
            ),
            reporting.table(
                ["measure", "validation (chosen on)"],
                [
                    ["escape (defects passed)", _rate(op.escape, op.confidence)],
                    ["false reject (good failed)", _rate(op.false_reject, op.confidence)],
                    ["review", _rate(op.review, op.confidence)],
                ],
            ),
            f"Intervals: {op.interval_method.value}, {reporting.percent(op.confidence)}.",
        ],
    )
    if op.note:
        point.add(reporting.paragraph(op.note, "fail"))
    sections.append(point)
    if shown.trials:
        sections.append(_inference_section(shown))

    metrics = result.metrics(policy)
    named = [("float, validation", metrics["validation_float"])]
    if "validation" in metrics:
        named.append((f"{kind}, validation", metrics["validation"]))
    if "test_float" in metrics:
        named.append(("float, test", metrics["test_float"]))
    if "test" in metrics:
        named.append((f"{kind}, test", metrics["test"]))
    sections.append(Section("Metrics at the operating point", [_decision_rows(named)]))
    classifier = Classifier(shown.bundle)
    images, probs, split = (
        (result.test, result.test_probs, "test split")
        if result.test is not None and result.test_probs is not None and len(result.test.labels)
        else (result.val, shown.val_probs, "validation split")
    )
    sections.append(
        _mistakes(
            f"Escapes and false rejects ({split}, {kind} model)",
            probs,
            images.labels,
            images.paths,
            _shown(classifier, images, result.root),
            run.labels,
            good,
            policy,
            split,
        )
    )
    columns = [("float", metrics["validation_float"])] + (
        [("converted", metrics["validation"])] if "validation" in metrics else []
    )
    sections.append(Section("Per class (validation)", [_per_class(columns)]))
    if "test" in metrics:
        sections.append(
            Section(
                "Per class (test)", [_per_class([("float", metrics["test_float"]), ("converted", metrics["test"])])]
            )
        )

    rep = result.representative
    if rep is not None:
        sample = Section(
            "Representative sample",
            [
                f"{len(rep.images)} of {rep.requested} requested images, stratified from {rep.available} training "
                f"images: " + ", ".join(f"{k} {v}" for k, v in rep.per_class.items()) + "."
            ],
        )
        sample.add(*(reporting.paragraph(w, "fail") for w in rep.warnings))
        if rep.skipped:
            sample.add(_skipped(rep.skipped))
        sections.append(sample)
    if result.sensitivity:
        sections.append(
            Section(
                "Layers with the largest INT8 error",
                [
                    "RMSE of the quantized layer output against float, in quantization steps (QuantizationDebugger on "
                    "the representative sample).",
                    reporting.table(
                        ["layer", "op", "RMSE / scale"],
                        [[e.tensor[:110], e.op, e.rmse_over_scale] for e in result.sensitivity[:15]],
                    ),
                ],
            )
        )
    if result.commissioning is not None:
        sections.append(
            Section(
                "Camera reference",
                [
                    reporting.mapping_table(result.commissioning.reference.model_dump(mode="json")),
                    *(reporting.paragraph(w, "fail") for w in result.commissioning.warnings),
                ],
            )
        )
    sections.append(Section("Options", [reporting.mapping_table(opts.model_dump(mode="json"), ("option", "value"))]))
    page = reporting.write_page(
        out_dir / "report.html",
        f"Calibration report: {opts.name or run.manifest.name or run.path.name}",
        verdict=result.verdict,
        intro=intro,
        sections=sections,
    )
    return page, png


def _file_shown(classifier: Classifier, path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """An image file cut to the bundle's region of interest (at the file's resolution) and its heatmap
    overlay, as the station locates it (flip views, the deciding tile)."""
    from inspector.imageio import load_image

    frame = load_image(path)
    return classifier.preprocessor.crop(frame), reporting.heatmap_overlay(classifier, frame)


def _shown(
    classifier: Classifier, images, root: Optional[Path]
) -> Callable[[int], Tuple[np.ndarray, Optional[np.ndarray]]]:
    """``image(i)`` for :func:`_mistakes`: the prepared model input and its heatmap overlay (the bundle's
    flip views), or for a tiled bundle, whose tiles are cut from the file at native resolution, the file
    read again from ``root`` (see :func:`_file_shown`; without ``root``, no overlay)."""
    if not classifier.tiled:
        return lambda i: (images.images[i], reporting.heatmap_overlay(classifier, images.images[i], model_input=True))
    if root is None:
        return lambda i: (images.images[i], None)
    return lambda i: _file_shown(classifier, Path(root) / images.paths[i])


def _evaluation_mistakes(evaluation, good_index: int, policy: DecisionPolicy) -> Section:
    """Escapes and false rejects of an evaluation: the shown images are read again from the data folder and
    cut to the bundle's region of interest (at the file's resolution), with the heatmap overlay."""
    from inspector.bundle import Bundle

    bundle = Bundle.load(evaluation.bundle)
    manifest, classifier = bundle.manifest, Classifier(bundle)
    root = Path(evaluation.data_root)
    section = _mistakes(
        "Escapes and false rejects",
        evaluation.probs,
        evaluation.labels,
        evaluation.paths,
        lambda i: _file_shown(classifier, root / evaluation.paths[i]),
        manifest.labels,
        good_index,
        policy,
        f"images of the bundle's classes ({', '.join(manifest.labels)})",
    )
    unseen = evaluation.metrics.get("unseen_defects")
    if unseen:
        section.add(
            "Defect kinds the bundle was never trained on (counted as defects: passed = escaped; their images "
            "are not shown above):",
            reporting.keyed_records_table(unseen, "unseen defect kind", ["support", "passed", "review", "failed"]),
        )
    return section


def write_evaluation_report(
    evaluation,
    good_index: int,
    policy: DecisionPolicy,
    out_dir: str | os.PathLike,
    title: Optional[str] = None,
    verdict: Optional[DeployabilityVerdict] = None,
) -> Tuple[Path, Path]:
    """``report.html`` and ``report.png`` for a :class:`calibration.evaluate.EvaluationResult`."""
    out_dir = Path(out_dir)
    scores = defect_score(evaluation.probs, good_index)
    is_defect = evaluation.labels != good_index
    fig, axes = plots.new_figure(2)
    plots.roc(axes[0], [("bundle", scores, is_defect)], policy.threshold)
    plots.score_histogram(axes[1], scores, is_defect, policy, "defect scores")
    png = plots.save(fig, out_dir / "report.png")
    intro: List[reporting.page.Block] = [
        f"Bundle {evaluation.bundle} on {evaluation.data_root}"
        + (f" (split {evaluation.split})" if evaluation.split else ""),
        reporting.figure(png.name, alt="ROC and score histogram"),
    ]
    sections = [
        Section("Metrics at the bundle's operating point", [_decision_rows([("bundle", evaluation.metrics)])]),
        _evaluation_mistakes(evaluation, good_index, policy),
        Section("Per class", [_per_class([("bundle", evaluation.metrics)])]),
    ]
    if evaluation.skipped:
        sections.append(Section("Skipped images", [_skipped(evaluation.skipped)]))
    page = reporting.write_page(
        out_dir / "report.html", title or "Evaluation report", verdict=verdict, intro=intro, sections=sections
    )
    return page, png
