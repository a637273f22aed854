"""The enhance pipeline for one input: decode → detect → track → select → crop, in a producer
thread, then super-resolve → write in the caller's thread, joined by a bounded queue.

Work crosses the queue in units (the faces a track releases when it ends, or one frame's faces with
`--all-frames`), and a unit is always super-resolved as one call. That keeps the batch composition
independent of thread timing, so an interrupted run resumed from its manifest produces the same
bytes as an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from cctvsr.errors import InputError
from cctvsr.faces.crop import FaceCrop, crop_face
from cctvsr.faces.detections import FaceDetections, FaceDetector
from cctvsr.faces.select import BestFaces, QualityScore, face_quality
from cctvsr.faces.track import FaceTracker
from cctvsr.images import write_png
from cctvsr.manifest import ManifestWriter
from cctvsr.prefetch import Prefetch
from cctvsr.report import sr_png_text
from cctvsr.sr.engine import SuperResolver
from cctvsr.video import DecodeStats, Frame, FrameSampling, SourceInfo, read_frames

QUEUE_UNITS = 4  # units of work decoded ahead of the super-resolver at most


@dataclass(frozen=True)
class EnhanceOptions:
    """Everything that decides which faces are saved; a resumed run must use the same."""

    best: int = 3
    all_frames: bool = False
    margin: float = 0.4
    min_track_len: int = 3
    sampling: FrameSampling = FrameSampling()
    time_offset: float = 0.0
    reconnect: int = 3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FaceCandidate:
    """One face the producer chose to save, with everything the manifest records about it."""

    track_id: int
    frame_index: int
    pts: float | None
    wall_time: datetime | None
    box: np.ndarray
    landmarks: np.ndarray
    det_score: float
    quality: QualityScore
    crop: FaceCrop

    @property
    def key(self) -> tuple[int, int]:
        return self.track_id, self.frame_index


@dataclass
class TrackLog:
    """When a track was seen and how often: what tracks.json reports, saved faces or not."""

    track_id: int
    first: dict[str, Any]
    last: dict[str, Any]
    faces_seen: int = 0


@dataclass
class StageTimes:
    decode: float = 0.0
    detect: float = 0.0
    track: float = 0.0
    select: float = 0.0
    queue_wait: float = 0.0  # the producer blocked on a full queue: SR is the slower stage
    sr: float = 0.0
    write: float = 0.0


@dataclass
class EnhanceResult:
    frames: int = 0
    faces_found: int = 0
    faces_too_small: int = 0  # found by the detector but under its --min-face
    faces_saved: int = 0
    faces_resumed: int = 0
    tracks: dict[int, TrackLog] = field(default_factory=dict)
    times: StageTimes = field(default_factory=StageTimes)
    decode: DecodeStats = field(default_factory=DecodeStats)
    sr_busy: float = 0.0
    sr_span: float = 0.0


@dataclass
class ProgressHooks:
    frame: Callable[[int], None] = lambda n: None  # frames processed so far
    found: Callable[[int], None] = lambda n: None  # faces detected so far
    saved: Callable[[int], None] = lambda n: None  # faces enhanced and written so far


def processed_rate(native_fps: float | None, sampling: FrameSampling, default: float = 25.0) -> float:
    """Frames per second that reach the tracker after `--every` / `--fps` (its lost-track buffer
    is counted in those frames)."""
    rate = native_fps or default
    return rate / sampling.every if sampling.fps is None else min(sampling.fps, rate / sampling.every)


def _when(frame: Frame) -> dict[str, Any]:
    return {
        "frame": frame.index,
        "pts": frame.pts,
        "wall_time": frame.wall_time.isoformat() if frame.wall_time else None,
    }


class _Producer:
    """Decode, detect, track, score and crop; emits units of FaceCandidates on a bounded queue."""

    feed: Prefetch[list[FaceCandidate]]  # the queue to the super-resolver, given to `run`

    def __init__(
        self,
        source: SourceInfo,
        options: EnhanceOptions,
        detector: FaceDetector,
        make_tracker: Callable[[float], FaceTracker],
        result: EnhanceResult,
        hooks: ProgressHooks,
        on_frame: Callable[[Frame, FaceDetections, np.ndarray], None] | None,
    ) -> None:
        self.source, self.options, self.detector, self.make_tracker = source, options, detector, make_tracker
        self.tracker: FaceTracker | None = None  # made at the first frame, when the frame rate is known
        self.result, self.hooks = result, hooks
        self.on_frame = on_frame
        self.keeper: BestFaces[FaceCandidate] = BestFaces(None if options.all_frames else options.best)
        self.waiting: dict[int, list[FaceCandidate]] = {}  # all-frames faces of tracks still too short

    def _emit(self, unit: list[FaceCandidate]) -> None:
        if unit:
            started = time.perf_counter()
            self.feed.put(unit)  # blocks while the super-resolver is behind
            self.result.times.queue_wait += time.perf_counter() - started

    def _release(self, track_id: int, faces: list[FaceCandidate]) -> None:
        if self.tracker.long_enough(track_id):
            self._emit(faces)

    def run(self, feed: Prefetch[list[FaceCandidate]]) -> None:
        self.feed = feed
        times, result = self.result.times, self.result
        frames: Iterator[Frame] = read_frames(
            self.source,
            self.options.sampling,
            stats=result.decode,
            reconnect=self.options.reconnect,
            time_offset=self.options.time_offset,
            stop=feed.halt,
        )
        try:
            while not feed.halted():
                t0 = time.perf_counter()
                frame = next(frames, None)
                t1 = time.perf_counter()
                times.decode += t1 - t0
                if frame is None:
                    break
                if self.tracker is None:
                    self.tracker = self.make_tracker(processed_rate(result.decode.fps, self.options.sampling))
                detections = self.detector.detect(frame.image)
                t2 = time.perf_counter()
                ids = self.tracker.update(detections)
                t3 = time.perf_counter()
                times.detect += t2 - t1
                times.track += t3 - t2
                waited = times.queue_wait
                self._select(frame, detections, ids)
                for track_id in sorted(self.tracker.ended()):
                    self._end_track(track_id)
                times.select += time.perf_counter() - t3 - (times.queue_wait - waited)
                if self.on_frame:
                    self.on_frame(frame, detections, ids)
                result.frames += 1
                result.faces_found += len(detections)
                result.faces_too_small += detections.too_small
                self.hooks.frame(result.frames)
                self.hooks.found(result.faces_found)
        finally:
            frames.close()  # type: ignore[attr-defined]
        if feed.halted() or self.tracker is None:
            return
        for track_id, faces in sorted(self.keeper.finish_all().items()):
            self._release(track_id, faces)

    def _select(self, frame: Frame, detections: FaceDetections, ids: np.ndarray) -> None:
        released: list[FaceCandidate] = []
        for row in np.flatnonzero(ids >= 0):
            track_id = int(ids[row])
            log = self.result.tracks.get(track_id)
            if log is None:
                log = self.result.tracks[track_id] = TrackLog(track_id, _when(frame), _when(frame))
            log.last = _when(frame)
            log.faces_seen += 1
            box, landmarks, score = detections.boxes[row], detections.landmarks[row], float(detections.scores[row])
            try:
                crop = crop_face(frame.image, box, self.options.margin)
            except InputError:  # a box wholly outside the frame: nothing to save
                continue
            quality = face_quality(frame.image, box, landmarks, score, float(detections.inside[row]))
            candidate = FaceCandidate(track_id, frame.index, frame.pts, frame.wall_time, box.copy(), landmarks.copy(), score, quality, crop)
            for face in self.keeper.add(track_id, frame.index, quality.total, candidate):
                if self.tracker.long_enough(face.track_id):
                    released.extend(self.waiting.pop(face.track_id, []))
                    released.append(face)
                else:
                    self.waiting.setdefault(face.track_id, []).append(face)
        self._emit(released)

    def _end_track(self, track_id: int) -> None:
        kept = self.keeper.finish(track_id)  # empty with --all-frames: those faces left already
        self.waiting.pop(track_id, None)  # --all-frames faces of a track that never grew long enough
        self._release(track_id, kept)


class FaceWriter:
    """Writes a face's LR, bicubic and SR PNGs, then its manifest line."""

    def __init__(self, folder: Path, manifest: ManifestWriter, common: dict[str, Any], model_label: str) -> None:
        self.folder, self.manifest, self.common = folder, manifest, common
        self.sr_text = sr_png_text(model_label)

    def write(self, face: FaceCandidate, sr: np.ndarray) -> dict[str, Any]:
        stem = f"track_{face.track_id:04d}/{face.frame_index:06d}"
        lr = face.crop.image
        bicubic = cv2.resize(lr, (sr.shape[1], sr.shape[0]), interpolation=cv2.INTER_CUBIC)
        outputs = {}
        for kind, image, text in (("lr", lr, None), ("bicubic", bicubic, None), ("sr", sr, self.sr_text)):
            rel = f"{stem}_{kind}.png"
            outputs[kind] = {"path": rel, "sha256": write_png(self.folder / rel, image, text)}
        x1, y1, x2, y2 = face.crop.box
        record = {
            **self.common,
            "frame_index": face.frame_index,
            "pts": face.pts,
            "wall_time": face.wall_time.isoformat() if face.wall_time else None,
            "track_id": face.track_id,
            "box": [round(float(v), 2) for v in face.box],
            "crop_box": [x1, y1, x2, y2],
            "crop_size": [x2 - x1, y2 - y1],
            "clipped": list(face.crop.clipped),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
            "det_score": round(face.det_score, 4),
            "quality": {k: round(float(v), 4) for k, v in asdict(face.quality).items()},
            "outputs": outputs,
        }
        self.manifest.append(record)
        return record


