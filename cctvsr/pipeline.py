"""The enhance pipeline for one input: decode → detect → track → select → crop, in a producer
thread, then super-resolve → hand to a sink in the caller's thread, joined by a bounded queue.
The pipeline knows no files: the sink (`cctvsr.output.writer.FaceWriter` for `enhance`) writes.

Work crosses the queue in units (the faces a track releases when it ends, or one frame's faces with
`--all-frames`; with fusion on, a track's end also carries its views, cut around one common box),
and a unit is always super-resolved as one call (its faces and the track's fused ×1 face). That keeps the batch composition
independent of thread timing, so an interrupted run resumed from its manifest produces the same
bytes as an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from cctvsr.errors import InputError
from cctvsr.faces.crop import FaceCrop, crop_face
from cctvsr.faces.detections import FaceDetections, FaceDetector
from cctvsr.faces.motion import WHOLE, GateSettings, GateStats, MotionGate
from cctvsr.faces.regions import detect_planned
from cctvsr.faces.select import BestFaces, QualityScore, face_quality
from cctvsr.faces.track import FaceTracker
from cctvsr.fusion.gather import FusionSettings, TrackFusion, TrackGatherer, TrackViews, fuse_views
from cctvsr.output.records import Sighting
from cctvsr.prefetch import Prefetch
from cctvsr.sr.engine import SuperResolver
from cctvsr.video import DecodeStats, Frame, FrameSampling, SourceInfo, read_frames

FOOTAGE_QP_FRAMES = 16  # frames whose QP fusion's prior is set from
QUEUE_UNITS = 4  # units of work decoded ahead of the super-resolver at most


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides which faces are saved; a resumed run must use the same (its
    `to_json()` is the "options" of run.json and of every manifest line)."""

    best: int = 3
    all_frames: bool = False
    margin: float = 0.4
    min_track_len: int = 3  # tracks with fewer detections are dropped (the default tracker's)
    sampling: FrameSampling = FrameSampling()
    time_offset: float = 0.0
    reconnect: int = 3
    fusion: FusionSettings | None = None  # None: no multi-frame fusion (--no-fuse)
    full_detect_every: float | None = None  # seconds between whole-frame searches when motion-gated; None: no gate
    sr_max_face: int = 0  # faces whose box's longer side is over this many px are not super-resolved; 0: all are

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        # Options at their "off" value are left out, as runs from before they existed recorded them:
        # those stay resumable with --no-fuse, --no-motion-gate and --sr-max-face 0.
        for key, off in (("fusion", None), ("full_detect_every", None), ("sr_max_face", 0)):
            if record[key] == off:
                del record[key]
        return record

    def enhances(self, size: int) -> bool:
        """Whether a face of this size (`face_size`) is super-resolved (--sr-max-face)."""
        return not self.sr_max_face or size <= self.sr_max_face

    def enhanced(self, faces: list[FaceCandidate]) -> list[FaceCandidate]:
        """The faces of a unit that get SR (within --sr-max-face), in the order their images come back."""
        return [face for face in faces if self.enhances(face_size(face.box))]


def face_size(box: np.ndarray) -> int:
    """A face's size as --sr-max-face measures it: its detected box's longer side, in frame pixels."""
    return int(round(max(float(box[2] - box[0]), float(box[3] - box[1]))))


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
class Unit:
    """What crosses the queue: faces to super-resolve and save, and a track's views to fuse when it ended."""

    faces: list[FaceCandidate]
    views: TrackViews | None = None


@dataclass
class TrackLog:
    """When a track was seen and how often: what tracks.json reports, saved faces or not."""

    track_id: int
    first: Sighting
    last: Sighting
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
    fuse: float = 0.0


@dataclass
class EnhanceResult:
    frames: int = 0
    faces_found: int = 0
    faces_too_small: int = 0  # found by the detector but under its --min-face
    faces_saved: int = 0
    faces_resumed: int = 0
    tracks_fused: int = 0  # tracks whose fused face was written
    faces_not_enhanced: int = 0  # saved without SR: larger than --sr-max-face
    gate: GateStats = field(default_factory=GateStats)
    tracks: dict[int, TrackLog] = field(default_factory=dict)
    times: StageTimes = field(default_factory=StageTimes)
    decode: DecodeStats = field(default_factory=DecodeStats)


@dataclass
class ProgressHooks:
    frame: Callable[[int], None] = lambda n: None  # frames processed so far
    found: Callable[[int], None] = lambda n: None  # faces detected so far
    saved: Callable[[int], None] = lambda n: None  # faces enhanced and written so far


def default_tracker(options: PipelineOptions) -> Callable[[float], FaceTracker]:
    """The tracker `enhance` uses: ByteTrack with this run's minimum track length."""

    def make(frame_rate: float) -> FaceTracker:
        return FaceTracker(frame_rate, min_track_len=options.min_track_len)

    return make


