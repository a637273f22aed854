"""Pixel-grid conventions shared by registration and reconstruction, written down once.

A low-resolution (LR) pixel q of a crop covers GRID × GRID pixels of its ×GRID grid; its centre
sits at u = GRID·q + (GRID − 1)/2 there, exactly as a GRID× box downsample (or cv2 INTER_AREA /
INTER_CUBIC resizes) places it. Keeping this in one place is what makes a sub-pixel registration
mean the same thing to the warp, the forward model and the benchmark.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = 4  # the reconstruction grid (and the registration's upsampling) per LR pixel
OFFSET = (GRID - 1) / 2.0


def lr_to_hr(p: np.ndarray) -> np.ndarray:
    return GRID * p + OFFSET


def hr_to_lr(u: np.ndarray) -> np.ndarray:
    return (u - OFFSET) / GRID


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as float32 in [0, 255]: the channel registration and the MAP solve work on."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def rgb_to_ycc(rgb: np.ndarray) -> np.ndarray:
    """Float YCrCb (OpenCV's full-range BT.601), so chroma can be handled apart from luma."""
    return cv2.cvtColor(np.asarray(rgb, dtype=np.float32) / 255.0, cv2.COLOR_RGB2YCrCb) * 255.0


def ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(np.asarray(ycc, dtype=np.float32) / 255.0, cv2.COLOR_YCrCb2RGB) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def hr_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel centre of an h × w grid, float32."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def apply_affine(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (m[0, 0] * x + m[0, 1] * y + m[0, 2]).astype(np.float32), (m[1, 0] * x + m[1, 1] * y + m[1, 2]).astype(np.float32)


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))
