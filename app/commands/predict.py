"""Run a model on images, a folder, a video or a camera and print what it decides for each picture.

Every picture goes through the station's own decision (the bundle's preprocessing, its pass/fail/review
policy, then the plausibility gate), so a verdict here is the verdict on the line, and a failed or review
picture gets the station's ``where`` (where the defect is, from a bundle with a class map). MODEL is a bundle
(.inspector file or folder) or a training run folder holding one. SOURCE is an image, a folder (searched
recursively), a video file, a camera index (0) or an rtsp:// / http:// stream.

Examples:
  inspector predict demo-out/demo.inspector demo-out/reference.png
  inspector predict demo-out/demo.inspector demo-out/line.avi --frames 20 --save predictions/ --csv predictions.csv
  inspector predict demo-out/demo.inspector demo-out/line.avi --frames 20 --save predictions/ --overlay
  inspector predict demo-out/demo.inspector demo-out/line.avi --frames 5 --json
  inspector predict runs/r1 data/good     # a run folder holding a bundle (calibrate --out runs/r1/r1.inspector)
  inspector predict model.inspector 0 --frames 5     # camera 0
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from inspector.localization import Heatmap

log = logging.getLogger("inspector.predict")

COLOURS = {"pass": (40, 180, 40), "fail": (220, 30, 30), "review": (240, 160, 0)}  # RGB
# The result's ``where`` in CSV (box: "x y width height"); empty for passes and bundles without a class map.
WHERE_COLUMNS = ["where_label", "where_x", "where_y", "where_box", "where_strength"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="bundle (.inspector file or folder), or a training run folder that holds one"
    )
    parser.add_argument("source", metavar="SOURCE", help="image, folder, video file, camera index or stream URL")
    parser.add_argument(
        "--save",
        metavar="DIR",
        type=Path,
        help="write each picture annotated with its verdict, defect score, region of interest and, for fail "
        "and review, the box where the defect is",
    )
    parser.add_argument(
        "--overlay",
        action="store_true",
        help="with --save, also blend the defect evidence heatmap over failed and review pictures",
    )
    parser.add_argument("--csv", metavar="FILE", type=Path, help="write one row per picture (and per skipped file)")
    parser.add_argument("--json", action="store_true", help="print only JSON: results, skipped files, summary")
    parser.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="stop after N frames (default: every frame of a file or folder, 1 from a camera)",
    )
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the runtime's)")


@dataclass
class Picture:
    name: str
    image: np.ndarray
    order: str  # "rgb" (image files) or "bgr" (OpenCV captures)


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class Tally:
    results: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        counts = {v: sum(r["verdict"] == v for r in self.results) for v in ("pass", "fail", "review")}
        return {
            "pictures": len(self.results),
            **counts,
            "gated": sum(bool(r["gate"]) for r in self.results),
            "skipped": len(self.skipped),
        }


def resolve_model(text: str) -> Path:
    """The bundle MODEL names: the path itself, or the newest bundle inside a training run folder."""
    from inspector.bundle import BUNDLE_SUFFIX, MANIFEST_NAME, MODEL_NAME
    from inspector.runfolder import RunFolder

    path = Path(text)
    if path.is_file() or (path / MANIFEST_NAME).is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"{path}: no such bundle or run folder")
    run = RunFolder(path)
    if not (run.manifest.is_file() or run.model.is_file()):
        raise ValueError(
            f"{path}: neither a bundle (.inspector file, or a folder with {MANIFEST_NAME}) nor a training run folder"
        )
    found = [
        p
        for p in path.iterdir()
        if (p.is_file() and p.suffix == BUNDLE_SUFFIX) or (p / MANIFEST_NAME).is_file() and (p / MODEL_NAME).is_file()
    ]
    if not found:
        raise ValueError(
            f"{path} is a training run without a TFLite model; make one with `inspector calibrate "
            f"{path} --out {path / ('model' + BUNDLE_SUFFIX)}` (add --precision float32 for a float "
            "model), then predict with it"
        )
    newest = max(found, key=lambda p: p.stat().st_mtime)
    if len(found) > 1:
        log.warning("%s holds %d bundles; using the newest, %s", path, len(found), newest.name)
    return newest


def _folder_pictures(root: Path) -> Iterator[Union[Picture, Skipped]]:
    from inspector.imageio import ImageError, is_image_name, load_image

    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        name = path.relative_to(root).as_posix()
        if not is_image_name(path):
            yield Skipped(name, "not an image file (by its ending)")
            continue
        try:
            yield Picture(name, load_image(path), "rgb")
        except ImageError as exc:
            yield Skipped(name, exc.reason)


def _source_pictures(text: str, limit: Optional[int]) -> Iterator[Union[Picture, Skipped]]:
    """Frames of a video, camera or stream through the station's own source plugins."""
    from pydantic import TypeAdapter, ValidationError

    from edge.config import SourceConfig, source_from_text
    from edge.sources import BadFrame, EndOfSource, SourceError, create_source

    try:
        cfg = TypeAdapter(SourceConfig).validate_python(source_from_text(text))
    except ValidationError as exc:
        raise ValueError(f"{text}: not a usable source ({exc.errors()[0]['msg']})") from None
    source = create_source(cfg)
    if limit is None and cfg.live:
        limit = 1
    source.open()
    try:
        count = 0
        while limit is None or count < limit:
            try:
                frame = source.read()
            except EndOfSource:
                return
            except BadFrame as exc:
                yield Skipped(f"frame {count}", str(exc))
                continue
            except SourceError as exc:
                yield Skipped(source.describe(), str(exc))
                return
            if frame is None:
                time.sleep(0.01)
                continue
            count += 1
            yield Picture(frame.ref or f"frame{frame.index}", frame.image, frame.order.value)
    finally:
        source.close()


