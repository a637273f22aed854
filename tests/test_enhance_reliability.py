"""`cctvsr enhance` on damaged input: truncated files, bad paths, streams that drop, fuzzed copies.

Every case drives the real CLI in-process on the demo clip (tiny RRDB model) and pins what a user
sees: the exit code, the one-line `error:` or `warning:` on stderr, and what is left in --out.
Frame sampling (--every) only thins what is *detected*; every frame is still decoded, so the damage
is always read through.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from cctvsr.cli import app
from cctvsr.sr.weights import save_model_dir
from samples.make_demo_clip import make_demo_clip
from tests.conftest import tiny_weights
from tests.video_helpers import FlakyCamera, remux, serving, write_clip

runner = CliRunner()

DEMO_FRAMES = 48  # make_demo_clip's default: 4 s at 12 fps
FUZZ_SECONDS = 60.0  # the most one damaged copy may take
FUZZ_OPTIONS = ["--every", "16", "--best", "1", "--min-track-len", "2", "--min-face", "30"]  # 3 frames detected


def _top_level_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """(offset, size) of each top-level MP4 box: where the index (moov) sits."""
    boxes, offset = {}, 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8].decode("latin-1")
        if size < 8:
            break
        boxes[kind] = (offset, size)
        offset += size
    return boxes


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo clip as make_demo_clip writes it (index at the end), the same packets with the index
    at the front (faststart: a cut-off copy stays readable), and a tiny model directory."""
    root = tmp_path_factory.mktemp("reliability")
    clip = make_demo_clip(root / "demo.mp4")
    faststart = remux(clip, root / "demo-faststart.mp4", options={"movflags": "faststart"})
    weights = tiny_weights()
    model = save_model_dir(root / "tiny-model", weights.config, weights.state_dict)
    boxes = _top_level_boxes(faststart.read_bytes())
    assert boxes["moov"][0] < boxes["mdat"][0], "faststart copy must carry its index before the media data"
    return {"root": root, "clip": clip, "faststart": faststart, "model": model}


def _enhance(source: str | Path, out: Path, model: Path, *options: str) -> Result:
    return runner.invoke(app, ["enhance", str(source), "--out", str(out), "--model", str(model), *options])


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def _only_folder(out: Path) -> Path:
    (folder,) = out.iterdir()
    return folder


def _manifest(folder: Path) -> list[dict]:
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in lines if r.get("record") != "fusion"]  # the saved faces, not the tracks' fusion lines


def _assert_no_traceback(result: Result, context: str = "") -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), f"{context}: {result.exception!r}"
    assert "Traceback" not in result.stdout + result.stderr, context


# --- a file cut in half -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_in_half(demo: dict[str, Path]) -> tuple[Path, Result, Path]:
    """The faststart demo clip with its second half of bytes gone, run through enhance."""
    data = demo["faststart"].read_bytes()
    clip = demo["root"] / "demo-cut.mp4"
    clip.write_bytes(data[: len(data) // 2])
    out = demo["root"] / "cut-out"
    return clip, _enhance(clip, out, demo["model"], "--every", "2", "--best", "1"), out


def test_video_cut_in_half_keeps_faces_of_the_first_half_and_warns(cut_in_half: tuple[Path, Result, Path]) -> None:
    clip, result, out = cut_in_half
    _assert_no_traceback(result)
    assert result.exit_code == 0, result.stderr
    warnings = _lines(result.stderr, "warning:")
    assert any(re.search(r"ended after \d+ of 48 frames \(file truncated or damaged\)", w) for w in warnings), warnings
    decoded = int(re.search(r"\((\d+) decoded\)", result.stdout).group(1))
    assert 8 <= decoded < DEMO_FRAMES // 2  # the first frame (a keyframe) is the biggest: half the bytes hold < half the frames
    records = _manifest(_only_folder(out))
    assert len({r["track_id"] for r in records}) >= 4  # most of the six people were seen before the cut
    assert all(r["frame_index"] < decoded for r in records), sorted(r["frame_index"] for r in records)


def test_warning_lines_name_the_input_once(cut_in_half: tuple[Path, Result, Path]) -> None:
    clip, result, _ = cut_in_half
    warnings = _lines(result.stderr, "warning:")
    assert warnings
    assert all(w.count(str(clip)) == 1 for w in warnings), warnings


# --- inputs that cannot be used -----------------------------------------------------------------


def _not_a_video(root: Path) -> Path:
    path = root / "notes.mp4"
    path.write_text("camera 3, north gate: nothing to report\n" * 20, encoding="utf-8")
    return path


def _empty_file(root: Path) -> Path:
    path = root / "empty.mp4"
    path.write_bytes(b"")
    return path


def _cut_before_its_index(root: Path, clip: Path) -> Path:
    """make_demo_clip writes the index (moov) last: without it no frame can be located."""
    path = root / "cut-no-index.mp4"
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file or folder"),
        ("text renamed .mp4", "not a video or image that can be read"),
        ("empty file", "not a video or image that can be read"),
        ("mp4 cut before its index", "not a video or image that can be read"),
    ],
)
def test_unusable_input_is_one_error_line_and_nothing_written(demo: dict[str, Path], tmp_path: Path, case: str, message: str) -> None:
    source = {
        "missing": lambda: tmp_path / "no-such-recording.mp4",
        "text renamed .mp4": lambda: _not_a_video(tmp_path),
        "empty file": lambda: _empty_file(tmp_path),
        "mp4 cut before its index": lambda: _cut_before_its_index(tmp_path, demo["clip"]),
    }[case]()
    out = tmp_path / "out"
    result = _enhance(source, out, demo["model"])
    _assert_no_traceback(result)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {source}: {message}"]
    assert not out.exists() or not any(out.iterdir())


