"""Image grids with captions: the parts a person has to look at, as the model saw them, with their names.

Every report shows its wrong decisions the same way: escapes (defects passed automatically) first, since
they reach the customer, then false rejects (good parts failed), then other mistakes. Each tile is the
region of interest the model was fed (not the whole frame: a defect is a few pixels of it), captioned with
the image's file name relative to the data folder (or the part id on a line), so the file can be found and
relabelled, and the truth, the decision and the score. A tile may carry a second image, the class-activation
heatmap overlay of :mod:`inspector.localization` (:func:`render_heatmap`, :func:`heatmap_overlay` for a
bundle), shown beside the crop.

Images are embedded in the page as PNG (``data:`` URLs), so a report stands alone when mailed or moved.
Small crops are scaled up in the browser without smoothing, so pixels stay pixels.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import numpy.typing as npt
from markupsafe import Markup

from inspector.decision import DecisionPolicy
from inspector.operating_point import outcomes
from inspector.preprocess import ChannelOrder, Preprocessor, PreprocessSpec
from inspector.reporting.page import Block, paragraph, rate

if TYPE_CHECKING:
    from inspector.inference import Classifier
    from inspector.localization import Rect

TILE_HEIGHT = 128  # pixels a tile's image is shown at (scaled up or down in the browser)
LIMIT = 24  # tiles per grid unless a report asks for another number
OVERLAY_SIDE = 256  # a model input's heatmap is drawn at least this wide (its text stays small)


@dataclass(frozen=True)
class Tile:
    """One image of a grid: the crop, the name a person searches for, caption lines, an optional overlay."""

    image: np.ndarray  # RGB (or gray) uint8
    name: str  # file name relative to the data folder, or the part id
    lines: Tuple[str, ...] = ()  # e.g. "crack -> passed", "score 0.12"
    overlay: Optional[np.ndarray] = None  # heatmap over the same crop, shown beside it


def png_data_url(image: np.ndarray) -> str:
    """An RGB or gray uint8 image as a ``data:image/png`` URL."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {pixels.shape} as PNG")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def _img(image: np.ndarray, alt: str, height: int) -> Markup:
    h, w = image.shape[:2]
    width = max(1, round(w * height / max(h, 1)))
    return Markup('<img src="{}" alt="{}" width="{}" height="{}">').format(png_data_url(image), alt, width, height)


def image_grid(tiles: Sequence[Tile], *, height: int = TILE_HEIGHT, empty: str = "none") -> Markup:
    """The tiles side by side, wrapping; ``empty`` is said when there is none."""
    if not tiles:
        return Markup("<p class='grid-empty'>{}</p>").format(empty)
    figures = []
    for tile in tiles:
        images = _img(tile.image, tile.name, height)
        if tile.overlay is not None:
            images += _img(tile.overlay, f"{tile.name} heatmap", height)
        caption = Markup("<br>").join([Markup("<code class='name'>{}</code>").format(tile.name), *tile.lines])
        figures.append(Markup("<figure class='tile'>{}<figcaption>{}</figcaption></figure>").format(images, caption))
    return Markup("<div class='grid'>{}</div>").format(Markup("").join(figures))


