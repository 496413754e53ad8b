"""The bundles and the video the benchmarks run: built with the product's own code, cached in bench/work.

A benchmark bundle is a MobileNetV3 + SE classifier from :func:`training.model.build_model` with
**random-init weights** (latency does not depend on the weight values, and training each variant would
take hours on this CPU) and batch-norm statistics taken from the sample images (:func:`settle_batchnorm`:
which ops XNNPACK takes at INT8 depends on the activation ranges, and those of a random-init network
vanish layer by layer), exported with :func:`training.model.export_model` and converted by
:func:`calibration.convert.convert` at INT8 (full integer, uint8 I/O, 16-image representative sample from
the magnetic-tile images), float16 and float32, then written as a real ``.inspector`` bundle that the
station loads like any other. Six classes, named like the magnetic-tile dataset's.

Building needs TensorFlow, so :func:`ensure_bundles` builds missing bundles in a child process and the
process that measures never imports TensorFlow. Bundles are cached under bench/work/models keyed by
variant and by a hash of the build and conversion code, so a code change rebuilds them.

Run as a module to build bundles (what :func:`ensure_bundles` does):
  python -m bench.models small:224:int8 large:96:float16
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence

import numpy as np

from bench.common import DATASET, REPO, WORK, log, run_worker

LABELS = ["free", "blowhole", "break", "crack", "fray", "uneven"]  # the magnetic-tile classes
GOOD = "free"
ARCHS = ("small", "large")
PRECISIONS = ("int8", "float16", "float32")
REPRESENTATIVE_IMAGES = 16
FRAME_SIZE = (640, 480)  # the benchmark video: VGA, a common inspection-camera stream size
MODELS = WORK / "models"


@dataclass(frozen=True, order=True)
class Variant:
    arch: str
    size: int
    precision: str

    @classmethod
    def parse(cls, text: str) -> Variant:
        arch, size, precision = text.split(":")
        if arch not in ARCHS or precision not in PRECISIONS:
            raise ValueError(
                f"bad variant {text!r}: want ARCH:SIZE:PRECISION with ARCH in {ARCHS}, PRECISION in {PRECISIONS}"
            )
        return cls(arch, int(size), precision)

    def __str__(self) -> str:
        return f"{self.arch}:{self.size}:{self.precision}"

    @property
    def path(self) -> Path:
        return MODELS / _code_hash() / f"{self.arch}-{self.size}-{self.precision}.inspector"


def _code_hash() -> str:
    """Hash of the code that decides what a bundle contains: a change there must rebuild the cache."""
    digest = hashlib.sha256()
    for rel in (
        "training/model.py",
        "training/export_graph.py",
        "training/se.py",
        "calibration/convert.py",
        "bench/models.py",
    ):
        digest.update((REPO / rel).read_bytes())
    return digest.hexdigest()[:12]


def sample_images(count: int, size=None, seed: int = 0) -> List[np.ndarray]:
    """``count`` RGB images: magnetic-tile photos when the dataset is here, synthetic parts otherwise."""
    from inspector.imageio import load_image

    rng = np.random.default_rng(seed)
    files = sorted(p for p in DATASET.glob("*/*.jpg")) if DATASET.is_dir() else []
    images = []
    if files:
        for index in rng.choice(len(files), size=min(count, len(files)), replace=False):
            images.append(load_image(files[int(index)]))
    else:
        from inspector.synth import iter_parts

        labels = [("good", "scratch", "spot", "crack", "stain")[i % 5] for i in range(count)]
        images = [image for _, image in iter_parts(seed, labels, size or (256, 256))]
    return images


def settle_batchnorm(model, images: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to those of ``images`` (one forward pass).

    A random-init network keeps BN's initial statistics (mean 0, variance 1), so its activations shrink
    layer by layer to ~1e-4; an INT8 ADD whose input range is under 2**-10 of its output's is refused by
    XNNPACK. With the statistics of real inputs every layer sees unit-scale activations, as in a trained
    network, so the bundle is delegated like a trained one. Deterministic: no weight is trained.
    """
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(np.asarray(images, np.float32), training=True)
    for layer, value in zip(layers, momentum):
        layer.momentum = value


def build(variants: Sequence[Variant]) -> List[dict]:
    """Build and save the given bundles with TensorFlow (in this process); returns what was built."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from calibration.convert import convert, export_for_conversion
    from inspector.bundle import Bundle, Precision
    from inspector.preprocess import Preprocessor, PreprocessSpec
    from training.config import ModelConfig
    from training.model import build_model

    built = []
    raw = sample_images(REPRESENTATIVE_IMAGES)
    by_model = {}
    for v in variants:
        by_model.setdefault((v.arch, v.size), []).append(v)
    for (arch, size), group in sorted(by_model.items()):
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(backbone=arch, input_size=(size, size), weights="none"), len(LABELS))
        spec = PreprocessSpec(width=size, height=size)
        prepared = Preprocessor(spec).prepare_batch(raw)
        settle_batchnorm(model, prepared)
        fixed = export_for_conversion(model)

        def representative(prepared=prepared):
            for image in prepared:
                yield [image[np.newaxis].astype(np.float32)]

        build_s = time.perf_counter() - start
        for v in group:
            start = time.perf_counter()
            conv = convert(fixed, Precision(v.precision), representative if v.precision == "int8" else None)
            manifest = conv.manifest(
                name=f"bench-{arch}",
                version=f"random-init-{size}-{v.precision}",
                labels=LABELS,
                good_class=GOOD,
                preprocess=spec,
                metrics={"note": "random-init weights: for latency only", "conversion": conv.describe()},
            )
            v.path.parent.mkdir(parents=True, exist_ok=True)
            Bundle.create(manifest, conv.model).save(v.path)
            seconds = time.perf_counter() - start
            log(f"built {v} ({len(conv.model) / 1e6:.2f} MB, {conv.kind}) in {seconds:.0f} s")
            built.append(
                {
                    "variant": str(v),
                    "model_bytes": len(conv.model),
                    "kind": conv.kind,
                    "convert_s": round(seconds, 1),
                    "build_s": round(build_s, 1),
                }
            )
        keras.backend.clear_session()
    return built


def ensure_bundles(variants: Iterable[Variant], timeout: float = 3600) -> List[dict]:
    """Make sure every variant's bundle exists, building the missing ones in a TensorFlow child process."""
    missing = sorted({v for v in variants if not v.path.is_file()})
    if not missing:
        return []
    log(f"building {len(missing)} bundle(s) with TensorFlow: {', '.join(map(str, missing))}")
    return run_worker("bench.models", [str(v) for v in missing], timeout)["built"]


def make_video(path: Path, frames: int = 120, fps: float = 30.0) -> Path:
    """An MJPG AVI of inspection frames (VGA) made from the sample images, if not already there."""
    import cv2

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}: this OpenCV has no MJPG writer")
    try:
        images = sample_images(min(frames, 60), seed=1)
        for i in range(frames):
            rgb = cv2.resize(images[i % len(images)], FRAME_SIZE, interpolation=cv2.INTER_LINEAR)
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    finally:
        writer.release()
    tmp.replace(path)
    return path


def main(argv: List[str]) -> int:
    variants = [Variant.parse(text) for text in argv]
    print(json.dumps({"built": build(variants)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
