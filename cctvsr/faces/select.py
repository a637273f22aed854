"""Which views of a tracked face are worth super-resolving: a quality score and a best-K keeper.

The score follows the weights of InsightFace's GUI (0.28 detector score + 0.22 size + 0.22
sharpness + 0.18 frontal pose + 0.10 exposure), times the square of the share of the face inside
the frame: a face cut by the frame edge shows less of the person however sharp it is, so a view
with 80 % of the face inside scores 0.64 of the same view whole. Each part lies in [0, 1]; the
curves and their saturation points are written next to each part so that a score can be
explained to a user.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Generic, TypeVar

import cv2
import numpy as np

from cctvsr.errors import InputError

WEIGHTS = {"det_score": 0.28, "size": 0.22, "sharpness": 0.22, "frontal": 0.18, "exposure": 0.10}

SIZE_SATURATION_PX = 112.0  # the shorter box side at which `size` reaches 1 (ArcFace's 112×112 crop)
SHARPNESS_BLUR_SIGMA = 1.0  # Gaussian σ (px) applied before the Laplacian, so sensor noise is not detail
SHARPNESS_SCALE_PX = 64  # faces are reduced to this shorter side before sharpness is measured
SHARPNESS_HALF = 20.0  # Laplacian variance (grey levels²) that scores 0.5: v / (v + SHARPNESS_HALF)
EXPOSURE_PLATEAU = (70.0, 185.0)  # mean grey level range that counts as well exposed
EXPOSURE_CLIP_LEVELS = (8, 247)  # grey levels at or beyond which a pixel counts as crushed / blown
POSE_NOSE_REFERENCE = 0.5  # where a frontal nose sits: halfway between the eyes, halfway eyes→mouth


@dataclass(frozen=True)
class QualityScore:
    """How good one view of a face is, overall and per part (each in [0, 1])."""

    total: float
    det_score: float
    size: float
    sharpness: float
    frontal: float
    exposure: float
    whole: float = 1.0  # share of the face's box inside the frame


def _clip01(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _face_region(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The grey pixels inside the box (clipped to the frame), as float32."""
    h, w = frame.shape[:2]
    x1, y1 = max(int(math.floor(box[0])), 0), max(int(math.floor(box[1])), 0)
    x2, y2 = min(int(math.ceil(box[2])), w), min(int(math.ceil(box[3])), h)
    region = frame[y1:max(y1, y2), x1:max(x1, x2)]
    if region.ndim == 3 and region.shape[2] == 3 and region.size:
        region = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2GRAY)
    elif region.ndim == 3:
        region = region[..., 0]
    return region.astype(np.float32)


def size_part(box: np.ndarray) -> float:
    """Shorter box side / 112 px, capped at 1: bigger faces carry more real detail to enlarge."""
    return _clip01(min(box[2] - box[0], box[3] - box[1]) / SIZE_SATURATION_PX)


def sharpness_part(grey: np.ndarray) -> float:
    """Laplacian variance v of the smoothed face at a common scale, mapped by v / (v + 20).

    Faces whose shorter side exceeds 64 px are first reduced to 64 px (area averaging), so the
    part measures focus and motion blur rather than size, which has its own part; smaller faces
    are not enlarged. A σ = 1 px Gaussian then removes most sensor noise, which would otherwise
    pass for detail (σ = 4 noise alone gives a raw 3×3 Laplacian variance of about 320, and 0.9
    after the smoothing). Measured here: the six faces of insightface's t1.jpg at 64 px give
    v = 41–58 (score 0.67–0.74), the same blurred by σ = 2 px v = 5–7 (0.21–0.26); the
    astronaut's 64 px face 54 (0.73).
    """
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    shorter = min(grey.shape[:2])
    if shorter > SHARPNESS_SCALE_PX:
        factor = SHARPNESS_SCALE_PX / shorter
        grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    smooth = cv2.GaussianBlur(grey, (0, 0), SHARPNESS_BLUR_SIGMA)
    variance = float(cv2.Laplacian(smooth, cv2.CV_32F, ksize=1).var())
    return _clip01(variance / (variance + SHARPNESS_HALF))