def run_enhance(
    source: SourceInfo,
    options: EnhanceOptions,
    detector: FaceDetector,
    make_tracker: Callable[[float], FaceTracker],
    resolver: SuperResolver,
    writer: FaceWriter,
    *,
    done: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    hooks: ProgressHooks = ProgressHooks(),
    on_frame: Callable[[Frame, FaceDetections, np.ndarray], None] | None = None,
) -> EnhanceResult:
    """Run one input through the pipeline; faces whose (track, frame) is in `done` are not rewritten.
    `make_tracker(frame_rate)` is called at the first frame with the rate frames reach the tracker."""
    result = EnhanceResult()
    producer = _Producer(source, options, detector, make_tracker, result, hooks, on_frame)
    first_crop = last_crop = None
    with Prefetch(producer.run, size=QUEUE_UNITS, name="cctvsr-producer") as units:
        for unit in units:
            if all(face.key in done for face in unit):
                result.faces_resumed += len(unit)
                continue
            t0 = time.perf_counter()
            first_crop = first_crop or t0
            outputs = resolver.upscale([face.crop.image for face in unit])
            t1 = time.perf_counter()
            for face, sr in zip(unit, outputs):
                if face.key in done:
                    result.faces_resumed += 1
                    continue
                writer.write(face, sr)
                result.faces_saved += 1
                hooks.saved(result.faces_saved)
            last_crop = time.perf_counter()
            result.times.sr += t1 - t0
            result.times.write += last_crop - t1
            result.sr_busy += last_crop - t0
    if first_crop is not None and last_crop is not None:
        result.sr_span = last_crop - first_crop
    return result
