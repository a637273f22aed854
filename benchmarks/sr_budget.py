"""SR budget: the face size above which ×4 super-resolution no longer brings a face closer to its
person than bicubic does (issue 17, the figure behind `--sr-max-face`).

Why this script exists: the generator costs seconds per large face on a CPU, and a large face may
not need it. Whether it does is a question about identity, so it is measured with the identity
metric `cctvsr evaluate` uses (dlib's descriptor, `cctvsr.evaluate.identity`), on the real photos
of /work/shared/data/faces_hq (SOURCES.md there), at a range of LR face sizes.

Protocol, per photo:
* the face: the largest box the detector `cctvsr evaluate` builds (`create_detector("auto")`, one
  scale) finds on the photo shrunk to ≤ 640 px; L = the longer side of that box in photo pixels;
* the HR reference: dlib's 5 landmarks and descriptor, found once on the full-resolution face crop
  (`FaceIdentity.reference`); a photo where dlib's HOG finds no face there, or finds another face,
  is left out (counted). The landmarks are mapped into each output's pixels, so bicubic and SR are
  judged on the face they drew, as identity.py does — but against the full-resolution face rather
  than an HR crop at 4× the LR size (refinement: at 16–32 px LR that crop is itself only
  64–128 px, too small to stand for the person);
* for each LR size s (longer side of the face box in the LR frame): the camera frame is the photo
  around the face (face box + 0.8·L per side + blur support, clipped to the photo), blurred with a
  Gaussian σ = 0.4·f HR px (f = L / s), shrunk with INTER_AREA by f, given Gaussian sensor noise
  σ 3 grey levels per channel and JPEG quality 60 (`jpeg_roundtrip`), seeded per (photo, size).
  `evaluate`'s own protocols (`paper`, `pool`) only degrade by exactly ×4, so they do not fit
  arbitrary face sizes. The face box is the HR detection scaled into the LR frame (no re-detection,
  so the crop does not depend on whether the detector still finds a 16-px face);
* the LR crop is cut as `enhance` cuts it (`crop_face`, margin 0.4), then enlarged ×4 by bicubic
  (`scoring.bicubic`, what `evaluate` compares with) and by the registry's default generator,
  loaded as `cctvsr enhance` loads it (`SrOptions().resolver()`: device and precision `auto`, bf16
  on CPUs with AMX/AVX512-BF16), one crop per call as a face arrives in `enhance`;
* a size is used for a photo only when L ≥ --min-ratio × s (default 4: the HR face holds at least
  the detail of the ×4 output); by default the photos chosen support every size, so each size has
  the same n faces and the rows compare like with like.

The limit: per size the paired difference d = dist(SR) − dist(bicubic) (negative: SR is closer to
the person), with a 95 % bootstrap CI of its mean. SR counts as closer at a size when the whole CI
lies below 0, measurably farther when the whole CI lies above 0. Two limits are printed:
* the crossover: the smallest size from which on SR is not closer at any larger size measured
  either (the true crossover lies between the size below it and it), and the same from the mean
  alone (mean d ≥ 0 from there on);
* the limit `--sr-max-face` defaults to: the largest size up to which SR is, at every size, closer
  or not measurably farther than bicubic (the CI reaches 0 or below). Where SR is closer at small
  sizes, this is the crossover or above it; where SR is closer at no size (what this benchmark
  measured with the default generator), it keeps SR for the small faces on which it does identity
  no measurable harm — where, too, it is cheapest — and drops it where it measurably moves the face
  away from the person.

Doubts: dlib aligns every face to a 150-px chip (the face ≈ 100 px of it), so above ≈ 25–30 px LR the
×4 output is shrunk again before it is compared; the descriptor is one model's view of identity.
Photos are mostly frontal, well-lit portraits, and the degradation is synthetic.

Run:  .venv/bin/python benchmarks/sr_budget.py       (≈ 2 min on an idle 2-core CPU with AMX (bf16), sizes
                                                     10–128; several times that in fp32 or on a loaded machine)
      .venv/bin/python benchmarks/sr_budget.py --photos 6 --sizes 16,32,64   (a quick look, a few min)
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cctvsr.degrade.jpeg import jpeg_roundtrip  # noqa: E402
from cctvsr.device import describe_cpu  # noqa: E402
from cctvsr.evaluate.identity import DESCRIPTOR_THRESHOLD, FaceIdentity, Reference, face_identity  # noqa: E402
from cctvsr.evaluate.protocols import SCALE  # noqa: E402
from cctvsr.evaluate.scoring import bicubic  # noqa: E402
from cctvsr.faces.crop import crop_face  # noqa: E402
from cctvsr.faces.detect import create_detector  # noqa: E402
from cctvsr.faces.detections import FaceDetector  # noqa: E402
from cctvsr.images import IMAGE_SUFFIXES, read_image  # noqa: E402
from cctvsr.jobs.options import FaceOptions, SrOptions  # noqa: E402

FACES_DIR = REPO.parent / "shared" / "data" / "faces_hq"
DEFAULT_SIZES = (10, 12, 16, 24, 32, 48, 64, 80, 96, 128)  # 10: the smallest --min-face
DEFAULT_PHOTOS = 20
DETECT_MAX_SIDE = 640  # as `evaluate`/`finetune` detect HR faces: on a copy at most this large
BLUR_PER_FACTOR = 0.4  # camera blur σ in HR px per unit of shrink factor (as detect_recall.py)
NOISE_SIGMA = 3.0  # grey levels per RGB channel
JPEG_QUALITY = 60
CROP_MARGIN = FaceOptions().margin  # what `enhance` crops with (0.4)
FRAME_PAD = 0.8  # × L per side of the face box: the part of the photo that stands for the camera frame
BOOTSTRAP = 10_000


def log(message: str) -> None:
    """Progress goes to stderr: the run takes minutes, and stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Face:
    """One photo's face: where it is, how large, and its identity at full resolution."""

    name: str
    photo: np.ndarray  # RGB uint8, cut to the largest frame any size needs
    box: np.ndarray  # x1, y1, x2, y2 in `photo` pixels
    reference: Reference  # landmarks in `photo` pixels, descriptor of the full-resolution face

    @property
    def side(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class Row:
    """One LR size: per-face distances and SR times."""

    size: int
    bicubic: list[float] = field(default_factory=list)
    sr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def diff(self) -> np.ndarray:
        return np.asarray(self.sr) - np.asarray(self.bicubic)

    def ci(self, seed: int) -> tuple[float, float]:
        """95 % bootstrap CI of the mean paired difference SR − bicubic (seeded per size)."""
        d = self.diff
        rng = np.random.default_rng([seed, self.size])
        means = d[rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))].mean(axis=1)
        return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def largest_box(rgb: np.ndarray, detector: FaceDetector) -> np.ndarray | None:
    """The largest detected face box in photo pixels, found on a copy ≤ DETECT_MAX_SIDE."""
    scale = min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    boxes = detector.detect(small).boxes
    if not len(boxes):
        return None
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(sides))].astype(np.float64) / scale


