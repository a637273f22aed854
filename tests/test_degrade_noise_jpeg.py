"""Noise patches (the smooth-patch rule) and compression estimates (IJG tables, blockiness), on
real photos with known, added degradations."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from cctvsr.degrade.jpeg import _laplace_mse  # the closed form the non-IJG match rests on
from cctvsr.degrade.jpeg import (
    blockiness,
    blockiness_quality,
    codec_qp,
    estimate_compression,
    ijg_quality,
    ijg_tables,
    jpeg_file_quality,
    jpeg_tables,
    mjpeg_qualities,
)
from cctvsr.degrade.noise import NoisePatchCollector, extract_noise_patches, smooth_patch_corners

# faces_hq portraits with plain backgrounds: the smooth regions the rule needs
SMOOTH_PORTRAITS = ("deepface__img18.jpg", "deepface__img30.jpg", "deepface__img35.jpg", "deepface__img7.jpg")


def _noisy(base: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(base + rng.normal(0.0, sigma, base.shape)), 0, 255).astype(np.uint8)


def _patch_std(patches: np.ndarray) -> np.ndarray:
    return np.sqrt((patches.astype(np.float64) ** 2).mean(axis=(1, 2, 3)))


@pytest.fixture(scope="module")
def smooth_bases(shared_data: Path) -> list[np.ndarray]:
    """Real portraits at ≤ 1024 px, blurred (σ 3) so that their own noise and JPEG blocks are gone."""
    bases = []
    for name in SMOOTH_PORTRAITS:
        image = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / name)), cv2.COLOR_BGR2RGB)
        scale = 1024 / max(image.shape[:2])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bases.append(cv2.GaussianBlur(small.astype(np.float32), (0, 0), 3))
    return bases


@pytest.fixture(scope="module")
def smooth_astronaut(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut blurred (σ 8) and enlarged ×4: smooth areas big enough for the rule."""
    return cv2.resize(cv2.GaussianBlur(astronaut.astype(np.float32), (0, 0), 8), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def noisy_astronaut(smooth_astronaut: np.ndarray) -> np.ndarray:
    return _noisy(smooth_astronaut, 10.0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Noise


@pytest.mark.parametrize("sigma", [5.0, 10.0])
def test_noise_patch_std_is_the_added_gaussian_sigma(smooth_bases: list[np.ndarray], sigma: float) -> None:
    rng = np.random.default_rng(0)
    collector = NoisePatchCollector()
    for base in smooth_bases:
        collector.add(_noisy(base, sigma, rng))
    patches = collector.patches(1000, rng)
    assert len(patches) >= 5
    # measured: σ 5 → 5.01 (17 patches), σ 10 → 9.84 (30 patches)
    assert abs(_patch_std(patches).mean() / sigma - 1) < 0.2


def test_noise_patches_are_zero_mean_float32_per_channel(noisy_astronaut: np.ndarray) -> None:
    patches = extract_noise_patches(noisy_astronaut)
    assert patches.dtype == np.float32 and patches.shape[1:] == (32, 32, 3) and len(patches) >= 5
    assert np.abs(patches.mean(axis=(1, 2))).max() < 1e-4
    assert abs(_patch_std(patches).mean() / 10 - 1) < 0.2


def _rule_by_loops(image: np.ndarray, stride: int, mu: float, gamma: float, phi: float) -> list[tuple[int, int]]:
    values = image.astype(np.float64)
    corners = []
    for y in range(0, image.shape[0] - 32 + 1, stride):
        for x in range(0, image.shape[1] - 32 + 1, stride):
            ok = True
            for c in range(3):
                p = values[y : y + 32, x : x + 32, c]
                ok &= p.var() >= phi
                for i in range(0, 32, 8):
                    for j in range(0, 32, 8):
                        q = p[i : i + 8, j : j + 8]
                        ok &= abs(q.mean() - p.mean()) <= mu * p.mean() and abs(q.var() - p.var()) <= gamma * p.var()
            if ok:
                corners.append((y, x))
    return corners


@pytest.mark.parametrize("stride", [8, 5])
def test_smooth_patch_rule_is_the_papers_definition(astronaut: np.ndarray, stride: int) -> None:
    """The summed-area-table version against the rule written out; looser µ, γ so that it fires."""
    image = _noisy(cv2.GaussianBlur(astronaut[:160, 300:460].astype(np.float32), (0, 0), 4), 5.0, np.random.default_rng(1))
    found = [tuple(c) for c in smooth_patch_corners(image, stride=stride, mu=0.3, gamma=1.0)]
    assert len(found) > 20
    assert found == _rule_by_loops(image, stride, mu=0.3, gamma=1.0, phi=0.5)


def test_saturated_or_flat_images_give_no_noise_patches() -> None:
    assert len(extract_noise_patches(np.full((256, 256, 3), 255, np.uint8))) == 0
    assert len(extract_noise_patches(np.full((256, 256, 3), 128, np.uint8))) == 0
    assert extract_noise_patches(np.zeros((20, 40, 3), np.uint8)).shape == (0, 32, 32, 3)  # smaller than a patch


def test_duplicate_noise_patches_are_dropped_across_images(smooth_astronaut: np.ndarray, noisy_astronaut: np.ndarray) -> None:
    collector = NoisePatchCollector()
    first = collector.add(noisy_astronaut)
    assert first >= 5 and len(collector) == first
    assert collector.add(noisy_astronaut.copy()) == 0  # a static frame
    flicker = np.clip(noisy_astronaut.astype(np.int16) - 3, 0, 255).astype(np.uint8)
    assert collector.add(flicker) == 0  # the same noise, a little darker
    fresh = _noisy(smooth_astronaut, 10.0, np.random.default_rng(5))
    assert collector.add(fresh) == len(extract_noise_patches(fresh)) > 0  # new noise is all kept
    assert len(collector) > first


def test_noise_patch_subset_is_seeded_and_drawn_from_the_kept(noisy_astronaut: np.ndarray) -> None:
    collector = NoisePatchCollector()
    kept = collector.add(noisy_astronaut)
    every = collector.patches(kept, np.random.default_rng(0))
    a = collector.patches(3, np.random.default_rng(7))
    b = collector.patches(3, np.random.default_rng(7))
    assert len(every) == kept and a.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert all(any(np.array_equal(p, q) for q in every) for p in a)


# ---------------------------------------------------------------------------------------------
# IJG tables: JPEG files and MJPEG video


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("quality", [20, 35, 50, 75, 90])
def test_jpeg_quality_is_read_back_exactly(astronaut: np.ndarray, tmp_path: Path, quality: int) -> None:
    by_opencv, by_pillow, grey = tmp_path / "cv.jpg", tmp_path / "pil.jpg", tmp_path / "grey.jpg"
    cv2.imwrite(str(by_opencv), _bgr(astronaut), [cv2.IMWRITE_JPEG_QUALITY, quality])
    Image.fromarray(astronaut).save(by_pillow, quality=quality)
    Image.fromarray(astronaut[..., 1]).save(grey, quality=quality)
    assert [jpeg_file_quality(p) for p in (by_opencv, by_pillow, grey)] == [quality] * 3


def test_pillow_gives_tables_in_natural_order(astronaut: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "JPEG", quality=50)
    tables = jpeg_tables(buffer.getvalue())
    assert tables is not None and tables[0][:3] == [16, 11, 10]  # Annex K row 0; zigzag would be 16, 11, 12
    assert ijg_quality(tables) == (50, True)
    np.testing.assert_array_equal(ijg_tables(50)[0], tables[0])


def test_non_jpeg_files_have_no_table_quality(astronaut: np.ndarray, tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), _bgr(astronaut))
    h264 = _h264(tmp_path / "a.mp4", _pan(astronaut, 3), crf=23)
    assert jpeg_file_quality(png) is None and jpeg_file_quality(h264) is None
    assert mjpeg_qualities(png, 5) == [] and mjpeg_qualities(h264, 5) == []


def _pan(astronaut: np.ndarray, count: int, height: int = 320, width: int = 384) -> list[np.ndarray]:
    """Real frames: a window panning 6 px a frame across the photo."""
    return [np.ascontiguousarray(astronaut[48 : 48 + height, 16 + 6 * i : 16 + 6 * i + width]) for i in range(count)]


def _mjpeg_from_jpegs(path: Path, frames: list[np.ndarray], quality: int) -> Path:
    """An MJPEG AVI whose packets are libjpeg JPEGs (as IP cameras stream them)."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuvj420p"
        for i, frame in enumerate(frames):
            _, data = cv2.imencode(".jpg", _bgr(frame), [cv2.IMWRITE_JPEG_QUALITY, quality])
            packet = av.Packet(data.tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
            packet.is_keyframe = True
            out.mux(packet)
    return path


def _mjpeg_by_ffmpeg(path: Path, frames: list[np.ndarray], qscale: int) -> Path:
    """FFmpeg's own MJPEG encoder at a fixed qscale: MPEG-1 intra matrix × qscale / 8, not IJG."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuvj420p"
        stream.codec_context.qmin = stream.codec_context.qmax = qscale
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("quality", [35, 75])
def test_mjpeg_of_libjpeg_packets_is_read_back_exactly(astronaut: np.ndarray, tmp_path: Path, quality: int) -> None:
    video = _mjpeg_from_jpegs(tmp_path / "cam.avi", _pan(astronaut, 4, 256, 256), quality)
    assert mjpeg_qualities(video, 10) == [quality] * 4
    estimate = estimate_compression([(video, [])])
    assert (estimate.quality, estimate.spread, estimate.method, estimate.exact, estimate.samples) == (quality, 0, "ijg-tables", True, 4)


def _luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    ya, yb = (cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64) for x in (a, b))
    return float(10 * np.log10(255**2 / np.mean((ya - yb) ** 2)))


