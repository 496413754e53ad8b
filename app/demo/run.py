"""The whole product on one machine: data -> train -> calibrate -> line video -> station + controller -> report.

Each step is the product's own code path (the same functions ``inspector train``, ``inspector calibrate``,
``inspector run`` and ``inspector controller`` use); the demo only chooses small settings so that the
default run takes a few minutes on two CPU cores and ``--quick`` about one or two.

Parts on the belt are new renders the model never saw, a share of them with defect kinds that were not in
the training data at all (chips and dents), so the summary shows how a line copes with the unexpected.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np

from app.demo.line import run_line
from app.demo.video import frame_with_part, render_line_video
from inspector.runfolder import RunFolder
from inspector.synth import DEFECTS, GOOD, UNSEEN_DEFECTS, generate, render

log = logging.getLogger(__name__)

PART_SIZE = (128, 128)
FRAME_SIZE = (320, 240)


@dataclass
class DemoSettings:
    out: Path
    data: Optional[Path] = None
    good_class: str = "good"
    quick: bool = False
    weights: str = "none"
    parts: Optional[int] = None
    seed: int = 0

    @property
    def n_parts(self) -> int:
        return self.parts or (24 if self.quick else 60)


def _train_config(settings: DemoSettings, root: Path):
    from training.config import TrainConfig

    size = 64 if settings.quick else 96
    return TrainConfig.model_validate(
        {
            "name": "demo",
            "seed": settings.seed,
            "data": {"root": str(root), "good_class": settings.good_class, "cache": False},
            "model": {
                "input_size": [size, size],
                "weights": settings.weights,
                "alpha": 0.75 if settings.quick else 1.0,
            },
            # Enough optimizer steps matter more than epochs: a few hundred steps learn the synthetic defects.
            "optim": {"epochs": 50, "batch_size": 32, "warmup_epochs": 2},
            "runtime": {"progress": "lines"},
        }
    )


def _belt_labels(rng: np.random.Generator, n: int, defects: List[str], unseen: List[str]) -> List[str]:
    """About half good parts, a third known defects, the rest defects the model never saw."""
    labels = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5 or not defects:
            labels.append(GOOD)
        elif r < 0.83 or not unseen:
            labels.append(str(rng.choice(defects)))
        else:
            labels.append(str(rng.choice(unseen)))
    return labels


def _belt_from_dataset(settings: DemoSettings, run_dir: Path, n: int):
    """Held-out test images of the user's dataset, as parts (labels are their folders)."""
    from inspector.dataset import SplitManifest
    from inspector.imageio import load_image

    split = SplitManifest.load(RunFolder(run_dir).split)
    rng = np.random.default_rng(settings.seed)
    samples = list(split.splits["test"])
    picks = [samples[i] for i in rng.permutation(len(samples))[:n]]
    images = [load_image(Path(split.root) / s.path) for s in picks]
    return [s.label for s in picks], images


def _calibration_summary(result) -> str:
    from calibration.evaluate import format_metrics

    lines = [f"guard: {c.parity.summary()} -> {'pass' if c.parity.passed else 'FAIL'}" for c in result.candidates]
    metrics = result.metrics(result.chosen.operating_point.policy())
    if "test" in metrics:
        lines.append(format_metrics(metrics["test"], f"test split ({result.chosen.conversion.kind})"))
    manifest = result.bundle.manifest
    lines.append(
        f"bundle {result.bundle_path}: {manifest.precision.value}, {manifest.model_bytes / 1024:.0f} KiB, "
        f"threshold {manifest.decision.threshold:.4f}; report {result.report_html}"
    )
    lines.append(result.verdict.summary())
    return "\n".join(lines)