def pictures(text: str, limit: Optional[int]) -> Iterator[Union[Picture, Skipped]]:
    from inspector.imageio import ImageError, is_image_name, load_image

    path = Path(text)
    if path.is_dir():
        items: Iterator[Union[Picture, Skipped]] = _folder_pictures(path)
        for n, item in enumerate(items):
            if limit is not None and n >= limit:
                return
            yield item
    elif path.is_file() and is_image_name(path):
        try:
            yield Picture(path.name, load_image(path), "rgb")
        except ImageError as exc:
            yield Skipped(path.name, exc.reason)
    elif path.is_file() or text.isdigit() or "://" in text or text.startswith("/dev/video") or "!" in text:
        yield from _source_pictures(text, limit)
    else:
        raise ValueError(f"{text}: no such image, folder, video file or camera")


def annotate(
    rgb: np.ndarray,
    row: Dict[str, Any],
    roi: Optional[Tuple[int, int, int, int]],
    heat: Optional[Heatmap] = None,
    overlay: bool = False,
) -> np.ndarray:
    """The picture with its region of interest boxed and the verdict and score written on top; with ``heat``
    also where the defect is (box, peak, class: the archive's overlay, its heatmap blended only with ``overlay``)."""
    import cv2

    from inspector.localization import render_overlay

    out = np.ascontiguousarray(rgb.copy()) if heat is None else render_overlay(rgb, heat, 0.55 if overlay else 0.0)
    colour = COLOURS[row["verdict"]]
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 200))
    if roi is not None:
        x, y, rw, rh = roi
        cv2.rectangle(out, (x, y), (x + rw - 1, y + rh - 1), colour, thick)
    text = f"{row['verdict'].upper()} {row['defect_score']:.3f} {row['top_class']}"
    if row["gate"]:
        text += " (gate)"
    scale = max(0.3, min(h, w) / 400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (min(w - 1, tw + 4), th + base + 4), (0, 0, 0), -1)
    cv2.putText(out, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)
    return out


def where_text(where: Optional[Dict[str, Any]]) -> str:
    """The per-picture line's short ``where``: class and box (x,y widthxheight, frame pixels)."""
    if where is None:
        return ""
    x, y, w, h = where["box"]
    return f"  where: {where['label']} {x},{y} {w}x{h}"


def _saved_name(name: str) -> str:
    if "#" in name:  # a video frame, file#index
        base, index = name.rsplit("#", 1)
        return f"{Path(base).name.replace('.', '_')}_{index}.png"
    return str(Path(name).with_suffix(".png"))


