"""ArcFace cosine similarity, when an InsightFace recognition model is on disk.

The packs' recognition networks are non-commercial research weights, so cctvsr never fetches
them; a user who has unzipped a pack into `~/.insightface/models` (or `$INSIGHTFACE_HOME`) gets
this second identity opinion beside dlib's. As with dlib, the five landmarks are found once on the
HR face and reused for every image compared with it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from cctvsr.errors import WeightsError
from cctvsr.faces.detect import create_detector, insightface_root
from cctvsr.registry import pack_files

# Recognition network per pack (the registry's arcface-<pack> cards).
PACK_RECOGNISERS = pack_files("identity")
# Where ArcFace's training aligned the eyes, nose tip and mouth corners in its 112×112 input.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
FACE_IN_CROP = 1 / 1.5  # the face box's share of a crop made with a 0.25 margin per side (train.data)


def recogniser_path(root: Path | None = None) -> Path | None:
    """The first pack's recognition model found on disk, or None."""
    models = insightface_root(root) / "models"
    for pack, filename in PACK_RECOGNISERS.items():
        for candidate in (models / pack / filename, models / pack / pack / filename):
            if candidate.is_file():
                return candidate
    return None


def unavailable_reason(root: Path | None = None) -> str | None:
    if recogniser_path(root) is None:
        return f"no InsightFace recognition model in {insightface_root(root) / 'models'} (non-commercial weights, not fetched)"
    return None


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform taking the 5 landmarks closest to ArcFace's template."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), TEMPLATE_112, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("landmarks do not define a similarity transform")
    return matrix


def align(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112×112 crop ArcFace expects."""
    return cv2.warpAffine(rgb, alignment_matrix(landmarks), (112, 112), borderValue=0.0)


def expected_landmarks(shape: tuple[int, ...]) -> np.ndarray:
    """The template placed in the face box a finetune-style crop is expected to hold (no face found)."""
    h, w = shape[:2]
    side_w, side_h = w * FACE_IN_CROP, h * FACE_IN_CROP
    return TEMPLATE_112 / 112.0 * [side_w, side_h] + [(w - side_w) / 2, (h - side_h) / 2]


class ArcFace:
    """Embeddings of aligned faces; cosine similarity near 1 means the same person."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        path = path or recogniser_path()
        if path is None:
            raise WeightsError(f"ArcFace: {unavailable_reason()}")
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own unrelated types
            raise WeightsError(f"{path}: not a usable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        self._input = self._session.get_inputs()[0].name
        self._detector = None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray:
        """5 landmarks of the largest face the enhance detector finds, else the expected ones."""
        if self._detector is None:
            self._detector, _ = create_detector("auto", min_face=20, scales=(1.0,))
        found = self._detector.detect(rgb)
        if len(found) == 0:
            return expected_landmarks(rgb.shape)
        areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
        return found.landmarks[int(np.argmax(areas))]

    def embedding(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        face = align(rgb, landmarks).astype(np.float32)
        blob = ((face - 127.5) / 127.5).transpose(2, 0, 1)[None]  # RGB, as InsightFace feeds it
        vector = np.asarray(self._session.run(None, {self._input: blob})[0], np.float64).reshape(-1)
        return vector / (np.linalg.norm(vector) + 1e-12)


@lru_cache(maxsize=1)
def arcface() -> ArcFace:
    return ArcFace()
