"""Face stages after detection: cropping, quality scoring, best-K selection and tracking."""

from __future__ import annotations

import gc
import weakref
from collections import defaultdict

import cv2
import numpy as np
import pytest

from cctvsr.errors import InputError
from cctvsr.faces.crop import crop_face
from cctvsr.faces.detections import FaceDetections
from cctvsr.faces.select import WEIGHTS, BestFaces, face_quality
from cctvsr.faces.track import FaceTracker
from samples.make_demo_clip import ground_truth

# ArcFace's 5-point template for a frontal 112×112 face: eyes, nose, mouth corners.
FRONTAL_112 = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32)


# --- crop ------------------------------------------------------------------------------------------


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)


def test_crop_expands_by_the_margin_and_rounds_outward(frame: np.ndarray) -> None:
    crop = crop_face(frame, np.array([20, 30, 40, 50], np.float32), margin=0.4)
    assert crop.box == (12, 22, 48, 58) and crop.clipped == ()
    # w = 19.2, h = 20.7: 12.82 → 12, 47.38 → 48, 21.92 → 21, 59.18 → 60.
    crop = crop_face(frame, np.array([20.5, 30.2, 39.7, 50.9]), margin=0.4)
    assert crop.box == (12, 21, 48, 60)
    assert crop_face(frame, np.array([20, 30, 40, 50]), margin=0.0).box == (20, 30, 40, 50)


def test_crop_is_the_frames_own_pixels_never_resized_and_not_a_view(frame: np.ndarray) -> None:
    crop = crop_face(frame, np.array([20.5, 30.2, 39.7, 50.9]), margin=0.4)
    x1, y1, x2, y2 = crop.box
    assert crop.image.shape == (y2 - y1, x2 - x1, 3) == (39, 36, 3)
    assert np.array_equal(crop.image, frame[y1:y2, x1:x2])
    assert not np.shares_memory(crop.image, frame)


@pytest.mark.parametrize(
    ("box", "expected_box", "sides"),
    [
        ((2, 30, 22, 50), (0, 22, 30, 58), ("left",)),
        ((40, 1, 60, 21), (32, 0, 68, 29), ("top",)),
        ((85, 30, 99, 50), (79, 22, 100, 58), ("right",)),
        ((40, 70, 60, 79), (32, 66, 68, 80), ("bottom",)),
        ((-5, -5, 15, 15), (0, 0, 23, 23), ("left", "top")),
        ((-10, -10, 110, 90), (0, 0, 100, 80), ("left", "top", "right", "bottom")),
    ],
)
def test_crop_records_each_side_cut_by_the_frame_edge(
    frame: np.ndarray, box: tuple, expected_box: tuple, sides: tuple
) -> None:
    crop = crop_face(frame, np.array(box, np.float32), margin=0.4)
    assert crop.box == expected_box and crop.clipped == sides
    assert np.array_equal(crop.image, frame[expected_box[1] : expected_box[3], expected_box[0] : expected_box[2]])


@pytest.mark.parametrize(
    ("box", "margin", "message"),
    [
        ((120, 10, 140, 30), 0.4, "leaves 0 pixels inside the 100×80 frame"),
        ((-40, 10, -20, 30), 0.4, "leaves 0 pixels inside the 100×80 frame"),
        ((10, 10, 10, 30), 0.4, "has no area"),
        ((10, 10, float("nan"), 30), 0.4, "4 finite numbers"),
        ((10, 10, 20, 30), -0.1, "margin must be a number >= 0"),
    ],
)
def test_crop_rejects_boxes_that_give_no_pixels(frame: np.ndarray, box: tuple, margin: float, message: str) -> None:
    with pytest.raises(InputError, match=message):
        crop_face(frame, np.array(box, np.float64), margin=margin)


# --- quality ---------------------------------------------------------------------------------------


