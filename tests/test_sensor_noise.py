"""Sensor noise σ from several JPEG / MJPEG frames of a static camera, on real photos with known,
added noise (the multi-frame DCT method of cctvsr.degrade.sensor_noise)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from cctvsr.degrade.sensor_noise import (
    METHOD_JPEG_MULTIFRAME,
    METHOD_JPEG_SINGLE,
    METHOD_VIDEO_SYNTHESIS,
    NoiseEstimate,
    jpeg_multiframe_sigma,
    jpeg_single_frame_sigma,
    mjpeg_multiframe_sigma,
    single_frame_floor,
    video_synthesis_sigma,
)
from cctvsr.errors import InputError

PHOTO = "deepface__img23.jpg"  # a real portrait, ×4 INTER_AREA → 600×425, mostly unsaturated


@pytest.fixture(scope="module")
def scene(shared_data: Path) -> np.ndarray:
    """A static camera's view: a real photo reduced ×4 (INTER_AREA), 384×256 from its centre."""
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / PHOTO)), cv2.COLOR_BGR2RGB)
    small = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
    top, left = (small.shape[0] - 256) // 2, (small.shape[1] - 384) // 2
    return np.ascontiguousarray(small[top : top + 256, left : left + 384])


def _noisy(clean: np.ndarray, sigma: float, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8) for _ in range(count)]


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def _with_walker(frames: list[np.ndarray], walker: np.ndarray) -> list[np.ndarray]:
    """A textured 96×64 object (another part of the photo) crossing the scene, 32 px a frame."""
    moved = []
    for i, frame in enumerate(frames):
        frame = frame.copy()
        left = 16 + 32 * i
        frame[120 : 120 + walker.shape[0], left : left + walker.shape[1]] = walker
        moved.append(frame)
    return moved


def test_known_sigma_under_jpeg_40_is_recovered_from_8_real_frames(scene: np.ndarray) -> None:
    estimate = jpeg_multiframe_sigma([_jpeg(f, 40) for f in _noisy(scene, 5.0, 8)])
    assert estimate.sigma is not None and abs(estimate.sigma - 5.0) <= 0.5
    assert estimate.sigma_per_channel == (estimate.sigma,) * 3 and estimate.channels == "equal"
    assert (estimate.method, estimate.frames_used, estimate.codec) == (METHOD_JPEG_MULTIFRAME, 8, "jpeg")
    assert estimate.upper_bound is None
    assert estimate.blocks_used > 500  # of 48 × 32 = 1536


