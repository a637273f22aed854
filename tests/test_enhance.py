"""`cctvsr enhance` end to end on the demo clip, whose ground truth is known exactly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cctvsr.assets import sha256_file
from cctvsr.cli import app
from cctvsr.sr.weights import save_model_dir
from samples.make_demo_clip import gt_path, make_demo_clip
from tests.conftest import tiny_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("enhance")
    clip = make_demo_clip(root / "demo.mp4")
    weights = tiny_weights()
    model = save_model_dir(root / "tiny-model", weights.config, weights.state_dict)
    return {"root": root, "clip": clip, "model": model, "gt": gt_path(clip)}


@pytest.fixture(scope="module")
def all_frames_run(demo: dict[str, Path]) -> Path:
    """One uninterrupted --all-frames run: every tracked face is in the manifest, every one enhanced
    (--sr-max-face 0: the demo's faces are 20–48 px, most over the default limit)."""
    out = demo["root"] / "all-frames"
    args = ["enhance", str(demo["clip"]), "--out", str(out), "--model", str(demo["model"]), "--all-frames", "--sr-max-face", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    (folder,) = out.iterdir()
    return folder


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _manifest(folder: Path) -> list[dict]:
    """The saved faces (fusion is on by default: each kept track also has a "record": "fusion" line)."""
    return [r for r in _lines(folder) if r.get("record") != "fusion"]


def _person(record: dict, truth: dict) -> int | None:
    faces = truth["per_frame"][record["frame_index"]]["faces"]
    scored = [(_iou(record["box"], face["box"]), face["person_id"]) for face in faces]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= 0.5 else None


def test_demo_clip_tracks_all_six_people_each_in_tracks_of_one_person(demo: dict[str, Path], all_frames_run: Path) -> None:
    truth = json.loads(demo["gt"].read_text())
    records = _manifest(all_frames_run)
    people_of_track: dict[int, set[int]] = {}
    for record in records:
        person = _person(record, truth)
        assert person is not None, f"saved face matches nobody: frame {record['frame_index']} box {record['box']}"
        people_of_track.setdefault(record["track_id"], set()).add(person)
    assert all(len(people) == 1 for people in people_of_track.values()), people_of_track
    assert set().union(*people_of_track.values()) == set(range(6))
    # Recall per frame: tracked faces found / faces in the ground truth (a track's first
    # detection is never confirmed, so frame 0 cannot count).
    found = {(r["frame_index"], _person(r, truth)) for r in records}
    expected = {(f["index"], face["person_id"]) for f in truth["per_frame"][1:] for face in f["faces"]}
    recall = len(found & expected) / len(expected)
    assert recall >= 0.8, recall


def test_every_saved_face_is_recorded_with_hashes_and_exact_4x_output(all_frames_run: Path) -> None:
    records = _manifest(all_frames_run)
    assert len(records) > 200
    for record in records[::7]:
        for kind, entry in record["outputs"].items():
            assert sha256_file(all_frames_run / entry["path"]) == entry["sha256"], kind
        lr = cv2.imread(str(all_frames_run / record["outputs"]["lr"]["path"]))
        sr = cv2.imread(str(all_frames_run / record["outputs"]["sr"]["path"]))
        assert lr.shape[1::-1] == tuple(record["crop_size"])
        assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
        assert record["model"]["name"] == "tiny-model" and record["precision"] in ("fp32", "bf16")
    assert len({(r["track_id"], r["frame_index"]) for r in records}) == len(records)


def test_sr_png_says_it_is_ai_enhanced(all_frames_run: Path) -> None:
    from PIL import Image

    record = _manifest(all_frames_run)[0]
    text = Image.open(all_frames_run / record["outputs"]["sr"]["path"]).text
    assert "AI-enhanced" in text["Comment"] and "tiny" in text["Comment"]


def test_tracks_json_agrees_with_manifest_and_report_links_only_existing_files(all_frames_run: Path) -> None:
    records = _manifest(all_frames_run)
    tracks = json.loads((all_frames_run / "tracks.json").read_text())["tracks"]
    assert sorted(t["track_id"] for t in tracks) == sorted({r["track_id"] for r in records})
    for track in tracks:
        own = [r for r in records if r["track_id"] == track["track_id"]]
        assert track["faces_saved"] == len(own)
        assert track["faces_seen"] >= len(own)
        best = max(own, key=lambda r: r["quality"]["total"])
        assert track["best"]["sr"] == best["outputs"]["sr"]["path"]
    html = (all_frames_run / "report.html").read_text()
    links = re.findall(r'src="([^"]+)"', html)
    fused = [t["fusion"] for t in tracks if t.get("fusion", {}).get("fused")]
    assert len(links) == 3 * len(tracks) + sum(1 + (f["sr"] is not None) for f in fused)  # fusion is on by default
    assert all((all_frames_run / link).is_file() and not link.startswith(("/", "http")) for link in links)
    assert html.count("AI-enhanced — not an original image") >= len(tracks)


def test_best_k_keeps_at_most_k_faces_per_track(demo: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["enhance", str(demo["clip"]), "-o", str(tmp_path / "o"), "--model", str(demo["model"]), "--best", "2", "--every", "2"])
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "o").iterdir()
    records = _manifest(folder)
    per_track: dict[int, int] = {}
    for record in records:
        per_track[record["track_id"]] = per_track.get(record["track_id"], 0) + 1
    assert len(per_track) == 6 and set(per_track.values()) == {2}
    assert all(r["frame_index"] % 2 == 0 for r in records)


def test_best_views_are_whole_faces_where_the_person_is_ever_whole(demo: dict[str, Path], tmp_path: Path) -> None:
    """A face cut by the frame edge loses to a whole view of similar quality (the demo clip pans,
    so several people are cut in some frames and whole in others)."""
    result = runner.invoke(app, ["enhance", str(demo["clip"]), "-o", str(tmp_path / "o"), "--model", str(demo["model"]), "--best", "3"])
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "o").iterdir()
    truth = json.loads(demo["gt"].read_text())
    whole_frames: dict[int, int] = {}
    for frame in truth["per_frame"]:
        for face in frame["faces"]:
            whole_frames[face["person_id"]] = whole_frames.get(face["person_id"], 0) + (face["inside"] == 1.0)
    cut_people = {face["person_id"] for frame in truth["per_frame"] for face in frame["faces"] if face["inside"] < 1.0}
    assert cut_people, "the demo clip should cut someone at the frame edge"
    saved: dict[int, list[float]] = {}
    for record in _manifest(folder):
        person = _person(record, truth)
        inside = next(f["inside"] for f in truth["per_frame"][record["frame_index"]]["faces"] if f["person_id"] == person)
        saved.setdefault(person, []).append(inside)
    assert set(saved) == set(range(6))
    for person in cut_people:
        if whole_frames[person] >= 3:
            assert saved[person] == [1.0] * len(saved[person]), (person, saved[person])