def run_demo(settings: DemoSettings, echo: Callable[[str], None] = print) -> dict:
    """Run every step and write ``settings.out/summary.json`` and ``report.html``; returns the summary."""
    from app.demo.report import summarize, write_report
    from calibration.calibrate import CalibrationOptions, CameraOptions, calibrate
    from inspector.imageio import save_image
    from training.trainer import train

    out = settings.out.resolve()  # the station and the broker run as processes with their own working folders
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.monotonic()

    echo("== 1/5 data")
    if settings.data is None:
        root = out / "data"
        per_class = 80 if settings.quick else 120
        counts = generate(root, per_class=per_class, size=PART_SIZE, seed=settings.seed)
        echo(f"synthetic dataset {root}: {counts}")
    else:
        root = settings.data
        echo(f"dataset {root} (good class {settings.good_class})")
    timings["data_s"] = time.monotonic() - t0

    echo("== 2/5 train")
    t = time.monotonic()
    run_dir = out / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    result = train(_train_config(settings, root), run_dir)
    test = result.metrics["test"]
    echo(
        f"trained: test accuracy {test['accuracy']:.3f}, pass/fail ROC AUC "
        f"{test['pass_fail']['roc_auc'] or float('nan'):.3f}; report {RunFolder(run_dir).report}"
    )
    timings["train_s"] = time.monotonic() - t

    echo("== 3/5 line video")
    t = time.monotonic()
    rng = np.random.default_rng([settings.seed, 7])
    if settings.data is None:
        labels = _belt_labels(rng, settings.n_parts, list(DEFECTS), list(UNSEEN_DEFECTS))
        video = render_line_video(
            out / "line.avi", labels, seed=settings.seed, part_size=PART_SIZE, frame_size=FRAME_SIZE
        )
        good_part = render(rng, GOOD, PART_SIZE)
    else:
        labels, images = _belt_from_dataset(settings, run_dir, settings.n_parts)
        video = render_line_video(
            out / "line.avi", labels, seed=settings.seed, part_size=PART_SIZE, frame_size=FRAME_SIZE, images=images
        )
        good_part = images[labels.index(settings.good_class)] if settings.good_class in labels else images[0]
        good_part = cv2.resize(good_part, PART_SIZE, interpolation=cv2.INTER_AREA)
    video.save_truth(out / "truth.json")
    reference = out / "reference.png"
    save_image(reference, frame_with_part(good_part[:, :, ::-1], video.roi.x, FRAME_SIZE)[:, :, ::-1])
    unseen = sum(1 for label in labels if label in UNSEEN_DEFECTS)
    echo(
        f"{len(labels)} parts, {video.duration_s:.0f} s at {video.fps:g} fps "
        f"({labels.count(settings.good_class)} good, {unseen} with defects never seen in training)"
    )
    timings["video_s"] = time.monotonic() - t

    echo("== 4/5 calibrate")
    t = time.monotonic()
    options = CalibrationOptions(
        representative_size=100 if settings.quick else 200,
        representative_min=0 if settings.quick else 200,
        accuracy_budget=5.0,
        remedy="auto",
        target_rate=0.02,
        camera=CameraOptions(reference_image=str(reference), roi=video.roi, crop_model_input=True),
        force=True,  # the demo runs the line either way, to show what an unfit model does; the verdict says so
    )
    calibration = calibrate(run_dir, out / "demo.inspector", options)
    echo(_calibration_summary(calibration))
    timings["calibrate_s"] = time.monotonic() - t

    echo("== 5/5 line: broker, station (inspector run), line controller")
    t = time.monotonic()
    truth = {s.part_id: s.label for s in video.slots}

    def show(decision: dict) -> None:
        part = decision.get("part_id")
        label = truth.get(part, "?")
        expected = "accept" if label == settings.good_class else "reject"
        mark = "ok" if decision["action"] == expected else ("ESCAPE" if expected == "reject" else "FALSE REJECT")
        echo(f"  {part}  {label:<8} -> {decision['action']:<6} ({decision['reason']:<8}) {mark}")

    record = run_line(calibration.bundle_path, video, out / "line", on_decision=show)
    timings["line_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - t0

    summary = summarize(record, video, settings.good_class, list(UNSEEN_DEFECTS), timings)
    summary["training"] = {"test_accuracy": test["accuracy"], "test_pass_fail": test["pass_fail"]}
    summary["bundle"] = str(calibration.bundle_path)
    summary["deployability"] = calibration.verdict.to_dict()
    summary["reports"] = {
        name: str(Path(path).relative_to(out))
        for name, path in (("training", RunFolder(run_dir).report), ("calibration", calibration.report_html))
        if path and Path(path).exists()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "decisions.json").write_text(json.dumps(record.decisions, indent=1))
    (out / "results.json").write_text(json.dumps(record.results, indent=1))
    write_report(out, summary, record, video)
    return summary