def _noisy_rgb(clean: np.ndarray, sigmas: tuple[float, float, float], count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    spread = np.asarray(sigmas)
    return [np.clip(np.rint(clean + rng.normal(0.0, 1.0, clean.shape) * spread), 0, 255).astype(np.uint8) for _ in range(count)]


def test_r_g_b_apart_are_recovered_from_8_real_frames_at_jpeg_95(scene: np.ndarray) -> None:
    """A sensor with more noise in blue than green (σ 3, 2, 6): Cb and Cr read as coded tell the
    channels apart, each within the 8-frame bar; `sigma` stays the luma-equivalent value."""
    estimate = jpeg_multiframe_sigma([_jpeg(f, 95) for f in _noisy_rgb(scene, (3.0, 2.0, 6.0), 8, seed=11)])
    assert estimate.channels == "measured", estimate.note
    assert estimate.sigma_per_channel == pytest.approx((3.0, 2.0, 6.0), abs=0.5)
    equivalent = math.sqrt((0.299**2 * 9 + 0.587**2 * 4 + 0.114**2 * 36) / (0.299**2 + 0.587**2 + 0.114**2))
    assert estimate.sigma == pytest.approx(equivalent, abs=0.3)
    assert estimate.header()["channels"] == "measured"


def test_channels_stay_equal_with_the_reason_where_chroma_is_too_coarse(scene: np.ndarray) -> None:
    estimate = jpeg_multiframe_sigma([_jpeg(f, 60) for f in _noisy_rgb(scene, (3.0, 2.0, 6.0), 8, seed=12)])
    assert estimate.channels == "equal" and estimate.sigma_per_channel == (estimate.sigma,) * 3
    assert "R, G, B not told apart: chroma at this quantisation keeps too little noise" in estimate.note


def test_header_has_the_pool_fields() -> None:
    header = NoiseEstimate(2.0, (2.0, 2.0, 2.0), None, METHOD_JPEG_MULTIFRAME, 8, "mjpeg", blocks_used=900).header()
    assert header["sigma"] == 2.0 and header["sigma_per_channel"] == [2.0, 2.0, 2.0]
    for key in ("upper_bound", "method", "frames_used", "codec", "textured_frames_rejected"):
        assert key in header


def test_jpeg_files_on_disk_are_read(scene: np.ndarray, tmp_path: Path) -> None:
    paths = []
    for i, frame in enumerate(_noisy(scene, 3.0, 6, seed=3)):
        path = tmp_path / f"frame{i}.jpg"
        path.write_bytes(_jpeg(frame, 80))
        paths.append(path)
    estimate = jpeg_multiframe_sigma(paths)
    assert estimate.sigma is not None and abs(estimate.sigma - 3.0) <= 0.6


@pytest.mark.parametrize("texture", ["photo", "stripes"])
def test_clean_frames_read_zero(scene: np.ndarray, texture: str) -> None:
    if texture == "stripes":
        x = np.arange(scene.shape[1])[None, :, None]
        clean = np.broadcast_to(np.where((x // 3) % 2 == 0, 60, 190), scene.shape).astype(np.uint8)
    else:
        clean = scene
    estimate = jpeg_multiframe_sigma([_jpeg(f, 30) for f in _noisy(clean, 0.0, 8)])
    assert estimate.sigma is not None and estimate.sigma <= 0.3


def test_clean_frames_with_a_moving_object_read_zero(scene: np.ndarray) -> None:
    """Frames differ (something moves) but no noise: the static blocks never flip."""
    frames = _with_walker(_noisy(scene, 0.0, 8), np.ascontiguousarray(scene[:64, :96][::-1]))
    estimate = jpeg_multiframe_sigma([_jpeg(f, 60) for f in frames])
    assert estimate.sigma is not None and estimate.sigma <= 0.3


def test_a_moving_object_does_not_inflate_sigma(scene: np.ndarray) -> None:
    walker = np.ascontiguousarray(scene[:64, :96][::-1])
    frames = _with_walker(_noisy(scene, 5.0, 8, seed=5), walker)
    estimate = jpeg_multiframe_sigma([_jpeg(f, 40) for f in frames])
    assert estimate.sigma is not None and abs(estimate.sigma - 5.0) <= 0.5


def test_mjpeg_packets_of_an_ip_camera(scene: np.ndarray, tmp_path: Path) -> None:
    """An MJPEG AVI whose packets are libjpeg JPEGs, as IP cameras stream them."""
    frames = _noisy(scene, 4.0, 8, seed=7)
    path = tmp_path / "cam.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuvj420p"
        for i, frame in enumerate(frames):
            packet = av.Packet(_jpeg(frame, 70))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
            packet.is_keyframe = True
            out.mux(packet)
    estimate = mjpeg_multiframe_sigma(path, max_frames=8)
    assert estimate.codec == "mjpeg" and estimate.frames_used == 8
    assert estimate.sigma is not None and abs(estimate.sigma - 4.0) <= 0.5


def test_mjpeg_by_ffmpegs_own_encoder(scene: np.ndarray, tmp_path: Path) -> None:
    """FFmpeg's MJPEG encoder: its own (non-IJG) tables and RGB → YUV conversion."""
    frames = _noisy(scene, 4.0, 8, seed=9)
    path = tmp_path / "ffmpeg.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuvj420p"
        stream.codec_context.qmin = stream.codec_context.qmax = 6
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    estimate = mjpeg_multiframe_sigma(path, max_frames=8)
    assert estimate.sigma is not None and abs(estimate.sigma - 4.0) <= 0.5


def test_ffmpegs_encoder_gets_equal_channels_whatever_its_quality(scene: np.ndarray, tmp_path: Path) -> None:
    """FFmpeg's chroma goes through its scaler's filter, not a 2×2 average: its chroma noise does
    not follow the JFIF model even where there is plenty of it (qscale 2), so no R, G, B apart."""
    path = tmp_path / "ffmpeg.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = scene.shape[:2]
        stream.pix_fmt = "yuvj420p"
        stream.codec_context.qmin = stream.codec_context.qmax = 2
        for frame in _noisy_rgb(scene, (10.0, 10.0, 10.0), 8, seed=13):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    estimate = mjpeg_multiframe_sigma(path, max_frames=8)
    assert estimate.sigma is not None and estimate.channels == "equal"
    assert "FFmpeg's encoder filters chroma" in estimate.note


def test_too_few_frames_is_refused_with_a_reason(scene: np.ndarray) -> None:
    estimate = jpeg_multiframe_sigma([_jpeg(f, 60) for f in _noisy(scene, 4.0, 1)])
    assert estimate.sigma is None and "at least" in estimate.note and estimate.frames_used == 1


@pytest.mark.parametrize("pan", [8, 1])
def test_a_moving_camera_is_refused_with_a_reason(scene: np.ndarray, pan: int) -> None:
    """A camera panning 8 px a frame (no static block) or 1 px a frame (whose smooth blocks would
    pass as static and read σ ≈ 14 for σ 3 at JPEG 30): no σ, and the note says why."""
    wide = np.concatenate([scene, scene[:, ::-1]], axis=1)
    frames = [np.ascontiguousarray(wide[:, pan * i : pan * i + 256]) for i in range(6)]
    estimate = jpeg_multiframe_sigma([_jpeg(f, 30) for f in _noisy_list(frames, 3.0)])
    assert estimate.sigma is None
    assert ("moved" in estimate.note) if pan == 1 else ("static" in estimate.note or "moved" in estimate.note)


def test_a_greyscale_camera(scene: np.ndarray) -> None:
    grey = cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(2)
    frames = [np.clip(np.rint(grey + rng.normal(0.0, 4.0, grey.shape)), 0, 255).astype(np.uint8) for _ in range(8)]
    estimate = jpeg_multiframe_sigma([cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes() for f in frames])
    assert estimate.channels == "grey" and estimate.sigma is not None and abs(estimate.sigma - 4.0) <= 0.5


def test_saturated_frames_are_refused() -> None:
    white = np.full((128, 128, 3), 255, np.uint8)
    estimate = jpeg_multiframe_sigma([_jpeg(f, 60) for f in _noisy(white, 4.0, 6)])
    assert estimate.sigma is None and "black or white" in estimate.note


def test_not_a_jpeg_raises_input_error(scene: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", scene)
    with pytest.raises(InputError):
        jpeg_multiframe_sigma([png.tobytes()] * 3)


def _noisy_list(frames: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [np.clip(np.rint(f + rng.normal(0.0, sigma, f.shape)), 0, 255).astype(np.uint8) for f in frames]


def _h264(frames: list[np.ndarray], path: Path, crf: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_h264_crf23_sigma6_by_synthesis(scene: np.ndarray, tmp_path: Path) -> None:
    """12 static real frames, independent σ 6 noise each, libx264 veryfast CRF 23: within ±20 %."""
    path = _h264(_noisy(scene, 6.0, 12, seed=13), tmp_path / "cam.mp4", 23)
    estimate = video_synthesis_sigma(path, max_frames=12)
    assert (estimate.method, estimate.codec, estimate.frames_used) == (METHOD_VIDEO_SYNTHESIS, "h264", 12)
    assert estimate.sigma is not None and abs(estimate.sigma - 6.0) <= 1.2, estimate.note
    assert "crf 23" in estimate.note


def test_h264_high_crf_answers_a_bound_that_holds(scene: np.ndarray, tmp_path: Path) -> None:
    """CRF 30 erases σ 4 noise: no value, a bound that holds and is ≤ 16 (the issue's bar)."""
    path = _h264(_noisy(scene, 4.0, 8, seed=17), tmp_path / "cam.mp4", 30)
    estimate = video_synthesis_sigma(path, max_frames=8)
    assert estimate.sigma is None and estimate.upper_bound is not None and 4.0 <= estimate.upper_bound <= 16.0, estimate.note


def test_video_synthesis_refuses_other_codecs(scene: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "cam.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = scene.shape[:2]
        stream.pix_fmt = "yuvj420p"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(scene, format="rgb24")))
        out.mux(stream.encode())
    with pytest.raises(InputError):
        video_synthesis_sigma(path)


def test_single_jpeg_q40_sigma10(shared_data: Path) -> None:
    """One JPEG q 40 frame of a real photo (×4 INTER_AREA, 600×425) with σ 10: within ±25 %."""
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / PHOTO)), cv2.COLOR_BGR2RGB)
    frame = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
    estimate = jpeg_single_frame_sigma(_jpeg(_noisy(frame, 10.0, 1, seed=19)[0], 40))
    assert (estimate.method, estimate.frames_used) == (METHOD_JPEG_SINGLE, 1)
    assert estimate.sigma is not None and abs(estimate.sigma - 10.0) <= 2.5, estimate.note


def test_single_clean_frame_is_flagged_or_at_most_the_floor(scene: np.ndarray) -> None:
    """A clean real frame: its fine texture must not read as noise above the floor."""
    estimate = jpeg_single_frame_sigma(_jpeg(scene, 40))
    assert estimate.sigma is None, estimate.note
    assert estimate.textured_frames_rejected == 1 or estimate.upper_bound == pytest.approx(single_frame_floor(40))


@pytest.mark.parametrize("quality", [30, 60])
def test_single_clean_textured_frame_is_flagged_or_at_most_the_floor(scene: np.ndarray, quality: int) -> None:
    x = np.arange(scene.shape[1])[None, :, None]
    stripes = np.ascontiguousarray(np.broadcast_to(np.where((x // 3) % 2 == 0, 60, 190), scene.shape).astype(np.uint8))
    estimate = jpeg_single_frame_sigma(_jpeg(stripes, quality))
    flagged = estimate.sigma is None and estimate.textured_frames_rejected == 1
    at_most_floor = estimate.sigma is None and estimate.upper_bound is not None and estimate.upper_bound <= single_frame_floor(quality)
    assert flagged or at_most_floor, estimate.note


@pytest.mark.parametrize("quality", [40, 80])
def test_single_clean_fabric_is_not_read_as_noise(shared_data: Path, quality: int) -> None:
    """The most textured 480×360 region of a real photo at full resolution (a woven fabric): its
    energy sits in a few coefficients of one orientation, so it is refused or answered ≤ floor."""
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / "deepface__img36.jpg")), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    energy = cv2.boxFilter(np.abs(cv2.Laplacian(grey, cv2.CV_64F)), -1, (480, 360), normalize=True)
    window = energy[180 : 180 + image.shape[0] - 360 + 1, 240 : 240 + image.shape[1] - 480 + 1]
    top, left = np.unravel_index(int(np.argmax(window)), window.shape)
    fabric = np.ascontiguousarray(image[top : top + 360, left : left + 480])
    estimate = jpeg_single_frame_sigma(_jpeg(fabric, quality))
    assert estimate.sigma is None, estimate.note
    assert estimate.textured_frames_rejected == 1 or estimate.upper_bound == pytest.approx(single_frame_floor(quality))


def test_single_jpeg_q95_sigma2_at_the_floor_is_read_within_a_quarter_in_the_median(shared_data: Path) -> None:
    """At q 95 the table keeps noise in the fine band, where a photo's leftover detail is weakest:
    whole real frames (×4 INTER_AREA) with σ 2, the median reading within ±25 % (the issue's bar)."""
    readings = []
    for k, name in enumerate(("deepface__img30.jpg", "deepface__img34.jpg", "deepface__img4.jpg")):
        image = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / name)), cv2.COLOR_BGR2RGB)
        frame = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
        estimate = jpeg_single_frame_sigma(_jpeg(_noisy(frame, 2.0, 1, seed=30 + k)[0], 95))
        readings.append(estimate.sigma if estimate.sigma is not None else float("inf"))
    assert abs(float(np.median(readings)) - 2.0) <= 0.5, readings


def test_codec_qp_reads_a_constant_qp_stream_and_nothing_from_a_still(scene: np.ndarray, tmp_path: Path) -> None:
    """Fusion's prior follows the stream's QP: a clip encoded at constant QP 30 (P-frames only) reads 30."""
    from cctvsr.degrade.jpeg import codec_qp

    path = tmp_path / "qp30.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.height, stream.width = scene.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "qp": "30", "bf": "0", "ipratio": "1.0"}
        for frame in _noisy(scene, 4.0, 6, seed=7):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    found = codec_qp(path, 16)
    assert found is not None and found[0] == "h264" and found[1] == pytest.approx(30.0, abs=0.5)
    assert codec_qp(tmp_path / "missing.mp4", 16) is None
    still = tmp_path / "still.jpg"
    still.write_bytes(_jpeg(scene, 80))
    assert codec_qp(still, 16) is None
