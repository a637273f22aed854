"""pipeline.py alone: a fake detector and a fake super-resolver in, a fake sink out, no files written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cctvsr.faces.detections import FaceDetections
from cctvsr.faces.track import FaceTracker
from cctvsr.pipeline import FaceCandidate, PipelineOptions, run_enhance
from cctvsr.video import FrameSampling, SourceInfo, list_sources
from samples.make_demo_clip import make_demo_clip

STEADY = (100.0, 60.0, 132.0, 102.0)  # a face in every frame
BRIEF = (300.0, 60.0, 332.0, 102.0)  # a face in frames 10 and 11 only: a track of one confirmed detection
BRIEF_FRAMES = (10, 11)


class FakeDetector:
    """Boxes at fixed places, counted by frame; landmarks where a face's would be."""

    name, min_face = "fake", 10

    def __init__(self) -> None:
        self.frame = -1

    def detect(self, image: np.ndarray) -> FaceDetections:
        self.frame += 1
        boxes = [STEADY] + ([BRIEF] if self.frame in BRIEF_FRAMES else [])
        b = np.asarray(boxes, np.float32)
        cx, cy, w, h = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        offsets = np.asarray([[-0.2, -0.1], [0.2, -0.1], [0.0, 0.05], [-0.15, 0.2], [0.15, 0.2]], np.float32)
        landmarks = np.stack([cx, cy], 1)[:, None, :] + offsets[None] * np.stack([w, h], 1)[:, None, :]
        return FaceDetections(b, np.full(len(b), 0.9, np.float32), landmarks.astype(np.float32))


class FakeResolver:
    """×4 by pixel repetition; remembers each call's crop count (a unit is one call)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def upscale(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(crops))
        return [crop.repeat(4, 0).repeat(4, 1) for crop in crops]


class ListSink:
    def __init__(self) -> None:
        self.faces: list[tuple[FaceCandidate, np.ndarray]] = []

    def write(self, face: FaceCandidate, sr: np.ndarray) -> None:
        self.faces.append((face, sr))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    clip = make_demo_clip(tmp_path_factory.mktemp("pipeline") / "demo.mp4")
    return list_sources(str(clip))[0]


def _run(source: SourceInfo, options: PipelineOptions, **kwargs) -> tuple[ListSink, FakeResolver, object]:
    sink, resolver = ListSink(), FakeResolver()
    result = run_enhance(source, options, FakeDetector(), resolver, sink, **kwargs)  # type: ignore[arg-type]
    return sink, resolver, result


def test_the_sink_gets_each_tracks_best_faces_with_their_4x_images_and_no_file_is_written(source: SourceInfo) -> None:
    folder = Path(source.label).parent
    before = sorted(folder.rglob("*"))
    sink, resolver, result = _run(source, PipelineOptions(best=2, sampling=FrameSampling(end=1.0)))
    assert sorted(folder.rglob("*")) == before  # the pipeline knows no files: the sink writes
    assert result.frames == 13 and result.faces_saved == len(sink.faces) == 2
    assert {face.track_id for face, _ in sink.faces} == {1}  # the brief face never formed a long-enough track
    for face, sr in sink.faces:
        assert sr.shape == (4 * face.crop.image.shape[0], 4 * face.crop.image.shape[1], 3)
    assert resolver.calls == [2]  # a track's faces are one unit, super-resolved in one call
    assert result.tracks[1].faces_seen == 12 and result.tracks[1].first.frame == 1  # confirmed at its 2nd detection


def test_min_track_len_of_the_options_decides_which_tracks_are_kept(source: SourceInfo) -> None:
    sink, _, _ = _run(source, PipelineOptions(best=1, min_track_len=1, sampling=FrameSampling(end=1.0)))
    assert sorted(face.track_id for face, _ in sink.faces) == [1, 2]
    sink, _, _ = _run(source, PipelineOptions(best=1, min_track_len=13, sampling=FrameSampling(end=1.0)))
    assert sink.faces == []  # the steady face was tracked in 12 frames of 13


def test_a_given_tracker_factory_is_used(source: SourceInfo) -> None:
    made: list[float] = []

    def make(rate: float) -> FaceTracker:
        made.append(rate)
        return FaceTracker(rate, min_track_len=1)

    sink, _, _ = _run(source, PipelineOptions(best=1, sampling=FrameSampling(end=1.0)), make_tracker=make)
    assert made == [12.0] and len(sink.faces) == 2


def test_faces_already_done_are_not_handed_to_the_sink_again(source: SourceInfo) -> None:
    options = PipelineOptions(all_frames=True, sampling=FrameSampling(end=1.0))
    first, _, _ = _run(source, options)
    done = {face.key for face, _ in first.faces[:4]}
    second, _, result = _run(source, options, done=done)
    assert [face.key for face, _ in second.faces] == [face.key for face, _ in first.faces[4:]]
    assert result.faces_resumed == 4 and result.faces_saved == len(first.faces) - 4


def test_the_frame_hook_sees_detections_with_their_track_ids(source: SourceInfo) -> None:
    seen: list[np.ndarray] = []
    _run(source, PipelineOptions(sampling=FrameSampling(end=0.5)), on_frame=lambda frame, detections: seen.append(detections.track_ids))
    assert [ids.tolist() for ids in seen[:3]] == [[-1], [1], [1]]
