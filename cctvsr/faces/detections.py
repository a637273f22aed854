"""The plain data every face stage passes along: parallel numpy arrays, one row per face."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from cctvsr.errors import InputError


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one frame, in that frame's pixel coordinates."""

    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32 in [0, 1]
    landmarks: np.ndarray  # (N, 5, 2) float32: left eye, right eye, nose, mouth left, mouth right (x, y)
    inside: np.ndarray | None = None  # (N,) float32: share of the face's box inside the frame (1 = whole)
    too_small: int = 0  # faces found but dropped for being under the detector's min_face
    track_ids: np.ndarray | None = None  # (N,) int64 once tracked (FaceTracker.track): -1 = no confirmed track yet

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.inside is None:
            object.__setattr__(self, "inside", np.ones(n, np.float32))
        if (
            self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.landmarks.shape != (n, 5, 2)
            or self.inside.shape != (n,) or (self.track_ids is not None and self.track_ids.shape != (n,))
        ):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"landmarks {self.landmarks.shape}, inside {self.inside.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def take(self, index: np.ndarray) -> FaceDetections:
        """The rows selected by a boolean mask or an index array."""
        track_ids = None if self.track_ids is None else self.track_ids[index]
        return FaceDetections(self.boxes[index], self.scores[index], self.landmarks[index], self.inside[index], track_ids=track_ids)


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB frame."""

    name: str  # e.g. "centerface@1,2", "mtcnn", "insightface:buffalo_l/det_10g"
    min_face: int  # smallest face side kept, in frame pixels

    def detect(self, frame: np.ndarray) -> FaceDetections:
        """Faces in an (H, W, 3) uint8 RGB frame."""
        ...


# Shared by every backend: the same NMS, the same checks and the same final clean-up.


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, mode: str = "iou") -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first.

    mode "iou" divides the overlap by the union (OpenCV's NMS; scores must be positive); "min" by
    the smaller box, which also removes a box lying inside a better one (MTCNN's last stage).
    """
    if mode not in ("iou", "min"):
        raise ValueError(f"unknown NMS mode {mode!r}")
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(np.float64)
    if mode == "iou":
        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        return np.asarray(cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, threshold), np.int64).reshape(-1)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        inter = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0) * np.maximum(
            np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0
        )
        overlap = inter / np.maximum(np.minimum(areas[i], areas[rest]), 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    return frame


def check_detector_options(min_face: int, threshold: float | None) -> None:
    if min_face < 1:
        raise InputError(f"minimum face size must be at least 1 pixel, got {min_face}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InputError(f"detection threshold must be between 0 and 1, got {threshold}")


FACE_ASPECT = 0.75  # width / height of a whole face's box: t1.jpg's six faces give 0.70–0.86 (CenterFace), 0.72–0.85 (MTCNN)
_EDGE_PX = 1.0


def _share_seen(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """For a box touching the frame edge, how much of the face it likely shows: detectors often
    shrink a cut face's box to its visible part, so the cut shows in the box's aspect instead
    (too narrow when cut at the left or right, too flat when cut at the top or bottom)."""
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    aspect = bw / bh
    sides = (boxes[:, 0] <= _EDGE_PX) | (boxes[:, 2] >= w - _EDGE_PX)
    ends = (boxes[:, 1] <= _EDGE_PX) | (boxes[:, 3] >= h - _EDGE_PX)
    seen = np.ones(len(boxes), np.float32)
    seen = np.where(sides, np.minimum(seen, aspect / FACE_ASPECT), seen)
    return np.where(ends, np.minimum(seen, FACE_ASPECT / aspect), seen)


def finish_detections(
    boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, frame_shape: tuple[int, ...], min_face: int
) -> FaceDetections:
    """Clip to the frame, drop faces under `min_face`, sort by score: the same for every backend.
    What share of each box the clipping kept is recorded, so a face cut by the frame edge can lose
    to a whole view of it."""
    h, w = frame_shape[:2]
    raw = boxes.astype(np.float32, copy=True)
    boxes = raw.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    raw_area = np.maximum(raw[:, 2] - raw[:, 0], 0) * np.maximum(raw[:, 3] - raw[:, 1], 0)
    inside = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / np.maximum(raw_area, 1e-6)
    inside = np.minimum(inside, _share_seen(boxes, w, h))
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = np.flatnonzero(side >= min_face)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return FaceDetections(
        boxes[keep],
        scores[keep].astype(np.float32),
        landmarks[keep].astype(np.float32).reshape(-1, 5, 2),
        np.clip(inside[keep], 0.0, 1.0).astype(np.float32),
        int(np.count_nonzero(side < min_face)),
    )