def frontal_part(landmarks: np.ndarray) -> float:
    """1 for a frontal face, falling to 0 as the nose reaches an eye (yaw) or the eye/mouth line (pitch).

    Yaw: where the nose projects onto the eye segment and onto the mouth-corner segment (0.5 each
    when frontal; ArcFace's 5-point template gives 0.503 and 0.496). Pitch: how far the nose lies
    from the eye line towards the mouth line (0.5 when frontal; the template gives 0.495).
    frontal = (1 − yaw) · (1 − pitch), each term |position − 0.5| / 0.5 capped at 1. Roll is
    ignored: a tilted head still shows the whole face.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(points)):
        return 0.0
    left_eye, right_eye, nose, mouth_left, mouth_right = points

    def position_along(a: np.ndarray, b: np.ndarray) -> float | None:
        axis = b - a
        length2 = float(axis @ axis)
        return None if length2 < 1e-6 else float((nose - a) @ axis / length2)

    along_eyes = position_along(left_eye, right_eye)
    along_mouth = position_along(mouth_left, mouth_right)
    eye_mid, mouth_mid = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    down = mouth_mid - eye_mid
    down2 = float(down @ down)
    if along_eyes is None or along_mouth is None or down2 < 1e-6:
        return 0.0
    ref = POSE_NOSE_REFERENCE
    yaw = (abs(along_eyes - ref) + abs(along_mouth - ref)) / 2 / ref
    pitch = abs(float((nose - eye_mid) @ down / down2) - ref) / ref
    return _clip01(1.0 - yaw) * _clip01(1.0 - pitch)


def exposure_part(grey: np.ndarray) -> float:
    """1 when the face's mean grey level is within 70–185 and nothing is clipped.

    The mean term falls linearly from the plateau to 0 at black (0) and white (255); it is
    multiplied by (1 − 2 × the fraction of pixels ≤ 8 or ≥ 247), so half the face crushed or
    blown scores 0.
    """
    if grey.size == 0:
        return 0.0
    mean = float(grey.mean())
    low, high = EXPOSURE_PLATEAU
    mean_term = _clip01(min(mean / low, (255.0 - mean) / (255.0 - high)))
    dark, bright = EXPOSURE_CLIP_LEVELS
    clipped = float(np.count_nonzero((grey <= dark) | (grey >= bright))) / grey.size
    return mean_term * _clip01(1.0 - 2.0 * clipped)


def face_quality(
    frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, det_score: float, inside: float = 1.0
) -> QualityScore:
    """Score one detected face in an (H, W, 3) uint8 RGB frame; higher is a better view to enlarge.
    `inside`: the share of the face's box within the frame (`FaceDetections.inside`)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    grey = _face_region(frame, box)
    parts = {
        "det_score": _clip01(float(det_score)) if math.isfinite(det_score) else 0.0,
        "size": size_part(box),
        "sharpness": sharpness_part(grey),
        "frontal": frontal_part(landmarks),
        "exposure": exposure_part(grey),
    }
    whole = _clip01(inside) if math.isfinite(inside) else 0.0
    total = _clip01(sum(WEIGHTS[name] * value for name, value in parts.items()) * whole**2)
    return QualityScore(total=total, **parts, whole=whole)


T = TypeVar("T")


class BestFaces(Generic[T]):
    """Keeps the best K candidates per track while the video streams: a track's faces are released when the track ends.

    Memory is bounded by K × the number of open tracks: each track holds a min-heap whose root
    is its worst kept candidate, replaced when a better one arrives. Ties in quality go to the
    earlier frame.
    """

    def __init__(self, k: int | None) -> None:
        """`k` best views per track; None keeps every face (--all-frames) and releases each at once."""
        if k is not None and k < 1:
            raise InputError(f"the number of best faces per track must be at least 1, got {k}")
        self.k = k
        self._heaps: dict[int, list[tuple[float, int, int, T]]] = {}
        self._open: set[int] = set()
        self._tiebreak = itertools.count()

    def add(self, track_id: int, frame_index: int, quality: float, item: T) -> list[T]:
        """Offer one candidate; returns the items that can be released now (all-frames mode), else []."""
        self._open.add(track_id)
        if self.k is None:
            return [item]
        heap = self._heaps.setdefault(track_id, [])
        # Heap order = worst first: lower quality, then later frame (-frame_index smaller).
        entry = (float(quality), -int(frame_index), -next(self._tiebreak), item)
        if len(heap) < self.k:
            heapq.heappush(heap, entry)
        elif entry[:3] > heap[0][:3]:
            heapq.heapreplace(heap, entry)
        return []

    def finish(self, track_id: int) -> list[T]:
        """The kept items of an ended track, best first (empty for an unknown track or all-frames mode)."""
        self._open.discard(track_id)
        heap = self._heaps.pop(track_id, [])
        return [entry[3] for entry in sorted(heap, key=lambda e: e[:3], reverse=True)]

    def finish_all(self) -> dict[int, list[T]]:
        """At the end of the video: every open track's kept items, best first."""
        return {track_id: self.finish(track_id) for track_id in sorted(self._open)}

    def open_tracks(self) -> set[int]:
        return set(self._open)
