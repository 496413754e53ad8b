"""Where the defect is with flip averaging and tiles: ``Classifier`` mirrors each view's class map back and
averages it like the probabilities, with tiles it keeps the deciding tile's map and that tile's window, and
``locate`` maps it into frame pixels; the station publishes that ``where``. Real INT8 bundle
(``int8_bundle``) with its inference section rewritten, real images, constructed maps for the geometry."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.bundle import Bundle, InferenceSpec, TilingSpec
from inspector.decision import DecisionPolicy
from inspector.exitcodes import ExitCode
from inspector.imageio import load_image
from inspector.inference import Classifier, flip_views, flips, mirror, tile_origins
from inspector.localization import locate
from inspector.preprocess import PreprocessSpec
from inspector.protocol.enums import Verdict
from inspector.protocol.payloads import Result
from inspector.synth import generate
from tests.fixtures_edge import StationThread, station_config

TTAS = ["hflip", "vflip", "hvflip"]


@pytest.fixture(scope="module")
def large_parts(tmp_path_factory) -> Path:
    """Synthetic parts 160 rows by 96 columns (larger than the fixture model's 64x64 input): DATA/<class>/*.png."""
    root = tmp_path_factory.mktemp("large_where")
    generate(root, per_class=1, size=(96, 160), seed=11)
    return root


def rewritten(path: Path, out: Path, threshold=None, **inference) -> Path:
    """The bundle at ``path`` with another inference section (and threshold), same model bytes."""
    bundle = Bundle.load(path)
    update = {"inference": InferenceSpec(**inference)}
    if threshold is not None:
        update["decision"] = DecisionPolicy(threshold=threshold)
    return Bundle.create(bundle.manifest.model_copy(update=update), bundle.model).save(out)


@pytest.mark.parametrize("tta", TTAS)
def test_mirror_maps_each_view_back_onto_the_original(tta):
    """A flip-equivariant 'model' (block means of 32x32 cells, what the map's geometry is): every view's map,
    mirrored back, is the original's map; and the views are the mirrors ``flips`` names."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)

    def cells(view):
        return view.reshape(2, 32, 3, 32, 3).mean(axis=(1, 3))

    for (rows, columns), view in zip(flips(tta), flip_views(image, tta)):
        assert np.array_equal(view, mirror(image, rows, columns))
        assert np.array_equal(mirror(cells(view), rows, columns), cells(image))
    assert np.array_equal(mirror(cells(image), False, True), cells(image)[:, ::-1])
    assert np.array_equal(mirror(cells(image), True, False), cells(image)[::-1])


@pytest.mark.parametrize("tta", TTAS)
def test_flip_averaged_map_is_the_mean_of_the_views_maps_mirrored_back(int8_bundle, synth_root, tta):
    bundle = Bundle.load(int8_bundle)
    plain = Classifier(bundle, threads=1)
    averaged = Classifier(bundle, threads=1, inference=InferenceSpec(tta=tta))
    image = plain.preprocessor.prepare(load_image(sorted((synth_root / "scratch").glob("*.png"))[0]))
    got = averaged.classify_prepared(image)
    views = [plain.classify_prepared(v).class_map for v in flip_views(image, tta)]
    expected = np.mean([mirror(m, *f) for m, f in zip(views, flips(tta))], axis=0)
    assert got.class_map is not None and got.class_map.shape == plain.classify_prepared(image).class_map.shape
    assert got.map_window is None
    assert np.allclose(got.class_map, expected, atol=1e-6)
    # Mirroring the picture mirrors the averaged map (the views are the same pictures, mirrored back): not
    # so if a view's map were averaged without mirroring it back.
    for rows, columns in flips(tta)[1:]:
        other = averaged.classify_prepared(np.ascontiguousarray(mirror(image, rows, columns)))
        assert np.allclose(other.class_map, mirror(got.class_map, rows, columns), atol=1e-6)
        assert other.defect_score == pytest.approx(got.defect_score, abs=1e-6)


def test_flip_averaged_map_of_a_symmetric_picture(int8_bundle):
    """Every view of a left-right and top-bottom symmetric picture is the picture itself: the probabilities
    are one view's, the map is that view's map averaged with its own mirrors (a CNN's map of a symmetric
    picture is not symmetric itself: padding and weights have a handedness)."""
    rng = np.random.default_rng(3)
    quarter = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    half = np.concatenate([quarter, quarter[:, ::-1]], axis=1)
    symmetric = np.concatenate([half, half[::-1]], axis=0)
    bundle = Bundle.load(int8_bundle)
    single = Classifier(bundle, threads=1).classify_prepared(symmetric)
    got = Classifier(bundle, threads=1, inference=InferenceSpec(tta="hvflip")).classify_prepared(symmetric)
    assert got.scores == single.scores
    expected = np.mean([mirror(single.class_map, *f) for f in flips("hvflip")], axis=0)
    assert np.allclose(got.class_map, expected, atol=1e-6)
    assert np.allclose(got.class_map, got.class_map[::-1, ::-1], atol=1e-6)


@pytest.mark.parametrize(
    ("frame_shape", "roi", "window", "peak", "centre", "box"),
    [
        # Cells of a 64-pixel input see 15.5 pixels right of and below their 32-pixel squares
        # (receptive_offset), the first and last stretched to the input's edges: cell 0 spans 0..47.5,
        # cell 1 47.5..64. Whole frame 96x160 = the region at native size, a tile at x 48..112, y 32..96:
        # cell (1, 0) is frame x 48..95.5, y 79.5..96.
        ((96, 160, 3), None, (48 / 160, 32 / 96, 112 / 160, 1.0), (1, 0), (72, 88), [48, 79, 48, 17]),
        # ROI 120x48 at (10, 20) enlarged to 160x64: the tile at x 96..160 is frame x 82..130, y 20..68, 0.75
        # frame px per input px: cell (0, 1) is frame x 117.625..130, y 20..55.625.
        ((100, 200, 3), (10, 20, 120, 48), (96 / 160, 0.0, 1.0, 1.0), (0, 1), (124, 38), [117, 20, 13, 36]),
    ],
    ids=["native", "roi-enlarged"],
)
def test_locate_maps_a_tiles_map_into_its_window_of_the_region(frame_shape, roi, window, peak, centre, box):
    spec = PreprocessSpec(
        width=64, height=64, roi=None if roi is None else dict(zip(("x", "y", "width", "height"), roi))
    )
    class_map = np.zeros((2, 2, 2), np.float32)  # (good, crack), evidence only in the peak cell
    class_map[peak + (1,)] = 3.0
    where = locate(class_map, ["good", "crack"], 0, spec, frame_shape, window).where()
    assert (where.label, (where.x, where.y), where.box) == ("crack", centre, box)
    whole = locate(class_map, ["good", "crack"], 0, spec, frame_shape).where()
    assert whole.box != box  # without the window the same cell is a quarter of the whole region


@pytest.mark.parametrize(
    ("rows", "columns", "height", "width"),
    [(160, 96, 160, 96), (48, 96, 64, 128)],  # the frame, and the region it is tiled at (enlarged to hold a tile)
    ids=["native", "enlarged"],
)
def test_tiled_map_is_the_deciding_tiles_and_where_falls_in_that_tile(
    int8_bundle, tmp_path, large_parts, rows, columns, height, width
):
    tiled = Classifier(Bundle.load(rewritten(int8_bundle, tmp_path / "t.inspector", tiling=TilingSpec())))
    plain = Classifier(Bundle.load(int8_bundle))
    frame = np.ascontiguousarray(load_image(sorted((large_parts / "scratch").glob("*.png"))[0])[:rows, :columns])
    scale = columns / width
    rects = [
        (x * scale, y * scale, (x + 64) * scale, (y + 64) * scale)
        for y in tile_origins(height, 64, 0.25)
        for x in tile_origins(width, 64, 0.25)
    ]
    per_tile = [plain.classify_prepared(t) for t in tiled.tiles(frame, "rgb")]
    assert len(per_tile) == len(rects)
    worst = int(np.argmax([c.defect_score for c in per_tile]))
    got = tiled.classify(frame, "rgb")
    assert np.array_equal(got.class_map, per_tile[worst].class_map)
    assert got.map_window == pytest.approx(
        tuple(v / s for v, s in zip(rects[worst], (columns, rows, columns, rows))), abs=1e-9
    )
    where = tiled.locate(got, frame.shape).where()
    x0, y0, x1, y1 = rects[worst]
    bx, by, bw, bh = where.box
    assert np.floor(x0) <= bx and bx + bw <= np.ceil(x1) and np.floor(y0) <= by and by + bh <= np.ceil(y1)
    assert x0 <= where.x <= x1 and y0 <= where.y <= y1


def test_station_publishes_where_of_a_flip_averaged_tiled_bundle(shared_broker, tmp_path, int8_bundle, large_parts):
    bundle = rewritten(int8_bundle, tmp_path / "b.inspector", threshold=0.0, tta="hflip", tiling=TilingSpec())
    flat = tmp_path / "frames"
    flat.mkdir()
    for src in sorted(large_parts.glob("*/*.png"))[:3]:
        shutil.copy(src, flat / src.name)
    cfg = station_config(
        shared_broker, tmp_path, bundle, {"type": "folder", "path": str(flat)}, overrides={"gate.enabled": False}
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/result"])
    assert StationThread(cfg).start().wait(120) == ExitCode.OK
    rec.wait_for(lambda r: len(r.results()) == 3, what="one result per frame")
    clf = Classifier(Bundle.load(bundle))
    for payload in rec.results():
        result = Result.model_validate(payload)
        image = load_image(flat / result.frame)
        c = clf.classify(image, "rgb")
        assert result.verdict == Verdict.FAIL and result.where is not None
        assert result.where == clf.locate(c, image.shape).where()
        assert c.map_window is not None and c.map_window != (0.0, 0.0, 1.0, 1.0)  # a tile, not the frame
    rec.close()