def _frontal_landmarks(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return FRONTAL_112 / 112.0 * np.array([x2 - x1, y2 - y1], np.float32) + np.array([x1, y1], np.float32)


def _on_canvas(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    canvas = np.full((128, 128, 3), 120, np.uint8)
    canvas[32:96, 32:96] = face
    return canvas, np.array([32, 32, 96, 96], np.float32)


def test_blurred_face_scores_lower_sharpness(astronaut_face: np.ndarray) -> None:
    sharp_frame, box = _on_canvas(astronaut_face)
    blurred_frame, _ = _on_canvas(cv2.GaussianBlur(astronaut_face, (0, 0), 2.0))
    landmarks = _frontal_landmarks(box)
    sharp = face_quality(sharp_frame, box, landmarks, 0.9)
    blurred = face_quality(blurred_frame, box, landmarks, 0.9)
    assert sharp.sharpness == pytest.approx(0.73, abs=0.05)
    assert blurred.sharpness < sharp.sharpness - 0.35
    assert blurred.total < sharp.total


def test_sensor_noise_does_not_pass_for_sharpness() -> None:
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 5, (128, 128, 3)), 0, 255).astype(np.uint8)
    box = np.array([32, 32, 96, 96], np.float32)
    assert face_quality(flat, box, _frontal_landmarks(box), 0.9).sharpness < 0.15


def test_tiny_face_scores_lower_size(astronaut_face: np.ndarray) -> None:
    frame, box = _on_canvas(astronaut_face)
    big = face_quality(frame, box, _frontal_landmarks(box), 0.9)
    tiny_box = np.array([40, 40, 64, 70], np.float32)  # 24 × 30
    tiny = face_quality(frame, tiny_box, _frontal_landmarks(tiny_box), 0.9)
    assert big.size == pytest.approx(64 / 112) and tiny.size == pytest.approx(24 / 112)
    huge = np.array([0, 0, 128, 120], np.float32)
    assert face_quality(frame, huge, _frontal_landmarks(huge), 0.9).size == 1.0


def test_profile_landmarks_score_lower_frontal(astronaut_face: np.ndarray) -> None:
    frame, box = _on_canvas(astronaut_face)
    frontal = face_quality(frame, box, _frontal_landmarks(box), 0.9)
    profile_112 = FRONTAL_112.copy()
    profile_112[2, 0] = 76.0  # nose beyond the right eye
    profile_112[3:, 0] += 14.0  # mouth corners turned with the head
    profile = face_quality(frame, box, profile_112 / 112 * 64 + 32, 0.9)
    looking_down = FRONTAL_112.copy()
    looking_down[2, 1] = 88.0  # nose almost on the mouth line
    down = face_quality(frame, box, looking_down / 112 * 64 + 32, 0.9)
    assert frontal.frontal > 0.95
    assert profile.frontal < 0.2 and down.frontal < 0.3
    assert face_quality(frame, box, np.zeros((5, 2), np.float32), 0.9).frontal == 0.0


def test_over_exposed_face_scores_lower_exposure(astronaut_face: np.ndarray) -> None:
    frame, box = _on_canvas(astronaut_face)
    bright_frame, _ = _on_canvas(np.clip(astronaut_face.astype(np.float32) * 2.2, 0, 255).astype(np.uint8))
    landmarks = _frontal_landmarks(box)
    normal = face_quality(frame, box, landmarks, 0.9)
    bright = face_quality(bright_frame, box, landmarks, 0.9)
    assert normal.exposure > 0.9
    assert bright.exposure < 0.3


def test_total_weighs_the_detector_score_0_28_and_a_face_80_percent_inside_0_64(astronaut_face: np.ndarray) -> None:
    """The documented figures, written out here rather than read from WEIGHTS: only the detector
    score changes between these views, so the totals differ by 0.28 × the change in score."""
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    frame, box = _on_canvas(astronaut_face)
    landmarks = _frontal_landmarks(box)
    scores = (0.0, 0.55, 1.0, 1.7, float("nan"))
    views = [face_quality(frame, box, landmarks, score) for score in scores]
    for q in views:
        parts = [q.det_score, q.size, q.sharpness, q.frontal, q.exposure]
        assert all(0.0 <= p <= 1.0 for p in parts) and 0.0 < q.total <= 1.0
    none, some, full, beyond, nan = (q.total for q in views)
    assert full - none == pytest.approx(0.28) and some - none == pytest.approx(0.28 * 0.55)
    assert beyond == full and nan == none  # a score above 1 counts as 1, NaN as 0
    assert face_quality(frame, box, landmarks, 0.9, inside=0.8).total == pytest.approx(0.64 * face_quality(frame, box, landmarks, 0.9).total)
    outside = np.array([200, 200, 240, 240], np.float32)
    q = face_quality(frame, outside, _frontal_landmarks(outside), 0.9)
    assert q.sharpness == 0.0 and q.exposure == 0.0 and 0.0 <= q.total <= 1.0


# --- best K ----------------------------------------------------------------------------------------


