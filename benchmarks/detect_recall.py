"""Recall of the face detectors on tiny real faces, false detections, false tracks and speed.

Why this script exists: on real CCTV the faces are 10–20 px tall, and a face the detector never
finds is one no analyst ever sees. Nobody has annotated tiny faces for us, so the protocol makes
its own ground truth from real footage where the faces are large (issue 13):

* truth: the faces (≥ 30 px) that MTCNN and CenterFace both find in the full-resolution frame
  (IoU ≥ 0.4), left out where the frame edge cuts them (their box is only the visible part, so
  its height says nothing of the face's size: the hamilton clip's close-up, chin cut off, would
  otherwise sit in the 32–64 px bin as a 320 px face in a frame shrunk to 60 px); the truth box
  is the mean of the two;
* each frame is shrunk by 3, 4, … 10 (Gaussian blur σ = 0.4·factor, INTER_AREA), then given
  Gaussian noise σ 4 and JPEG quality 50, as a far-away camera would see it;
* a detection on the shrunk frame finds a truth face at IoU ≥ 0.3 (greedy, best IoU first);
  a detection is false when it overlaps (IoU ≥ 0.3) no face that CenterFace finds at full
  resolution at score ≥ 0.2 (so real faces the truth left out are not counted against anyone);
* recall is binned by the shrunk truth box's height.

Then the default detector and tracker (exactly as `cctvsr enhance` builds them) run over footage
of people whose faces are not usable (`intel-sample-videos__one-by-one-person-detection.mp4`):
every track that survives `--min-track-len` there is a false track. Last, each detector is timed
on the full-resolution 1080p frames at the default --min-face.

Run:  .venv/bin/python benchmarks/detect_recall.py           (≈ 10 min on an idle 2-core CPU)
      .venv/bin/python benchmarks/detect_recall.py --quick   (a third of the frames: rough, ≈ 4 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cctvsr.device import describe_cpu  # noqa: E402
from cctvsr.faces.centerface import LARGE_SHARE, CenterFaceDetector  # noqa: E402
from cctvsr.faces.detect import DEFAULT_MIN_FACE, MtcnnDetector, create_detector  # noqa: E402
from cctvsr.faces.detections import FaceDetections  # noqa: E402
from cctvsr.faces.track import FaceTracker  # noqa: E402
from cctvsr.jobs.options import FaceOptions  # noqa: E402
from cctvsr.video import DecodeStats, list_sources, read_frames  # noqa: E402

VIDEO = REPO.parent / "shared" / "data" / "video"
CLIPS = {  # real clips with faces of 30 px and more, and how many frames of each to use
    "facenet-pytorch__video.mp4": 80,  # 80 of its 105 frames: ≥ 150 truth faces in the 32–64 px bin
    "face_recognition__short_hamilton_clip.mp4": 60,
    "intel-sample-videos__face-demographics-walking-and-pause.gif": 20,
}
NO_FACES = "intel-sample-videos__one-by-one-person-detection.mp4"
FACTORS = (3, 4, 5, 6, 7, 8, 9, 10)
BINS = ((8, 12), (12, 16), (16, 20), (20, 32), (32, 64))
TRUTH_MIN = 30
EDGE_PX = 2  # a truth face this close to the frame edge is cut: its box height is not its size
NOISE_SIGMA = 4.0
JPEG_QUALITY = 50
TRUTH_IOU, MATCH_IOU, ANY_FACE_SCORE = 0.4, 0.3, 0.2
RECALL_MIN_FACE = 8  # every detector looks down to 8 px here, so the 8–12 px bin means something
DEFAULT_ROW = f"CenterFace ×1,2 + MTCNN ≥ {LARGE_SHARE * 100:g} % of the short side (default)"
BARS = {(12, 16): 0.85, (16, 20): 0.95, (20, 32): 0.95, (32, 64): 0.98}  # the bar for the default


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda boxes: (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, column), best IoU first, each row and column used once."""
    pairs, rows, cols = [], set(), set()
    for flat in np.argsort(-iou, axis=None):
        r, c = np.unravel_index(flat, iou.shape)
        if iou[r, c] < threshold:
            break
        if r not in rows and c not in cols:
            pairs.append((int(r), int(c)))
            rows.add(r)
            cols.add(c)
    return pairs


@dataclass
class Scene:
    """One full-resolution frame: its truth faces and every face anyone might call real."""

    clip: str
    image: np.ndarray
    truth: np.ndarray  # (N, 4)
    any_face: np.ndarray  # (M, 4)