def render_heatmap(
    image: np.ndarray,
    class_map: np.ndarray,
    labels: Sequence[str],
    good_index: int,
    spec: Optional[PreprocessSpec] = None,
    window: Optional[Rect] = None,
    views: Sequence[Tuple[bool, bool]] = ((False, False),),
) -> np.ndarray:
    """A model's class map (:mod:`inspector.localization`) drawn over an RGB ``image``: a frame the bundle's
    ``spec`` prepares (the overlay is cut to its region of interest, like the crop beside it; ``window`` is
    the deciding tile's, ``Classification.map_window``), or without ``spec`` the model input itself, drawn
    at least :data:`OVERLAY_SIDE` pixels wide so that the class and strength written on it stay small next
    to the part; ``views`` are the flip views the map was averaged over (``Classifier.views``)."""
    from inspector.localization import locate, render_overlay

    if spec is not None:
        heat = locate(class_map, list(labels), good_index, spec, image.shape, window, views)
        return Preprocessor(spec).crop(render_overlay(image, heat))
    h, w = image.shape[:2]
    scale = max(1, -(-OVERLAY_SIDE // max(h, w)))
    larger = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)  # nearest neighbour: pixels stay pixels
    heat = locate(class_map, list(labels), good_index, PreprocessSpec(width=w, height=h), larger.shape, None, views)
    return render_overlay(larger, heat)


def heatmap_overlay(classifier: Classifier, image: np.ndarray, *, model_input: bool = False) -> Optional[np.ndarray]:
    """:func:`render_heatmap` of a bundle's class map for an RGB ``image`` (a camera frame or an image file,
    or with ``model_input`` an already prepared model input); None for a bundle without the map.

    The map is the one the station locates (``Classifier.classify``): with flip averaging the views' maps
    mirrored back and averaged, with tiles the deciding tile's, placed in its window of the region. Tiles
    are cut from the frame, so a tiled bundle needs the frame, not a ``model_input``.
    """
    if not classifier.runner.has_class_map:
        return None
    spec = classifier.preprocessor.spec
    if model_input:
        if classifier.tiled:
            raise ValueError("this bundle scores tiles of the frame: draw its heatmap over the frame")
        whole = Preprocessor(spec.model_copy(update={"roi": None}))  # a model input is already the region
        c = classifier.classify_prepared(whole.prepare(image, ChannelOrder.RGB))
    else:
        c = classifier.classify(image, ChannelOrder.RGB)
    if c.class_map is None:
        return None
    frame_spec = None if model_input else spec
    return render_heatmap(
        image, c.class_map, classifier.labels, classifier.good_index, frame_spec, c.map_window, classifier.views
    )


@dataclass(frozen=True)
class Mistakes:
    """Indices of the wrong pass/fail decisions, worst first: escapes by rising score (the most confidently
    passed defect first), false rejects by falling score."""

    escapes: List[int]
    false_rejects: List[int]
    defects: int
    goods: int


def pass_fail_mistakes(scores: npt.ArrayLike, is_defect: npt.ArrayLike, policy: DecisionPolicy) -> Mistakes:
    """Escapes (defects below the review band or threshold) and false rejects (good parts at or above it)."""
    values, defect = np.asarray(scores, np.float64), np.asarray(is_defect, bool)
    passed, failed = outcomes(values, policy)
    escapes = np.flatnonzero(passed & defect)
    false_rejects = np.flatnonzero(failed & ~defect)
    return Mistakes(
        escapes[np.argsort(values[escapes], kind="mergesort")].tolist(),
        false_rejects[np.argsort(-values[false_rejects], kind="mergesort")].tolist(),
        int(defect.sum()),
        int((~defect).sum()),
    )


def mistake_grids(
    mistakes: Mistakes,
    tile: Callable[[int], Tile],
    *,
    what: str = "test split",
    limit: int = LIMIT,
) -> List[Block]:
    """A heading line and a grid for the escapes, then for the false rejects; ``tile(i)`` builds the tile
    of index ``i`` (only the shown ones are built, so a report loads at most ``limit`` images per grid)."""
    blocks: List[Block] = []
    for title, indices, total, cls in (
        ("Escapes (defects passed automatically)", mistakes.escapes, mistakes.defects, "fail"),
        ("False rejects (good parts failed)", mistakes.false_rejects, mistakes.goods, ""),
    ):
        shown = indices[:limit]
        more = f"; the first {len(shown)} shown" if len(shown) < len(indices) else ""
        blocks.append(paragraph(f"{title}, {what}: {rate(len(indices), total)}{more}.", cls if indices else ""))
        blocks.append(image_grid([tile(i) for i in shown]))
    return blocks
