"""The identity metric separates people before it is trusted: dlib descriptors on real photos of
known people (labels written here), same-person pairs against different-person pairs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from cctvsr.evaluate.identity import DESCRIPTOR_THRESHOLD, face_identity, unavailable_reason
from cctvsr.images import read_image

# Who is in which photo (from the source repositories' file names).
PEOPLE = {
    "obama": ["faces_hq/face_recognition__obama-1080p.jpg", "faces_lq/face_recognition__obama-240p.jpg", "faces_hq/face_recognition__obama2.jpg"],
    "biden": ["faces_hq/face_recognition__biden.jpg", "faces_hq/face_recognition__train_biden_biden2.jpg"],
    "alex_lacamoire": ["faces_hq/face_recognition__alex-lacamoire.png", "faces_hq/face_recognition__train_alex_lacamoire_img1.jpg"],
    "kit_harington": ["faces_hq/face_recognition__train_kit_harington_john1.jpeg", "faces_hq/face_recognition__train_kit_harington_john2.jpeg"],
    "rose_leslie": ["faces_hq/face_recognition__train_rose_leslie_img1.jpg", "faces_hq/face_recognition__train_rose_leslie_img2.jpg"],
    "clapton": ["faces_hq/openface__clapton-1.jpg", "faces_hq/openface__clapton-2.jpg"],
    "lennon": ["faces_hq/openface__lennon-1.jpg", "faces_hq/openface__lennon-2.jpg"],
}


def auc(positives: list[float], negatives: list[float]) -> float:
    """P(a different-person distance exceeds a same-person one), ties counting half (Mann–Whitney)."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((neg > pos).sum() + 0.5 * (neg == pos).sum()) / (pos.size * neg.size))


def test_auc_counts_ties_half_and_orders() -> None:
    assert auc([0.1, 0.2], [0.5, 0.6]) == 1.0 and auc([0.5], [0.5]) == 0.5 and auc([0.7], [0.2]) == 0.0


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_dlib_descriptor_distance_separates_people_with_auc_at_least_095(shared_data: Path) -> None:
    model = face_identity()
    descriptors: dict[tuple[str, str], np.ndarray] = {}
    for person, files in PEOPLE.items():
        for name in files:
            reference = model.reference(read_image(shared_data / name).rgb, assume_crop=False)
            assert reference is not None, f"no face found in {name}"
            descriptors[(person, name)] = reference.descriptor
    same, different = [], []
    for (a, da), (b, db) in itertools.combinations(descriptors.items(), 2):
        (same if a[0] == b[0] else different).append(float(np.linalg.norm(da - db)))
    assert len(same) >= 5 and len(different) >= 20
    assert auc(same, different) >= 0.95
    # dlib's own threshold reads most same-person pairs as the same and most others as different
    assert np.mean(np.array(same) < DESCRIPTOR_THRESHOLD) >= 0.8 and np.mean(np.array(different) >= DESCRIPTOR_THRESHOLD) >= 0.8
    print(f"identity AUC {auc(same, different):.3f} on {len(same)} same-person and {len(different)} different-person pairs")


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_landmarks_from_the_hr_face_score_a_copy_as_zero_and_a_blur_as_farther(astronaut: np.ndarray) -> None:
    import cv2

    model = face_identity()
    face = np.ascontiguousarray(astronaut[20:236, 120:336])
    reference = model.reference(face)
    assert reference is not None and reference.detected
    assert model.distance(reference, face) == pytest.approx(0.0, abs=1e-6)
    near = model.distance(reference, cv2.GaussianBlur(face, (0, 0), 1.0))
    far = model.distance(reference, cv2.GaussianBlur(face, (0, 0), 6.0))
    assert 0 < near < far


def test_arcface_alignment_maps_the_landmarks_onto_its_template() -> None:
    from cctvsr.evaluate.arcface import TEMPLATE_112, alignment_matrix

    angle = np.radians(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (TEMPLATE_112 - 56.0) @ rotation.T * 2.3 + [140.0, 95.0]
    matrix = alignment_matrix(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - TEMPLATE_112).max() < 0.01


def _flatten_onnx(path: Path) -> None:
    """A stand-in recognition network: the aligned face's pixels as its embedding."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input.1"], ["embedding"], axis=1)],
        "flatten",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3 * 112 * 112])],
    )
    path.parent.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_arcface_metric_runs_when_a_pack_recogniser_is_on_disk_and_says_why_not_otherwise(
    astronaut: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    from cctvsr.evaluate import arcface
    from cctvsr.evaluate.scoring import build_metrics

    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    arcface.arcface.cache_clear()
    absent = {m.key: m for m in build_metrics(128, with_identity=True)}["identity_arcface"]
    assert absent.score is None and "no InsightFace recognition model" in absent.unavailable

    _flatten_onnx(tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx")
    arcface.arcface.cache_clear()
    metric = {m.key: m for m in build_metrics(128, with_identity=True)}["identity_arcface"]
    hr = np.ascontiguousarray(astronaut[20:148, 150:278])
    blurred = cv2.GaussianBlur(hr, (0, 0), 1.5)
    other = np.ascontiguousarray(astronaut[300:428, 300:428])
    same, near, far = metric.score(hr, hr, 0), metric.score(hr, blurred, 0), metric.score(hr, other, 0)
    assert abs(same - 1.0) < 1e-6 and far < near < same
    arcface.arcface.cache_clear()