def frame_pad(side: float, size: int) -> float:
    """HR px around the face box that the LR frame keeps at size `size`: the crop margin and more,
    plus room for the blur so that it is not cut by the frame edge next to the face."""
    factor = side / size
    return FRAME_PAD * side + 3 * BLUR_PER_FACTOR * factor + 2 * factor


def cut(rgb: np.ndarray, box: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo around `box` grown by `pad` px (clipped), and the box in that cut's pixels."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
    x1, y1 = min(w, int(np.ceil(box[2] + pad))), min(h, int(np.ceil(box[3] + pad)))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), box - np.array([x0, y0, x0, y0], dtype=np.float64)


def moved(shape: object, offset: tuple[float, float], scale: tuple[float, float]) -> object:
    """dlib landmarks (and box) moved by -offset then scaled, keeping pixel centres:
    x' = (x - ox + 0.5)·sx - 0.5, rounded once at the end."""
    import dlib

    def point(x: float, y: float) -> object:
        return dlib.point(round((x - offset[0] + 0.5) * scale[0] - 0.5), round((y - offset[1] + 0.5) * scale[1] - 0.5))

    r = shape.rect
    top_left, bottom_right = point(r.left(), r.top()), point(r.right(), r.bottom())
    rect = dlib.rectangle(top_left.x, top_left.y, bottom_right.x, bottom_right.y)
    return dlib.full_object_detection(rect, [point(p.x, p.y) for p in shape.parts()])


