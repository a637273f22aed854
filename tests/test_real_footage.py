"""`cctvsr enhance` on real footage (../shared/data/video, see its SOURCES.md), tiny RRDB model.

MTCNN costs 0.3–2 s per frame here (480×270 to 1080p on 2 busy cores), so each clip is thinned
with --every / --end / --min-face to a few dozen frames at most; the faces SOURCES.md describes are
still inside the window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.sr.weights import save_model_dir
from tests.conftest import tiny_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights = tiny_weights()
    return save_model_dir(tmp_path_factory.mktemp("real-footage") / "tiny-model", weights.config, weights.state_dict)


def _tracks(video: Path, model: Path, out: Path, *options: str) -> list[dict]:
    result = runner.invoke(app, ["enhance", str(video), "--out", str(out), "--model", str(model), "--best", "1", *options])
    assert result.exit_code == 0, result.stderr
    (folder,) = out.iterdir()
    tracks = json.loads((folder / "tracks.json").read_text(encoding="utf-8"))["tracks"]
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted({r["track_id"] for r in records}) == [t["track_id"] for t in tracks]
    return tracks


@pytest.mark.parametrize(
    ("clip", "options", "at_least"),
    [
        # stage performer and audience close-ups, faces 31–123 px: 19 frames of the first 4 s
        ("face_recognition__short_hamilton_clip.mp4", ["--end", "4", "--every", "5"], 1),
        # 1080p arcade crowd walking toward the camera, up to 8 faces of 30–175 px: 9 frames of 1.6 s,
        # faces of 40 px and up (the pyramid then starts 2× smaller, halving MTCNN's cost)
        ("facenet-pytorch__video.mp4", ["--end", "1.6", "--every", "5", "--min-face", "40"], 2),
        # indoor CCTV-like camera, people walking up and pausing, faces 43–66 px: 21 of 41 frames
        ("intel-sample-videos__face-demographics-walking-and-pause.gif", ["--every", "2"], 1),
    ],
)
def test_faces_are_tracked_where_people_face_the_camera(
    shared_data: Path, tiny_model: Path, tmp_path: Path, clip: str, options: list[str], at_least: int
) -> None:
    tracks = _tracks(shared_data / "video" / clip, tiny_model, tmp_path / "out", *options)
    assert len(tracks) >= at_least, [(t["track_id"], t["first"], t["last"]) for t in tracks]
    for track in tracks:
        width, height = track["best"]["crop_size"]
        assert 20 <= min(width, height) and max(width, height) <= 600  # face crops, not whole frames


def test_people_seen_from_behind_give_at_most_one_track(shared_data: Path, tiny_model: Path, tmp_path: Path) -> None:
    # The whole 139 s clip at --every 5 (279 frames) takes over a minute here, so the first 45 s:
    # two people walk away from the camera, and the back of a dark head at 37–40 s is MTCNN's one
    # false track in the whole clip (det score ≈ 0.78).
    video = shared_data / "video" / "intel-sample-videos__one-by-one-person-detection.mp4"
    tracks = _tracks(video, tiny_model, tmp_path / "out", "--every", "5", "--end", "45")
    assert len(tracks) <= 1, [(t["track_id"], t["first"], t["last"]) for t in tracks]
