"""Where the defect is (``inspector/localization.py``): class map cells back to frame pixels through the
region of interest and the resize, the defect evidence, the box, the overlay, and how the runner tells the
model's outputs apart. Pure geometry and numpy: no model here (the map itself is tested against Keras in
tests/test_calibration_class_map.py)."""

import numpy as np
import pytest

from inspector.inference import BackendError, split_outputs
from inspector.localization import (
    Heatmap,
    defect_evidence,
    input_region,
    locate,
    receptive_offset,
    render_overlay,
    view_offset,
)
from inspector.preprocess import Preprocessor, PreprocessSpec, Roi


def _dot_frame(shape, x, y):
    frame = np.zeros(shape, np.uint8)
    frame[y - 2 : y + 3, x - 2 : x + 3] = 255
    return frame


@pytest.mark.parametrize(
    "frame_shape, spec",
    [
        ((480, 640, 3), PreprocessSpec(width=224, height=224)),  # squashed whole frame, 7x7 cells
        ((480, 640, 3), PreprocessSpec(width=96, height=64, roi=Roi(x=100, y=60, width=400, height=300))),
        ((600, 800), PreprocessSpec(width=100, height=70, roi=Roi(x=250, y=40, width=500, height=350))),  # 4x3 cells,
        # the last of each row and column only partly inside the input
    ],
)
def test_peak_cell_and_box_map_back_to_the_frame_through_roi_and_resize(frame_shape, spec):
    """A dot in the frame lands in some model-input cell; a map peaking at that cell must put ``where``'s
    box around the dot and its peak within one cell of it, in frame pixels."""
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = input_region(spec, frame_shape)
    cell_w = (x1 - x0) / spec.width * 32
    cell_h = (y1 - y0) / spec.height * 32
    cells_y, cells_x = -(-spec.height // 32), -(-spec.width // 32)
    for _ in range(12):
        x = int(rng.integers(x0 + 3, x1 - 3))
        y = int(rng.integers(y0 + 3, y1 - 3))
        prepared = Preprocessor(spec).prepare(_dot_frame(frame_shape, x, y), "rgb")
        v, u = np.unravel_index(int(np.argmax(prepared[:, :, 0])), prepared.shape[:2])
        evidence = np.zeros((cells_y, cells_x), np.float32)
        evidence[v // 32, u // 32] = 5.0
        where = Heatmap("scratch", evidence, (spec.width, spec.height), (x0, y0, x1, y1)).where()
        bx, by, bw, bh = where.box
        assert bx - 1 <= x <= bx + bw + 1 and by - 1 <= y <= by + bh + 1, (x, y, where)
        assert abs(where.x - x) <= cell_w / 2 + 2 and abs(where.y - y) <= cell_h / 2 + 2, (x, y, where)
        assert where.strength == 5.0 and where.label == "scratch"


def test_box_spans_the_cells_joined_to_the_peak_and_a_flat_map_spans_everything():
    region = (0.0, 0.0, 128.0, 128.0)
    evidence = np.zeros((4, 4), np.float32)
    evidence[1, 1], evidence[1, 2], evidence[3, 3] = 6.0, 4.0, 5.0  # (3, 3) is strong but not joined
    heat = Heatmap("spot", evidence, (128, 128), region)
    assert heat.peak == (1, 1) and heat.box_cells() == (1, 1, 1, 2)
    assert heat.where().box == [32, 32, 64, 32] and (heat.where().x, heat.where().y) == (48, 48)
    flat = Heatmap("spot", np.ones((4, 4), np.float32), (128, 128), region)
    assert flat.where().box == [0, 0, 128, 128]
    assert not flat.normalized().any()


def test_defect_evidence_is_the_top_defect_class_against_good_and_averages_to_its_log_odds():
    rng = np.random.default_rng(1)
    class_map = rng.normal(0, 2, (3, 5, 4)).astype(np.float32)
    class_map[:, :, 2] += 1.5  # class 2 has the highest logit among the defects (good is 0)
    class_map[:, :, 0] += 3.0
    defect, evidence = defect_evidence(class_map, good_index=0)
    logits = class_map.mean(axis=(0, 1))
    assert defect == 1 + int(np.argmax(logits[1:]))
    assert evidence.shape == (3, 5)
    assert evidence.mean() == pytest.approx(logits[defect] - logits[0], abs=1e-5)
    heat = locate(class_map, ["good", "a", "b", "c"], 0, PreprocessSpec(width=160, height=96), (480, 800, 3))
    assert heat.label == ["good", "a", "b", "c"][defect] and heat.region == (0.0, 0.0, 800.0, 480.0)
    with pytest.raises(ValueError, match="cells_y x cells_x x classes"):
        defect_evidence(class_map[:, :, 0], 0)


def test_overlay_colours_only_the_evidence_and_keeps_the_frame_size():
    frame = np.full((300, 400, 3), 128, np.uint8)
    spec = PreprocessSpec(width=64, height=64, roi=Roi(x=100, y=50, width=200, height=200))
    evidence = np.array([[0.0, 0.0], [0.0, 4.0]], np.float32)
    heat = Heatmap("crack", evidence, (64, 64), input_region(spec, frame.shape))
    out = render_overlay(frame, heat)
    assert out.shape == frame.shape and out.dtype == np.uint8
    hot = out[220:240, 270:290].astype(int)  # inside the bottom-right cell: red over the gray
    assert (hot[..., 0] - hot[..., 1]).min() > 50 and (hot[..., 0] - hot[..., 2]).min() > 50
    np.testing.assert_array_equal(out[60:90, 110:140], frame[60:90, 110:140])  # median evidence: untouched
    np.testing.assert_array_equal(out[:, :95], frame[:, :95])  # outside the region of interest
    gray = render_overlay(frame[:, :, 0], heat)
    assert gray.shape == frame.shape
    crop = frame[50:250, 100:300][::2, ::2][:64, :64]  # a report's tile: the model input itself
    class_map = np.stack([np.zeros((2, 2)), evidence], axis=2).astype(np.float32)  # good, crack
    on_input = render_overlay(
        crop, locate(class_map, ["good", "crack"], 0, PreprocessSpec(width=64, height=64), crop.shape)
    )
    assert on_input.shape == (64, 64, 3)
    np.testing.assert_array_equal(
        on_input[40:60, 40:60],
        render_overlay(crop, Heatmap("crack", evidence, (64, 64), (0, 0, 64, 64), (15.5, 15.5)))[40:60, 40:60],
    )
    # The bottom-right cell sees around (63, 63) (receptive_offset 15.5): red in the corner, off the drawn
    # marks (peak cross at 56, the clipped cell's centre; box edges at 47 and 63), none at its square's centre.
    assert (on_input[60:63, 60:63, 0].astype(int) - on_input[60:63, 60:63, 1]).min() > 50
    assert (on_input[44:46, 44:46, 0].astype(int) - on_input[44:46, 44:46, 1]).max() < 0


def _detail(index, shape, scale=0.1):
    return {"index": index, "shape": np.array(shape), "quantization": (scale, 0)}


def test_outputs_are_told_apart_by_rank_not_position():
    probs, cells = _detail(7, [1, 4]), _detail(3, [1, 2, 2, 4])
    assert split_outputs([cells, probs]) == (probs, cells)
    assert split_outputs([probs, cells]) == (probs, cells)
    assert split_outputs([probs]) == (probs, None)  # a bundle from before the map
    with pytest.raises(BackendError, match="expected the probabilities"):
        split_outputs([probs, _detail(3, [1, 2, 2, 5])])
    with pytest.raises(BackendError):
        split_outputs([probs, _detail(3, [1, 4])])


@pytest.mark.parametrize(
    ("size", "offset", "mirrored"),
    [
        # Lengths before the five stride-2 layers 224, 112, 56, 28, 14: all even, each layer's output pixel i
        # centred on input pixel 2i + 1, so cell j on pixel 32j + 31 (+1+2+4+8+16), centre 32j + 31.5.
        (224, 15.5, -15.5),
        # 200, 100, 50 even, 25, 13 odd: pixel 32j + 7; mirrored back, cell j is the view's cell 6 - j, whose
        # pixel 32 (6 - j) + 7 is original pixel 199 - 192 + 32j - 7 = 32j.
        (200, -8.5, -15.5),
        # 1001, 501, 251 odd, 126 even, 63 odd: pixel 32j + 8; mirrored: 1000 - 992 - 8 = 32j + 0.
        (1001, -7.5, -15.5),
        # 97, 49, 25, 13, 7 all odd: pixel 32j; mirrored: 96 - 96 - 0 = 32j.
        (97, -15.5, -15.5),
    ],
)
def test_receptive_offset_follows_the_asymmetric_padding_of_each_stride_2_layer(size, offset, mirrored):
    """Where a map cell's receptive field is centred, relative to its 32-pixel square's centre. Against
    Keras: the span of nonzero input gradient of an interior cell of the minimalistic MobileNetV3-Small at
    widths 800, 808, 1000, 1001 was centred 15.5, -8.5, -8.5, -7.5 pixels off (800 and 1001 are checked in
    tests/test_cam_constructed.py, slow)."""
    assert receptive_offset(size) == offset
    assert receptive_offset(size, mirrored=True) == mirrored


def test_flip_averaged_map_sees_between_its_views():
    """A map averaged over a view and its mirror blends cells that see 31 pixels apart: centred on the square."""
    assert view_offset((224, 160), [(False, False)]) == (15.5, 15.5)
    assert view_offset((224, 160), [(False, False), (False, True)]) == (0.0, 15.5)  # hflip
    assert view_offset((224, 160), [(False, False), (False, True), (True, False), (True, True)]) == (0.0, 0.0)
    heat = locate(
        np.zeros((5, 7, 2), np.float32), ["good", "pit"], 0, PreprocessSpec(width=224, height=160), (160, 224)
    )
    assert heat.offset == (15.5, 15.5) and heat.cell_rect(2, 3) == (111.5, 79.5, 143.5, 111.5)
    # The first and last cells stretched to the input's edges: each pixel to the nearest receptive field.
    assert heat.cell_rect(0, 0) == (0.0, 0.0, 47.5, 47.5) and heat.cell_rect(4, 6) == (207.5, 143.5, 224.0, 160.0)
    assert heat.box() == (0.0, 0.0, 224.0, 160.0)  # a flat map still spans the whole input
    # A map not on the backbone's grid (3x3 cells on a 64-pixel input) is spread evenly, the offset unused.
    other = Heatmap("pit", np.eye(3, dtype=np.float32), (64, 64), (0.0, 0.0, 64.0, 64.0), (15.5, 15.5))
    assert other.cell_rect(1, 1) == pytest.approx((64 / 3, 64 / 3, 128 / 3, 128 / 3))
    unmoved = render_overlay(np.zeros((64, 64, 3), np.uint8), Heatmap("pit", other.evidence, (64, 64), other.region))
    assert np.array_equal(render_overlay(np.zeros((64, 64, 3), np.uint8), other), unmoved)