# --- a camera stream that drops -------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_stream(demo: dict[str, Path]) -> tuple[bytes, int, int]:
    """The demo clip as an IP camera sends it (MPEG-TS, a keyframe every second, so a reconnect can
    decode again), the byte offset where the connection drops, and the frames decodable before it."""
    with av.open(str(demo["clip"])) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    ts = write_clip(demo["root"] / "camera.ts", frames, fps=12, container_format="mpegts", codec_options={"g": "12", "crf": "23"})
    data = ts.read_bytes()
    cut = len(data) // 2
    with av.open(io.BytesIO(data[:cut]), format="mpegts") as container:
        before = sum(1 for _ in container.decode(video=0))
    assert 12 <= before < DEMO_FRAMES
    return data, cut, before


def _camera(data: bytes, cut: int, then: str) -> FlakyCamera:
    # enhance opens the stream once (single-viewer cameras), so the camera's script (cut, then
    # resume or vanish) starts with the first request.
    return FlakyCamera(data, cut, then=then)


def test_stream_that_drops_once_is_reconnected_and_faces_after_the_drop_are_saved(
    demo: dict[str, Path], camera_stream: tuple[bytes, int, int], tmp_path: Path
) -> None:
    data, cut, before = camera_stream
    out = tmp_path / "out"
    with serving(_camera(data, cut, "resume")) as camera:
        url = f"http://127.0.0.1:{camera.port}/live.ts"
        # every 8th frame: 3 per half, so the live stream never outruns the detector and no frame is let go
        result = _enhance(url, out, demo["model"], "--every", "8", "--all-frames")
    _assert_no_traceback(result)
    assert result.exit_code == 0, result.stderr
    assert camera.requests == 2  # the connection that dropped, and the one reconnect
    warnings = _lines(result.stderr, "warning:")
    assert any(re.search(r"\b0 damaged packets/frames skipped, 1 reconnects?\b", w) for w in warnings), warnings
    assert any("stream dropped at" in w for w in warnings), warnings
    assert not any("did not come back" in w or "fell behind" in w for w in warnings), warnings
    # Frames between the cut and the next keyframe of the continuation cannot be decoded; how many
    # depends on where the demuxer stood when the connection died, so only a floor is pinned.
    decoded = int(re.search(r"processed \((\d+) decoded\)", result.stdout)[1])
    assert 36 <= decoded <= 48, result.stdout
    frames = sorted({r["frame_index"] for r in _manifest(_only_folder(out))})
    assert [f for f in frames if f >= before], f"no face saved from after the drop (frame {before} on): {frames}"
    assert [f for f in frames if f < before], frames


def test_stream_gone_for_good_ends_cleanly_after_the_reconnect_attempts(
    demo: dict[str, Path], camera_stream: tuple[bytes, int, int], tmp_path: Path
) -> None:
    data, cut, before = camera_stream
    out = tmp_path / "out"
    with serving(_camera(data, cut, "gone")) as camera:
        url = f"http://127.0.0.1:{camera.port}/live.ts"
        started = time.monotonic()
        result = _enhance(url, out, demo["model"], "--every", "4", "--best", "1", "--reconnect", "2")
        elapsed = time.monotonic() - started
    _assert_no_traceback(result)
    assert result.exit_code == 0, result.stderr
    assert camera.requests == 3  # the connection that dropped, then 2 refused reconnects
    warnings = _lines(result.stderr, "warning:")
    assert any(re.search(r"\b2 reconnect attempt\(s\)", w) for w in warnings), warnings
    assert any("did not come back after 2 reconnect attempts" in w for w in warnings), warnings
    records = _manifest(_only_folder(out))
    assert records and all(r["frame_index"] < before for r in records)
    assert elapsed < 60.0