def test_best_faces_keeps_exactly_the_k_best_per_track_best_first() -> None:
    keeper: BestFaces[str] = BestFaces(3)
    qualities = [0.5, 0.9, 0.1, 0.7, 0.9, 0.3, 0.8]
    for frame_index, quality in enumerate(qualities):
        assert keeper.add(1, frame_index, quality, f"a{frame_index}") == []
        assert keeper.add(2, frame_index, 1.0 - quality, f"b{frame_index}") == []
    assert keeper.open_tracks() == {1, 2}
    # 0.9 at frames 1 and 4: the earlier frame wins the tie.
    assert keeper.finish(1) == ["a1", "a4", "a6"]
    assert keeper.open_tracks() == {2}
    assert keeper.finish(1) == []
    assert keeper.finish_all() == {2: ["b2", "b5", "b0"]}
    assert keeper.open_tracks() == set()


def test_best_faces_all_frames_mode_releases_every_face_at_once() -> None:
    keeper: BestFaces[int] = BestFaces(None)
    assert [keeper.add(7, i, 0.5, i) for i in range(4)] == [[0], [1], [2], [3]]
    assert keeper.open_tracks() == {7}
    assert keeper.finish(7) == [] and keeper.open_tracks() == set()


def test_best_faces_memory_is_bounded_by_k_per_open_track() -> None:
    class Face:
        pass

    alive: weakref.WeakSet[Face] = weakref.WeakSet()
    keeper: BestFaces[Face] = BestFaces(2)
    rng = np.random.default_rng(0)
    for frame_index in range(500):
        for track_id in (1, 2, 3):
            face = Face()
            alive.add(face)
            keeper.add(track_id, frame_index, float(rng.random()), face)
            del face
    gc.collect()
    assert len(alive) == 6
    keeper.finish(2)
    gc.collect()
    assert len(alive) == 4


def test_best_faces_rejects_k_below_one() -> None:
    with pytest.raises(InputError, match="at least 1"):
        BestFaces(0)


# --- tracking --------------------------------------------------------------------------------------

PERSON_TAG = 1000.0  # landmarks carry the person id as an offset, to see rows stay whole


def _detections(faces: list[dict], rng: np.random.Generator, jitter: float) -> tuple[FaceDetections, np.ndarray]:
    """GT faces as detector output: jittered boxes, varied scores, shuffled rows."""
    order = rng.permutation(len(faces))
    boxes, scores, landmarks, persons = [], [], [], []
    for i in order:
        box = np.array(faces[i]["box"], np.float32) + rng.normal(0, jitter, 4).astype(np.float32)
        person = faces[i]["person_id"]
        boxes.append(box)
        # Person 5 is often a weak detection: ByteTrack's second stage must keep its track.
        scores.append(0.4 if person == 5 and rng.random() < 0.5 else rng.uniform(0.7, 0.99))
        landmarks.append(_frontal_landmarks(box) + PERSON_TAG * person)
        persons.append(person)
    detections = FaceDetections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(landmarks, np.float32).reshape(-1, 5, 2),
    )
    return detections, np.array(persons, np.int64)