def test_killed_run_resumed_ends_with_the_same_manifest(demo: dict[str, Path], all_frames_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "cctvsr", "enhance", str(demo["clip"]), "--out", str(out), "--model", str(demo["model"]), "--all-frames",
            "--sr-max-face", "0"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / all_frames_run.name / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 30:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_lines = manifest.read_bytes().count(b"\n")
    assert 30 <= killed_lines < len(_lines(all_frames_run))

    refused = runner.invoke(app, args[3:])
    assert refused.exit_code == 2 and "--resume" in refused.stderr
    resumed = runner.invoke(app, [*args[3:], "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert manifest.read_text() == (all_frames_run / "manifest.jsonl").read_text()


def test_resume_with_different_options_is_refused(demo: dict[str, Path], all_frames_run: Path) -> None:
    out = all_frames_run.parent
    result = runner.invoke(app, ["enhance", str(demo["clip"]), "-o", str(out), "--model", str(demo["model"]), "--best", "5", "--resume"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "options differ" in errors[0]


def test_run_file_and_manifest_lines_carry_the_schema_and_another_schema_is_not_resumed(
    demo: dict[str, Path], all_frames_run: Path, tmp_path: Path
) -> None:
    from cctvsr.output.records import SCHEMA

    state = json.loads((all_frames_run / "run.json").read_text())
    assert state["schema"] == SCHEMA and all(record["schema"] == SCHEMA for record in _manifest(all_frames_run))
    folder = tmp_path / "o" / all_frames_run.name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({**state, "schema": SCHEMA + 1}))
    result = runner.invoke(
        app, ["enhance", str(demo["clip"]), "-o", str(folder.parent), "--model", str(demo["model"]), "--all-frames", "--resume"]
    )
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"schema {SCHEMA + 1}, this version reads {SCHEMA}" in errors[0]


def test_video_without_faces_ends_with_zero_tracks(demo: dict[str, Path], tmp_path: Path) -> None:
    import av

    clip = tmp_path / "empty-corridor.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        base = np.full((96, 160, 3), 90.0)
        for _ in range(20):
            frame = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = runner.invoke(app, ["enhance", str(clip), "-o", str(tmp_path / "o"), "--model", str(demo["model"])])
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "o").iterdir()
    assert json.loads((folder / "tracks.json").read_text())["tracks"] == []
    assert (folder / "manifest.jsonl").read_text() == ""
    assert "no face found in 20 frames" in result.stderr and "--det-scales 1,2,3" in result.stderr


# At most 8 frames per track, for CI (the default is 16); every fused face enhanced. With at most 4,
# no track of this H.264 clip passes the held-out check: its QP sets a prior too strong for 2-3 frames.
FUSED = ["--fuse", "--fuse-max", "8", "--sr-max-face", "0"]


@pytest.fixture(scope="module")
def fused_output(demo: dict[str, Path]) -> tuple[Path, str]:
    """The first second of the demo clip with fusion on, at most 8 frames per track (kept small for
    CI): its output folder and what the run printed."""
    out = demo["root"] / "fused"
    args = ["enhance", str(demo["clip"]), "-o", str(out), "--model", str(demo["model"]), "--end", "1.0", "--best", "1"]
    result = runner.invoke(app, [*args, *FUSED])
    assert result.exit_code == 0, result.stderr
    (folder,) = out.iterdir()
    return folder, result.stdout


@pytest.fixture(scope="module")
def fused_run(fused_output: tuple[Path, str]) -> Path:
    return fused_output[0]


def test_the_summary_says_how_many_tracks_were_fused_and_what_fusion_took(fused_output: tuple[Path, str]) -> None:
    folder, printed = fused_output
    fused = sum(r["fusion"]["fused"] for r in _fusions(folder))
    assert fused >= 1
    assert re.search(rf"fused\s+│\s+{fused} tracks from their registered frames", printed), printed
    assert re.search(r"fuse \d+\.\d, SR", printed), printed


def _fusions(folder: Path) -> list[dict]:
    return [r for r in _lines(folder) if r.get("record") == "fusion"]


def test_fused_run_writes_fused_outputs_with_the_manifest_fields_and_the_report_column(fused_run: Path) -> None:
    from PIL import Image

    from cctvsr.output.records import read_faces

    tracks = json.loads((fused_run / "tracks.json").read_text())["tracks"]
    fusions = {r["track_id"]: r for r in _fusions(fused_run)}
    assert sorted(fusions) == sorted(t["track_id"] for t in tracks) and len(fusions) >= 4
    fused = [r for r in fusions.values() if r["fusion"]["fused"]]
    assert len(fused) >= len(fusions) // 2, [r["fusion"]["reason"] for r in fusions.values()]
    for record in fusions.values():
        f = record["fusion"]
        assert {"frames_used", "frames_rejected", "residuals", "params", "check", "reason", "box_size"} <= set(f)
        if not f["fused"]:
            assert f["reason"] and record["outputs"] == {}
            continue
        assert 4 <= len(f["frames_used"]) <= 8 and f["params"]["max_frames"] == 8 and f["check"]["consistent"]
        assert f["params"]["video_qp"] > 20  # the demo's H.264 QP, read from the stream, sets the prior
        assert set(f["residuals"]) <= {str(i) for i in f["frames_used"]}
        for kind, entry in record["outputs"].items():
            assert sha256_file(fused_run / entry["path"]) == entry["sha256"], kind
        x4 = Image.open(fused_run / record["outputs"]["fused_x4"]["path"])
        assert f"multi-frame reconstruction, {len(f['frames_used'])} frames, no learned prior" in x4.text["Comment"]
        assert x4.size == (4 * f["box_size"][0], 4 * f["box_size"][1])
        assert "AI-enhanced" in Image.open(fused_run / record["outputs"]["fused_sr"]["path"]).text["Comment"]
    assert len(read_faces(fused_run / "manifest.jsonl")) == len(tracks)  # fusion lines are not faces
    html = (fused_run / "report.html").read_text()
    captions = re.findall(r"<figcaption[^>]*>([^<]*)</figcaption>", html)
    assert sum("for comparison with the original" in c for c in captions) == len(fused)
    assert sum("investigative lead — not for identification" in c for c in captions) == len(tracks) + len(fused)
    links = re.findall(r'src="([^"]+)"', html)
    assert len(links) == 3 * len(tracks) + 2 * len(fused) and all((fused_run / link).is_file() for link in links)


def test_fused_run_resumed_writes_nothing_twice(demo: dict[str, Path], fused_run: Path) -> None:
    before = (fused_run / "manifest.jsonl").read_text()
    args = ["enhance", str(demo["clip"]), "-o", str(fused_run.parent), "--model", str(demo["model"]), "--end", "1.0", "--best", "1"]
    (fused_run / "finished.json").unlink()  # as if killed after the last line
    result = runner.invoke(app, [*args, *FUSED, "--resume"])
    assert result.exit_code == 0, result.stderr
    assert (fused_run / "manifest.jsonl").read_text() == before


def test_tracks_with_fewer_frames_than_fuse_min_get_no_fused_output_and_the_manifest_says_why(demo: dict[str, Path], tmp_path: Path) -> None:
    args = ["enhance", str(demo["clip"]), "-o", str(tmp_path / "o"), "--model", str(demo["model"]), "--end", "0.3", "--best", "1"]
    result = runner.invoke(app, [*args, "--min-track-len", "2", "--fuse", "--fuse-min", "40", "--fuse-max", "40"])
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "o").iterdir()
    fusions = _fusions(folder)
    assert fusions and all(not r["fusion"]["fused"] and r["outputs"] == {} for r in fusions)
    assert all("< 40 (--fuse-min)" in r["fusion"]["reason"] for r in fusions)
    assert not list(folder.rglob("fused_*.png"))
    assert "no multi-frame reconstruction" in (folder / "report.html").read_text()


def test_no_fuse_writes_no_fusion(demo: dict[str, Path], tmp_path: Path) -> None:
    args = ["enhance", str(demo["clip"]), "-o", str(tmp_path / "o"), "--model", str(demo["model"]), "--end", "0.5", "--no-fuse"]
    assert runner.invoke(app, args).exit_code == 0
    (folder,) = (tmp_path / "o").iterdir()
    assert _fusions(folder) == [] and not list(folder.rglob("fused_*.png"))
    assert "fusion" not in json.loads((folder / "run.json").read_text())["options"]


def test_a_two_frame_track_is_not_fused_and_says_why() -> None:
    from cctvsr.fusion.gather import FusionSettings, TrackViews, fuse_views

    crops = [np.full((24, 20, 3), 128, np.uint8)] * 2
    fusion = fuse_views(TrackViews(7, [3, 4], crops, (20, 24), {}, 2), FusionSettings(4, 16))
    record = fusion.manifest()
    assert not fusion.ok and not record["fused"] and "2 usable frames < 4" in record["reason"]
