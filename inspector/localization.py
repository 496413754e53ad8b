"""Where the defect is: the model's class activation map turned into frame pixels and a heatmap overlay.

A bundle calibrated with the map (``Manifest.class_map``) has a second output: the classifier's dense
layer applied to every cell of the final feature map (``training/cam.py``), one cell per
:data:`BACKBONE_STRIDE` model-input pixels. The cells' mean is exactly the model's logits, so the
*defect evidence* of a cell, the logit of the most probable defect class minus the good class's logit,
averages over the cells to the frame's log-odds of that defect against good. The peak cell is where the
model saw the defect; the cells joined to it that hold at least half of its evidence above the map's
median make the box.

Cells are mapped back through the bundle's preprocessing (:mod:`inspector.preprocess`: region of
interest, then a resize to the model input; with tiled inference, the deciding tile's window of the
region), so a peak and box are in the camera frame's pixels. A cell's 32-pixel square is centred where its
receptive field is (:func:`receptive_offset`: 15.5 pixels right of and below the plain grid's square for
inputs that are multiples of 32), the first and last of a row or column stretched to the input's edges.
No TensorFlow here: the station computes a :class:`Heatmap` for failed and review frames and the archive
renders :func:`render_overlay` beside them; reports call the same function.

Example:
    >>> c = clf.classify(frame_bgr)                                                  # doctest: +SKIP
    >>> heat = locate(c.class_map, clf.labels, clf.good_index, clf.preprocessor.spec, frame_bgr.shape)  # doctest: +SKIP
    >>> heat.where().box, render_overlay(frame_rgb, heat).shape                      # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from inspector.preprocess import PreprocessSpec
from inspector.protocol.payloads import Where

BACKBONE_STRIDE = 32  # MobileNetV3's output stride: one map cell per 32x32 model-input pixels
STRIDE_2_LAYERS = 5  # 2**5 = BACKBONE_STRIDE

Rect = Tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class Heatmap:
    """One frame's defect evidence per cell, and where the model input sits in the frame."""

    label: str
    evidence: np.ndarray  # cells_y x cells_x, logits (defect class minus good class)
    input_size: Tuple[int, int]  # model input width, height
    region: Rect  # the model input's source area in frame pixels (the ROI, or the whole frame)
    # Model-input pixels from each cell's 32-pixel square to the centre of what the cell sees (x, y).
    offset: Tuple[float, float] = (0.0, 0.0)

    @property
    def cells(self) -> Tuple[int, int]:
        """(cells_x, cells_y)."""
        return int(self.evidence.shape[1]), int(self.evidence.shape[0])

    @cached_property
    def peak(self) -> Tuple[int, int]:
        """(row, column) of the cell with the most defect evidence."""
        index = int(np.argmax(self.evidence))
        return index // self.evidence.shape[1], index % self.evidence.shape[1]

    @cached_property
    def strength(self) -> float:
        return float(self.evidence[self.peak])

    @cached_property
    def median(self) -> float:
        # statistics.median on a few dozen cells is several times faster than np.median's overhead
        return float(statistics.median(self.evidence.ravel().tolist()))

    def on_backbone_grid(self, axis: int) -> bool:
        """True when the map has the backbone's cell count along ``axis`` (0 = x, 1 = y; one cell per 32
        input pixels): only then are its cells 32-pixel squares moved by ``offset``; any other map's cells
        are spread evenly over the input."""
        return -(-self.input_size[axis] // BACKBONE_STRIDE) == self.cells[axis]

    def _edges(self, index: int, axis: int) -> Tuple[float, float]:
        """Frame-pixel span of cell ``index`` along ``axis`` (0 = x, 1 = y)."""
        size = self.input_size[axis]
        cells = self.cells[axis]
        grid = self.on_backbone_grid(axis)
        stride = BACKBONE_STRIDE if grid else size / cells
        # Squares moved to where the cells see, the first and last stretched to the input's edges: each input
        # pixel belongs to the cell whose receptive field is centred nearest to it.
        shift = self.offset[axis] if grid else 0.0
        lo = 0.0 if index == 0 else min(max(index * stride + shift, 0.0), size)
        hi = float(size) if index == cells - 1 else min(max((index + 1) * stride + shift, 0.0), size)
        origin = self.region[axis]
        scale = (self.region[axis + 2] - origin) / size
        return origin + lo * scale, origin + hi * scale

    def cell_rect(self, row: int, col: int) -> Rect:
        """A cell's area in frame pixels (x0, y0, x1, y1)."""
        x0, x1 = self._edges(col, 0)
        y0, y1 = self._edges(row, 1)
        return x0, y0, x1, y1

    def box_cells(self) -> Tuple[int, int, int, int]:
        """(row0, col0, row1, col1), inclusive: the 4-connected cells joined to the peak whose evidence is at
        least halfway from the median to the peak (every cell when the map is flat)."""
        level = self.median + 0.5 * (self.strength - self.median)
        mask = (self.evidence >= level).astype(np.uint8)
        _, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        col, row, width, height = (int(v) for v in stats[components[self.peak], :4])
        return row, col, row + height - 1, col + width - 1

    def box(self) -> Rect:
        row0, col0, row1, col1 = self.box_cells()
        x0, y0, _, _ = self.cell_rect(row0, col0)
        _, _, x1, y1 = self.cell_rect(row1, col1)
        return x0, y0, x1, y1

    def where(self) -> Where:
        """The result payload's ``where``: peak, box (x, y, width, height) and strength, in frame pixels."""
        x0, y0, x1, y1 = self.cell_rect(*self.peak)
        bx0, by0, bx1, by1 = self.box()
        left, top = int(np.floor(bx0)), int(np.floor(by0))
        return Where(
            label=self.label,
            x=int(round((x0 + x1) / 2)),
            y=int(round((y0 + y1) / 2)),
            box=[left, top, int(np.ceil(bx1)) - left, int(np.ceil(by1)) - top],
            strength=round(self.strength, 3),
        )

    def normalized(self) -> np.ndarray:
        """Evidence scaled to 0 at the map's median and 1 at the peak, clipped (zeros for a flat map)."""
        span = self.strength - self.median
        if span <= 0:
            return np.zeros_like(self.evidence, dtype=np.float32)
        return np.clip((self.evidence - self.median) / span, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=64)  # locate asks for it on every failed frame; it depends on the input size alone
def receptive_offset(size: int, mirrored: bool = False) -> float:
    """How far (model-input pixels, along an axis of ``size`` pixels) the centre of every map cell's
    receptive field lies after the centre of its 32-pixel square; ``mirrored`` for a flip view's map
    mirrored back.

    Each of MobileNetV3's five stride-2 layers pads its input (Keras: ``same`` padding for the stem,
    ``correct_pad`` before the depthwise blocks) by (k-1)/2 pixels before and after, except one pixel
    fewer before when the input's length is even: output pixel i is centred on input pixel 2i + 1 for an
    even length, 2i for an odd one. For sizes that are multiples of 32 the cell sees 15.5 pixels right of
    and below its square's centre; a mirrored view's map by as much the other way, so flip averaging
    blends maps that see 31 pixels apart (the offset of the blend is their mean).
    """
    centre, length, weight = 0.0, size, 1
    for _ in range(STRIDE_2_LAYERS):
        centre += weight * (1 - length % 2)
        length, weight = -(-length // 2), weight * 2
    cells = -(-size // BACKBONE_STRIDE)
    if mirrored:  # cell j of the mirrored-back map is the view's cell (cells - 1 - j), read from the far end
        centre = size - 1 - BACKBONE_STRIDE * (cells - 1) - centre
    return centre + 0.5 - BACKBONE_STRIDE / 2


def view_offset(input_size: Tuple[int, int], views: Sequence[Tuple[bool, bool]]) -> Tuple[float, float]:
    """The (x, y) :func:`receptive_offset` of a map averaged over flip ``views`` ((rows, columns) mirrored,
    :func:`inspector.inference.flips`)."""
    width, height = input_size
    x = [receptive_offset(width, columns) for _, columns in views]
    y = [receptive_offset(height, rows) for rows, _ in views]
    return sum(x) / len(x), sum(y) / len(y)


def input_region(spec: PreprocessSpec, frame_shape: Sequence[int]) -> Rect:
    """The frame area (x0, y0, x1, y1) that :class:`inspector.preprocess.Preprocessor` resizes into the model
    input: the region of interest, or the whole frame (``frame_shape`` is the frame's array shape)."""
    if spec.roi is not None:
        roi = spec.roi
        return float(roi.x), float(roi.y), float(roi.x + roi.width), float(roi.y + roi.height)
    return 0.0, 0.0, float(frame_shape[1]), float(frame_shape[0])


def defect_evidence(class_map: np.ndarray, good_index: int) -> Tuple[int, np.ndarray]:
    """(defect class index, its evidence per cell): the defect class with the highest logit (the cells' mean)
    and, per cell, its logit minus the good class's logit."""
    if class_map.ndim != 3 or class_map.shape[2] < 2:
        raise ValueError(f"class map must be cells_y x cells_x x classes, got shape {class_map.shape}")
    logits = class_map.sum(axis=(0, 1))  # the mean times the cell count: the same order
    logits[good_index] = -np.inf
    defect = int(np.argmax(logits))
    return defect, np.asarray(class_map[:, :, defect] - class_map[:, :, good_index], np.float32)


def locate(
    class_map: np.ndarray,
    labels: List[str],
    good_index: int,
    spec: PreprocessSpec,
    frame_shape: Sequence[int],
    window: Optional[Rect] = None,
    views: Sequence[Tuple[bool, bool]] = ((False, False),),
) -> Heatmap:
    """The :class:`Heatmap` of one frame from the model's class map (see :func:`defect_evidence`).

    ``window`` is the part of the model's region the map covers, as fractions (x0, y0, x1, y1) of it: a
    tile's, for tiled inference (``Classification.map_window``); None for the whole region. ``views`` are
    the flip views the map was averaged over (:func:`view_offset`), the plain view alone by default.
    """
    defect, evidence = defect_evidence(class_map, good_index)
    region = input_region(spec, frame_shape)
    if window is not None:
        x0, y0, x1, y1 = region
        w, h = x1 - x0, y1 - y0
        region = (x0 + window[0] * w, y0 + window[1] * h, x0 + window[2] * w, y0 + window[3] * h)
    size = (spec.width, spec.height)
    return Heatmap(labels[defect], evidence, size, region, view_offset(size, views))


def render_overlay(image: np.ndarray, heat: Heatmap, alpha: float = 0.55) -> np.ndarray:
    """The frame (RGB or gray uint8) with the defect evidence blended over the model's input region, the
    box drawn and the class and strength written: what an operator looks at beside a rejected frame.

    Colour runs from transparent (the map's median or less) to red (the peak): a flat map leaves the frame
    as it is. Returns an RGB uint8 image of the frame's size.
    """
    out = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3].copy()
    height, width = out.shape[:2]
    x0, y0, x1, y1 = heat.region
    left, top = max(int(round(x0)), 0), max(int(round(y0)), 0)
    right, bottom = min(int(round(x1)), width), min(int(round(y1)), height)
    if right > left and bottom > top:
        cells_x, cells_y = heat.cells
        in_w, in_h = heat.input_size
        # Linear between cell centres on the model input, moved to where the cells see (edge cells' values
        # carried to the border), then the same resize back to the region.
        grid = cv2.resize(
            heat.normalized(),
            (max(cells_x * BACKBONE_STRIDE, in_w), max(cells_y * BACKBONE_STRIDE, in_h)),
            interpolation=cv2.INTER_LINEAR,
        )
        dx, dy = (heat.offset[axis] if heat.on_backbone_grid(axis) else 0.0 for axis in (0, 1))
        if dx or dy:
            shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
            grid = cv2.warpAffine(grid, shift, (grid.shape[1], grid.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        grid = grid[:in_h, :in_w]
        value = cv2.resize(grid, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        value = np.clip(value, 0.0, 1.0)
        colour = cv2.applyColorMap((value * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        weight = (alpha * value)[:, :, None]
        patch = out[top:bottom, left:right].astype(np.float32)
        out[top:bottom, left:right] = np.clip(patch * (1 - weight) + colour * weight, 0, 255).astype(np.uint8)
    thickness = max(1, round(max(width, height) / 400))
    where = heat.where()
    bx, by, bw, bh = where.box
    cv2.rectangle(out, (bx, by), (bx + bw - 1, by + bh - 1), (255, 255, 255), thickness)
    cv2.drawMarker(out, (where.x, where.y), (255, 255, 255), cv2.MARKER_CROSS, 6 * thickness, thickness)
    cv2.putText(
        out,
        f"{where.label} {where.strength:+.1f}",
        (bx + 2, max(by - 4, 12 * thickness)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4 * thickness,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return out
