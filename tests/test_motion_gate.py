"""Motion gating: an empty scene is not searched, a person walking in is, and keeps their track
when they stand still; the SR budget's outputs. Real photos (skimage's coffee and astronaut)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from cctvsr.faces.centerface import CenterFaceDetector
from cctvsr.faces.detections import FaceDetections
from cctvsr.faces.motion import WARMUP, GateSettings, MotionGate, merge_regions
from cctvsr.jobs.enhance import EnhanceOptions, run
from cctvsr.jobs.options import SrOptions
from cctvsr.pipeline import PipelineOptions, run_enhance
from cctvsr.sr.engine import SuperResolver
from cctvsr.sr.weights import save_model_dir
from cctvsr.video import Frame, list_sources
from samples.make_demo_clip import make_demo_clip
from tests.conftest import tiny_weights
from tests.video_helpers import pan, write_clip

FPS = 10
SIZE = (320, 240)  # width, height


def scene(count: int, seed: int = 0) -> list[np.ndarray]:
    """A still real scene as a cheap camera gives it: sensor noise σ 3, a brightness flicker of ±3
    levels every 12 frames (a compressor's or an auto-exposure's pumping), JPEG 60 on every frame."""
    base = cv2.resize(skimage.data.coffee(), SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        noisy = base + (3.0 if (i // 12) % 2 else -3.0) + rng.normal(0, 3.0, base.shape)
        image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
        frames.append(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED))
    return frames


def walk_in(frames: list[np.ndarray], enter: int, stop: int, face: np.ndarray) -> list[np.ndarray]:
    """A face that comes in from the left edge at frame `enter`, 6 px a frame, and stands still from `stop`."""
    out = []
    h, w = face.shape[:2]
    for i, frame in enumerate(frames):
        frame = frame.copy()
        if i >= enter:
            x = -w + 6 * (min(i, stop) - enter)
            left, right = max(0, x), min(SIZE[0], x + w)
            if right > left:
                frame[80 : 80 + h, left:right] = face[:, left - x : right - x]
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut's head and shoulders, about 44 px tall."""
    return cv2.resize(skimage.data.astronaut()[20:260, 140:340], (60, 72), interpolation=cv2.INTER_AREA)


def test_a_still_noisy_flickering_scene_is_never_searched_after_the_warm_up() -> None:
    gate = MotionGate(GateSettings(full_every=0, adapt_frames=50, pan_frames=25))
    plans = [gate.plan(frame, np.zeros((0, 4))) for frame in scene(80)]
    assert all(plan.whole for plan in plans[:WARMUP])
    assert [i for i, plan in enumerate(plans) if plan.searched and i >= WARMUP] == []
    assert gate.off is None


def test_the_whole_frame_is_searched_on_the_full_detect_cadence() -> None:
    gate = MotionGate(GateSettings(full_every=10, adapt_frames=50, pan_frames=25))
    plans = [gate.plan(frame, np.zeros((0, 4))) for frame in scene(45)]
    assert [i for i, plan in enumerate(plans) if plan.searched] == [0, 1, 2, 12, 22, 32, 42]


def test_a_moving_camera_makes_the_gate_stand_aside_and_say_so() -> None:
    gate = MotionGate(GateSettings(full_every=0, adapt_frames=50, pan_frames=5))
    plans = [gate.plan(frame, np.zeros((0, 4))) for frame in pan(40, step=6, width=200, height=150)]
    assert all(plan.whole for plan in plans)
    assert gate.off is not None and "panning or handheld" in gate.off


def test_touching_regions_are_joined_and_clipped_to_the_frame() -> None:
    regions = merge_regions([(-10, -10, 50, 50), (50, 20, 120, 90), (200, 150, 230, 170)], 320, 240)
    assert regions == [(0, 0, 120, 90), (183, 128, 247, 192)]  # the small one grown to 64 px around its centre


class _Sink:
    def write(self, face, sr) -> None:
        pass

    def write_fusion(self, fusion, sr) -> None:
        pass