def processed_rate(native_fps: float | None, sampling: FrameSampling, default: float = 25.0) -> float:
    """Frames per second that reach the tracker after `--every` / `--fps` (its lost-track buffer
    is counted in those frames)."""
    rate = native_fps or default
    return rate / sampling.every if sampling.fps is None else min(sampling.fps, rate / sampling.every)


class FaceSink(Protocol):
    """Where the pipeline hands each face it saves, with its super-resolved image."""

    def write(self, face: FaceCandidate, sr: np.ndarray | None) -> object:
        """A saved face, with its super-resolved image (None: not enhanced, over --sr-max-face)."""
        ...

    def write_fusion(self, fusion: TrackFusion, sr: np.ndarray | None) -> object:
        """A track's fusion outcome, with the generator's output on its ×1 fused face (None: not fused,
        or not super-resolved: over --sr-max-face)."""
        ...


FrameHook = Callable[[Frame, FaceDetections], None]  # each processed frame, its detections with track_ids


def _when(frame: Frame) -> Sighting:
    return Sighting(frame.index, frame.pts, frame.wall_time.isoformat() if frame.wall_time else None)


class _Producer:
    """Decode, detect, track, score and crop; emits units of FaceCandidates on a bounded queue."""

    feed: Prefetch[Unit]  # the queue to the super-resolver, given to `run`

    def __init__(
        self,
        source: SourceInfo,
        options: PipelineOptions,
        detector: FaceDetector,
        make_tracker: Callable[[float], FaceTracker],
        result: EnhanceResult,
        hooks: ProgressHooks,
        on_frame: FrameHook | None,
    ) -> None:
        self.source, self.options, self.detector, self.make_tracker = source, options, detector, make_tracker
        self.tracker: FaceTracker | None = None  # made at the first frame, when the frame rate is known
        self.result, self.hooks = result, hooks
        self.on_frame = on_frame
        self.keeper: BestFaces[FaceCandidate] = BestFaces(None if options.all_frames else options.best)
        self.waiting: dict[int, list[FaceCandidate]] = {}  # all-frames faces of tracks still too short
        self.gatherer = TrackGatherer(options.fusion, options.margin) if options.fusion else None
        self.gate: MotionGate | None = None  # made at the first frame, with the tracker
        self.last_box: dict[int, np.ndarray] = {}  # each live track's latest box: the gate searches around it

    def _emit(self, faces: list[FaceCandidate], views: TrackViews | None = None) -> None:
        if faces or views is not None:
            started = time.perf_counter()
            self.feed.put(Unit(faces, views))  # blocks while the super-resolver is behind
            self.result.times.queue_wait += time.perf_counter() - started

    def _release(self, track_id: int, faces: list[FaceCandidate]) -> None:
        """A track ended: its kept faces and (fusion on) its views, if it lasted long enough."""
        if not self.tracker.long_enough(track_id):
            if self.gatherer:
                self.gatherer.drop(track_id)
            return
        self._emit(faces, self.gatherer.finish(track_id) if self.gatherer else None)

    def run(self, feed: Prefetch[Unit]) -> None:
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
                    self._start(processed_rate(result.decode.fps, self.options.sampling))
                detections = self._detect(frame)
                t2 = time.perf_counter()
                detections = self.tracker.track(detections)
                t3 = time.perf_counter()
                self._remember(detections)
                times.detect += t2 - t1
                times.track += t3 - t2
                waited = times.queue_wait
                self._select(frame, detections)
                for track_id in sorted(self.tracker.ended()):
                    self._end_track(track_id)
                times.select += time.perf_counter() - t3 - (times.queue_wait - waited)
                if self.on_frame:
                    self.on_frame(frame, detections)
                result.frames += 1
                result.faces_found += len(detections)
                result.faces_too_small += detections.too_small
                self.hooks.frame(result.frames)
                self.hooks.found(result.faces_found)
        finally:
            frames.close()  # type: ignore[attr-defined]
            result.gate.off = self.gate.off if self.gate else None
        if feed.halted() or self.tracker is None:
            return
        remaining = self.keeper.finish_all()
        if self.gatherer:
            remaining = {track_id: remaining.get(track_id, []) for track_id in {*remaining, *self.gatherer.tracks}}
        for track_id, faces in sorted(remaining.items()):
            self._release(track_id, faces)

    def _start(self, frame_rate: float) -> None:
        """At the first frame, when the rate frames arrive at is known: the tracker, and the motion gate
        (video and streams only: a still image has nothing to compare with)."""
        self.tracker = self.make_tracker(frame_rate)
        every = self.options.full_detect_every
        if every is not None and self.source.kind != "image":
            self.gate = MotionGate(GateSettings.for_rate(frame_rate, every))

    def _detect(self, frame: Frame) -> FaceDetections:
        """The faces of this frame, searched where the motion gate says (everywhere without one)."""
        plan = WHOLE
        if self.gate is not None:
            alive = [self.last_box[t] for t in sorted(self.tracker.alive()) if t in self.last_box]
            plan = self.gate.plan(frame.image, np.asarray(alive, np.float32).reshape(-1, 4))
        self.result.gate.count(plan)
        return detect_planned(self.detector, frame.image, plan) if plan.searched else FaceDetections.empty()

    def _remember(self, detections: FaceDetections) -> None:
        for row in np.flatnonzero(detections.track_ids > 0):
            self.last_box[int(detections.track_ids[row])] = detections.boxes[row]

    def _select(self, frame: Frame, detections: FaceDetections) -> None:
        released: list[FaceCandidate] = []
        ids = detections.track_ids
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
            if self.gatherer:
                self.gatherer.add(track_id, frame.index, frame.image, box)
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
        self.last_box.pop(track_id, None)
        kept = self.keeper.finish(track_id)  # empty with --all-frames: those faces left already
        self.waiting.pop(track_id, None)  # --all-frames faces of a track that never grew long enough
        self._release(track_id, kept)


