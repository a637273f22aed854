"""Face crops at the size the camera gave them: expanded by a margin, clipped, never resized.

The paper's point is super-resolving faces of any size, so a crop is the frame's own pixels: no
resizing to a fixed input and no padding. Where the frame edge cuts the expanded box the crop is
simply smaller, and `clipped` says which sides were cut so that later stages and the report can
tell a face at the image border from a whole one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cctvsr.errors import InputError

SIDES = ("left", "top", "right", "bottom")


@dataclass(frozen=True)
class FaceCrop:
    """A region of one frame around one face, in that frame's pixels."""

    image: np.ndarray  # (h, w, 3) uint8 RGB: a copy of frame[y1:y2, x1:x2], never resized or padded
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels (after expansion and clipping)
    clipped: tuple[str, ...]  # sides cut by the frame edge, in the order of SIDES


def _outward(value: float, to_int: Callable[[float], int]) -> int:
    # Snap away float noise first, so that an edge at 5.9999999 is taken as 6, not 5.
    return to_int(round(value, 6))


def crop_face(frame: np.ndarray, face_box: np.ndarray, margin: float = 0.4) -> FaceCrop:
    """Crop `face_box` (x1, y1, x2, y2) grown by `margin` × its width/height on each side.

    The grown box is rounded outward to whole pixels and clipped to the frame. The pixels are
    copied so that a kept crop does not hold the whole decoded frame in memory.
    """
    if frame.ndim < 2:
        raise InputError(f"a frame must be an image array, got shape {frame.shape}")
    if not math.isfinite(margin) or margin < 0:
        raise InputError(f"the crop margin must be a number >= 0, got {margin}")
    box = np.asarray(face_box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise InputError(f"a face box must be 4 finite numbers x1, y1, x2, y2, got {face_box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    if width <= 0 or height <= 0:
        raise InputError(f"face box {x1:g},{y1:g},{x2:g},{y2:g} has no area")

    frame_h, frame_w = frame.shape[:2]
    grown = (
        _outward(x1 - margin * width, math.floor),
        _outward(y1 - margin * height, math.floor),
        _outward(x2 + margin * width, math.ceil),
        _outward(y2 + margin * height, math.ceil),
    )
    cut = (grown[0] < 0, grown[1] < 0, grown[2] > frame_w, grown[3] > frame_h)
    cx1, cy1 = max(grown[0], 0), max(grown[1], 0)
    cx2, cy2 = min(grown[2], frame_w), min(grown[3], frame_h)
    if cx2 <= cx1 or cy2 <= cy1:
        raise InputError(
            f"face box {x1:g},{y1:g},{x2:g},{y2:g} leaves 0 pixels inside the {frame_w}×{frame_h} frame"
        )
    return FaceCrop(
        image=frame[cy1:cy2, cx1:cx2].copy(),
        box=(cx1, cy1, cx2, cy2),
        clipped=tuple(side for side, was_cut in zip(SIDES, cut, strict=True) if was_cut),
    )
