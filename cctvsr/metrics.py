"""Image-quality numbers the evaluation and benchmark commands report.

All take uint8 RGB images (H, W, 3) as numpy arrays, so every command measures exactly the pixels
it writes to disk, after rounding, rather than an intermediate float tensor.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cctvsr.degrade.jpeg import block_steps
from cctvsr.errors import InputError
from cctvsr.perceptual.stlpips import MIN_SIZE as ST_LPIPS_MIN_SIZE
from cctvsr.perceptual.stlpips import StLpips

# skimage's default SSIM window is 7×7; a smaller image has no complete window.
SSIM_MIN_SIZE = 7


def _check_image(img: np.ndarray, what: str = "image") -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"{what} must be a uint8 numpy array, got {kind}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"{what} must be RGB of shape (H, W, 3), got {img.shape}")


def _check_pair(a: np.ndarray, b: np.ndarray, min_size: int = 1) -> None:
    _check_image(a, "first image")
    _check_image(b, "second image")
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < min_size:
        raise InputError(f"images must be at least {min_size}×{min_size} px, got {a.shape[:2]}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all three channels; inf for identical images."""
    _check_pair(a, b)
    if np.array_equal(a, b):
        return float("inf")  # skimage gets there too, but through a divide-by-zero warning
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (skimage defaults: 7×7 uniform window), averaged over the RGB channels."""
    _check_pair(a, b, min_size=SSIM_MIN_SIZE)
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def laplacian_variance(img: np.ndarray) -> float:
    """Sharpness proxy without a reference: blur removes the high frequencies the Laplacian sees."""
    _check_image(img)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@functools.lru_cache(maxsize=1)
def _st_lpips_model() -> StLpips:
    """Loaded once per process: building the network and checksumming its file takes a while."""
    return StLpips.from_packaged(device="cpu")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def st_lpips(a: np.ndarray, b: np.ndarray) -> float:
    """Shift-tolerant LPIPS distance (lower is closer); barely moved by a pixel of misalignment."""
    _check_pair(a, b, min_size=ST_LPIPS_MIN_SIZE)
    model = _st_lpips_model()
    with torch.inference_mode():
        return float(model(_to_tensor(a), _to_tensor(b))[0])


# --- the paper's benchmark (cctvsr evaluate) --------------------------------------------------------
#
# PSNR and SSIM on Y follow the super-resolution literature's convention (ITU-R BT.601 luma in
# 16–235, as MATLAB's rgb2ycbcr); SSIM here uses Wang et al. 2004's own settings (11×11 Gaussian
# window, σ 1.5, population covariance), which is what published SSIM/MS-SSIM figures use.

MS_SSIM_MIN_SIZE = 161  # 5 scales, 11-px window: the coarsest scale must still hold a window
NLPD_MIN_SIZE = 32  # 6 pyramid levels: the coarsest must keep at least one pixel
NLPD_LEVELS = 6


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] as float64 (MATLAB rgb2ycbcr's Y), the SR papers' 'Y channel'."""
    _check_image(img)
    rgb = img.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the luma channel (peak 255); inf for identical luma."""
    _check_pair(a, b)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    mse = float(np.mean((ya - yb) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _ssim_wang(a: np.ndarray, b: np.ndarray, channel_axis: int | None) -> float:
    return float(
        structural_similarity(
            a, b, channel_axis=channel_axis, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the luma channel with Wang et al.'s Gaussian window."""
    _check_pair(a, b, min_size=11)
    return _ssim_wang(rgb_to_y(a), rgb_to_y(b), None)


def ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with Wang et al.'s Gaussian window, averaged over R, G and B."""
    _check_pair(a, b, min_size=11)
    return _ssim_wang(a, b, -1)


def ms_ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003: 5 scales, their exponents) of the luma channel.

    torchmetrics computes it; images must be at least MS_SSIM_MIN_SIZE px on the short side.
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    _check_pair(a, b, min_size=MS_SSIM_MIN_SIZE)
    ta, tb = (torch.from_numpy(rgb_to_y(x))[None, None] for x in (a, b))
    return float(multiscale_structural_similarity_index_measure(ta, tb, data_range=255.0, kernel_size=11, sigma=1.5))


