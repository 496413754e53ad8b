"""Benchmark: where the defect is (the class activation map output), cost and pointing game on magnetic tile.

From a trained magnetic-tile run (``bench.train_magnetic_tile``, or any RUN_DIR on that dataset) this
converts the run's model to full-integer INT8 twice with the same representative sample (200 training
images), with the class map output (what ``inspector calibrate`` now writes) and without it, and measures:

* **cost**: the invoke of both models on the same test frames, interleaved (same load for both), plus
  what the station adds per failed or review frame (read the map, :func:`inspector.localization.locate`,
  the payload's ``where``) and what the archive thread adds (the overlay PNG render). Goal: map + locate
  under 5 % of the inference time.
* **pointing game** on the test split: the share of defect images whose peak cell (the station's: most
  probable defect class minus good, per cell) overlaps the ground-truth mask
  (``../shared/datasets/magnetic_tile_masks/<class>/<name>.png``), for the INT8 bundle and the float Keras
  model, next to chance (the mean share of cells that touch the mask); the agreement of the INT8 map with
  the float map (correlation of the evidence after removing each image's mean, same peak cell); the cell
  size in frame pixels against the defects' size.

Writes bench/results/cam.json; with ``--nominal-cells`` cam_nominal.json, the pointing game with the map's
cells on their nominal 32-pixel squares (the geometry before :func:`inspector.localization.receptive_offset`),
to compare the two on the same model.

Example:
  .venv/bin/python -m bench.cam --run /tmp/run_copy     # ~5 min on 2 shared cores
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

from bench.common import RESULTS, context, log, repo_relative, summary, write_result

MASKS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile_masks"


def _convert(fixed, sample) -> bytes:
    from calibration.convert import convert

    return convert(fixed, "int8", sample.dataset()).model


def _peak_hits(heat, mask: np.ndarray) -> Dict[str, bool]:
    """Whether the peak cell and the box touch a mask pixel (frame pixels)."""
    x0, y0, x1, y1 = heat.cell_rect(*heat.peak)
    bx0, by0, bx1, by1 = heat.box()

    def touches(a0, b0, a1, b1) -> bool:
        return bool(mask[int(np.floor(b0)) : int(np.ceil(b1)), int(np.floor(a0)) : int(np.ceil(a1))].any())

    return {"peak": touches(x0, y0, x1, y1), "box": touches(bx0, by0, bx1, by1)}


def _chance(heat, mask: np.ndarray) -> float:
    """Share of the map's cells that touch the mask: the pointing score of a peak drawn at random."""
    rows, cols = heat.evidence.shape
    touching = 0
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = heat.cell_rect(r, c)
            touching += bool(mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))].any())
    return touching / (rows * cols)


def _evidence_centre(with_map, images: np.ndarray, good: int, count: int = 16) -> dict:
    """Where the float model's interior cells look: per cell, the centroid of |d evidence / d input| (evidence:
    the defect classes' logits minus the good class's), as model-input pixels from the cell's nominal
    32-pixel square's centre, over the first ``count`` images, next to the receptive field's geometric
    centre (:func:`inspector.localization.receptive_offset`). A trained model's kernels can move it."""
    import tensorflow as tf

    from inspector.localization import BACKBONE_STRIDE, receptive_offset

    offsets = []
    for image in images[:count]:
        x = tf.Variable(image[None])
        with tf.GradientTape(persistent=True) as tape:
            cells = with_map(x, training=False)[1][0]
            evidence = tf.reduce_sum(cells, axis=2) - int(cells.shape[2]) * cells[:, :, good]
            rows, cols = (int(v) for v in evidence.shape)
            interior = {(r, c): evidence[r, c] for r in range(1, rows - 1) for c in range(1, cols - 1)}
        for (r, c), value in interior.items():
            g = np.abs(tape.gradient(value, x).numpy()[0]).sum(axis=2)
            ys, xs = np.mgrid[0 : g.shape[0], 0 : g.shape[1]] + 0.5
            square = (c * BACKBONE_STRIDE + BACKBONE_STRIDE / 2, r * BACKBONE_STRIDE + BACKBONE_STRIDE / 2)
            offsets.append(((g * xs).sum() / g.sum() - square[0], (g * ys).sum() / g.sum() - square[1]))
        del tape
    found = np.array(offsets)
    return {
        "images": min(count, len(images)),
        "cells": len(found),
        "mean_xy": [round(float(v), 2) for v in found.mean(axis=0)],
        "median_xy": [round(float(v), 2) for v in np.median(found, axis=0)],
        "std_xy": [round(float(v), 2) for v in found.std(axis=0)],
        "receptive_offset_xy": [receptive_offset(int(images.shape[2])), receptive_offset(int(images.shape[1]))],
    }


