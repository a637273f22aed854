"""Face detection: the embedded MTCNN on real photos and footage, SCRFD decoding through a fake
model with known faces, and the choice between them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cctvsr.assets import INSIGHTFACE_T1
from cctvsr.errors import InputError, WeightsError
from cctvsr.faces.detect import (
    MtcnnDetector,
    ScrfdDetector,
    create_detector,
    insightface_pack_detector,
    nms,
)
from cctvsr.faces.centerface import CenterFaceDetector
from cctvsr.faces.detections import FaceDetections
from tests.detect_fake_scrfd import FakeFace, build_fake_scrfd, expected_face, paint_face

# The six people of insightface's t1.jpg (1280×886), measured by eye on the image enlarged ×3
# under a 10-px grid: hairline to chin, cheek to cheek (ears left out; the profile face runs from
# the nose tip to the ear).
T1_FACES = {
    "left, cards": (65, 265, 165, 395),
    "dark hair, head tilted": (273, 153, 370, 263),
    "centre, smiling": (467, 270, 575, 405),
    "red shirt, laughing": (750, 340, 845, 473),
    "standing, profile": (918, 55, 1010, 200),
    "right, blonde": (1137, 265, 1222, 390),
}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(INSIGHTFACE_T1.require())), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def t1_faces(mtcnn: MtcnnDetector, t1: np.ndarray) -> FaceDetections:
    return mtcnn.detect(t1)


# --- MTCNN -----------------------------------------------------------------------------------


@pytest.mark.parametrize("person", T1_FACES)
def test_mtcnn_finds_each_person_of_the_group_photo(t1_faces: FaceDetections, person: str) -> None:
    best = max(iou(box, np.array(T1_FACES[person], np.float32)) for box in t1_faces.boxes)
    assert best > 0.6


def test_mtcnn_finds_at_most_one_extra_face_in_the_group_photo(t1_faces: FaceDetections) -> None:
    assert len(T1_FACES) <= len(t1_faces) <= len(T1_FACES) + 1
    assert t1_faces.boxes.dtype == np.float32 and t1_faces.landmarks.shape == (len(t1_faces), 5, 2)
    assert np.all(np.diff(t1_faces.scores) <= 0), "faces come best first"


def test_mtcnn_landmarks_lie_in_their_box_eyes_above_mouth_left_before_right(t1_faces: FaceDetections) -> None:
    for box, points in zip(t1_faces.boxes, t1_faces.landmarks):
        assert np.all(points[:, 0] >= box[0]) and np.all(points[:, 0] <= box[2])
        assert np.all(points[:, 1] >= box[1]) and np.all(points[:, 1] <= box[3])
        assert points[:2, 1].max() < points[3:, 1].min()  # eyes above the mouth corners
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # image-left first


def test_mtcnn_finds_the_astronaut_once(mtcnn: MtcnnDetector, astronaut: np.ndarray) -> None:
    faces = mtcnn.detect(astronaut)
    assert len(faces) == 1
    assert faces.scores[0] > 0.95
    # her face, hairline to chin, measured by eye: x 180-266, y 72-172
    assert iou(faces.boxes[0], np.array([180, 72, 266, 172], np.float32)) > 0.6


def test_mtcnn_finds_nothing_in_a_flat_grey_frame(mtcnn: MtcnnDetector) -> None:
    assert len(mtcnn.detect(np.full((360, 640, 3), 128, np.uint8))) == 0


def test_mtcnn_returns_empty_for_a_frame_smaller_than_its_cell(mtcnn: MtcnnDetector) -> None:
    faces = mtcnn.detect(np.full((5, 5, 3), 200, np.uint8))
    assert len(faces) == 0 and faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_mtcnn_drops_faces_under_min_face(astronaut: np.ndarray, t1: np.ndarray, t1_faces: FaceDetections) -> None:
    # the astronaut's face box is about 88 px wide
    assert len(MtcnnDetector(min_face=80).detect(astronaut)) == 1
    assert len(MtcnnDetector(min_face=100).detect(astronaut)) == 0
    large = MtcnnDetector(min_face=100).detect(t1)
    sides = np.minimum(large.boxes[:, 2] - large.boxes[:, 0], large.boxes[:, 3] - large.boxes[:, 1])
    assert 0 < len(large) < len(t1_faces) and np.all(sides >= 100)


def test_mtcnn_threshold_sets_the_last_stage_score(t1: np.ndarray, t1_faces: FaceDetections) -> None:
    assert t1_faces.scores.min() < 0.99  # the default 0.7 lets a weaker face through
    strict = MtcnnDetector(threshold=0.99).detect(t1)
    assert len(strict) >= 4 and strict.scores.min() >= 0.99


def test_mtcnn_rejects_impossible_options() -> None:
    with pytest.raises(InputError, match="minimum face size"):
        MtcnnDetector(min_face=0)
    with pytest.raises(InputError, match="threshold"):
        MtcnnDetector(threshold=1.5)


def test_mtcnn_rejects_a_frame_that_is_not_rgb_uint8(mtcnn: MtcnnDetector) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        mtcnn.detect(np.zeros((64, 64), np.uint8))


def test_mtcnn_finds_the_walkers_of_the_arcade_clip(shared_data: Path, mtcnn: MtcnnDetector) -> None:
    av = pytest.importorskip("av")
    with av.open(str(shared_data / "video/facenet-pytorch__video.mp4")) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index == 50:
                frame = decoded.to_ndarray(format="rgb24")
                break
    assert frame.shape == (1080, 1920, 3)
    faces = mtcnn.detect(frame)
    widths = faces.boxes[:, 2] - faces.boxes[:, 0]
    assert len(faces) >= 4
    assert np.all((widths >= 20) & (widths <= 200))  # SOURCES.md: faces of 29-175 px in this clip


# --- NMS -------------------------------------------------------------------------------------


def test_nms_keeps_the_best_of_overlapping_boxes_and_min_mode_removes_nested_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 8, 8]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # the nested box overlaps by IoU 0.36 only
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]
    assert nms(boxes[:0], scores[:0], 0.5).shape == (0,)


# --- SCRFD through a fake model with known faces ---------------------------------------------

FRAME_W, FRAME_H = 640, 480  # letterboxed to 640×640 (scale 1) and 128×128 (scale 0.2)
# Centres on multiples of 40 px: anchor centres of stride 8 at both input sizes.
BIG = FakeFace(200, 240, red=255, green=160)  # 200×250 px, score 0.996
MEDIUM = FakeFace(440, 160, red=200, green=96)  # 120×150 px, score 0.566
# A 3-px marker between the 128-input samples: only the 640 run sees it.
SMALL = FakeFace(560, 400, red=240, green=40, radius=1)  # 50×62.5 px, score 0.879


@pytest.fixture(scope="module")
def fake_scrfd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_scrfd(tmp_path_factory.mktemp("insightface") / "models/buffalo_l/det_10g.onnx")


@pytest.fixture(scope="module")
def fake_frame() -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), 100, np.uint8)
    for face in (BIG, MEDIUM, SMALL):
        paint_face(frame, face)
    return frame


def assert_faces(found: FaceDetections, faces: list[FakeFace]) -> None:
    assert len(found) == len(faces)
    for face in faces:
        box, score, points = expected_face(face, FRAME_W)
        k = int(np.argmin(np.abs(found.boxes - box).sum(axis=1)))
        np.testing.assert_allclose(found.boxes[k], box, atol=1.0)
        np.testing.assert_allclose(found.landmarks[k], points, atol=1.0)
        assert found.scores[k] == pytest.approx(score, abs=1e-3)


@pytest.mark.parametrize(
    ("sizes", "faces"),
    [((640,), [BIG, MEDIUM, SMALL]), ((128,), [BIG, MEDIUM]), ((640, 128), [BIG, MEDIUM, SMALL])],
    ids=["640", "128", "both-merged"],
)
def test_scrfd_decodes_known_faces_and_merges_the_two_sizes(
    fake_scrfd: Path, fake_frame: np.ndarray, sizes: tuple[int, ...], faces: list[FakeFace]
) -> None:
    detector = ScrfdDetector(fake_scrfd, input_sizes=sizes)
    assert detector.name == "insightface:buffalo_l/det_10g"
    assert_faces(detector.detect(fake_frame), faces)


def test_scrfd_threshold_and_min_face_drop_faces(fake_scrfd: Path, fake_frame: np.ndarray) -> None:
    assert_faces(ScrfdDetector(fake_scrfd, threshold=0.6).detect(fake_frame), [BIG, SMALL])
    assert_faces(ScrfdDetector(fake_scrfd, min_face=100).detect(fake_frame), [BIG, MEDIUM])


def test_scrfd_finds_nothing_in_flat_tiny_or_sliver_frames(fake_scrfd: Path) -> None:
    detector = ScrfdDetector(fake_scrfd)
    for shape in ((FRAME_H, FRAME_W, 3), (5, 5, 3), (1, 2000, 3), (0, 0, 3)):
        assert len(detector.detect(np.full(shape, 100, np.uint8))) == 0, shape


def test_scrfd_refuses_a_model_without_landmarks(tmp_path: Path) -> None:
    path = build_fake_scrfd(tmp_path / "models/buffalo_l/det_10g.onnx", keypoints=False)
    with pytest.raises(WeightsError, match="landmarks"):
        ScrfdDetector(path)
    assert insightface_pack_detector("buffalo_l", root=tmp_path) is None


# --- choosing a detector ---------------------------------------------------------------------


@pytest.fixture
def empty_pack(tmp_path: Path) -> Path:
    (tmp_path / "models/buffalo_l").mkdir(parents=True)
    return tmp_path


def test_an_empty_pack_folder_is_not_usable(empty_pack: Path) -> None:
    assert insightface_pack_detector("buffalo_l", root=empty_pack) is None


@pytest.mark.parametrize(("content", "why"), [(b"", "empty"), (b"not a model" * 10, "unreadable")])
def test_an_empty_or_damaged_detector_file_is_not_usable(empty_pack: Path, content: bytes, why: str) -> None:
    (empty_pack / "models/buffalo_l/det_10g.onnx").write_bytes(content)
    assert insightface_pack_detector("buffalo_l", root=empty_pack) is None
    detector, message = create_detector("auto", root=empty_pack)
    assert isinstance(detector, CenterFaceDetector)
    assert message.startswith("detector: CenterFace at ×1, ×2 + MTCNN for faces ≥ 40 % of the frame's short side (embedded; InsightFace pack buffalo_l")
    assert why in message and str(empty_pack / "models/buffalo_l") in message


def test_auto_falls_back_to_centerface_and_says_why(tmp_path: Path, empty_pack: Path) -> None:
    detector, message = create_detector("auto", root=tmp_path / "nowhere")
    assert isinstance(detector, CenterFaceDetector) and detector.name == "centerface@1,2+mtcnn≥40%"
    models = tmp_path / "nowhere/models"
    assert message == (
        f"detector: CenterFace at ×1, ×2 + MTCNN for faces ≥ 40 % of the frame's short side (embedded; InsightFace pack buffalo_l not found in {models})"
    )
    _, message = create_detector("auto", root=empty_pack)
    assert "has no det_10g.onnx" in message


def test_insisting_on_insightface_without_a_pack_is_a_one_line_error(empty_pack: Path) -> None:
    with pytest.raises(InputError) as error:
        create_detector("insightface", root=empty_pack)
    text = str(error.value)
    assert "\n" not in text
    assert str(empty_pack / "models/buffalo_l") in text and "buffalo_l.zip" in text


def test_unknown_detector_or_pack_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown detector 'yolo'"):
        create_detector("yolo", root=tmp_path)
    with pytest.raises(InputError, match="unknown InsightFace pack"):
        insightface_pack_detector("buffalo_xl", root=tmp_path)


def test_auto_prefers_a_usable_pack_and_names_its_licence(fake_scrfd: Path, fake_frame: np.ndarray) -> None:
    root = fake_scrfd.parents[2]
    assert insightface_pack_detector("buffalo_l", root=root) == fake_scrfd
    for kind in ("auto", "insightface"):
        detector, message = create_detector(kind, root=root, min_face=100)
        assert isinstance(detector, ScrfdDetector) and detector.name == "insightface:buffalo_l/det_10g"
        assert "SCRFD det_10g from buffalo_l" in message and "non-commercial" in message
        assert_faces(detector.detect(fake_frame), [BIG, MEDIUM])
    detector, message = create_detector("mtcnn", root=root)
    assert isinstance(detector, MtcnnDetector) and "MTCNN" in message


def test_pack_root_defaults_to_insightface_home(
    fake_scrfd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(fake_scrfd.parents[2]))
    assert insightface_pack_detector("buffalo_l") == fake_scrfd
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    assert insightface_pack_detector("buffalo_l") is None