# NLPD (Laparra, Ballé, Berardino & Simoncelli 2016): a Laplacian pyramid whose every coefficient is
# divided by a weighted sum of its neighbours' amplitudes plus a constant, then the RMS difference per
# level averaged over the levels. The constants are those of the authors' NLP_dist.m, fitted for luma
# in [0, 1]: the 5-tap binomial-like filter, and per level a 3×3 neighbourhood filter and sigma.
_NLPD_TAPS = np.array([0.05, 0.25, 0.4, 0.25, 0.05])
_NLPD_FILTER = np.outer(_NLPD_TAPS, _NLPD_TAPS)
_NLPD_SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)
_NLPD_DN = (
    ((0, 0.1011, 0), (0.1493, 0, 0.1460), (0, 0.1015, 0)),
    ((0, 0.0757, 0), (0.1986, 0, 0.1846), (0, 0.0837, 0)),
    ((0, 0.0477, 0), (0.2138, 0, 0.2243), (0, 0.0467, 0)),
    ((0, 0, 0), (0.2503, 0, 0.2616), (0, 0, 0)),
    ((0, 0, 0), (0.2598, 0, 0.2552), (0, 0, 0)),
    ((0, 0, 0), (0.2215, 0, 0.0717), (0, 0, 0)),
)


def _nlpd_reduce(level: np.ndarray) -> np.ndarray:
    """Low-pass (symmetric border, edge pixel repeated) and keep every second pixel."""
    padded = np.pad(level, 2, mode="symmetric")
    return convolve2d(padded, _NLPD_FILTER, mode="valid")[::2, ::2]


def _nlpd_expand(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Back to `shape`: zeros between samples, the low-pass ×4 (it keeps the mean), edge-extended first."""
    padded = np.pad(coarse, 1, mode="edge")
    up = np.zeros((2 * padded.shape[0], 2 * padded.shape[1]))
    up[::2, ::2] = 4.0 * padded
    smooth = convolve2d(up, _NLPD_FILTER, mode="same", boundary="fill")
    return smooth[2 : 2 + shape[0], 2 : 2 + shape[1]]


def nlpd_pyramid(luma: np.ndarray) -> list[np.ndarray]:
    """The normalised Laplacian pyramid of a luma image in [0, 1], finest level first."""
    levels = []
    current = luma
    for k in range(NLPD_LEVELS):
        if k < NLPD_LEVELS - 1:
            coarse = _nlpd_reduce(current)
            band = current - _nlpd_expand(coarse, current.shape)
        else:
            coarse, band = current, current  # the top keeps the low-pass residual
        energy = convolve2d(np.abs(band), np.array(_NLPD_DN[k]), mode="same", boundary="fill")
        levels.append(band / (_NLPD_SIGMAS[k] + energy))
        current = coarse
    return levels


def nlpd(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised Laplacian pyramid distance of the luma channels (lower is closer; 0 for equal images)."""
    _check_pair(a, b, min_size=NLPD_MIN_SIZE)
    pa, pb = (nlpd_pyramid(rgb_to_y(x) / 255.0) for x in (a, b))
    return float(np.mean([np.sqrt(np.mean((x - y) ** 2)) for x, y in zip(pa, pb)]))


# --- image statistics without a reference (real footage): descriptions, not quality scores ---------


def blockiness(img: np.ndarray, block: int = 8) -> float:
    """How much stronger luma steps are across a block grid than inside blocks (1 = no blocking).
    The grid's phase is unknown in a crop, so every phase is tried and the strongest kept."""
    _check_image(img)
    if min(img.shape[:2]) < 2 * block + 1:
        raise InputError(f"blockiness needs at least {2 * block + 1} px per side, got {img.shape[1]}×{img.shape[0]}")
    y = rgb_to_y(img)
    ratios = []
    for phase in range(block):
        across, inside = block_steps(y, block, phase)
        ratios.append(across.mean() / (inside.mean() + 1e-6))
    return float(max(ratios))


def noise_sigma(img: np.ndarray) -> float:
    """scikit-image's wavelet estimate of Gaussian noise σ, in grey levels, averaged over RGB."""
    from skimage.restoration import estimate_sigma

    _check_image(img)
    return float(estimate_sigma(img.astype(np.float64), channel_axis=-1, average_sigmas=True))