def run(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise ValueError("--frames must be at least 1")
    if args.overlay and not args.save:
        raise ValueError("--overlay draws on the pictures --save writes: give --save DIR")
    model = resolve_model(args.model)

    from inspector.bundle import Bundle
    from inspector.imageio import save_image
    from inspector.inference import Classifier
    from inspector.inspection import bundle_gate, decide_frame
    from inspector.protocol.enums import Verdict

    clf = Classifier(Bundle.load(model), threads=args.threads)
    gate = bundle_gate(clf.bundle.manifest)
    spec = clf.bundle.manifest.preprocess
    roi = (spec.roi.x, spec.roi.y, spec.roi.width, spec.roi.height) if spec.roi is not None else None
    tally = Tally()
    talk = not args.json
    if talk:
        m = clf.bundle.manifest
        print(f"model {m.name} {m.version} ({model}), threshold {clf.policy.threshold:.3f}")
    for item in pictures(args.source, args.frames):
        if isinstance(item, Skipped):
            tally.skipped.append(item)
            continue
        try:
            start = time.perf_counter()
            prepared = clf.preprocessor.prepare(item.image, item.order)
            decision = decide_frame(
                clf, gate, prepared, item.image, (time.perf_counter() - start) * 1000.0, order=item.order
            )
        except ValueError as exc:  # e.g. the bundle's region of interest does not fit this picture
            tally.skipped.append(Skipped(item.name, str(exc)))
            continue
        c = decision.classification
        heat = clf.locate(c, item.image.shape) if decision.verdict != Verdict.PASS else None
        row = {
            "file": item.name,
            "verdict": decision.verdict.value,
            "defect_score": round(c.defect_score, 6),
            "top_class": c.top_class,
            "top_score": round(c.top_score, 6),
            "gate": decision.gate_reasons,
            "where": heat.where().model_dump(mode="json") if heat is not None else None,
        }
        tally.results.append(row)
        if talk:
            print(decision.line(item.name) + where_text(row["where"]), flush=True)
        if args.save:
            rgb = item.image if item.order == "rgb" else item.image[..., ::-1]
            save_image(args.save / _saved_name(item.name), annotate(rgb, row, roi, heat, args.overlay))
    if args.csv:
        _write_csv(args.csv, tally)
    summary = tally.summary()
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(model),
                    "results": tally.results,
                    "skipped": [{"file": s.name, "reason": s.reason} for s in tally.skipped],
                    "summary": summary,
                },
                indent=2,
            )
        )
    else:
        _print_summary(summary, tally.skipped, args)
    return 0 if tally.results else 1


def _write_csv(path: Path, tally: Tally) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "verdict", "defect_score", "top_class", "top_score", "gate", *WHERE_COLUMNS, "skipped"]
        )
        for r in tally.results:
            where = r["where"] or {}
            writer.writerow(
                [
                    r["file"],
                    r["verdict"],
                    r["defect_score"],
                    r["top_class"],
                    r["top_score"],
                    "; ".join(r["gate"] or []),
                    where.get("label", ""),
                    where.get("x", ""),
                    where.get("y", ""),
                    " ".join(str(v) for v in where.get("box", [])),
                    where.get("strength", ""),
                    "",
                ]
            )
        for s in tally.skipped:
            writer.writerow([s.name, "", "", "", "", "", *[""] * len(WHERE_COLUMNS), s.reason])


def _print_summary(summary: Dict[str, Any], skipped: List[Skipped], args: argparse.Namespace) -> None:
    print(
        f"{summary['pictures']} picture(s): {summary['pass']} pass, {summary['fail']} fail, "
        f"{summary['review']} review ({summary['gated']} stopped by the plausibility gate); "
        f"{summary['skipped']} skipped"
    )
    by_reason: Dict[str, List[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.name)
    for reason, names in by_reason.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        print(f"  skipped {shown}: {reason}")
    if args.save:
        print(f"annotated pictures in {args.save}")
    if args.csv:
        print(f"table in {args.csv}")
    if not summary["pictures"]:
        print(f"inspector predict: nothing could be read from {args.source}", file=sys.stderr)
