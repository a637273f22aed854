"""Pins the image metrics to numbers obtained outside cctvsr's own code."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from cctvsr import metrics
from cctvsr.assets import STLPIPS_ALEX
from cctvsr.errors import InputError, WeightsError
from cctvsr.perceptual.stlpips import StLpips, remap_state_dict


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # 512×512 RGB uint8


@pytest.fixture(scope="module")
def astronaut_jpeg30(astronaut: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 30]
    )
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def astronaut_blur2(astronaut: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(astronaut, (0, 0), 2.0)


# --- ST-LPIPS -------------------------------------------------------------------------------------


def test_st_lpips_reproduces_reference_package_on_astronaut(
    astronaut: np.ndarray, astronaut_jpeg30: np.ndarray, astronaut_blur2: np.ndarray
) -> None:
    # Reference values: stlpips_pytorch's LPIPS(net="alex", variant="shift_tolerant"),
    # normalize=True, on the same images (recorded in shared/weights.md).
    assert abs(metrics.st_lpips(astronaut, astronaut)) < 1e-6
    assert metrics.st_lpips(astronaut, astronaut_jpeg30) == pytest.approx(0.0194, rel=0.03)
    assert metrics.st_lpips(astronaut, astronaut_blur2) == pytest.approx(0.3771, rel=0.03)


def test_st_lpips_load_uses_every_key_of_the_weights_file() -> None:
    file_state = torch.load(STLPIPS_ALEX.require(), map_location="cpu", weights_only=True)
    remapped = remap_state_dict(file_state)
    model = StLpips()
    assert len(remapped) == len(file_state) == 20
    assert set(remapped) == set(model.state_dict())
    result = model.load_state_dict(remapped, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    # The blur filters the file stores are the fixed binomial ones the architecture assumes.
    binomial = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    for blur in (model.blur1, model.blur2, model.blur3):
        torch.testing.assert_close(blur.filt, binomial.expand_as(blur.filt))


def test_st_lpips_rejects_weights_file_with_unknown_key() -> None:
    with pytest.raises(WeightsError, match="unexpected key"):
        remap_state_dict({"net.slice6.0.weight": torch.zeros(1)})


def test_st_lpips_rejects_input_below_21_px() -> None:
    model = metrics._st_lpips_model()
    small = torch.rand(1, 3, 20, 40)
    with pytest.raises(InputError, match="at least 21"):
        model(small, small)
    tiny = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InputError):
        metrics.st_lpips(tiny, tiny)
    ok = torch.rand(1, 3, 21, 21)
    assert torch.isfinite(model(ok, ok.flip(-1))).all()


def test_st_lpips_is_differentiable_and_per_image() -> None:
    model = metrics._st_lpips_model()
    target = torch.rand(2, 3, 32, 32)
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    dist = model(pred, target)
    assert dist.shape == (2,)
    dist.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # Frozen: the metric itself must never learn.
    assert not any(p.requires_grad for p in model.parameters())


# --- PSNR / SSIM ---------------------------------------------------------------------------------


def test_psnr_matches_hand_formula_on_astronaut_jpeg(
    astronaut: np.ndarray, astronaut_jpeg30: np.ndarray
) -> None:
    mse = np.mean((astronaut.astype(np.float64) - astronaut_jpeg30.astype(np.float64)) ** 2)
    expected = 10.0 * np.log10(255.0**2 / mse)
    assert 25.0 < expected < 35.0  # sanity: q30 JPEG of a natural photo
    assert metrics.psnr(astronaut, astronaut_jpeg30) == pytest.approx(expected, abs=1e-9)


def test_psnr_of_identical_images_is_inf(astronaut: np.ndarray) -> None:
    assert metrics.psnr(astronaut, astronaut.copy()) == float("inf")


def _box_mean(img: np.ndarray, win: int) -> np.ndarray:
    """Mean over every complete win×win window, by summed-area table (no scipy filter)."""
    sat = np.zeros((img.shape[0] + 1, img.shape[1] + 1), np.float64)
    sat[1:, 1:] = img.cumsum(0).cumsum(1)
    total = sat[win:, win:] - sat[:-win, win:] - sat[win:, :-win] + sat[:-win, :-win]
    return total / win**2


def _ssim_by_hand(a: np.ndarray, b: np.ndarray, win: int = 7, data_range: float = 255.0) -> float:
    """SSIM (Wang et al. 2004) written from the paper, with skimage's default choices.

    It is the same definition that `metrics.ssim` delegates to skimage (7×7 uniform window,
    K1 = 0.01, K2 = 0.03, unbiased window variances, mean over the windows that lie wholly inside
    the image, then over channels) but an independent implementation: summed-area tables instead
    of scipy's uniform_filter. It therefore pins what we pass to skimage (data_range, channel
    axis, window) rather than checking SSIM against a different flavour of SSIM.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    scores = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = _box_mean(x, win), _box_mean(y, win)
        vx = (_box_mean(x * x, win) - mx * mx) * n / (n - 1)
        vy = (_box_mean(y * y, win) - my * my) * n / (n - 1)
        cxy = (_box_mean(x * y, win) - mx * my) * n / (n - 1)
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))


def test_ssim_matches_independent_implementation_on_astronaut_jpeg(
    astronaut: np.ndarray, astronaut_jpeg30: np.ndarray
) -> None:
    expected = _ssim_by_hand(astronaut, astronaut_jpeg30)
    assert 0.6 < expected < 0.95
    assert metrics.ssim(astronaut, astronaut_jpeg30) == pytest.approx(expected, abs=1e-9)
    assert metrics.ssim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-12)


# --- Laplacian variance, input checks -------------------------------------------------------------


def test_laplacian_variance_drops_more_than_20x_after_gaussian_blur_sigma_2(
    astronaut: np.ndarray, astronaut_blur2: np.ndarray
) -> None:
    sharp = metrics.laplacian_variance(astronaut)
    blurred = metrics.laplacian_variance(astronaut_blur2)
    # Measured: 860.6 sharp, 11.6 blurred (74×); 20× leaves room for other OpenCV builds.
    assert blurred > 0
    assert sharp > 20 * blurred


@pytest.mark.parametrize(
    "metric", [metrics.psnr, metrics.ssim, metrics.st_lpips], ids=lambda f: f.__name__
)
def test_metrics_reject_images_of_different_shape(
    metric: Callable[..., float], astronaut: np.ndarray
) -> None:
    with pytest.raises(InputError, match="differ in shape"):
        metric(astronaut, astronaut[:256])