def load_faces(folder: Path, detector: FaceDetector, identity: FaceIdentity, smallest: int) -> tuple[list[Face], list[str]]:
    """Every photo's face with its full-resolution reference; notes say why photos were left out."""
    faces, notes = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        rgb = read_image(path).rgb
        box = largest_box(rgb, detector)
        if box is None:
            notes.append(f"{path.name}: no face detected")
            continue
        side = float(max(box[2] - box[0], box[3] - box[1]))
        photo, box = cut(rgb, box, frame_pad(side, smallest))
        crop = crop_face(photo, box, CROP_MARGIN)
        found = identity.reference(crop.image, assume_crop=False)
        if found is None:
            notes.append(f"{path.name}: dlib finds no face in the HR crop")
            continue
        shape = moved(found.shape, (-crop.box[0], -crop.box[1]), (1.0, 1.0))
        centre = [(p.x, p.y) for p in shape.parts()]
        cx, cy = np.mean(centre, axis=0)
        if not (box[0] <= cx <= box[2] and box[1] <= cy <= box[3]):
            notes.append(f"{path.name}: dlib's face is not the detected one")
            continue
        faces.append(Face(path.name, photo, box, Reference(shape, found.descriptor, True)))
    return faces, notes


def choose(faces: list[Face], count: int, need: float) -> list[Face]:
    """`count` faces spread evenly over the (name-sorted) faces whose L ≥ need; if too few, the
    largest of the rest fill up. count 0: all faces."""
    if not count or count >= len(faces):
        return faces
    able = [f for f in faces if f.side >= need]
    if len(able) >= count:
        picks = np.linspace(0, len(able) - 1, count).round().astype(int)
        return [able[i] for i in picks]
    rest = sorted((f for f in faces if f.side < need), key=lambda f: -f.side)
    return sorted(able + rest[: count - len(able)], key=lambda f: f.name)


