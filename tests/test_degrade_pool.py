"""Pins the degradation pool: its sampling alignment, its file format and its refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from cctvsr.degrade.pool import (
    POOL_FORMAT,
    POOL_VERSION,
    DegradationPool,
    PoolFormatError,
    blur_downsample,
    sample_phase,
)
from cctvsr.errors import InputError

NO_NOISE = np.zeros((0, 32, 32, 3), np.float32)


def delta(size: int) -> np.ndarray:
    kernel = np.zeros((1, size, size), np.float32)
    kernel[0, size // 2, size // 2] = 1.0
    return kernel


def gaussian_kernels(sigmas: list[tuple[float, float]], size: int = 15) -> np.ndarray:
    grid = np.arange(size) - size // 2
    out = []
    for sy, sx in sigmas:
        k = np.exp(-(grid[:, None] ** 2) / (2 * sy**2) - grid[None, :] ** 2 / (2 * sx**2))
        out.append(k / k.sum())
    return np.stack(out).astype(np.float32)


def gaussian_noise(sigma: float, count: int, seed: int = 0) -> np.ndarray:
    patches = np.random.default_rng(seed).normal(0, sigma, (count, 32, 32, 3))
    return (patches - patches.mean(axis=(1, 2), keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def realistic_pool() -> DegradationPool:
    return DegradationPool(
        kernels=gaussian_kernels([(1.2, 2.0), (1.6, 1.6), (2.2, 1.1)]),
        noise_patches=gaussian_noise(6.0, 12),
        jpeg_quality=31.4,
        metadata={"seed": 3, "sources": [{"path": "cam1.mp4", "sha256": "ab" * 32}], "iters": [500, 420]},
    )


# --- apply: alignment and shapes ----------------------------------------------------------------


def test_sample_phase_is_the_pixel_nearest_the_lr_pixel_centre() -> None:
    assert [sample_phase(s) for s in (1, 2, 3, 4, 8)] == [0, 0, 1, 1, 3]


@pytest.mark.parametrize("size", [1, 5, 33])  # 33 takes OpenCV's DFT path
@pytest.mark.parametrize(("h", "w"), [(131, 97), (97, 131), (4, 4), (7, 5), (512, 512)])
def test_delta_kernel_without_noise_or_jpeg_returns_every_fourth_pixel_at_phase_1(
    astronaut: np.ndarray, size: int, h: int, w: int
) -> None:
    hr = np.ascontiguousarray(astronaut[11 : 11 + h, 29 : 29 + w]) if h < 512 else astronaut
    pool = DegradationPool(delta(size), NO_NOISE, None)
    lr = pool.apply(hr, np.random.default_rng(0))
    assert lr.dtype == np.uint8 and lr.shape == (h // 4, w // 4, 3)
    np.testing.assert_array_equal(lr, hr[1::4, 1::4][: h // 4, : w // 4])


def test_blur_is_a_true_convolution_with_reflect_border(astronaut: np.ndarray) -> None:
    # An asymmetric (but centred) kernel tells convolution from correlation; the reference is
    # written independently: out[y, x] = Σ k[a, b] · hr[y − (a − 2), x − (b − 2)]; at phase 1 the
    # first row and column reach one pixel past the edge, which pins the mirror border too.
    kernel = np.outer([0.15, 0.3, 0.35, 0.1, 0.1], [0.05, 0.1, 0.5, 0.25, 0.1]).astype(np.float32)
    hr = np.ascontiguousarray(astronaut[200:263, 150:221])  # 63×71
    padded = np.pad(hr.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    reference = np.zeros(hr.shape, np.float64)
    for a in range(5):
        for b in range(5):
            dy, dx = a - 2, b - 2
            reference += kernel[a, b] * padded[2 - dy : 2 - dy + 63, 2 - dx : 2 - dx + 71]
    expected = reference[1::4, 1::4][: 63 // 4, : 71 // 4]
    got = blur_downsample(hr, kernel, 4)
    assert got.dtype == np.float32 and got.shape == (15, 17, 3)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    lr = DegradationPool(kernel[None], NO_NOISE, None).apply(hr, np.random.default_rng(0))
    assert np.abs(lr.astype(int) - np.rint(expected)).max() <= 1


@pytest.mark.parametrize(("h", "w"), [(4, 4), (5, 9), (63, 65), (131, 97), (130, 67)])
def test_apply_returns_floor_quarter_uint8_for_odd_sizes(
    realistic_pool: DegradationPool, astronaut: np.ndarray, h: int, w: int
) -> None:
    hr = np.ascontiguousarray(astronaut[40 : 40 + h, 180 : 180 + w])
    lr = realistic_pool.apply(hr, np.random.default_rng(1))
    assert lr.dtype == np.uint8 and lr.shape == (h // 4, w // 4, 3)


def test_apply_refuses_an_image_smaller_than_the_scale(realistic_pool: DegradationPool) -> None:
    with pytest.raises(InputError, match="smaller than the pool's scale"):
        realistic_pool.apply(np.zeros((3, 40, 3), np.uint8), np.random.default_rng(0))


def test_apply_is_deterministic_for_a_seed(realistic_pool: DegradationPool, astronaut: np.ndarray) -> None:
    hr = np.ascontiguousarray(astronaut[:131, 150:247])
    first = [realistic_pool.apply(hr, rng) for rng in [np.random.default_rng(42)] for _ in range(5)]
    again = [realistic_pool.apply(hr, rng) for rng in [np.random.default_rng(42)] for _ in range(5)]
    other = realistic_pool.apply(hr, np.random.default_rng(43))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other)


def test_jpeg_is_applied_with_probability_jpeg_prob(astronaut: np.ndarray) -> None:
    # A textured image through a delta kernel without noise: unchanged exactly when not compressed.
    hr = np.ascontiguousarray(astronaut[64:96, 176:208])
    plain = hr[1::4, 1::4]
    rng = np.random.default_rng(5)
    for prob in (0.9, 0.3):
        pool = DegradationPool(delta(1), NO_NOISE, 30.0, jpeg_prob=prob)
        compressed = sum(not np.array_equal(pool.apply(hr, rng), plain) for _ in range(2000))
        assert compressed / 2000 == pytest.approx(prob, abs=0.04)  # binomial σ ≤ 0.011
    never = DegradationPool(delta(1), NO_NOISE, None, jpeg_prob=1.0)
    assert all(np.array_equal(never.apply(hr, rng), plain) for _ in range(50))


def test_jpeg_uses_the_rounded_pool_quality(astronaut: np.ndarray) -> None:
    hr = np.ascontiguousarray(astronaut[:128, 128:256])
    lr = DegradationPool(delta(1), NO_NOISE, 29.6, jpeg_prob=1.0).apply(hr, np.random.default_rng(0))
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(np.ascontiguousarray(hr[1::4, 1::4]), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 30]
    )
    assert ok
    np.testing.assert_array_equal(lr, cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def test_noise_patches_of_sigma_8_give_an_output_std_of_8_on_flat_grey() -> None:
    pool = DegradationPool(delta(5), gaussian_noise(8.0, 16), None)
    rng = np.random.default_rng(7)
    for size in (64, 256):  # LR 16 (a window of one patch) and LR 64 (a mosaic of patches)
        lr = pool.apply(np.full((size, size, 3), 128, np.uint8), rng).astype(np.float64)
        assert lr.std() == pytest.approx(8.0, rel=0.15)
        assert abs(lr.mean() - 128) < 0.5
    assert pool.summary()["noise_sigma"]["mean"] == pytest.approx(8.0, rel=0.03)


SENSOR_6 = {"sigma": 6.0, "sigma_per_channel": [6.0, 6.0, 6.0], "upper_bound": None, "method": "jpeg-multiframe-dct",
            "frames_used": 8, "codec": "jpeg", "textured_frames_rejected": 0}


def test_a_measured_sensor_sigma_is_added_before_the_jpeg_step(astronaut: np.ndarray) -> None:
    """No noise patches (compressed footage has none) but a measured σ: Gaussian noise of that σ,
    then the rounding, then JPEG, in that order, from the same draws."""
    pool = DegradationPool(gaussian_kernels([(1.0, 1.0), (1.5, 1.5)]), np.zeros((0, 32, 32, 3), np.float32), 40.0,
                           jpeg_prob=1.0, noise=SENSOR_6)
    out = pool.degrade(astronaut, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    kernel = int(rng.integers(2))
    lr = blur_downsample(astronaut, pool.kernels[kernel], 4) + rng.standard_normal((128, 128, 3)) * 6.0
    noisy = np.clip(np.rint(lr), 0, 255).astype(np.uint8)
    assert rng.random() < 1.0
    expected = cv2.imdecode(cv2.imencode(".jpg", noisy[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])[1], cv2.IMREAD_COLOR)[:, :, ::-1]
    assert out.kernel_index == kernel and out.jpeg and np.array_equal(out.lr, expected)
    grey = DegradationPool(delta(5), np.zeros((0, 32, 32, 3), np.float32), None, noise=SENSOR_6)
    flat = grey.apply(np.full((256, 256, 3), 128, np.uint8), np.random.default_rng(0)).astype(np.float64)
    assert flat.std() == pytest.approx(6.0, rel=0.05)
    assert grey.noise_model.startswith("Gaussian σ 6.00, 6.00, 6.00 (R, G, B) before JPEG")


def test_r_g_b_measured_apart_are_each_injected_with_their_own_sigma() -> None:
    measured = dict(SENSOR_6, sigma=2.45, sigma_per_channel=[3.0, 2.0, 6.0], channels="measured")
    pool = DegradationPool(delta(5), np.zeros((0, 32, 32, 3), np.float32), None, noise=measured)
    flat = pool.apply(np.full((256, 256, 3), 128, np.uint8), np.random.default_rng(0)).astype(np.float64)
    assert flat.reshape(-1, 3).std(axis=0) == pytest.approx([3.0, 2.0, 6.0], rel=0.05)
    assert pool.noise_model.startswith("Gaussian σ 3.00, 2.00, 6.00 (R, G, B) before JPEG")
    assert pool.summary()["sensor_noise"].startswith("σ R 3.00, G 2.00, B 6.00 (luma-equivalent 2.45; jpeg-multiframe-dct")


def test_only_a_bound_injects_the_bound_and_unknown_noise_injects_none() -> None:
    bound = dict(SENSOR_6, sigma=None, sigma_per_channel=None, upper_bound=9.0, method="h264-synthesis")
    pool = DegradationPool(delta(5), np.zeros((0, 32, 32, 3), np.float32), None, noise=bound)
    assert pool.gaussian_sigmas == (9.0, 9.0, 9.0) and "σ bound 9.00" in pool.noise_model
    assert "σ ≤ 9.00" in pool.summary()["sensor_noise"]
    unknown = DegradationPool(delta(5), np.zeros((0, 32, 32, 3), np.float32), None)
    assert unknown.gaussian_sigmas is None and "unknown" in unknown.noise_model
    hr = np.full((64, 64, 3), 90, np.uint8)
    assert np.array_equal(unknown.apply(hr, np.random.default_rng(0)), np.full((16, 16, 3), 90, np.uint8))


def test_a_version_1_pool_still_loads_with_its_sensor_noise_unknown(realistic_pool: DegradationPool, tmp_path: Path) -> None:
    path = tmp_path / "old.pool.npz"
    realistic_pool.save(path)

    def as_version_1(header: dict) -> None:
        header["version"] = 1
        del header["noise"]

    _with_header(as_version_1)(path)
    pool = DegradationPool.load(path)
    assert pool.noise is None and np.array_equal(pool.kernels, realistic_pool.kernels)
    assert pool.summary()["sensor_noise"].startswith("unknown (a pool made before cctvsr measured it")


def test_the_sensor_noise_round_trips_through_the_file(tmp_path: Path) -> None:
    pool = DegradationPool(delta(5), np.zeros((0, 32, 32, 3), np.float32), 50.0, noise=SENSOR_6)
    pool.save(tmp_path / "p.pool.npz")
    assert DegradationPool.load(tmp_path / "p.pool.npz").noise == SENSOR_6


# --- the file -----------------------------------------------------------------------------------


def test_save_load_round_trips_exactly(realistic_pool: DegradationPool, tmp_path: Path) -> None:
    path = tmp_path / "site.pool"  # no .npz suffix: written at exactly this name
    realistic_pool.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.pool"]  # no temp file left behind
    loaded = DegradationPool.load(path)
    for name in ("kernels", "noise_patches"):
        a, b = getattr(realistic_pool, name), getattr(loaded, name)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert loaded.metadata == realistic_pool.metadata
    assert (loaded.jpeg_quality, loaded.jpeg_prob, loaded.scale) == (31.4, 0.9, 4)
    with np.load(path, allow_pickle=False) as npz:  # the documented layout
        assert sorted(npz.files) == ["header", "kernels", "noise_patches"]
        header = json.loads(npz["header"].tobytes())
    assert (header["format"], header["version"]) == (POOL_FORMAT, POOL_VERSION)


def test_pool_without_noise_or_jpeg_round_trips(tmp_path: Path) -> None:
    DegradationPool(delta(1), NO_NOISE, None, scale=2).save(tmp_path / "p.npz")
    loaded = DegradationPool.load(tmp_path / "p.npz")
    assert loaded.noise_patches.shape == (0, 32, 32, 3) and loaded.jpeg_quality is None and loaded.scale == 2


def test_save_refuses_metadata_that_is_not_json_and_keeps_the_old_file(
    realistic_pool: DegradationPool, tmp_path: Path
) -> None:
    path = tmp_path / "p.npz"
    realistic_pool.save(path)
    before = path.read_bytes()
    bad = DegradationPool(realistic_pool.kernels, NO_NOISE, None, metadata={"when": object()})
    with pytest.raises(ValueError, match="not plain JSON"):
        bad.save(path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _with_header(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def rewrite(path: Path) -> None:
        members = _members(path)
        header = json.loads(members["header"].tobytes())
        change(header)
        members["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        with open(path, "wb") as handle:
            np.savez(handle, **members)

    return rewrite


def _with_members(**changes: np.ndarray | None) -> Callable[[Path], None]:
    def rewrite(path: Path) -> None:
        members = _members(path)
        for name, value in changes.items():
            if value is None:
                del members[name]
            else:
                members[name] = value
        with open(path, "wb") as handle:
            np.savez(handle, **members)  # allow_pickle defaults to True: object arrays get pickled

    return rewrite


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_kernel_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = data.index(b"kernels.npy") + 200  # inside the kernels member's stored data
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))


def _off_centre(path: Path) -> None:
    kernels = np.zeros((1, 5, 5), np.float32)
    kernels[0, 2, 3] = 1.0
    _with_members(kernels=kernels)(path)


BAD_FILES = {
    "not a zip": (lambda p: p.write_text("kernels = [1, 2, 3]\n"), "not an npz archive"),
    "empty file": (lambda p: p.write_bytes(b""), "not an npz archive"),
    "truncated zip": (_truncate, "truncated"),
    "corrupt member": (_flip_a_kernel_byte, "damaged array 'kernels'"),
    "single npy": (lambda p: np.save(open(p, "wb"), np.zeros(3)), "single .npy array"),
    "object array": (_with_members(kernels=np.array([np.zeros(3), "x"], dtype=object)), "Python objects"),
    "no header": (_with_members(header=None), "no 'header' array"),
    "wrong format": (_with_header(lambda h: h.update(format="something-else")), "not a cctvsr degradation pool"),
    "newer version": (_with_header(lambda h: h.update(version=POOL_VERSION + 1)), "made by a newer cctvsr"),
    "version 0": (_with_header(lambda h: h.update(version=0)), "unknown pool version"),
    "missing kernels": (_with_members(kernels=None), "missing array 'kernels'"),
    "missing noise": (_with_members(noise_patches=None), "missing array 'noise_patches'"),
    "kernel sum 1.01": (_with_members(kernels=delta(5) * 1.01), "kernel 0 sums to 1.01"),
    "kernel NaN": (_with_members(kernels=np.full((1, 3, 3), np.nan, np.float32)), "NaN"),
    "noise inf": (_with_members(noise_patches=np.full((1, 4, 4, 3), np.inf, np.float32)), "NaN or infinite"),
    "even kernel": (_with_members(kernels=np.full((1, 4, 4), 1 / 16, np.float32)), "S odd"),
    "float64 kernels": (_with_members(kernels=delta(3).astype(np.float64)), "expected float32"),
    "noise shape": (_with_members(noise_patches=np.zeros((2, 32, 32), np.float32)), "expected (M, P, P, 3)"),
    "kernel off centre": (_off_centre, "centre of mass"),
    "quality 130": (_with_header(lambda h: h.update(jpeg_quality=130)), "JPEG quality 130"),
    "prob 2": (_with_header(lambda h: h.update(jpeg_prob=2)), "JPEG probability 2"),
    "scale 0": (_with_header(lambda h: h.update(scale=0)), "scale 0"),
    "sensor σ -1": (_with_header(lambda h: h.update(noise={"sigma": -1.0})), "noise sigma -1.0"),
    "sensor σ per channel": (_with_header(lambda h: h.update(noise={"sigma_per_channel": [1, 2]})), "sigma_per_channel"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_pool_file_is_refused_with_one_line(
    realistic_pool: DegradationPool, tmp_path: Path, case: str
) -> None:
    damage, message = BAD_FILES[case]
    path = tmp_path / "site.pool.npz"
    realistic_pool.save(path)
    damage(path)
    with pytest.raises(PoolFormatError) as caught:
        DegradationPool.load(path)
    text = str(caught.value)
    assert isinstance(caught.value, InputError)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text


def test_missing_pool_file_is_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(PoolFormatError, match=r"nope\.npz: no such pool file$"):
        DegradationPool.load(tmp_path / "nope.npz")


def test_constructor_refuses_a_kernel_that_does_not_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sums to 0.5"):
        DegradationPool(delta(3) * 0.5, NO_NOISE, None)


# --- inspecting ---------------------------------------------------------------------------------


def test_summary_reports_counts_sizes_quality_and_kernel_width(realistic_pool: DegradationPool) -> None:
    summary = realistic_pool.summary()
    assert (summary["kernels"], summary["kernel_size"], summary["noise_patches"], summary["noise_patch_size"]) == (
        3,
        15,
        12,
        32,
    )
    assert summary["jpeg_quality"] == 31.4 and summary["jpeg_prob"] == 0.9
    assert summary["noise_sigma"]["mean"] == pytest.approx(6.0, rel=0.03)
    # RMS of the per-axis σ: sqrt((1.2² + 2.0²)/2) = 1.65 for the first kernel (truncation shaves a little)
    assert summary["kernel_sigma_hr_px"]["min"] == pytest.approx(1.6, abs=0.1)
    assert DegradationPool(delta(1), NO_NOISE, None).summary()["noise_sigma"] is None


def test_preview_writes_a_png_montage(realistic_pool: DegradationPool, tmp_path: Path) -> None:
    path = tmp_path / "site.pool.png"
    realistic_pool.preview(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    h, w = image.shape[:2]
    # 4 text lines + 2 section titles + 1 row of kernels + 2 rows of noise patches (64 px cells).
    assert 300 <= h <= 500 and 540 <= w <= 800
    assert image.std() > 20  # not a blank canvas