# --- fuzz ---------------------------------------------------------------------------------------


def _fuzz_copies(demo: dict[str, Path]) -> list[tuple[str, bytes]]:
    """30 damaged copies of the demo clip, always the same ones (seeded)."""
    rng = np.random.default_rng(20261128)
    plain, faststart = demo["clip"].read_bytes(), demo["faststart"].read_bytes()
    moov_at, moov_size = _top_level_boxes(faststart)["moov"]
    copies: list[tuple[str, bytes]] = []
    for i in range(10):  # byte runs overwritten in the media data
        data = bytearray(plain)
        start = int(rng.integers(len(data) // 10, len(data) * 85 // 100))
        length = int(rng.integers(64, 4096))
        data[start : start + length] = rng.integers(0, 256, len(data[start : start + length]), dtype=np.uint8).tobytes()
        copies.append((f"overwritten-{i}: {length} random bytes at {start}", bytes(data)))
    for i in range(10):  # cut off at random; half of them have their index first and stay partly readable
        data = faststart if i % 2 else plain
        end = int(rng.integers(16, len(data)))
        copies.append((f"truncated-{i}: {'faststart' if i % 2 else 'plain'} cut at {end} of {len(data)}", data[:end]))
    for i in range(10):  # header damage: the first bytes zeroed, or the index (moov) scrambled or zeroed
        if i < 3:
            data, length = bytearray(plain), int(rng.integers(8, 64))
            data[:length] = bytes(length)
            copies.append((f"header-{i}: first {length} bytes zeroed", bytes(data)))
            continue
        data = bytearray(faststart)
        length = int(rng.integers(8, 64))
        start = int(rng.integers(moov_at + 8, moov_at + moov_size - length))
        noise = bytes(length) if i >= 7 else rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        data[start : start + length] = noise
        kind = "zeroed" if i >= 7 else "random"
        copies.append((f"header-{i}: {length} {kind} bytes in the index at {start}", bytes(data)))
    return copies


def _invoke_within(args: list[str], seconds: float) -> tuple[Result, float]:
    """Run the CLI in a worker thread so that a hang fails this case instead of the whole session."""
    box: list[Result] = []
    worker = threading.Thread(target=lambda: box.append(runner.invoke(app, args)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    elapsed = time.monotonic() - started
    if worker.is_alive():
        pytest.fail(f"enhance {args[1]} still running after {seconds:.0f} s")
    return box[0], elapsed


def _fuzz_problems(result: Result, elapsed: float, out: Path) -> list[str]:
    """What is wrong with one damaged copy's run: nothing, when it ended as a user may expect."""
    problems = []
    if not (result.exception is None or isinstance(result.exception, SystemExit)):
        problems.append(f"uncaught {result.exception!r}")
    if "Traceback" in result.stdout + result.stderr:
        problems.append("a traceback was printed")
    if result.exit_code not in (0, 1, 2):
        problems.append(f"exit code {result.exit_code}")
    elif result.exit_code and len(_lines(result.stderr, "error:")) != 1:
        problems.append(f"exit code {result.exit_code} without exactly one error: line")
    if elapsed >= FUZZ_SECONDS:
        problems.append(f"took {elapsed:.0f} s")
    for manifest in out.glob("*/manifest.jsonl"):
        for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{manifest.name} line {number} does not parse")
    return problems


def test_thirty_damaged_copies_end_without_a_traceback_and_leave_readable_manifests(demo: dict[str, Path]) -> None:
    root = demo["root"] / "fuzz"
    root.mkdir()
    failures, exit_codes = [], []
    for number, (what, data) in enumerate(_fuzz_copies(demo)):
        clip = root / f"damaged-{number:02d}.mp4"
        clip.write_bytes(data)
        out = root / f"out-{number:02d}"
        args = ["enhance", str(clip), "--out", str(out), "--model", str(demo["model"]), *FUZZ_OPTIONS]
        result, elapsed = _invoke_within(args, FUZZ_SECONDS)
        exit_codes.append(result.exit_code)
        problems = _fuzz_problems(result, elapsed, out)
        if problems:
            failures.append(f"{clip.name} ({what}): {'; '.join(problems)}")
    assert failures == [], "\n".join(failures)
    assert len(exit_codes) == 30 and 0 in exit_codes  # some damage is survivable: the run goes on with what decodes