def degrade(face: Face, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[float, float]]:
    """The LR camera frame with the face at `size` px: blur σ 0.4·f, INTER_AREA, noise, JPEG.
    Returns the frame, the face box in it, and the HR → LR offset and scale (per axis)."""
    photo, box = cut(face.photo, face.box, frame_pad(face.side, size))
    offset = (face.box[0] - box[0], face.box[1] - box[1])  # where `photo` starts in face.photo
    factor = face.side / size
    h, w = photo.shape[:2]
    lw, lh = max(1, round(w / factor)), max(1, round(h / factor))
    blurred = cv2.GaussianBlur(photo, (0, 0), BLUR_PER_FACTOR * factor)
    small = cv2.resize(blurred, (lw, lh), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng([seed, zlib.crc32(face.name.encode()), size])
    noisy = np.clip(np.rint(small + rng.normal(0.0, NOISE_SIGMA, small.shape)), 0, 255).astype(np.uint8)
    scale = (lw / w, lh / h)
    lr_box = box * np.array([scale[0], scale[1], scale[0], scale[1]])
    return jpeg_roundtrip(noisy, JPEG_QUALITY), lr_box, offset, scale


def measure(
    faces: Sequence[Face], sizes: Sequence[int], min_ratio: float, upscale: Callable[[list[np.ndarray]], list[np.ndarray]],
    identity: FaceIdentity, seed: int,
) -> Iterator[Row]:
    """Every (face, size) the face supports: bicubic and SR distances to the full-resolution face,
    one row per size as soon as it is done (a long run shows its result as it goes)."""
    for size in sizes:
        row = Row(size)
        for face in faces:
            if face.side < min_ratio * size:
                continue
            frame, lr_box, offset, scale = degrade(face, size, seed)
            crop = crop_face(frame, lr_box, CROP_MARGIN)
            start = time.perf_counter()
            (sr,) = upscale([crop.image])
            row.seconds.append(time.perf_counter() - start)
            (bic,) = bicubic([crop.image])
            # face.photo px -> the crop's ×4 output px in one step (x_lr = (x - o + .5)·s - .5, then
            # x_out = (x_lr - c + .5)·4 - .5), so that no rounding happens at LR resolution
            shift = (offset[0] + crop.box[0] / scale[0], offset[1] + crop.box[1] / scale[1])
            shape = moved(face.reference.shape, shift, (scale[0] * SCALE, scale[1] * SCALE))
            reference = Reference(shape, face.reference.descriptor, True)
            row.bicubic.append(identity.distance(reference, bic))
            row.sr.append(identity.distance(reference, sr))
        log(f"  {size} px done: n {len(row.sr)}")
        yield row


def limit(sizes: Sequence[int], closer: Sequence[bool]) -> int | None:
    """The smallest size from which on SR is not closer at any larger size; None if it is closer at the last."""
    found = None
    for size, is_closer in reversed(list(zip(sizes, closer))):
        if is_closer:
            break
        found = size
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces-dir", type=Path, default=FACES_DIR, help="HR photos (default: the shared real photos)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="LR face sizes in px, comma-separated")
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="photos to use (0 = all usable)")
    parser.add_argument("--min-ratio", type=float, default=4.0, help="use a size only where the HR face is ≥ this × the LR face")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not args.faces_dir.is_dir():
        print(f"error: {args.faces_dir} not found: this benchmark needs the shared real photos", file=sys.stderr)
        return 2

    import torch

    print(f"CPU: {describe_cpu()}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    detector, message = create_detector("auto", min_face=40, scales=(1.0,))  # as `evaluate` finds HR faces
    identity = face_identity()
    resolver = SrOptions().resolver(log)  # the default model, as `cctvsr enhance` loads it
    print(f"{message}; SR: {resolver.weights.name} on {resolver.plan.describe()}")
    print(f"degradation: blur σ {BLUR_PER_FACTOR}·factor, INTER_AREA, noise σ {NOISE_SIGMA:g}, JPEG {JPEG_QUALITY}; "
          f"crop margin {CROP_MARGIN}; sizes need an HR face ≥ {args.min_ratio:g}× the LR face")

    start = time.perf_counter()
    faces, notes = load_faces(args.faces_dir, detector, identity, sizes[0])
    for note in notes:
        print(f"left out: {note}")
    chosen = choose(faces, args.photos, args.min_ratio * sizes[-1])
    print(f"{len(chosen)} of {len(faces)} usable faces (HR face {min(f.side for f in chosen):.0f}–"
          f"{max(f.side for f in chosen):.0f} px): {', '.join(f.name for f in chosen)}")
    resolver.upscale([np.zeros((32, 32, 3), np.uint8)])  # model load and first-call set-up, not timed
    log(f"faces loaded and model warm in {time.perf_counter() - start:.0f} s; super-resolving")

    print(f"\nidentity distance to the full-resolution face (dlib; ≥ {DESCRIPTOR_THRESHOLD} reads as another person); "
          "d = SR − bicubic, negative = SR closer\n")
    print("| LR face | n | bicubic | SR | d mean [95 % CI] | SR closer | SR s/face |")
    print("|---:|---:|---:|---:|---|---:|---:|", flush=True)
    closer_ci, closer_mean, harmless, used = [], [], [], []
    for row in measure(chosen, sizes, args.min_ratio, resolver.upscale, identity, args.seed):
        if not row.sr:
            print(f"| {row.size} px | 0 | | | | | |  (no HR face ≥ {args.min_ratio:g}× this size)", flush=True)
            continue
        d = row.diff
        lo, hi = row.ci(args.seed)
        used.append(row.size)
        closer_ci.append(hi < 0)
        harmless.append(lo <= 0)
        closer_mean.append(d.mean() < 0)
        print(f"| {row.size} px | {len(d)} | {np.mean(row.bicubic):.3f} | {np.mean(row.sr):.3f} | "
              f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {np.mean(d < 0):.0%} | {np.mean(row.seconds):.2f} |", flush=True)
    if not used:
        print("error: no size had a face to measure", file=sys.stderr)
        return 2
    by_ci, by_mean = limit(used, closer_ci), limit(used, closer_mean)

    def said(value: int | None) -> str:
        if value is None:
            return f"none up to {used[-1]} px (SR still closer there)"
        return f"{value} px" + (" (the smallest size measured: SR is closer at none)" if value == used[0] else "")

    print(f"\nmean alone (mean d ≥ 0 at every size from there on): {said(by_mean)}")
    print(f"elapsed {time.perf_counter() - start:.0f} s")
    print(f"crossover: {said(by_ci)}  (smallest size from which on the 95 % CI of SR − bicubic no longer lies below 0)")
    last = next((i for i, ok in enumerate(harmless) if not ok), len(used))
    if last == 0:
        print(f"measured --sr-max-face: none (SR measurably farther from the person than bicubic already at {used[0]} px)")
    else:
        print(f"measured --sr-max-face: {used[last - 1]} px  (largest size up to which SR is never measurably farther "
              "from the person than bicubic: the 95 % CI of SR − bicubic reaches 0 or below at every size up to it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
