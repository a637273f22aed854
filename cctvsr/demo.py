"""The embedded demo input: a real photo that an installed package ships, made small.

`skimage.data.astronaut()` (public domain, NASA) reduced ×4 with area averaging gives a 128×128
input whose ground truth is known, so the demo can report how close the ×4 result comes to it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data

from cctvsr.images import write_png

DEMO_NAME = "astronaut-128.png"


def demo_ground_truth() -> np.ndarray:
    return skimage.data.astronaut()


def write_demo_input(folder: Path) -> Path:
    """Write the 128×128 demo input into `folder` and return its path."""
    truth = demo_ground_truth()
    small = cv2.resize(truth, (truth.shape[1] // 4, truth.shape[0] // 4), interpolation=cv2.INTER_AREA)
    path = folder / DEMO_NAME
    write_png(path, small)
    return path