def _run(
    tracker: FaceTracker, per_frame: list[dict], drop: dict[int, range] | None = None, jitter: float = 1.0
) -> tuple[list[tuple[int, int, int, int, float]], dict[int, int]]:
    """Feed GT frames to the tracker; rows of (frame, person, track id, landmark tag, score), and when tracks ended."""
    rng = np.random.default_rng(0)
    rows = []
    ended_at: dict[int, int] = {}
    for frame in per_frame:
        faces = [f for f in frame["faces"] if not (drop and frame["index"] in drop.get(f["person_id"], ()))]
        detections, persons = _detections(faces, rng, jitter)
        ids = tracker.update(detections)
        assert ids.shape == (len(detections),) and ids.dtype == np.int64
        for row, track_id in enumerate(ids):
            tag = int(round(float(detections.landmarks[row, 0, 0] - detections.boxes[row, 0]) // PERSON_TAG))
            rows.append((frame["index"], int(persons[row]), int(track_id), tag, float(detections.scores[row])))
        for track_id in tracker.ended():
            ended_at[track_id] = frame["index"]
    return rows, ended_at


def test_tracker_gives_each_demo_person_one_stable_track() -> None:
    truth = ground_truth(seconds=4.0, fps=12.0)
    tracker = FaceTracker(truth["fps"])
    rows, ended_at = _run(tracker, truth["per_frame"])
    tracks_of: dict[int, set[int]] = defaultdict(set)
    persons_of: dict[int, set[int]] = defaultdict(set)
    unconfirmed: dict[int, list[int]] = defaultdict(list)
    for frame_index, person, track_id, tag, _score in rows:
        assert tag == person  # the row's landmarks are still that person's
        if track_id == -1:
            unconfirmed[person].append(frame_index)
            continue
        tracks_of[person].add(track_id)
        persons_of[track_id].add(person)
    # A track is confirmed on its second detection; a weak (0.4) first sighting starts none.
    assert {p: f for p, f in unconfirmed.items() if p != 5} == {p: [0] for p in range(5)}
    assert len(unconfirmed[5]) <= 3 and max(unconfirmed[5]) < 4
    assert {p: len(t) for p, t in tracks_of.items()} == {p: 1 for p in range(6)}
    assert all(len(p) == 1 for p in persons_of.values())
    assert sorted(persons_of) == [1, 2, 3, 4, 5, 6]  # ids start at 1
    assert ended_at == {}
    assert tracker.alive() == {1, 2, 3, 4, 5, 6}
    lengths = tracker.track_lengths()
    assert sorted(lengths.values()) == sorted(48 - len(unconfirmed[p]) for p in range(6))
    assert all(tracker.long_enough(t) for t in range(1, 7))


def test_tracker_keeps_the_id_through_a_gap_within_the_buffer_and_starts_a_new_one_after() -> None:
    truth = ground_truth(seconds=4.0, fps=12.0)
    buffer = 5
    # Person 2 missing for exactly `buffer` frames (10–14), person 3 for buffer + 1 (10–15).
    tracker = FaceTracker(truth["fps"], lost_track_buffer=buffer)
    rows, ended_at = _run(tracker, truth["per_frame"], drop={2: range(10, 10 + buffer), 3: range(10, 11 + buffer)})
    ids = defaultdict(list)
    for frame_index, person, track_id, _, _ in rows:
        ids[person].append((frame_index, track_id))
    person2 = {t for f, t in ids[2] if t != -1}
    before3 = {t for f, t in ids[3] if f < 10 and t != -1}
    after3 = {t for f, t in ids[3] if f > 16}
    assert len(person2) == 1
    assert len(before3) == 1 and len(after3) == 1 and before3 != after3
    assert dict(ids[3])[16] == -1  # the returning face is a new, not yet confirmed track
    (old3,) = before3
    assert ended_at == {old3: 10 + buffer}  # ended on its (buffer + 1)-th missing frame
    assert tracker.track_lengths()[old3] == 9  # frames 1–9


def test_tracker_maps_ids_back_to_rows_when_scores_reorder_them() -> None:
    # One strong and one weak face: ByteTrack returns the weak row after the strong one, whatever
    # their input order, so ids must be mapped back by row index.
    tracker = FaceTracker(12.0)
    weak_first = np.array([[100, 100, 130, 136], [10, 10, 40, 46]], np.float32)
    landmarks = np.stack([_frontal_landmarks(b) for b in weak_first])
    for step in range(4):
        ids = tracker.update(FaceDetections(weak_first + step, np.array([0.45, 0.95], np.float32), landmarks))
    strong = ids[1]
    assert strong >= 1 and ids[0] == -1  # a weak face alone never starts a track
    swapped = tracker.update(FaceDetections(weak_first[::-1] + 4, np.array([0.95, 0.45], np.float32), landmarks[::-1]))
    assert swapped.tolist() == [strong, -1]


def test_tracker_ages_tracks_on_empty_frames_and_rejects_bad_settings() -> None:
    tracker = FaceTracker(10.0, lost_track_buffer=2)
    box = np.array([[10, 10, 40, 46]], np.float32)
    one = FaceDetections(box, np.array([0.9], np.float32), _frontal_landmarks(box[0])[None])
    assert tracker.update(one).tolist() == [-1]
    assert tracker.update(one).tolist() == [1]
    results = [tracker.update(FaceDetections.empty()) for _ in range(3)]
    assert all(r.shape == (0,) for r in results)
    assert tracker.ended() == {1} and tracker.ended() == set()
    assert FaceTracker(25.0).lost_track_buffer == 25  # default: one second of frames
    for kwargs in ({"lost_track_buffer": -1}, {"min_track_len": 0}):
        with pytest.raises(InputError):
            FaceTracker(12.0, **kwargs)
    with pytest.raises(InputError, match="frame rate"):
        FaceTracker(0.0)
