"""Image-quality numbers the evaluation and benchmark commands report.

All take uint8 RGB images (H, W, 3) as numpy arrays, so every command measures exactly the pixels
it writes to disk, after rounding, rather than an intermediate float tensor.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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