def _psnr_equivalent_quality(frames: list[np.ndarray], psnr: float) -> int:
    """The IJG quality (OpenCV, 4:2:0) whose luma PSNR on `frames` is nearest to `psnr`."""
    curve = []
    for quality in range(1, 101):
        decoded = [cv2.imdecode(cv2.imencode(".jpg", _bgr(f), [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR) for f in frames]
        curve.append(np.mean([_luma_psnr(f, cv2.cvtColor(d, cv2.COLOR_BGR2RGB)) for f, d in zip(frames, decoded)]))
    return int(np.argmin(np.abs(np.array(curve) - psnr))) + 1


@pytest.mark.parametrize("qscale", [3, 8, 15])
def test_ffmpeg_mjpeg_is_estimated_within_5_of_its_psnr_equivalent_quality(
    astronaut: np.ndarray, tmp_path: Path, qscale: int
) -> None:
    """FFmpeg's tables are no IJG quality; what counts is the damage. Measured (estimate vs the IJG
    quality of equal luma PSNR): qscale 3 → 89/88, 8 → 55/59, 15 → 23/25; the table-shape
    (log-ratio) fit says 87, 67, 40."""
    frames = _pan(astronaut, 4, 256, 256)
    video = _mjpeg_by_ffmpeg(tmp_path / "ff.avi", frames, qscale)
    estimates = mjpeg_qualities(video, 10)
    with av.open(str(video)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    equivalent = _psnr_equivalent_quality(frames, float(np.mean([_luma_psnr(f, d) for f, d in zip(frames, decoded)])))
    assert len(estimates) == 4 and max(estimates) - min(estimates) <= 1
    assert abs(np.median(estimates) - equivalent) <= 5
    assert estimate_compression([(video, decoded)]).exact is False


def test_laplace_quantisation_error_closed_form_matches_integration() -> None:
    for scale, step in [(1.0, 1.0), (3.0, 16.0), (100.0, 16.0), (0.1, 1.0), (2.0, 2.1)]:
        x = np.linspace(0, max(40 * scale, 4 * step), 400_001)
        y = (x - step * np.round(x / step)) ** 2 * np.exp(-x / scale) / scale
        numeric = float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())  # trapezoid rule
        assert float(_laplace_mse(np.array(scale), np.array(step))) == pytest.approx(numeric, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Blockiness (other video)


def _h264(path: Path, frames: list[np.ndarray], crf: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}  # deblocking on, as in cameras
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_blockiness_is_near_one_on_a_clean_photo_and_rises_with_jpeg(astronaut: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    jpeg = {q: cv2.imdecode(cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_GRAYSCALE) for q in (90, 50, 20)}
    measured = [blockiness(grey)] + [blockiness(jpeg[q]) for q in (90, 50, 20)]
    assert abs(measured[0] - 1) < 0.05
    assert measured == sorted(measured) and measured[-1] > 1.5


@pytest.mark.parametrize("quality", [30, 70])
def test_blockiness_estimate_of_jpeg_frames_is_their_quality(astronaut: np.ndarray, quality: int) -> None:
    """Frames that really are JPEGs (tables thrown away): the blockiness match finds their quality
    (measured: 28.5 for 30, 67.7 for 70; a re-encode on the footage's own grid gives 12.5 and 41.7)."""
    encoded = [cv2.imencode(".jpg", _bgr(f), [cv2.IMWRITE_JPEG_QUALITY, quality])[1] for f in _pan(astronaut, 4)]
    estimate = blockiness_quality([cv2.cvtColor(cv2.imdecode(e, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for e in encoded])
    assert estimate.method == "blockiness" and estimate.samples == 4 and not estimate.exact
    assert abs(estimate.quality - quality) <= 5


def test_h264_estimate_falls_as_crf_rises_and_qp_is_read(astronaut: np.ndarray, tmp_path: Path) -> None:
    frames = _pan(astronaut, 4)
    estimates = []
    for crf in (18, 30, 42):
        video = _h264(tmp_path / f"crf{crf}.mp4", frames, crf)
        estimates.append(estimate_compression([(video, _decode(video))]))
    qualities = [e.quality for e in estimates]
    # measured: 91.8, 87.1, 54.8 (other pans and presets: CRF 18 → 30 falls 3.1–7.4, 30 → 42 by 15+)
    assert qualities[0] - qualities[1] >= 2 and qualities[1] - qualities[2] >= 10, qualities
    assert all(e.method == "blockiness" and e.samples == 4 and e.qp_codec == "h264" for e in estimates)
    qps = [e.qp for e in estimates]
    assert qps == sorted(qps) and all(abs(qp - crf) < 8 for qp, crf in zip(qps, (18, 30, 42))), qps
    assert codec_qp(tmp_path / "crf18.mp4", 0) is None


def test_mixed_sources_use_the_tables_and_name_the_rest(astronaut: np.ndarray, tmp_path: Path) -> None:
    frames = _pan(astronaut, 3)
    snapshot = tmp_path / "snap.jpg"
    cv2.imwrite(str(snapshot), _bgr(frames[0]), [cv2.IMWRITE_JPEG_QUALITY, 60])
    video = _h264(tmp_path / "cam.mp4", frames, crf=30)
    estimate = estimate_compression([(snapshot, frames[:1]), (video, _decode(video)), (None, frames)])
    assert (estimate.quality, estimate.method, estimate.exact, estimate.samples) == (60, "ijg-tables", True, 1)
    assert "2 source(s) without JPEG tables not used" in estimate.note and "cam.mp4" in estimate.note
