"""The one place where an image or camera frame becomes a model input.

Training, calibration, evaluation and the edge runtime all call :meth:`Preprocessor.prepare` with the
:class:`PreprocessSpec` stored in the model bundle, so the device feeds the model exactly the pixels
training fed it: same region of interest, same resize and interpolation, same channel order.

The model itself normalises pixels (Keras' own preprocessing layer sits inside the network), so the
input here is raw 0-255 ``uint8``; a float model receives the same values as float32.

Example:
    >>> import numpy as np
    >>> spec = PreprocessSpec(width=64, height=48)
    >>> Preprocessor(spec).prepare(np.zeros((480, 640, 3), np.uint8)).shape
    (48, 64, 3)
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable, Optional

import cv2
import numpy as np
from pydantic import Field, model_validator

from inspector.config import StrictModel


class ChannelOrder(str, Enum):
    """Channel order of an image array: files load as RGB, OpenCV cameras deliver BGR."""

    RGB = "rgb"
    BGR = "bgr"


class Interpolation(str, Enum):
    """Resize interpolation; fixed per bundle because the choice changes the pixels the model sees."""

    AREA = "area"
    LINEAR = "linear"
    NEAREST = "nearest"
    CUBIC = "cubic"


_CV_INTERPOLATION = {
    Interpolation.AREA: cv2.INTER_AREA,
    Interpolation.LINEAR: cv2.INTER_LINEAR,
    Interpolation.NEAREST: cv2.INTER_NEAREST,
    Interpolation.CUBIC: cv2.INTER_CUBIC,
}


class Roi(StrictModel):
    """Region of interest in source-image pixels: the part of the frame that holds the part."""

    x: int = Field(ge=0, description="Left edge in pixels")
    y: int = Field(ge=0, description="Top edge in pixels")
    width: int = Field(gt=0, description="Width in pixels")
    height: int = Field(gt=0, description="Height in pixels")


class PreprocessSpec(StrictModel):
    """How a frame becomes a model input; stored in every bundle manifest."""

    width: int = Field(gt=0, description="Model input width in pixels")
    height: int = Field(gt=0, description="Model input height in pixels")
    channel_order: ChannelOrder = Field(ChannelOrder.RGB, description="Channel order the model expects")
    interpolation: Interpolation = Field(Interpolation.AREA, description="OpenCV resize interpolation")
    roi: Optional[Roi] = Field(None, description="Crop applied before resizing (camera coordinates)")
    grayscale: bool = Field(
        False, description="Collapse to luminance and replicate to 3 channels (for monochrome lines)"
    )

    @model_validator(mode="after")
    def _sane_size(self) -> PreprocessSpec:
        if self.width > 4096 or self.height > 4096:
            raise ValueError("model input larger than 4096 px is not supported")
        return self


class Preprocessor:
    """Applies a :class:`PreprocessSpec`; cheap to build, safe to share between threads."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self._interp = _CV_INTERPOLATION[spec.interpolation]

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Cut the region of interest; a ROI outside the frame is an error, never a silent empty crop."""
        roi = self.spec.roi
        if roi is None:
            return image
        h, w = image.shape[:2]
        if roi.x + roi.width > w or roi.y + roi.height > h:
            raise ValueError(
                f"region of interest x={roi.x} y={roi.y} {roi.width}x{roi.height} does not fit in a {w}x{h} frame"
            )
        return image[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]

    def prepare(self, image: np.ndarray, order: ChannelOrder | str = ChannelOrder.RGB) -> np.ndarray:
        """Turn an HxW(x1/3/4) uint8 image in channel ``order`` into the HxWx3 uint8 model input."""
        order = ChannelOrder(order)
        if image.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {image.dtype}")
        image = self.crop(image)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        size = (self.spec.width, self.spec.height)
        if image.shape[1] != size[0] or image.shape[0] != size[1]:
            image = cv2.resize(image, size, interpolation=self._interp)
        if image.ndim == 2 or image.shape[2] == 1:
            return np.ascontiguousarray(np.repeat(image.reshape(size[1], size[0], 1), 3, axis=2))
        if self.spec.grayscale:
            code = cv2.COLOR_RGB2GRAY if order == ChannelOrder.RGB else cv2.COLOR_BGR2GRAY
            return cv2.cvtColor(cv2.cvtColor(image, code), cv2.COLOR_GRAY2RGB)
        if order != self.spec.channel_order:  # one pass into a new array, the bytes of image[:, :, ::-1]
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(image)

    def prepare_batch(self, images: Iterable[np.ndarray], order: ChannelOrder | str = ChannelOrder.RGB) -> np.ndarray:
        """Stack :meth:`prepare` over several images into an NxHxWx3 uint8 array."""
        prepared = [self.prepare(image, order) for image in images]
        if not prepared:
            return np.zeros((0, self.spec.height, self.spec.width, 3), np.uint8)
        return np.stack(prepared)
