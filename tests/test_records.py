"""The enhance output's records: a FaceRecord round-trips through a manifest line; other schemas are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cctvsr.errors import InputError
from cctvsr.output.manifest import ManifestWriter
from cctvsr.output.records import (
    SCHEMA, BestFace, FaceRecord, FileRecord, Provenance, face_file, face_files, read_faces,
)


def _record(track_id: int = 3, frame_index: int = 17, quality: float = 0.625) -> FaceRecord:
    provenance = Provenance(
        input={"label": "clip.mp4", "sha256": "ab" * 32}, detector="centerface@1,2",
        model={"name": "tiny", "sha256": "0" * 64, "source": "test"}, backend="torch", device="cpu", precision="fp32",
        options={"best": 3, "all_frames": False}, versions={"cctvsr": "0.0.0"},
    )
    return FaceRecord(
        provenance=provenance, track_id=track_id, frame_index=frame_index, pts=1.4167, wall_time=None,
        box=[10.5, 20.25, 40.0, 60.0], crop_box=[0, 4, 52, 76], crop_size=[52, 72], clipped=["left"],
        landmarks=[[20.0, 30.0]] * 5, det_score=0.8123, quality={"total": quality, "sharpness": 0.5},
        outputs={kind: FileRecord(face_file(track_id, frame_index, kind), kind * 8) for kind in ("lr", "bicubic", "sr")},
    )


def test_face_record_round_trips_through_a_manifest_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    first, second = _record(), _record(4, 2)
    with ManifestWriter(path) as manifest:
        manifest.append(first.to_json())
        manifest.append(second.to_json())
    line = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert line["schema"] == SCHEMA and line["input"]["label"] == "clip.mp4" and line["outputs"]["sr"]["path"] == "track_0003/000017_sr.png"
    assert read_faces(path) == [first, second]


def test_a_line_without_schema_is_read_as_the_first_format(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    value = _record().to_json()
    del value["schema"]
    path.write_text(json.dumps(value) + "\n", encoding="utf-8")
    assert read_faces(path) == [_record()]


@pytest.mark.parametrize("schema", [SCHEMA + 1, "1"])
def test_a_line_of_another_schema_is_refused_in_one_line(tmp_path: Path, schema: object) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({**_record().to_json(), "schema": schema}) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_faces(path)
    message = str(caught.value)
    assert "\n" not in message and f"{path}: line 1" in message and f"schema {schema}" in message


def test_a_line_that_is_not_a_face_record_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"schema": SCHEMA, "track_id": 1}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 1: not a cctvsr face record"):
        read_faces(path)


def test_best_face_and_face_files_follow_the_layout(tmp_path: Path) -> None:
    record = _record()
    best = BestFace.of(record)
    assert (best.quality, best.sr, best.seen.frame) == (0.625, "track_0003/000017_sr.png", 17)
    for output in record.outputs.values():
        (tmp_path / "clip-abababab" / output.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "clip-abababab" / output.path).write_bytes(b"png")
    (tmp_path / "clip-abababab" / "track_0009").mkdir()
    (tmp_path / "clip-abababab" / "track_0009" / "000001_sr.png").write_bytes(b"no lr or bicubic beside it")
    found = face_files(tmp_path)
    assert list(found) == [tmp_path / "clip-abababab" / "track_0003"]
    assert found[tmp_path / "clip-abababab" / "track_0003"] == [
        {kind: tmp_path / "clip-abababab" / o.path for kind, o in record.outputs.items()}
    ]