def _detections_per_frame(clip: Path, gate: bool, detector: CenterFaceDetector) -> dict[int, FaceDetections]:
    weights = tiny_weights()
    seen: dict[int, FaceDetections] = {}

    def on_frame(frame: Frame, found: FaceDetections) -> None:
        seen[frame.index] = found

    options = PipelineOptions(full_detect_every=60.0 if gate else None)  # no whole-frame search after the warm-up
    result = run_enhance(list_sources(str(clip))[0], options, detector, SuperResolver(weights), _Sink(), on_frame=on_frame)
    assert result.frames == len(seen)
    return seen


@pytest.fixture(scope="module")
def walking(tmp_path_factory: pytest.TempPathFactory, face: np.ndarray) -> dict:
    """10 still frames, a person walking in (frames 10–26), then standing still for 6.4 s (64 frames)."""
    frames = walk_in(scene(90, seed=1), enter=10, stop=26, face=face)
    clip = write_clip(tmp_path_factory.mktemp("walk") / "walk.mp4", frames, fps=FPS)
    # The motion alone stops pointing at them well before the end: the background absorbed them.
    gate = MotionGate(GateSettings.for_rate(FPS, 60.0))
    searched = [gate.plan(frame, np.zeros((0, 4))).searched for frame in frames]
    assert any(searched[10:30]) and not any(searched[75:])
    detector = CenterFaceDetector()
    return {"gated": _detections_per_frame(clip, True, detector), "ungated": _detections_per_frame(clip, False, detector)}


def test_a_person_walking_in_is_found_within_one_frame_of_an_ungated_search(walking: dict) -> None:
    first = {name: min(i for i, found in runs.items() if len(found)) for name, runs in walking.items()}
    assert first["ungated"] >= 10  # nobody before they walk in
    assert first["gated"] <= first["ungated"] + 1


def test_a_person_who_stands_still_keeps_one_track_while_gated(walking: dict) -> None:
    still = range(30, 90)  # from shortly after they stop until the end (motion alone forgets them by frame 75)
    ids = [set(walking["gated"][i].track_ids[walking["gated"][i].track_ids > 0].tolist()) for i in still]
    tracked = [i for i in ids if i]
    assert len(tracked) >= 0.95 * len(still)
    assert len(set().union(*tracked)) == 1


def test_sr_budget_saves_large_faces_as_they_are_and_says_why(tmp_path: Path) -> None:
    clip = make_demo_clip(tmp_path / "demo.mp4")
    weights = tiny_weights()
    model = save_model_dir(tmp_path / "tiny", weights.config, weights.state_dict)
    summary = run(EnhanceOptions(source=str(clip), out=tmp_path / "out", sr=SrOptions(model=str(model)), end=2.0, sr_max_face=50))
    (done,) = summary.done
    lines = [json.loads(line) for line in (done.folder / "manifest.jsonl").read_text().splitlines()]
    lines = [r for r in lines if r.get("record") != "fusion"]
    large = [r for r in lines if max(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1]) > 50.5]
    small = [r for r in lines if max(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1]) < 49.5]
    assert large and small  # the demo clip's face boxes are 46–61 px: both kinds are there
    for record in large:
        assert set(record["outputs"]) == {"lr", "bicubic"}
        assert record["not_enhanced"] == f"already {round(max(record['box'][2] - record['box'][0], record['box'][3] - record['box'][1]))} px"
        assert not (done.folder / record["outputs"]["lr"]["path"].replace("_lr.png", "_sr.png")).exists()
        lr = cv2.imread(str(done.folder / record["outputs"]["lr"]["path"]))
        bicubic = cv2.imread(str(done.folder / record["outputs"]["bicubic"]["path"]))
        assert bicubic.shape[:2] == (4 * lr.shape[0], 4 * lr.shape[1])
    for record in small:
        assert set(record["outputs"]) == {"lr", "bicubic", "sr"} and "not_enhanced" not in record
    assert done.result.faces_not_enhanced == len(large)
    tracks = json.loads((done.folder / "tracks.json").read_text())["tracks"]
    plain = [t["best"] for t in tracks if t["best"]["sr"] is None]
    assert plain and all(best["not_enhanced"].startswith("already ") for best in plain)
    assert (done.folder / "report.html").read_text().count("not enhanced: already") == len(plain)