def run_enhance(
    source: SourceInfo,
    options: PipelineOptions,
    detector: FaceDetector,
    resolver: SuperResolver,
    sink: FaceSink,
    *,
    make_tracker: Callable[[float], FaceTracker] | None = None,
    done: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    fused_done: set[int] = frozenset(),  # type: ignore[assignment]
    hooks: ProgressHooks = ProgressHooks(),
    on_frame: FrameHook | None = None,
) -> EnhanceResult:
    """Run one input through the pipeline, handing each saved face and its SR image to `sink`, and
    (options.fusion) each kept track's fusion outcome to `sink.write_fusion`; faces whose (track,
    frame) is in `done`, and fusions of tracks in `fused_done`, are not handed again (a unit with
    anything left is computed whole, so a resumed run writes the same bytes). `make_tracker(frame_rate)`
    is called at the first frame with the rate frames reach the tracker (default: `default_tracker(options)`)."""
    result = EnhanceResult()
    footage = footage_compression(source) if options.fusion is not None else {}
    producer = _Producer(source, options, detector, make_tracker or default_tracker(options), result, hooks, on_frame)
    with Prefetch(producer.run, size=QUEUE_UNITS, name="cctvsr-producer") as units:
        for unit in units:
            fuse_left = unit.views is not None and unit.views.track_id not in fused_done
            if all(face.key in done for face in unit.faces) and not fuse_left:
                result.faces_resumed += len(unit.faces)
                continue
            t0 = time.perf_counter()
            fusion = None
            if unit.views is not None and options.fusion is not None:
                fusion = fuse_views(unit.views, options.fusion, best_frame=_best_frame(unit.faces), **footage)
            t1 = time.perf_counter()
            # Faces over --sr-max-face are saved as they are (their crop is the evidence): no SR call.
            enhanced = options.enhanced(unit.faces)
            crops = [face.crop.image for face in enhanced]
            fused_sr = fusion is not None and fusion.ok and options.enhances(max(unit.views.box_size))  # type: ignore[union-attr]
            if fused_sr:
                crops.append(fusion.result.fused_x1)  # type: ignore[union-attr]
            outputs = resolver.upscale(crops) if crops else []
            t2 = time.perf_counter()
            save_faces(unit.faces, dict(zip((face.key for face in enhanced), outputs)), sink, done, result, hooks)
            if fusion is not None and fuse_left:
                sink.write_fusion(fusion, outputs[-1] if fused_sr else None)
                result.tracks_fused += fusion.ok
            result.times.fuse += t1 - t0
            result.times.sr += t2 - t1
            result.times.write += time.perf_counter() - t2
    return result


def footage_compression(source: SourceInfo) -> dict[str, float]:
    """What fusion is told about the input's compression: an H.264 file's mean QP (read once from its
    first frames), so that its prior is as strong as the codec's error; nothing for other inputs."""
    from cctvsr.degrade.jpeg import codec_qp

    found = codec_qp(source.path, FOOTAGE_QP_FRAMES) if source.kind == "video" and source.path is not None else None
    return {"video_qp": found[1]} if found is not None and found[0] == "h264" else {}


def save_faces(
    faces: list[FaceCandidate], sr: dict[tuple[int, int], np.ndarray], sink: FaceSink, done: set[tuple[int, int]],
    result: EnhanceResult, hooks: ProgressHooks,
) -> None:
    """Hand a unit's faces to the sink with their SR images (`sr` by face key; none: not enhanced),
    except those already saved by an interrupted run; counts them in `result`."""
    for face in faces:
        if face.key in done:
            result.faces_resumed += 1
            continue
        image = sr.get(face.key)
        sink.write(face, image)
        result.faces_saved += 1
        result.faces_not_enhanced += image is None
        hooks.saved(result.faces_saved)


def _best_frame(faces: list[FaceCandidate]) -> int | None:
    """The frame of the face `enhance` shows as the track's best among `faces` (the fusion check's baseline)."""
    if not faces:
        return None
    return max(faces, key=lambda f: (f.quality.total, -f.frame_index)).frame_index
