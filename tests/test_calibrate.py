"""`cctvsr calibrate` end to end on footage with a known degradation made from real photos."""

from __future__ import annotations

import re

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cctvsr.degrade.kernels as kernels_module
from cctvsr.cli import app
from cctvsr.degrade.kernels import anisotropic_gaussian_kernel
from cctvsr.degrade.pool import DegradationPool, blur_downsample

runner = CliRunner()
FAST = ["--kernel-iters", "100", "--max-frames", "6", "--jobs", "1"]  # few iterations: the machinery, not the accuracy
SIGMA = 8.0
QUALITY = 40
PHOTOS = ("deepface__img10.jpg", "deepface__img16.jpg", "deepface__img25.jpg")


def _lr_frames(shared_data: Path) -> list[np.ndarray]:
    """Real portraits, smoothed (so the paper's smooth-patch rule has room), blurred with a known
    anisotropic kernel and sampled ×4: clean LR frames before noise and compression."""
    kernel = anisotropic_gaussian_kernel(21, 2.4, 1.2, np.pi / 5)
    frames = []
    for name in PHOTOS:
        bgr = cv2.imread(str(shared_data / "faces_hq" / name))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (768, 768 * rgb.shape[0] // rgb.shape[1]), interpolation=cv2.INTER_AREA)
        rgb = cv2.GaussianBlur(rgb, (0, 0), 3.0)
        hr = cv2.resize(rgb, (rgb.shape[1] * 4, rgb.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        frames.append(np.clip(np.rint(blur_downsample(hr, kernel, 4)), 0, 255))
    return frames


def _noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(frame + rng.normal(0, SIGMA, frame.shape)), 0, 255).astype(np.uint8)


def _calibrate(folder: Path, out: Path, *extra: str, kernels: int = 1) -> object:
    args = ["calibrate", "--camera-dir", str(folder), "--out", str(out), "--kernels", str(kernels), *FAST, *extra]
    return runner.invoke(app, args)


def test_png_footage_gives_noise_patches_within_20_percent_of_sigma(shared_data: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "png"
    folder.mkdir()
    for index, frame in enumerate(_lr_frames(shared_data)):
        cv2.imwrite(str(folder / f"frame{index}.png"), cv2.cvtColor(_noisy(frame, rng), cv2.COLOR_RGB2BGR))
    result = _calibrate(folder, tmp_path / "site.pool.npz")
    assert result.exit_code == 0, result.stderr
    pool = DegradationPool.load(tmp_path / "site.pool.npz")
    assert len(pool.noise_patches) >= 3
    assert abs(pool.noise_sigmas().mean() - SIGMA) <= 0.2 * SIGMA
    assert pool.kernels.shape[0] == 1 and np.allclose(pool.kernels.sum(axis=(1, 2)), 1.0, atol=1e-3)
    assert pool.metadata["sources"] and all(s["sha256"] for s in pool.metadata["sources"])


def test_jpeg_frames_and_mjpeg_video_give_the_quality_within_5(shared_data: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [_noisy(f, rng) for f in _lr_frames(shared_data)]
    jpeg_dir = tmp_path / "jpeg"
    jpeg_dir.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(jpeg_dir / f"f{index}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    mjpeg_dir = tmp_path / "mjpeg"
    mjpeg_dir.mkdir()
    h, w = (min(f.shape[0] for f in frames) // 2) * 2, (min(f.shape[1] for f in frames) // 2) * 2
    with av.open(str(mjpeg_dir / "cam.avi"), "w") as container:
        stream = container.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuvj420p"
        stream.codec_context.qmin = stream.codec_context.qmax = 6
        for frame in frames * 3:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert _calibrate(jpeg_dir, tmp_path / "jpeg.pool.npz").exit_code == 0
    assert abs(DegradationPool.load(tmp_path / "jpeg.pool.npz").jpeg_quality - QUALITY) <= 5
    result = _calibrate(mjpeg_dir, tmp_path / "mjpeg.pool.npz")
    assert result.exit_code == 0, result.stderr
    pool = DegradationPool.load(tmp_path / "mjpeg.pool.npz")
    # FFmpeg's MJPEG tables are not IJG-scaled: the estimate is the IJG quality doing equal damage.
    measured = pool.metadata["compression"]
    assert measured["method"] == "ijg-tables" and 5 <= pool.jpeg_quality <= 95, measured


def test_a_static_jpeg_camera_gets_its_sensor_sigma_measured_through_the_compression(shared_data: Path, tmp_path: Path) -> None:
    """8 frames of one real scene, each with fresh σ 5 noise, JPEG 40: the smooth-patch rule finds
    nothing usable, the DCT levels still show σ; the pool records it and finetune would add it."""
    rng = np.random.default_rng(2)
    scene = _lr_frames(shared_data)[0]
    folder = tmp_path / "camera"
    folder.mkdir()
    for index in range(8):
        noisy = np.clip(np.rint(scene + rng.normal(0, 5.0, scene.shape)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"f{index}.jpg"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    result = _calibrate(folder, tmp_path / "cam.pool.npz")
    assert result.exit_code == 0, result.stderr
    pool = DegradationPool.load(tmp_path / "cam.pool.npz")
    assert pool.noise["method"] == "jpeg-multiframe-dct" and pool.noise["frames_used"] == 8 and pool.noise["codec"] == "jpeg"
    assert abs(pool.noise["sigma"] - 5.0) <= 0.5, pool.noise
    assert len(pool.noise_patches) == 0 and pool.gaussian_sigmas == pytest.approx((pool.noise["sigma"],) * 3)
    assert re.search(r"sensor noise\s+│\s+σ [45]\.\d\d per channel \(jpeg-multiframe-dct, 8 frames, jpeg\)", result.stdout), result.stdout
    shown = runner.invoke(app, ["calibrate", "--show", str(tmp_path / "cam.pool.npz")])
    assert "jpeg-multiframe-dct" in shown.stdout and "{" not in shown.stdout


def test_interrupted_calibration_resumes_with_its_finished_kernels_and_ends_with_the_same_pool(
    astronaut: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"f{index}.png"), cv2.cvtColor(np.roll(astronaut, 40 * index, axis=1)[::2, ::2], cv2.COLOR_RGB2BGR))
    reference = tmp_path / "reference.pool.npz"
    assert _calibrate(folder, reference, "--jobs", "2", kernels=2).exit_code == 0  # processes: same kernels

    real = kernels_module.estimate_kernels

    def dies_after_the_first_kernel(*args: object, **kwargs: object):
        for item in real(*args, **kwargs):
            yield item
            raise KeyboardInterrupt

    out = tmp_path / "site.pool.npz"
    monkeypatch.setattr(kernels_module, "estimate_kernels", dies_after_the_first_kernel)
    interrupted = _calibrate(folder, out, kernels=2)
    assert interrupted.exit_code == 130 and not out.exists()
    assert len(list((tmp_path / "site.pool.npz.partial").glob("kernel_*.npz"))) == 1

    monkeypatch.setattr(kernels_module, "estimate_kernels", real)
    resumed = _calibrate(folder, out, "--resume", kernels=2)
    assert resumed.exit_code == 0, resumed.stderr
    assert "1 of 2 kernels reused" in resumed.stderr
    a, b = DegradationPool.load(reference), DegradationPool.load(out)
    assert np.array_equal(a.kernels, b.kernels) and np.array_equal(a.noise_patches, b.noise_patches)
    assert a.jpeg_quality == b.jpeg_quality
    def timeless(meta: dict) -> dict:  # when it ran and how long each kernel took differ by nature
        kernels = [{k: v for k, v in entry.items() if k != "seconds"} for entry in meta["kernels"]]
        return {**{k: v for k, v in meta.items() if k != "created"}, "kernels": kernels}

    assert timeless(a.metadata) == timeless(b.metadata)
    assert not (tmp_path / "site.pool.npz.partial").exists()


def test_show_summarises_a_pool_and_writes_its_preview(astronaut: np.ndarray, tmp_path: Path) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "b.png"), cv2.cvtColor(astronaut[::-1], cv2.COLOR_RGB2BGR))
    assert _calibrate(folder, tmp_path / "p.pool.npz").exit_code == 0
    result = runner.invoke(app, ["calibrate", "--show", str(tmp_path / "p.pool.npz")])
    assert result.exit_code == 0, result.stderr
    preview = tmp_path / "p.pool.preview.png"
    assert preview.is_file() and cv2.imread(str(preview)).shape[0] > 32
    assert "kernels" in result.stdout
    assert re.search(r"kernel sigma hr px\s+│\s+mean [\d.]+ \([\d.]+–[\d.]+\)", result.stdout), result.stdout
    assert "{" not in result.stdout  # read as a person reads it, not a raw dict


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--camera-dir", "MISSING", "--out", "OUT"], "not a folder"),
        (["--camera-dir", "EMPTY", "--out", "OUT"], "no "),
        (["--camera-dir", "ONE", "--out", "OUT", "--kernels", "5"], "need 5"),
        (["--show", "NOTAPOOL"], "NOTAPOOL"),
        (["--out", "OUT"], "--camera-dir"),
    ],
)
def test_bad_calibration_input_gives_one_line_error(tmp_path: Path, astronaut: np.ndarray, args: list[str], needle: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (tmp_path / "bad.npz").write_bytes(b"not a pool")
    names = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty", "ONE": tmp_path / "one", "OUT": tmp_path / "o.npz", "NOTAPOOL": tmp_path / "bad.npz"}
    result = runner.invoke(app, ["calibrate", *(str(names.get(a, a)) for a in args)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and needle.replace("NOTAPOOL", "bad.npz") in errors[0], result.stderr
    assert not (tmp_path / "o.npz").exists()


def test_resume_of_a_checkpoint_in_another_run_format_is_refused_in_one_line(astronaut: np.ndarray, tmp_path: Path) -> None:
    """A `.partial/` folder whose state.json says another schema is not read as this version's."""
    import json

    folder = tmp_path / "footage"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    partial = tmp_path / "site.pool.npz.partial"
    partial.mkdir()
    (partial / "state.json").write_text(json.dumps({"schema": 99, "sources": [], "options": {}, "cctvsr": "9"}))
    result = _calibrate(folder, tmp_path / "site.pool.npz", "--resume")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        f"error: {partial / 'state.json'}: written by a different cctvsr run format (schema 99, this version reads 1); use a new --out"
    ], result.stderr
    assert not (tmp_path / "site.pool.npz").exists() and (partial / "state.json").is_file()
