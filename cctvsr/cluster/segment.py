"""One work unit through the single-machine producer: decode → gate → detect → track → select,
without super-resolution, into plain data that a file's other segments can be joined with.

The producer is `cctvsr.pipeline._Producer` itself, so that a unit searches, tracks and scores
exactly as one machine does; `_UnitProducer` only narrows what counts to the frames the unit owns:
overlap frames before them are decoded, gated, detected and tracked (that is what rebuilds the
stages' state) but never selected, logged or counted. Tracks are kept however short they are (one
machine's --min-track-len applies to the joined track), and each track's boxes are kept so that
join.py can find the same person in the next segment's overlap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from cctvsr.cluster.units import WorkUnit
from cctvsr.faces.detections import FaceDetections, FaceDetector
from cctvsr.faces.motion import GateStats
from cctvsr.faces.track import FaceTracker
from cctvsr.pipeline import EnhanceResult, FaceCandidate, PipelineOptions, ProgressHooks, StageTimes, TrackLog, Unit, _Producer
from cctvsr.video import DecodeStats, Frame, FrameSampling, SourceInfo


@dataclass
class TrackPart:
    """One segment's view of a track: its sightings in owned frames, its best views there (best first),
    the owned frame where it ended (None: still alive at the unit's end), and every box it had."""

    local_id: int
    log: TrackLog | None  # None: seen only in overlap frames
    faces: list[FaceCandidate]
    ended_at: int | None
    boxes: dict[int, np.ndarray]  # frame number -> its box in that frame


@dataclass
class UnitResult:
    """What a unit hands back: its tracks and its share of the input's counts (owned frames only)."""

    unit: WorkUnit
    parts: list[TrackPart]
    frames: int = 0
    faces_found: int = 0
    faces_too_small: int = 0
    gate: GateStats = field(default_factory=GateStats)
    camera_moved: int = 0  # owned frames the gate searched whole because the camera itself moved
    decode: DecodeStats = field(default_factory=DecodeStats)
    times: StageTimes = field(default_factory=StageTimes)
    node: str = ""  # where it ran (the summary's per-node counts)


class _Collect:
    """Stands in for the pipeline's queue: the units a producer emits, kept per track in a list."""

    def __init__(self) -> None:
        self.halt = threading.Event()
        self.units: list[Unit] = []

    def put(self, item: Unit, wait: bool = True) -> bool:
        self.units.append(item)
        return True

    def halted(self, wait: float = 0.0) -> bool:
        return self.halt.is_set()


class _UnitProducer(_Producer):
    """The single-machine producer, counting and selecting only in the frames its unit owns."""

    def __init__(self, unit: WorkUnit, source: SourceInfo, options: PipelineOptions, detector: FaceDetector, result: EnhanceResult) -> None:
        super().__init__(source, options, detector, lambda rate: FaceTracker(rate, min_track_len=1), result, ProgressHooks(), None)
        self.unit = unit
        self.owned = UnitResult(unit, [])
        self.boxes: dict[int, dict[int, np.ndarray]] = {}
        self.ended_at: dict[int, int] = {}
        self.frame_index = -1

    def _detect(self, frame: Frame) -> FaceDetections:
        self.frame_index = frame.index
        if self.unit.owns(frame.index):
            moved = self.gate.camera_moved if self.gate else 0
            detections = super()._detect(frame)
            self.owned.camera_moved += (self.gate.camera_moved if self.gate else 0) - moved
            return detections
        counted, self.result.gate = self.result.gate, GateStats()  # overlap frames are another unit's to count
        try:
            return super()._detect(frame)
        finally:
            self.result.gate = counted

    def _remember(self, detections: FaceDetections) -> None:
        super()._remember(detections)
        for row in np.flatnonzero(detections.track_ids > 0):
            self.boxes.setdefault(int(detections.track_ids[row]), {})[self.frame_index] = detections.boxes[row].copy()

    def _select(self, frame: Frame, detections: FaceDetections) -> None:
        if not self.unit.owns(frame.index):
            return
        self.owned.frames += 1
        self.owned.faces_found += len(detections)
        self.owned.faces_too_small += detections.too_small
        super()._select(frame, detections)

    def _end_track(self, track_id: int) -> None:
        if self.unit.owns(self.frame_index):
            self.ended_at[track_id] = self.frame_index
        super()._end_track(track_id)


def unit_sampling(unit: WorkUnit, sampling: FrameSampling) -> FrameSampling:
    """The run's frame sampling narrowed to the unit's decode window."""
    if unit.segments == 1:
        return sampling
    return FrameSampling(every=sampling.every, fps=sampling.fps, start=unit.start, end=unit.end)


def run_unit(unit: WorkUnit, source: SourceInfo, options: PipelineOptions, detector: FaceDetector, node: str = "") -> UnitResult:
    """Decode, detect, track and select one unit; its tracks and counts as plain data."""
    result = EnhanceResult()
    producer = _UnitProducer(unit, source, replace(options, sampling=unit_sampling(unit, options.sampling)), detector, result)
    feed = _Collect()
    producer.run(feed)  # type: ignore[arg-type]  # the producer needs only put / halt / halted
    kept: dict[int, list[FaceCandidate]] = {}
    for item in feed.units:
        for face in item.faces:
            kept.setdefault(face.track_id, []).append(face)
    parts = [
        TrackPart(track_id, result.tracks.get(track_id), kept.get(track_id, []), producer.ended_at.get(track_id), boxes)
        for track_id, boxes in sorted(producer.boxes.items())
    ]
    owned = producer.owned
    owned.parts = parts
    owned.gate = result.gate
    owned.decode = result.decode
    owned.times = result.times
    owned.node = node
    return owned
