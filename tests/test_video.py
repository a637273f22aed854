"""The frame source: timestamps, orientation, sampling, damaged files, streams that drop, threads."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from cctvsr.errors import InputError
from cctvsr.video import (
    DecodeStats,
    Frame,
    FrameSampling,
    SourceInfo,
    list_sources,
    probe_fps,
    read_frames,
    redact_url,
)
from tests.video_helpers import (
    ASTRONAUT,
    FlakyCamera,
    closed_port,
    mean_abs_diff,
    pan,
    remux,
    serving,
    write_clip,
)


Clip = tuple[Path, list[np.ndarray]]  # a clip on disk and the RGB frames it was made from


def read(
    spec: str | Path, sampling: FrameSampling = FrameSampling(), **kwargs: object
) -> tuple[list[Frame], DecodeStats]:
    (source,) = list_sources(str(spec))
    stats = DecodeStats()
    return list(read_frames(source, sampling, stats=stats, **kwargs)), stats


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cctvsr-decode")]


@pytest.fixture(scope="module")
def clip30(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """1 s at 30 fps, 160×120, real photo panned 4 px a frame."""
    frames = pan(30)
    return write_clip(tmp_path_factory.mktemp("clip") / "pan30.mp4", frames), frames


@pytest.fixture(scope="module")
def clip120(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """4 s at 30 fps with B-frames, moov atom first (as a camera that writes for streaming does)."""
    frames = pan(120, step=2)
    path = tmp_path_factory.mktemp("clip") / "pan120.mp4"
    options = {"preset": "veryfast", "bframes": "2", "g": "15"}
    return write_clip(path, frames, codec_options=options, container_options={"movflags": "faststart"}), frames


# --- timestamps, orientation, pixel shape ------------------------------------------------------


def test_variable_frame_rate_clip_gives_back_its_irregular_pts(tmp_path: Path) -> None:
    ticks = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21]  # tenths of a second
    path = write_clip(tmp_path / "vfr.mp4", pan(10), pts=ticks, time_base=Fraction(1, 10))
    frames, stats = read(path)
    assert [f.index for f in frames] == list(range(10))
    np.testing.assert_allclose([f.pts for f in frames], [t / 10 for t in ticks], atol=1e-6)
    assert stats.frames_decoded == stats.frames_yielded == 10


def test_display_matrix_rotation_turns_frames_upright(tmp_path: Path) -> None:
    src = pan(4)
    # QuickTime/FFmpeg matrix of a phone held upright (ffprobe: "rotation of -90.00 degrees"):
    # stored landscape, shown turned 90° clockwise.
    matrix = [0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30]
    frames, _ = read(write_clip(tmp_path / "rot.mp4", src, display_matrix=matrix))
    assert frames[0].image.shape == (160, 120, 3)
    clockwise, anticlockwise = np.rot90(src[2], -1), np.rot90(src[2], 1)
    assert mean_abs_diff(frames[2].image, clockwise) < 4.0
    assert mean_abs_diff(frames[2].image, anticlockwise) > 20.0


def test_sample_aspect_ratio_2_to_1_widens_frames_twice(tmp_path: Path) -> None:
    src = pan(4)
    frames, _ = read(write_clip(tmp_path / "sar.mp4", src, sar=Fraction(2, 1)))
    assert frames[1].image.shape == (120, 320, 3)
    assert mean_abs_diff(frames[1].image, cv2.resize(src[1], (320, 120), interpolation=cv2.INTER_CUBIC)) < 4.0


def test_wall_time_is_creation_time_plus_pts_plus_offset(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "cam.mp4", pan(10), metadata={"creation_time": "2024-05-01T12:00:00.000000Z"})
    frames, _ = read(path, time_offset=-3.5)
    start = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert frames[6].wall_time == start + timedelta(seconds=6 / 30 - 3.5)
    assert frames[6].wall_time.tzinfo is not None


def test_interlaced_frames_are_deinterlaced(tmp_path: Path) -> None:
    # Each frame woven from two fields 1/60 s apart during a fast pan: strong combing.
    fields = pan(11, step=20)
    woven = []
    for i in range(10):
        frame = fields[i].copy()
        frame[1::2] = fields[i + 1][1::2]  # the bottom field is half a frame later: 20 px further on
        woven.append(frame)
    interlaced = {"x264-params": "interlaced=1:tff=1", "crf": "8"}
    path = write_clip(tmp_path / "i.mp4", woven, fps=25, codec_options=interlaced)

    def combing(image: np.ndarray) -> float:
        g = image.astype(np.float32).mean(axis=2)
        return float(np.abs(g[1:-1:2] - (g[0:-2:2] + g[2::2]) / 2).mean())

    frames, _ = read(path)
    assert [f.index for f in frames] == list(range(10))
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    before = np.mean([combing(w) for w in woven])
    after = np.mean([combing(f.image) for f in frames])
    assert after < 0.5 * before, (before, after)


# --- sampling ----------------------------------------------------------------------------------


def test_every_fps_start_end_sampling_counts(clip30: Clip) -> None:
    path, _ = clip30
    frames, stats = read(path, FrameSampling(every=4))
    assert [f.index for f in frames] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert (stats.frames_decoded, stats.frames_yielded) == (30, 8)
    assert len(read(path, FrameSampling(fps=10))[0]) == 10
    assert len(read(path, FrameSampling(fps=7.5))[0]) == 8
    window, _ = read(path, FrameSampling(start=0.5, end=0.8))
    assert [f.index for f in window] == list(range(15, 25))
    both, _ = read(path, FrameSampling(every=2, fps=5, start=0.2))
    assert [f.index for f in both] == [6, 12, 18, 24]


def test_start_skips_without_decoding_yet_matches_a_full_decode(clip120: Clip) -> None:
    path, _ = clip120
    full, _ = read(path)
    late, stats = read(path, FrameSampling(start=2.6))
    assert 42 <= stats.frames_decoded <= 45  # decoding began at the keyframe at 2.5 s (GOP 15 = 0.5 s)
    assert [f.index for f in late] == list(range(78, 120))
    for f in late[::11]:
        assert f.pts == full[f.index].pts
        assert np.array_equal(f.image, full[f.index].image)


def test_bad_sampling_is_an_input_error(clip30: Clip) -> None:
    with pytest.raises(InputError, match="end .* before start"):
        read(clip30[0], FrameSampling(start=2, end=1))
    with pytest.raises(InputError, match="every"):
        read(clip30[0], FrameSampling(every=0))


# --- damaged and wrong input -------------------------------------------------------------------


def test_file_cut_in_half_yields_the_first_half_and_a_warning(tmp_path: Path, clip120: Clip) -> None:
    data = clip120[0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    frames, stats = read(cut)
    assert 30 <= len(frames) < 90
    assert [f.index for f in frames] == list(range(len(frames)))
    assert mean_abs_diff(frames[-1].image, clip120[1][len(frames) - 1]) < 4.0
    assert any("truncated" in w for w in stats.warnings)


def test_overwritten_bytes_mid_file_are_skipped_and_later_frames_come(tmp_path: Path, clip120: Clip) -> None:
    data = bytearray(clip120[0].read_bytes())
    at = int(len(data) * 0.4)
    data[at : at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    frames, stats = read(bad)
    assert stats.errors_skipped > 0 and stats.warnings
    assert 80 <= len(frames) < 120
    assert [f.index for f in frames] == list(range(len(frames)))  # indices count decoded frames
    assert frames[-1].pts == pytest.approx(119 / 30, abs=1e-3)  # and pts still tell the time
    assert mean_abs_diff(frames[-1].image, clip120[1][119]) < 4.0


def test_non_video_missing_path_and_empty_folder_are_one_line_input_errors(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is a text file, not a video\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {fake: "not a video or image", tmp_path / "missing.mp4": "no such file", empty: "no videos or images"}
    for spec, words in cases.items():
        with pytest.raises(InputError) as info:
            list_sources(str(spec))
        assert words in str(info.value) and "\n" not in str(info.value)
        assert str(spec) in str(info.value)


def test_file_that_vanishes_after_listing_is_an_input_error(tmp_path: Path, clip30: Clip) -> None:
    path = Path(shutil.copy(clip30[0], tmp_path / "gone.mp4"))
    (source,) = list_sources(str(path))
    path.unlink()
    with pytest.raises(InputError, match="gone.mp4: cannot open"):
        list(read_frames(source, stats=DecodeStats()))


def test_folder_is_listed_sorted_and_recursive_by_content_not_extension(tmp_path: Path, clip30: Clip) -> None:
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    shutil.copy(clip30[0], tmp_path / "b" / "deeper" / "cam2.mp4")
    remux(clip30[0], tmp_path / "a_really_a_video.jpg", "mpegts")
    bgr = cv2.cvtColor(ASTRONAUT, cv2.COLOR_RGB2BGR)
    (tmp_path / "c_photo.mp4").write_bytes(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    cv2.imwrite(str(tmp_path / "b" / "photo.png"), bgr)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".hidden.mp4").write_bytes(clip30[0].read_bytes())
    skipped: list[str] = []
    sources = list_sources(str(tmp_path), skipped=skipped)
    names = [(Path(s.label).relative_to(tmp_path).as_posix(), s.kind) for s in sources]
    assert names == [
        ("a_really_a_video.jpg", "video"),
        ("b/deeper/cam2.mp4", "video"),
        ("b/photo.png", "image"),
        ("c_photo.mp4", "image"),
    ]
    assert len(skipped) == 1 and "notes.txt" in skipped[0]
    assert sources[1].sha256 == hashlib.sha256(clip30[0].read_bytes()).hexdigest()
    frames, stats = read(tmp_path / "c_photo.mp4")
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].pts is None and frames[0].wall_time is None
    assert frames[0].image.shape == (512, 512, 3) and mean_abs_diff(frames[0].image, ASTRONAUT) < 3.0


def test_raw_h264_gets_rising_pts_from_the_stream_frame_rate(tmp_path: Path, clip120: Clip) -> None:
    raw = remux(clip120[0], tmp_path / "dvr.h264", "h264")
    (source,) = list_sources(str(raw))
    assert source.kind == "video" and probe_fps(source) == pytest.approx(30.0)
    stats = DecodeStats()
    frames = list(read_frames(source, stats=stats))
    assert len(frames) == 120
    pts = np.array([f.pts for f in frames])
    assert np.all(np.diff(pts) > 0)
    np.testing.assert_allclose(pts, np.arange(120) / 30, atol=1e-6)
    assert any("without timestamps" in w and "30 fps" in w for w in stats.warnings)


# --- the real clips in ../shared/data ----------------------------------------------------------


def test_real_shared_clips_decode_with_their_frame_counts(shared_data: Path) -> None:
    video = shared_data / "video"
    frames, stats = read(video / "face_recognition__short_hamilton_clip.mp4")
    assert len(frames) == 275 and frames[0].image.shape == (360, 640, 3)
    assert stats.fps == pytest.approx(29.97) and not stats.warnings
    assert np.all(np.diff([f.pts for f in frames]) > 0)

    frames, stats = read(video / "facenet-pytorch__video.mp4", FrameSampling(every=25))
    assert stats.frames_decoded == 105 and [f.index for f in frames] == [0, 25, 50, 75, 100]
    assert frames[0].image.shape == (1080, 1920, 3)

    frames, stats = read(video / "intel-sample-videos__face-demographics-walking-and-pause.gif")
    assert len(frames) == 41 and frames[0].image.shape == (270, 480, 3) and stats.fps == 12.5

    long_clip = video / "intel-sample-videos__one-by-one-person-detection.mp4"
    frames, stats = read(long_clip, FrameSampling(every=50, end=60))
    assert stats.frames_decoded == 602  # frames up to 60.0 s at 10 fps, and the first one past it
    assert [f.index for f in frames] == list(range(0, 601, 50))
    recorded = datetime(2017, 9, 26, 16, 57, 49, tzinfo=timezone.utc)
    assert frames[2].wall_time == recorded + timedelta(seconds=10)


# --- streams -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[np.ndarray]]:
    """3 s of MPEG-TS at 30 fps, a keyframe every 0.5 s, as an IP camera would send."""
    frames = pan(90, step=3)
    path = write_clip(tmp_path_factory.mktemp("ts") / "cam.ts", frames, container_format="mpegts")
    return path.read_bytes(), frames


def test_stream_that_drops_is_reconnected_and_continues(ts_clip: tuple[bytes, list[np.ndarray]]) -> None:
    data, src = ts_clip
    with serving(FlakyCamera(data, cut=len(data) // 2, then="resume")) as camera:
        (source,) = list_sources(f"http://viewer:secret@127.0.0.1:{camera.port}/live.ts")
        stats = DecodeStats()
        frames = list(read_frames(source, stats=stats, backoff=0.05, queue_size=1000))  # room for every frame
    assert stats.reconnects == 1 and camera.requests == 2 and stats.frames_dropped == 0
    assert len(frames) >= 70  # a GOP or so is lost at the cut
    assert [f.index for f in frames] == list(range(len(frames)))
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert mean_abs_diff(frames[-1].image, src[-1]) < 4.0  # the end of the clip arrived
    assert all(f.wall_time is not None and f.wall_time.tzinfo is not None for f in frames)
    assert any("dropped" in w for w in stats.warnings)
    assert "secret" not in source.label + repr(source) + " ".join(stats.warnings)


def test_stream_gone_for_good_ends_after_the_reconnect_attempts(ts_clip: tuple[bytes, list[np.ndarray]]) -> None:
    data, _ = ts_clip
    with serving(FlakyCamera(data, cut=len(data) // 2, then="gone")) as camera:
        (source,) = list_sources(f"http://viewer:secret@127.0.0.1:{camera.port}/live.ts?pwd=hunter22")
        stats = DecodeStats()
        started = time.monotonic()
        frames = list(read_frames(source, stats=stats, reconnect=3, backoff=0.05, queue_size=1000))
        elapsed = time.monotonic() - started
    assert 20 <= len(frames) <= 50 and elapsed < 5.0
    assert stats.reconnects == 3 and camera.requests == 4
    assert "did not come back after 3 reconnect attempts" in stats.warnings[-1]
    shown = source.label + " ".join(stats.warnings)
    assert "secret" not in shown and "hunter22" not in shown and "viewer" not in shown


def test_silent_stream_is_noticed_by_the_socket_timeout(
    ts_clip: tuple[bytes, list[np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cctvsr.video.SOCKET_TIMEOUT_S", 0.5)
    data, src = ts_clip
    with serving(FlakyCamera(data, cut=len(data) // 2, stall=True)) as camera:
        (source,) = list_sources(f"http://127.0.0.1:{camera.port}/live.ts")
        stats = DecodeStats()
        started = time.monotonic()
        frames = list(read_frames(source, stats=stats, backoff=0.05, queue_size=1000))
        elapsed = time.monotonic() - started
    assert stats.reconnects == 1 and elapsed < 3.0
    assert mean_abs_diff(frames[-1].image, src[-1]) < 4.0


def test_live_stream_lets_frames_go_when_the_consumer_falls_behind(ts_clip: tuple[bytes, list[np.ndarray]]) -> None:
    data, _ = ts_clip
    with serving(FlakyCamera(data, cut=len(data), then="resume")) as camera:  # all 90 frames at once, then a drop
        (source,) = list_sources(f"http://127.0.0.1:{camera.port}/live.ts")
        stats = DecodeStats()
        frames = []
        for frame in read_frames(source, stats=stats, reconnect=0, queue_size=4):
            frames.append(frame)
            time.sleep(0.02)  # a detector slower than the decoder
    assert stats.frames_dropped > 0 and len(frames) + stats.frames_dropped == stats.frames_decoded
    assert np.all(np.diff([f.index for f in frames]) >= 1) and frames[-1].index > len(frames) - 1
    assert any("fell behind the live stream" in w for w in stats.warnings)


def test_unreachable_camera_is_a_quick_input_error_without_credentials() -> None:
    (source,) = list_sources(f"rtsp://admin:s3cr3t@127.0.0.1:{closed_port()}/Streaming/Channels/101")
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        list(read_frames(source, stats=DecodeStats()))
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert "cannot open stream" in message and "127.0.0.1" in message and "\n" not in message
    assert "s3cr3t" not in message and "admin" not in message
    assert probe_fps(source) is None


def test_redact_url_removes_user_info_and_password_like_query_values() -> None:
    assert redact_url("rtsp://user:pass@cam.local:554/Streaming/101") == "rtsp://***@cam.local:554/Streaming/101"
    assert redact_url("rtsps://admin:p@ss/w0rd@10.0.0.5/live") == "rtsps://***@10.0.0.5/live"
    assert (
        redact_url("http://cam/video.cgi?user=admin&password=hunter2&channel=1&api_key=k")
        == "http://cam/video.cgi?user=admin&password=***&channel=1&api_key=***"
    )
    assert redact_url("https://cam.local/live.ts") == "https://cam.local/live.ts"
    with pytest.raises(InputError, match=r"^ftp://\*\*\*@host/x.mp4: unsupported URL scheme ftp://"):
        list_sources("ftp://me:secret@host/x.mp4")


# --- the decode thread -------------------------------------------------------------------------


def test_closing_the_generator_early_stops_the_decode_thread(clip120: Clip) -> None:
    (source,) = list_sources(str(clip120[0]))
    baseline = set(threading.enumerate())
    gen = read_frames(source, stats=DecodeStats(), queue_size=2)
    first = [next(gen) for _ in range(3)]
    assert [f.index for f in first] == [0, 1, 2]
    assert len(decode_threads()) == 1
    gen.close()
    assert not decode_threads()
    assert not set(threading.enumerate()) - baseline  # no thread of ours outlives the generator


def test_setting_stop_ends_reading(clip120: Clip) -> None:
    (source,) = list_sources(str(clip120[0]))
    stop = threading.Event()
    stats = DecodeStats()
    seen = []
    for frame in read_frames(source, stats=stats, stop=stop, queue_size=2):
        seen.append(frame.index)
        if frame.index == 4:
            stop.set()
    assert seen == [0, 1, 2, 3, 4] and stats.frames_yielded == 5
    deadline = time.monotonic() + 2
    while decode_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not decode_threads()


def test_source_info_hashes_lazily_and_never_shows_its_url(clip30: Clip) -> None:
    info = SourceInfo(label=str(clip30[0]), kind="video", path=clip30[0], url=None)
    assert "_sha256" in info.__dict__ and info.__dict__["_sha256"] is None  # nothing read yet
    assert info.sha256 == hashlib.sha256(clip30[0].read_bytes()).hexdigest()
    given = SourceInfo(label="x", kind="video", path=clip30[0], url=None, sha256="0" * 64)
    assert given.sha256 == "0" * 64
    stream = SourceInfo(label="rtsp://***@h/x", kind="stream", path=None, url="rtsp://u:topsecret@h/x")
    assert stream.sha256 is None and "topsecret" not in repr(stream)
