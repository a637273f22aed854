"""SuperResolver: exact ×4 shapes, input checks, batch independence, tiling, reduced precision,
execution plans, and the real model's quality on a real photograph."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cctvsr import device as device_module
from cctvsr import metrics
from cctvsr.errors import DeviceError, InputError
from cctvsr.sr.engine import SuperResolver, resolve_plan
from cctvsr.sr.weights import GeneratorWeights
from tests.conftest import tiny_weights


def _visible_tiny(seed: int = 0) -> GeneratorWeights:
    """The tiny RRDBNet with its last bias at 0.5: random weights alone give an almost black
    output, which would hide an uncovered (zero) pixel or a swapped result."""
    base = tiny_weights(seed)
    state = dict(base.state_dict)
    state["conv_last.bias"] = torch.full((3,), 0.5)
    return dataclasses.replace(base, state_dict=state)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _faces_hq_crop(shared_data: Path, name: str, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """A face from a real portrait, shrunk (INTER_AREA) to size × size RGB."""
    bgr = cv2.imread(str(shared_data / "faces_hq" / name), cv2.IMREAD_COLOR)
    assert bgr is not None, name
    y0, y1, x0, x1 = box
    rgb = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))


# --- shapes and input checks (tiny model) -----------------------------------------------------


def test_odd_sized_crop_comes_back_exactly_four_times_larger(tiny: GeneratorWeights, astronaut: np.ndarray) -> None:
    (out,) = SuperResolver(tiny).upscale([np.ascontiguousarray(astronaut[100:137, 200:253])])
    assert (out.shape, out.dtype) == ((148, 212, 3), np.uint8)


@pytest.mark.parametrize("size", [(1, 1), (5, 300), (300, 5), (2, 9)])
def test_degenerate_and_elongated_crops_come_back_exactly_four_times_larger(
    tiny: GeneratorWeights, astronaut: np.ndarray, size: tuple[int, int]
) -> None:
    h, w = size
    (out,) = SuperResolver(tiny).upscale([np.ascontiguousarray(astronaut[:h, :w])])
    assert (out.shape, out.dtype) == ((4 * h, 4 * w, 3), np.uint8)


def test_crops_of_mixed_sizes_come_back_in_input_order(astronaut: np.ndarray) -> None:
    resolver = SuperResolver(_visible_tiny(), batch_size=8)
    crops = [np.ascontiguousarray(c) for c in (astronaut[0:20, 0:20], astronaut[200:213, 300:307], astronaut[100:120, 180:200])]
    together = resolver.upscale(crops)
    alone = [resolver.upscale([c])[0] for c in crops]
    assert [o.shape for o in together] == [(80, 80, 3), (52, 28, 3), (80, 80, 3)]
    assert max(_max_diff(t, a) for t, a in zip(together, alone)) <= 1
    assert _max_diff(together[0], together[2]) > 5  # the two same-size results are really different


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0, 3)])
def test_zero_pixel_crop_raises_input_error(tiny: GeneratorWeights, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match=r"crop 1: empty \(0-pixel\) crop"):
        SuperResolver(tiny).upscale([np.zeros((4, 4, 3), np.uint8), np.zeros(shape, np.uint8)])


@pytest.mark.parametrize(
    "crop",
    [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint16), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)],
    ids=["float32", "uint16", "grey", "rgba"],
)
def test_crop_that_is_not_uint8_rgb_raises_input_error(tiny: GeneratorWeights, crop: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"crop 0: expected uint8 \(H, W, 3\) RGB"):
        SuperResolver(tiny).upscale([crop])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"tile": 30}, "--tile must be 0 .off. or a multiple of 8 of at least 32, not 30"),
        ({"tile": 68}, "not 68"),
        ({"tile": 64, "tile_overlap": 33}, r"--tile-overlap must be between 1 and half the tile \(32\)"),
        ({"tile": 64, "tile_overlap": 0}, "--tile-overlap must be between 1"),
    ],
)
def test_impossible_batch_or_tile_settings_raise_input_error(tiny: GeneratorWeights, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SuperResolver(tiny, **kwargs)


# --- a crop's result does not depend on its batch-mates (real model) --------------------------


def test_same_face_with_different_batch_mates_gives_the_same_result_within_one_grey_level(
    x4plus: GeneratorWeights, astronaut: np.ndarray
) -> None:
    resolver = SuperResolver(x4plus, precision="fp32", batch_size=3)
    batch_sizes: list[int] = []
    forward = resolver._forward

    def recording_forward(batch: np.ndarray) -> np.ndarray:
        batch_sizes.append(batch.shape[0])
        return forward(batch)

    resolver._forward = recording_forward  # type: ignore[method-assign]
    face = np.ascontiguousarray(astronaut[76:108, 186:218])
    crop = lambda y, x: np.ascontiguousarray(astronaut[y : y + 32, x : x + 32])  # noqa: E731
    with_flag_and_suit = resolver.upscale([crop(300, 100), face, crop(420, 300)])[1]
    with_sky_and_face = resolver.upscale([crop(20, 20), np.ascontiguousarray(face[:, ::-1]), face])[2]
    alone = resolver.upscale([face])[0]
    assert batch_sizes == [3, 3, 1]  # the face really shared a batch with two neighbours
    assert _max_diff(with_flag_and_suit, with_sky_and_face) <= 1
    assert _max_diff(with_flag_and_suit, alone) <= 1
    assert _max_diff(with_sky_and_face, alone) <= 1


# --- tiling -----------------------------------------------------------------------------------


def test_tiled_real_model_matches_untiled_above_40_db_on_a_200px_crop(
    x4plus: GeneratorWeights, astronaut: np.ndarray
) -> None:
    crop = np.ascontiguousarray(astronaut[20:220, 130:330])
    untiled = SuperResolver(x4plus, precision="fp32", tile=0).upscale([crop])[0]
    tiled = SuperResolver(x4plus, precision="fp32", tile=64, tile_overlap=16).upscale([crop])[0]
    assert tiled.shape == untiled.shape == (800, 800, 3)
    assert metrics.psnr(tiled, untiled) >= 40.0  # measured 48.5 dB


def test_tiling_covers_every_output_pixel_of_an_odd_sized_crop(astronaut: np.ndarray) -> None:
    crop = np.ascontiguousarray(astronaut[100:250, 200:290])  # 150 × 90: irregular last windows
    resolver = SuperResolver(_visible_tiny(), tile=32, tile_overlap=8)
    assert resolver._is_tiled(150, 90)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # 0 / 0 where no window landed
        (tiled,) = resolver.upscale([crop])
    assert tiled.shape == (600, 360, 3)
    # The visible tiny model never goes below ~95 here; an uncovered pixel would be 0.
    assert int(tiled.min()) >= 60
    assert not (tiled == 0).all(axis=(1, 2)).any() and not (tiled == 0).all(axis=(0, 2)).any()


def test_tiled_tiny_output_matches_untiled_within_two_grey_levels(astronaut: np.ndarray) -> None:
    # 152 × 88 is a multiple of the padding unit, so both paths see the same image borders and
    # any difference comes from the window seams alone.
    crop = np.ascontiguousarray(astronaut[100:252, 200:288])
    weights = _visible_tiny()
    untiled = SuperResolver(weights, tile=0).upscale([crop])[0]
    tiled = SuperResolver(weights, tile=32, tile_overlap=8).upscale([crop])[0]
    assert _max_diff(tiled, untiled) <= 2


# --- reduced precision ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["astronaut", "faces_hq"])
def test_bf16_matches_fp32_above_45_db_on_a_real_28px_face(
    x4plus: GeneratorWeights, astronaut_face: np.ndarray, request: pytest.FixtureRequest, source: str
) -> None:
    if source == "astronaut":
        face = np.ascontiguousarray(cv2.resize(astronaut_face, (28, 28), interpolation=cv2.INTER_AREA))
    else:
        face = _faces_hq_crop(request.getfixturevalue("shared_data"), "deepface__img25.jpg", (60, 300, 80, 320), 28)
    bf16 = SuperResolver(x4plus, precision="bf16").upscale([face])[0]
    fp32 = SuperResolver(x4plus, precision="fp32").upscale([face])[0]
    assert bf16.shape == fp32.shape == (112, 112, 3)
    assert metrics.psnr(bf16, fp32) >= 45.0


# --- execution plans --------------------------------------------------------------------------


def test_fp16_on_cpu_is_refused_with_a_device_error() -> None:
    with pytest.raises(DeviceError, match="fp16 needs CUDA"):
        resolve_plan(device="cpu", precision="fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_refused_with_a_device_error() -> None:
    with pytest.raises(DeviceError, match="--device cuda: no CUDA device"):
        resolve_plan(device="cuda")


@pytest.mark.parametrize(("device", "precision"), [("tpu", "auto"), ("cpu", "int8")])
def test_unknown_device_or_precision_is_refused_with_a_device_error(device: str, precision: str) -> None:
    with pytest.raises(DeviceError, match="unknown"):
        resolve_plan(device=device, precision=precision)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16_support(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_plan(device="cpu", precision="auto").precision == expected


# --- quality on a real photograph (real model, default settings) -----------------------------


@pytest.fixture(scope="module")
def astronaut_x4(x4plus: GeneratorWeights, astronaut: np.ndarray) -> dict[str, np.ndarray]:
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    (restored,) = SuperResolver(x4plus).upscale([small])
    bicubic = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)
    return {"small": small, "restored": restored, "bicubic": bicubic}


def test_astronaut_quarter_comes_back_exactly_512_square(astronaut_x4: dict[str, np.ndarray]) -> None:
    assert (astronaut_x4["restored"].shape, astronaut_x4["restored"].dtype) == ((512, 512, 3), np.uint8)


def test_astronaut_st_lpips_is_at_most_0_22_and_beats_bicubic(
    astronaut_x4: dict[str, np.ndarray], astronaut: np.ndarray
) -> None:
    ours = metrics.st_lpips(astronaut_x4["restored"], astronaut)
    bicubic = metrics.st_lpips(astronaut_x4["bicubic"], astronaut)
    assert ours <= 0.22  # measured 0.186
    assert ours < bicubic  # bicubic measured 0.269


def test_astronaut_output_is_at_least_ten_times_sharper_than_bicubic(astronaut_x4: dict[str, np.ndarray]) -> None:
    ratio = metrics.laplacian_variance(astronaut_x4["restored"]) / metrics.laplacian_variance(astronaut_x4["bicubic"])
    assert ratio >= 10.0  # measured 763.5 / 24.8 ≈ 30.8


def test_astronaut_output_shrunk_back_matches_the_small_input_above_28_db(astronaut_x4: dict[str, np.ndarray]) -> None:
    shrunk = cv2.resize(astronaut_x4["restored"], (128, 128), interpolation=cv2.INTER_AREA)
    assert metrics.psnr(shrunk, astronaut_x4["small"]) >= 28.0  # measured 29.7 dB
