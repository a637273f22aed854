"""Real noise from a camera's own footage: smooth patches found by the RealSR / Aakerberg rule.

A patch p (default 32×32 LR pixels) is smooth when every sub-patch q of its non-overlapping q×q
tiling (default 8×8) satisfies

    |mean(q) − mean(p)| ≤ µ·mean(p)   and   |var(q) − var(p)| ≤ γ·var(p),

and var(p) ≥ φ, which rejects flat and saturated patches (whose "noise" is clipping). The rule is
checked per colour channel on 0–255 values and must hold in all three. The noise patch is
p − mean(p) per channel: zero-mean, float32, (p, p, 3).

The rule is strict. On pure white Gaussian noise over a flat background only ~9 % of channels
pass the variance test (an 8×8 variance has a relative spread of ~18 %, γ allows 25 %) and ~0.08 %
of RGB patches pass all three (measured, 20 000 patches). So the scan is dense: the default stride
is q (= p/4). Windows then share the sub-patch grid, and the statistics of every q×q box come from
one summed-area table, so a denser scan costs nothing. Windows overlapping by 3/4 are still
different samples of the noise (their correlation is ≤ 0.75), so they are kept.

Duplicates are patches whose normalised correlation (cosine of the zero-mean vectors) is at least
`DUPLICATE_CORRELATION`: static frames of a video (skip blocks decode to identical pixels) or a
global brightness flicker give ~1.0; independent noise patches of 3072 values give |r| ≈ 0.02,
and windows sharing half of their pixels give ≈ 0.5.

Limits measured on real material: JPEG at quality ≤ 90 over σ 5 noise leaves no window that
passes (the noise is no longer stationary within 8×8 blocks), the four shared real clips give none
in 16–35 frames each, and stationary textures pass (a striped tie gave 15 "noise" patches of
std 53). The rule is the paper's; what to do about these is the caller's choice.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DUPLICATE_CORRELATION = 0.9  # far above chance (|r| ~ 0.02) and above half-overlapping windows (~0.5)


def _check_shape(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")


def _sub_patch_moments(table: np.ndarray, sub: int, pitch: int, shape: tuple[int, int]) -> np.ndarray:
    """Mean of every sub×sub box whose corner lies on a `pitch` grid: (rows, cols, 3) float64."""
    rows, cols = shape
    y1, x1 = sub + pitch * np.arange(rows), sub + pitch * np.arange(cols)
    y0, x0 = y1 - sub, x1 - sub
    box = table[y1][:, x1] - table[y0][:, x1] - table[y1][:, x0] + table[y0][:, x0]
    return box / float(sub * sub)


def _windows(grid: np.ndarray, step: int, sub: int, count: tuple[int, int], tiles: int) -> np.ndarray:
    """A zero-copy (ny, tiles, nx, tiles, 3) view: grid cells of each window's sub-patches, where
    `grid` is indexed in `gcd(step, sub)` pixel units."""
    row, col, channel = grid.strides
    return np.lib.stride_tricks.as_strided(
        grid,
        shape=(count[0], tiles, count[1], tiles, grid.shape[2]),
        strides=(step * row, sub * row, step * col, sub * col, channel),
        writeable=False,
    )


def smooth_patch_corners(
    image: np.ndarray,
    *,
    patch: int = 32,
    sub: int = 8,
    mu: float = 0.1,
    gamma: float = 0.25,
    phi: float = 0.5,
    stride: int | None = None,
) -> np.ndarray:
    """(N, 2) int top-left corners (y, x) of the windows that pass the smooth-patch rule."""
    _check_shape(image)
    if patch <= 0 or sub <= 0 or patch % sub:
        raise ValueError(f"patch ({patch}) must be a positive multiple of sub ({sub})")
    step = sub if stride is None else stride
    if step <= 0:
        raise ValueError(f"stride must be positive, got {step}")
    height, width = image.shape[:2]
    if height < patch or width < patch:
        return np.zeros((0, 2), np.int64)

    values = image if image.dtype == np.uint8 else image.astype(np.float64)
    # (H+1, W+1, 3) float64 tables of sums and squared sums: exact for 8-bit input
    first, second = cv2.integral2(values, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    ys = np.arange(0, height - patch + 1, step)
    xs = np.arange(0, width - patch + 1, step)
    tiles = patch // sub
    # every sub-patch corner (window corner + multiple of sub) lies on a grid of pitch gcd(step, sub)
    pitch = math.gcd(step, sub)
    grid_shape = ((ys[-1] + patch - sub) // pitch + 1, (xs[-1] + patch - sub) // pitch + 1)
    grid_mean = _sub_patch_moments(first, sub, pitch, grid_shape)
    grid_square = _sub_patch_moments(second, sub, pitch, grid_shape)
    count = (len(ys), len(xs))
    sub_mean = _windows(grid_mean, step // pitch, sub // pitch, count, tiles)
    sub_square = _windows(grid_square, step // pitch, sub // pitch, count, tiles)
    sub_var = sub_square - sub_mean**2

    # the tiling is exact, so the window's moments are the means of its sub-patches' moments
    mean = sub_mean.mean(axis=(1, 3), keepdims=True)
    var = sub_square.mean(axis=(1, 3), keepdims=True) - mean**2
    ok_mean = np.abs(sub_mean - mean) <= mu * mean
    ok_var = np.abs(sub_var - var) <= gamma * var
    smooth = (ok_mean & ok_var).all(axis=(1, 3)) & (var[:, 0, :, 0] >= phi)  # (ny, nx, C)
    iy, ix = np.nonzero(smooth.all(axis=-1))
    return np.stack([ys[iy], xs[ix]], axis=1)


def extract_noise_patches(
    image: np.ndarray,
    *,
    patch: int = 32,
    sub: int = 8,
    mu: float = 0.1,
    gamma: float = 0.25,
    phi: float = 0.5,
    stride: int | None = None,
) -> np.ndarray:
    """(N, patch, patch, 3) float32 zero-mean noise patches from the smooth windows of one
    (H, W, 3) image with 0–255 values; `stride` defaults to `sub` (see the module docstring)."""
    corners = smooth_patch_corners(image, patch=patch, sub=sub, mu=mu, gamma=gamma, phi=phi, stride=stride)
    if len(corners) == 0:
        return np.zeros((0, patch, patch, 3), np.float32)
    rows = corners[:, 0, None] + np.arange(patch)  # (N, patch)
    cols = corners[:, 1, None] + np.arange(patch)
    windows = image[rows[:, :, None], cols[:, None, :]].astype(np.float64)  # (N, patch, patch, 3)
    return (windows - windows.mean(axis=(1, 2), keepdims=True)).astype(np.float32)


def _unit_rows(patches: np.ndarray) -> np.ndarray:
    flat = patches.reshape(len(patches), -1).astype(np.float32)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-12)


class NoisePatchCollector:
    """Noise patches gathered over many images (frames), without duplicates across or within them.

    Patches are kept in the order they were found; `patches` draws a seeded subset when asked for
    fewer than are kept.
    """

    def __init__(
        self,
        *,
        patch: int = 32,
        sub: int = 8,
        mu: float = 0.1,
        gamma: float = 0.25,
        phi: float = 0.5,
        stride: int | None = None,
        duplicate_correlation: float = DUPLICATE_CORRELATION,
    ) -> None:
        self._rule = dict(patch=patch, sub=sub, mu=mu, gamma=gamma, phi=phi, stride=stride)
        self._threshold = duplicate_correlation
        self._kept: list[np.ndarray] = []  # float32 (n, p, p, 3) blocks, one per add
        self._units: list[np.ndarray] = []  # the same patches as unit rows, for correlation

    def __len__(self) -> int:
        return sum(len(block) for block in self._kept)

    def add(self, image: np.ndarray) -> int:
        """Extract the smooth patches of `image`; keep those unlike every kept one. Returns how many."""
        found = extract_noise_patches(image, **self._rule)
        if len(found) == 0:
            return 0
        units = _unit_rows(found)
        fresh = np.ones(len(found), bool)
        for kept in self._units:  # against earlier images, in blocks of what each add kept
            fresh &= (units @ kept.T).max(axis=1) < self._threshold
        # within this image: keep the first of each group of look-alikes
        similar = np.triu(units @ units.T >= self._threshold, k=1)
        for i in range(len(found)):
            if fresh[i]:
                fresh[similar[i]] = False
        if not fresh.any():
            return 0
        self._kept.append(found[fresh])
        self._units.append(units[fresh])
        return int(fresh.sum())

    def patches(self, max_patches: int, rng: np.random.Generator) -> np.ndarray:
        """(N, p, p, 3) float32: all kept patches, or a seeded random `max_patches` of them (in the
        order they were found)."""
        if max_patches < 0:
            raise ValueError(f"max_patches must be ≥ 0, got {max_patches}")
        size = self._rule["patch"]
        if not self._kept:
            return np.zeros((0, size, size, 3), np.float32)
        every = np.concatenate(self._kept)
        if len(every) <= max_patches:
            return every
        chosen = np.sort(rng.choice(len(every), size=max_patches, replace=False))
        return every[chosen]