def run(run_dir: Path, frames: int, threads: int, nominal_cells: bool = False) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from calibration.convert import export_for_conversion, load_keras_model
    from calibration.representative import draw_representative, resolve_root
    from inspector.dataset import SplitManifest
    from inspector.imageio import load_image
    from inspector.inference import ModelRunner
    from inspector.localization import BACKBONE_STRIDE, locate, render_overlay
    from inspector.preprocess import Preprocessor
    from inspector.runfolder import RunFolder, RunManifest

    manifest = RunManifest.load(RunFolder(run_dir))
    spec = manifest.preprocess
    labels, good = list(manifest.labels), manifest.labels.index(manifest.good_class)
    split = SplitManifest.load(run_dir / "split.json")
    root = resolve_root(split)
    preprocessor = Preprocessor(spec)

    start = time.monotonic()
    model = load_keras_model(run_dir / "model.keras")
    with_map = export_for_conversion(model)
    sample = draw_representative(split, root, preprocessor, 200, 0)
    mapped = _convert(with_map, sample)
    plain = _convert(export_for_conversion(model, class_map=False), sample)
    log(f"converted with and without the map in {time.monotonic() - start:.0f} s")

    test = [s for s in split.splits["test"]]
    defects = [s for s in test if s.label != manifest.good_class]
    runner = ModelRunner(mapped, threads=threads)
    baseline = ModelRunner(plain, threads=threads)

    # Cost: blocks of frames through each model in turn (the order alternating, so both see the same load),
    # per frame the time of one invoke; then what the station adds per failed frame (read the map, locate).
    prepared = [preprocessor.prepare(load_image(root / s.path), "rgb") for s in test[:frames]]
    for image in prepared[:5]:
        runner.run(image), baseline.run(image)
    with_s: List[float] = []
    without_s: List[float] = []
    locate_s: List[float] = []
    blocks = [prepared[i : i + 25] for i in range(0, len(prepared), 25)]
    for round_ in range(4):
        for number, block in enumerate(blocks):
            order = [(baseline, without_s), (runner, with_s)]
            for model, times in order if (round_ + number) % 2 else order[::-1]:
                start = time.perf_counter()
                for image in block:
                    model.run(image)
                times.append((time.perf_counter() - start) / len(block))
    for image in prepared:
        runner.run(image)
        start = time.perf_counter()
        locate(runner.class_map(), labels, good, spec, (image.shape[0] * 2, image.shape[1] * 2)).where()
        locate_s.append(time.perf_counter() - start)
    overlay_s: List[float] = []
    for s in defects[:20]:
        frame = load_image(root / s.path)
        runner.run(preprocessor.prepare(frame, "rgb"))
        heat = locate(runner.class_map(), labels, good, spec, frame.shape)
        t0 = time.perf_counter()
        render_overlay(frame, heat)
        overlay_s.append(time.perf_counter() - t0)
    invoke_without = float(np.median(without_s))
    cost = {
        "frames": len(prepared),
        "threads": threads,
        "invoke_timing": "per-frame mean of blocks of 25 frames, 4 rounds, model order alternating",
        "invoke_without_map_ms": summary(without_s),
        "invoke_with_map_ms": summary(with_s),
        "locate_ms": summary(locate_s),
        "overlay_render_ms": summary(overlay_s),
        "map_invoke_overhead_pct": round(100 * (float(np.median(with_s)) - invoke_without) / invoke_without, 2),
        # The fastest of many runs is the least disturbed by other processes on a shared machine.
        "map_invoke_overhead_pct_of_min": round(100 * (min(with_s) - min(without_s)) / min(without_s), 2),
        "locate_pct_of_min_inference": round(100 * min(locate_s) / min(without_s), 2),
        "locate_pct_of_inference": round(100 * float(np.median(locate_s)) / invoke_without, 2),
        "station_total_pct": round(
            100 * (float(np.median(with_s)) + float(np.median(locate_s)) - invoke_without) / invoke_without, 2
        ),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "note": "station_total_pct = (invoke with map + locate - invoke without map) / invoke without map, medians; "
        "the overlay is rendered in the archive's writer thread, off the inspection loop",
    }
    log(f"cost: {cost['station_total_pct']} % of inference (load {cost['load_average']})")

    # Pointing game on the test split's defect images.
    keras_in = np.stack([preprocessor.prepare(load_image(root / s.path), "rgb") for s in defects]).astype(np.float32)
    _, keras_maps = with_map.predict(keras_in, batch_size=8, verbose=0)
    rows: List[dict] = []
    empty: List[str] = []
    for sample_, keras_map in zip(defects, keras_maps):
        mask_path = MASKS / sample_.label / (Path(sample_.path).stem + ".png")
        if not mask_path.is_file():
            continue
        frame = load_image(root / sample_.path)
        mask = load_image(mask_path)[:, :, 0] > 127
        if not mask.any():
            empty.append(sample_.path)  # nothing to point at
            continue
        probs = runner.run(preprocessor.prepare(frame, "rgb"))
        int8 = locate(runner.class_map(), labels, good, spec, frame.shape)
        flt = locate(keras_map, labels, good, spec, frame.shape)
        if nominal_cells:
            int8, flt = (replace(heat, offset=(0.0, 0.0)) for heat in (int8, flt))
        ys, xs = np.nonzero(mask)
        e_q = int8.evidence - int8.evidence.mean()
        e_f = flt.evidence - flt.evidence.mean()
        rows.append(
            {
                "path": sample_.path,
                "label": sample_.label,
                "predicted_defect": int8.label,
                "defect_score": round(float(1 - probs[good]), 4),
                "int8": _peak_hits(int8, mask),
                "float": _peak_hits(flt, mask),
                "chance": round(_chance(int8, mask), 4),
                "same_peak": int8.peak == flt.peak,
                "evidence_corr": round(float(np.corrcoef(e_q.ravel(), e_f.ravel())[0, 1]), 4)
                if e_q.std() > 0 and e_f.std() > 0
                else None,
                "frame": [int(frame.shape[1]), int(frame.shape[0])],
                "cell_px": [  # an interior cell's side; the edge cells reach the region's border
                    round(BACKBONE_STRIDE * (int8.region[2] - int8.region[0]) / spec.width, 1),
                    round(BACKBONE_STRIDE * (int8.region[3] - int8.region[1]) / spec.height, 1),
                ],
                "mask_px": [int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) else [0, 0],
            }
        )

    def share(key: str, which: str, subset=None) -> float:
        chosen = [r for r in rows if subset is None or subset(r)]
        return round(float(np.mean([r[key][which] for r in chosen])), 4) if chosen else float("nan")

    caught = lambda r: r["defect_score"] >= 0.5  # noqa: E731  (the parts the operator would look at)
    per_class = {
        label: {
            "images": sum(r["label"] == label for r in rows),
            "pointing_int8": share("int8", "peak", lambda r, label=label: r["label"] == label),
            "chance": round(float(np.mean([r["chance"] for r in rows if r["label"] == label])), 4),
        }
        for label in sorted({r["label"] for r in rows})
    }
    corrs = [r["evidence_corr"] for r in rows if r["evidence_corr"] is not None]
    pointing = {
        "images": len(rows),
        "empty_masks_left_out": empty,
        "split": "test",
        "input": [spec.width, spec.height],
        "cells": list(int8.cells) if rows else None,
        "cells_placed": "nominal 32-pixel squares" if nominal_cells else "at their receptive fields",
        "pointing_int8": share("int8", "peak"),
        "pointing_float": share("float", "peak"),
        "box_touches_mask_int8": share("int8", "box"),
        "chance": round(float(np.mean([r["chance"] for r in rows])), 4) if rows else None,
        "pointing_int8_on_defect_score_ge_0_5": share("int8", "peak", caught),
        "images_defect_score_ge_0_5": sum(caught(r) for r in rows),
        "int8_float_same_peak": round(float(np.mean([r["same_peak"] for r in rows])), 4) if rows else None,
        "int8_float_evidence_corr_median": round(float(np.median(corrs)), 4) if corrs else None,
        "cell_px_median": [float(np.median([r["cell_px"][i] for r in rows])) for i in (0, 1)] if rows else None,
        "mask_px_median": [float(np.median([r["mask_px"][i] for r in rows])) for i in (0, 1)] if rows else None,
        "per_class": per_class,
        "evidence_centre": _evidence_centre(with_map, keras_in, good),
        "per_image": rows,
    }
    log(
        f"pointing game: INT8 {pointing['pointing_int8']}, float {pointing['pointing_float']}, chance "
        f"{pointing['chance']} over {len(rows)} test defect images; cells look at {pointing['evidence_centre']}"
    )
    return {"run": repo_relative(str(run_dir)), "cost": cost, "pointing_game": pointing}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained magnetic-tile RUN_DIR (not modified)")
    parser.add_argument("--frames", type=int, default=150, help="test frames timed for the cost")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (bench/results)")
    parser.add_argument(
        "--nominal-cells",
        action="store_true",
        help="score the pointing game with the cells on their nominal 32-pixel squares (cam_nominal.json)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    ctx = context(False, run=repo_relative(str(args.run)))
    results = run(args.run, args.frames, args.threads, args.nominal_cells)
    write_result(args.out, "cam_nominal" if args.nominal_cells else "cam", ctx, results, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
