"""The plain data every face stage passes along: parallel numpy arrays, one row per face."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one frame, in that frame's pixel coordinates."""

    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32 in [0, 1]
    landmarks: np.ndarray  # (N, 5, 2) float32: left eye, right eye, nose, mouth left, mouth right (x, y)

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, landmarks {self.landmarks.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def take(self, index: np.ndarray) -> FaceDetections:
        """The rows selected by a boolean mask or an index array."""
        return FaceDetections(self.boxes[index], self.scores[index], self.landmarks[index])


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB frame."""

    name: str  # e.g. "mtcnn", "insightface:buffalo_l/det_10g"

    def detect(self, frame: np.ndarray) -> FaceDetections:
        """Faces in an (H, W, 3) uint8 RGB frame."""
        ...