@dataclass
class Tally:
    found: dict[tuple[int, int], int] = field(default_factory=dict)
    total: dict[tuple[int, int], int] = field(default_factory=dict)
    false: int = 0
    frames: int = 0

    def recall(self, span: tuple[int, int]) -> float:
        return self.found.get(span, 0) / max(self.total.get(span, 0), 1)


def frames_of(path: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip."""
    (source,) = list_sources(str(path))
    frames = [frame.image for frame in read_frames(source, stats=DecodeStats())]
    step = max(1, len(frames) // count)
    return frames[::step][:count]


def build_scenes(quick: bool) -> list[Scene]:
    mtcnn = MtcnnDetector(min_face=TRUTH_MIN)
    centerface = CenterFaceDetector(min_face=TRUTH_MIN, scales=(1.0,), large_share=None)  # CenterFace alone
    anyone = CenterFaceDetector(min_face=1, threshold=ANY_FACE_SCORE, scales=(1.0,), large_share=None)
    scenes = []
    for name, count in CLIPS.items():
        for image in frames_of(VIDEO / name, count // 3 if quick else count):
            a, b = mtcnn.detect(image), centerface.detect(image)
            pairs = greedy_match(iou_matrix(a.boxes, b.boxes), TRUTH_IOU)
            truth = np.array([(a.boxes[i] + b.boxes[j]) / 2 for i, j in pairs]).reshape(-1, 4)
            h, w = image.shape[:2]
            whole = (truth[:, 0] > EDGE_PX) & (truth[:, 1] > EDGE_PX) & (truth[:, 2] < w - EDGE_PX) & (truth[:, 3] < h - EDGE_PX)
            truth = truth[whole]
            scenes.append(Scene(name, image, truth, anyone.detect(image).boxes))
    return scenes


def degrade(image: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (0, 0), 0.4 * factor)
    h, w = image.shape[:2]
    small = cv2.resize(blurred, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    noisy = np.clip(small + rng.normal(0, NOISE_SIGMA, small.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", noisy[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def bin_of(height: float) -> tuple[int, int] | None:
    return next((span for span in BINS if span[0] <= height < span[1]), None)


def score(detect: Callable[[np.ndarray], FaceDetections], scenes: list[Scene], seed: int = 0) -> Tally:
    rng = np.random.default_rng(seed)  # the same degraded frames for every detector
    tally = Tally()
    for scene in scenes:
        for factor in FACTORS:
            small = degrade(scene.image, factor, rng)
            found = detect(small).boxes * factor  # back to full-resolution coordinates
            pairs = greedy_match(iou_matrix(scene.truth, found), MATCH_IOU)
            hit_rows, matched = {r for r, _ in pairs}, {c for _, c in pairs}
            for row, box in enumerate(scene.truth):
                span = bin_of((box[3] - box[1]) / factor)
                if span is None:
                    continue
                tally.total[span] = tally.total.get(span, 0) + 1
                tally.found[span] = tally.found.get(span, 0) + (row in hit_rows)
            unmatched = [c for c in range(len(found)) if c not in matched]
            if unmatched:
                overlap = iou_matrix(found[unmatched], scene.any_face)
                tally.false += int((overlap.max(axis=1, initial=0.0) < MATCH_IOU).sum())
            tally.frames += 1
    return tally


def false_tracks(detector, path: Path, limit: int | None) -> tuple[int, int, int, float]:
    """Frames read, detections, tracks kept (as `enhance` keeps them) and their best score."""
    (source,) = list_sources(str(path))
    stats = DecodeStats()
    min_track_len = FaceOptions().min_track_len
    tracker = None
    detections = 0
    best: dict[int, float] = {}
    frames = 0
    for frame in read_frames(source, stats=stats):
        if tracker is None:
            tracker = FaceTracker(stats.fps or 25.0, min_track_len=min_track_len)
        found = detector.detect(frame.image)
        detections += len(found)
        for track_id, s in zip(tracker.update(found), found.scores):
            if track_id > 0:
                best[int(track_id)] = max(best.get(int(track_id), 0.0), float(s))
        frames += 1
        if limit and frames >= limit:
            break
    kept = [t for t in best if tracker is not None and tracker.long_enough(t)]
    return frames, detections, len(kept), max((best[t] for t in kept), default=0.0)


def time_per_frame(detect: Callable[[np.ndarray], FaceDetections], frames: list[np.ndarray]) -> float:
    detect(frames[0])  # warm-up
    start = time.perf_counter()
    for image in frames:
        detect(image)
    return (time.perf_counter() - start) / len(frames) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of the frames; the no-face clip's first 400 frames")
    args = parser.parse_args()
    if not VIDEO.is_dir():
        print(f"error: {VIDEO} not found: this benchmark needs the shared real footage", file=sys.stderr)
        return 2
    print(f"CPU: {describe_cpu()}")
    default, message = create_detector("centerface")  # what `enhance` runs without an InsightFace pack
    print(f"default: {message}")
    detectors: dict[str, Callable[[np.ndarray], FaceDetections]] = {
        "MTCNN": MtcnnDetector(min_face=RECALL_MIN_FACE).detect,
        "CenterFace ×1": CenterFaceDetector(min_face=RECALL_MIN_FACE, scales=(1.0,), large_share=None).detect,
        "CenterFace ×2": CenterFaceDetector(min_face=RECALL_MIN_FACE, scales=(2.0,), large_share=None).detect,
        "CenterFace ×1,2": CenterFaceDetector(min_face=RECALL_MIN_FACE, scales=default.scales, large_share=None).detect,
        DEFAULT_ROW: CenterFaceDetector(min_face=RECALL_MIN_FACE, scales=default.scales, large_share=default.large_share).detect,
    }
    start = time.perf_counter()
    scenes = build_scenes(args.quick)
    per_clip = {name: sum(len(s.truth) for s in scenes if s.clip == name) for name in CLIPS}
    print(f"{len(scenes)} frames, {sum(per_clip.values())} truth faces ≥ {TRUTH_MIN} px: "
          + ", ".join(f"{name} {n}" for name, n in per_clip.items())
          + f"; each shrunk ×{FACTORS[0]}…×{FACTORS[-1]} ({time.perf_counter() - start:.0f} s)")

    header = "| detector | " + " | ".join(f"{lo}–{hi} px" for lo, hi in BINS) + " | false / frame |"
    print("\n" + header + "\n|" + "---|" * (len(BINS) + 2))
    tallies = {}
    for name, detect in detectors.items():
        tallies[name] = tally = score(detect, scenes)
        cells = [f"{tally.recall(span):.0%} (n {tally.total.get(span, 0)})" for span in BINS]
        print(f"| {name} | " + " | ".join(cells) + f" | {tally.false / tally.frames:.3f} |", flush=True)

    full_hd = [s.image for s in scenes if s.image.shape[:2] == (1080, 1920)][:10]
    mtcnn_ms = time_per_frame(MtcnnDetector(min_face=DEFAULT_MIN_FACE).detect, full_hd)
    default_ms = time_per_frame(default.detect, full_hd)
    alone = CenterFaceDetector(min_face=DEFAULT_MIN_FACE, scales=default.scales, large_share=None)
    alone_ms = time_per_frame(alone.detect, full_hd)  # what the second opinion for large faces adds
    print(f"\ntime per 1080p frame at --min-face {DEFAULT_MIN_FACE}: MTCNN {mtcnn_ms:.0f} ms, "
          f"default {default.name} {default_ms:.0f} ms (ratio default / MTCNN {default_ms / mtcnn_ms:.2f}; "
          f"CenterFace ×1,2 alone {alone_ms:.0f} ms)")

    frames, detections, kept, best = false_tracks(default, VIDEO / NO_FACES, 400 if args.quick else None)
    print(f"{NO_FACES}: {frames} frames, {detections} detections, {kept} false tracks after the tracker"
          + (f" (best score {best:.2f})" if kept else ""))

    tally = tallies[DEFAULT_ROW]
    checks = [(f"recall {lo}–{hi} px ≥ {bar:.2f}", tally.recall((lo, hi)) >= bar) for (lo, hi), bar in BARS.items()]
    checks += [("false detections ≤ 0.25 / frame", tally.false / tally.frames <= 0.25), ("no false track", kept == 0),
               ("time per 1080p frame ≤ MTCNN's", default_ms <= mtcnn_ms),
               ("≥ 150 truth faces in every bin", all(tally.total.get(span, 0) >= 150 for span in BINS))]
    print("\nthe default against the bar: " + "; ".join(f"{what}: {'yes' if ok else 'NO'}" for what, ok in checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
