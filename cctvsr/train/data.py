"""Training pairs: high-quality faces, degraded on the fly with a site's `DegradationPool`.

Every pair is a pure function of (seed, iteration, index in the batch): its RNG is seeded by that
triple, so a resumed run draws exactly the pairs the uninterrupted run would have, whichever
DataLoader worker builds them and in whatever order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cctvsr.degrade.pool import DegradationPool
from cctvsr.errors import InputError
from cctvsr.faces.crop import crop_face
from cctvsr.faces.detections import FaceDetector
from cctvsr.images import IMAGE_SUFFIXES, read_image

MIN_FACE = 128  # HR px: the short side of a usable face (the default LR patch 32 × 4)
AUGMENT_SCALES = (0.75, 0.5, 0.25)  # the paper's bicubic downscaled copies
DETECT_MAX_SIDE = 640  # portraits are shrunk to this for detection only; crops come from the original
FACE_MARGIN = 0.25  # of the face box per side: the hair line and chin stay in the crop
MIN_FACES = 3  # at least two to train on and one to validate with
VALIDATION_STREAM = 2**48  # the "iteration" of validation pairs' RNG: beyond any training iteration


@dataclass
class HrFaces:
    """The usable faces of `--hr-dir`, and counts of what was left out and why."""

    faces: list[np.ndarray]  # RGB uint8, short side >= min_size
    sources: list[str]  # the file each face came from (the split keeps a file's faces together)
    images: int = 0
    too_small: int = 0
    unreadable: int = 0
    without_face: int = 0
    notes: list[str] = field(default_factory=list)  # why each unreadable file was skipped

    def describe(self) -> str:
        return (
            f"{len(self.faces)} faces from {self.images} images ({self.too_small} under the minimum size, "
            f"{self.without_face} images without a face, {self.unreadable} unreadable)"
        )


def _image_files(hr_dir: Path) -> list[Path]:
    if not hr_dir.is_dir():
        raise InputError(f"{hr_dir}: --hr-dir is not a folder")
    return sorted(p for p in hr_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _detected_faces(rgb: np.ndarray, detector: FaceDetector) -> list[np.ndarray]:
    scale = min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    found = detector.detect(small)
    return [crop_face(rgb, box / scale, FACE_MARGIN).image for box in found.boxes]


def load_hr_faces(hr_dir: Path, detector: FaceDetector | None, min_size: int = MIN_FACE) -> HrFaces:
    """Faces from every image under `hr_dir`: detected and cropped when a detector is given,
    else each image is taken as one face. Faces whose short side is under `min_size` are counted
    and skipped."""
    result = HrFaces(faces=[], sources=[])
    for path in _image_files(hr_dir):
        result.images += 1
        try:
            rgb = read_image(path).rgb
        except InputError as exc:
            result.unreadable += 1
            result.notes.append(str(exc))
            continue
        crops = _detected_faces(rgb, detector) if detector is not None else [rgb]
        if not crops:
            result.without_face += 1
        for crop in crops:
            if min(crop.shape[:2]) < min_size:
                result.too_small += 1
                continue
            result.faces.append(np.ascontiguousarray(crop))
            result.sources.append(str(path.relative_to(hr_dir)))
    return result


def split_faces(found: HrFaces, val_fraction: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, validation), split by source file so one photo's faces never sit on both sides."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if len(found.faces) < MIN_FACES:
        raise InputError(f"too few usable faces to fine-tune: {found.describe()}; need at least {MIN_FACES}")
    files = sorted(set(found.sources))
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = min(max(1, round(val_fraction * len(files))), len(files) - 1)
    val_files = {files[i] for i in order[:n_val]}
    train = [face for face, src in zip(found.faces, found.sources) if src not in val_files]
    val = [face for face, src in zip(found.faces, found.sources) if src in val_files]
    if len(train) < MIN_FACES - 1:
        raise InputError(f"too few faces left to train on after the validation split: {found.describe()}")
    return train, val


def augment(faces: list[np.ndarray], hr_patch: int) -> list[np.ndarray]:
    """Each face plus its bicubic downscaled copies (75/50/25 %) that still hold an HR patch."""
    out: list[np.ndarray] = []
    for face in faces:
        out.append(face)
        for scale in AUGMENT_SCALES:
            h, w = (round(s * scale) for s in face.shape[:2])
            if min(h, w) >= hr_patch:
                out.append(cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


def pair_rng(seed: int, iteration: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, iteration, index])


@dataclass(frozen=True)
class TrainingPair:
    lr: np.ndarray  # (lr_patch, lr_patch, 3) uint8
    hr: np.ndarray  # (4·lr_patch, 4·lr_patch, 3) uint8
    kernel_index: int  # the pool kernel that made lr from hr


class PairDataset(Dataset):
    """Item k is pair (k // batch_size, k % batch_size): iteration and place in the batch."""

    def __init__(self, faces: list[np.ndarray], pool: DegradationPool, lr_patch: int, batch_size: int, seed: int) -> None:
        self.hr_patch = lr_patch * pool.scale
        usable = [f for f in faces if min(f.shape[:2]) >= self.hr_patch]
        if not usable:
            raise InputError(f"no face holds an HR patch of {self.hr_patch} px (--lr-patch {lr_patch})")
        self.faces, self.pool, self.batch_size, self.seed = usable, pool, batch_size, seed

    def __len__(self) -> int:  # items are addressed by the sampler, not enumerated
        return 2**62

    def pair(self, iteration: int, index: int) -> TrainingPair:
        rng = pair_rng(self.seed, iteration, index)
        face = self.faces[int(rng.integers(len(self.faces)))]
        p = self.hr_patch
        top = int(rng.integers(face.shape[0] - p + 1))
        left = int(rng.integers(face.shape[1] - p + 1))
        hr = face[top : top + p, left : left + p]
        if rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        degraded = self.pool.degrade(hr, rng)
        return TrainingPair(lr=degraded.lr, hr=hr, kernel_index=degraded.kernel_index)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pair(k // self.batch_size, k % self.batch_size)
        return to_tensor(pair.lr), to_tensor(pair.hr)


class IterationSampler(Sampler[int]):
    """Item numbers for iterations [start, stop): a resumed run starts where it stopped."""

    def __init__(self, start: int, stop: int, batch_size: int) -> None:
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start * self.batch_size, self.stop * self.batch_size))

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch_size


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float CHW in [0, 1] -> uint8 HWC RGB, rounded."""
    array = tensor.detach().float().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(array)


def centred_square(face: np.ndarray, size: int) -> np.ndarray:
    """The face's centred square, shrunk (INTER_AREA) to size × size: a fixed-size ground truth."""
    side = min(face.shape[:2])
    top, left = (face.shape[0] - side) // 2, (face.shape[1] - side) // 2
    square = face[top : top + side, left : left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA) if side != size else square.copy()


def validation_pairs(faces: list[np.ndarray], pool: DegradationPool, lr_patch: int, seed: int) -> list[TrainingPair]:
    """Each validation face's centred square, shrunk (INTER_AREA) to the HR patch and degraded with
    a fixed seed: the same pairs at every validation, in every run with that seed."""
    p = lr_patch * pool.scale
    pairs = []
    for i, face in enumerate(faces):
        hr = centred_square(face, p)
        degraded = pool.degrade(hr, pair_rng(seed, VALIDATION_STREAM, i))
        pairs.append(TrainingPair(lr=degraded.lr, hr=hr, kernel_index=degraded.kernel_index))
    return pairs

