"""Blur kernels estimated per image with KernelGAN (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

A deep *linear* generator G (convs 7, 5, 3, 1, 1, 1; 64 channels; no bias, no activation; stride 2
in the last layer) learns to downscale the image ×2 so that a fully convolutional patch
discriminator D cannot tell G's output patches from the image's own. Being linear, G *is* a
13×13 kernel k2 applied at stride 2; the ×4 kernel in HR pixels is k4 = k2 ∗ (k2 dilated by 2).

Where this differs from the authors' repository (sefibk/KernelGAN), and why:
* The GAN loss is least squares (LSGAN, as the paper says; the repository uses L1), and D has no
  final sigmoid, as LSGAN is defined.
* G runs on each colour channel as a single-channel image and the bicubic prior compares each
  channel with its own bicubic downscale (the repository's prior sums the three channels, its
  issues #28 / #47).
* The noise added to D's inputs is added to copies; the image itself is never modified (the
  repository adds it in place, so it accumulates in the image over the iterations).
* Every kernel here is centred on a pixel (odd size, centre of mass on the centre pixel), the
  convention of the pool's "blur, then keep every 4th pixel" model; the repository centres k2
  between pixels and shifts afterwards. k2 is trained towards its centre pixel (6, 6), the bicubic
  prior uses the pixel-centred 7-tap bicubic ×2 kernel, and k4 = k2 ∗ (k2 dilated by 2) then has
  its centre at (18, 18) of 37 up to the residual of the centring loss, which `x4_kernel` removes
  with a sub-pixel shift (cubic spline, which moves the centre of mass exactly and keeps the sum).
  k4 is cropped to the smallest odd square that holds 99.9 % of its absolute mass (not the 33×33
  padding artefact of the repository's issue #51).
* G starts at xavier gain 1, not 0.1: at 0.1 its kernel starts at ~1e-7, on the saddle at zero,
  and took ~500 iterations (on one photo: never) to leave it (see _init_weights).
* Crops are drawn from a seeded numpy Generator and D's noise from a seeded torch Generator, so the
  same image and seed give the same kernel; nothing is hard-coded to CUDA.

The returned k2 is cleaned as the authors' post-processing does (clean_kernel: non-negative,
compact) before k4 is composed from it.

What to expect (measured, benchmarks/calibrate_speed.py and the tests): on ×4 footage made from
real photos with a known anisotropic Gaussian (σ 5 and 2 HR px, 0.150 from bicubic), the ×4
kernel's L2 error is 0.04–0.06, but its long axis is often wrong: D, seeing one 26-px crop per
iteration on smooth photos, hardly tells the kernels apart, and the estimate is shaped mostly by
the kernel constraints. A sharp kernel (σ ≈ 1 HR px) cannot be estimated at all this way: no
13×13 k2 composes into it (the best one is still 0.10 away).

CPU levers (measured by benchmarks/calibrate_speed.py):
* `collapse_generator` (default on): G's output and gradients are computed through its composed
  13×13 kernel instead of layer by layer. The function of the parameters is the same, so are the
  gradients (to float rounding): the optimisation is unchanged, but a G pass costs ~0.3 M
  multiply-adds instead of ~1.3 G.
* Early stopping: after the first learning-rate drop, stop once k2 has moved less than
  `EARLY_STOP_TOLERANCE` (L2) over the last `EARLY_STOP_WINDOW` iterations.
* bf16 autocast (`precision`): only worth it where the CPU has native bf16 (AMX / AVX512-BF16);
  elsewhere it is emulated and slower, so "auto" picks it only there.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from torch.nn.utils import parametrize

from cctvsr.device import resolve_device, resolve_precision
from cctvsr.errors import InputError

# The paper's architecture and optimisation.
G_LAYERS = (7, 5, 3, 1, 1, 1)
G_CHANNELS = 64
K2_SIZE = sum(G_LAYERS) - len(G_LAYERS) + 1  # 13: the receptive field of G
D_LAYERS = 7  # a 7×7 conv, five 1×1 conv+BN+ReLU, a 1×1 conv to one channel
D_CHANNELS = 64
D_KERNEL = 7
CROP = 64  # G's input crop; D sees crops the size of G's output (26)
LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)
LR_DROP_EVERY = 750
LR_DROP_FACTOR = 10.0
DEFAULT_ITERS = 3000
G_INIT_GAIN = 1.0  # xavier-normal gain of G's convs (see _init_weights)
D_INIT_GAIN = 0.1  # the authors' gain for D; spectral normalisation makes D's scale moot anyway
D_NOISE_STD = 2.0 / 255.0  # one grey level in the [-1, 1] range the networks see

# Loss weights: the paper's α (sum to 1), β (boundaries), γ (sparsity), δ (centre of mass), and the
# bicubic prior's starting weight. Sparsity and centring start once the prior has faded (below).
W_SUM2ONE = 0.5
W_BOUNDARIES = 0.5
W_SPARSE = 5.0
W_CENTRE = 1.0
W_BICUBIC = 5.0
SPARSE_POWER = 0.2
BOUNDARY_SCALE = 30.0

# The bicubic prior holds G near a bicubic ×2 downscale until G first matches it (relative MSE
# below BICUBIC_MATCHED for BICUBIC_PATIENCE iterations in a row); from then its weight falls
# ×100 every BICUBIC_DECAY_EVERY iterations, and sparsity and centring switch on once it is below
# CONSTRAINTS_ON_BELOW (two decays later, i.e. after roughly the first 500 iterations).
BICUBIC_MATCHED = 0.1
BICUBIC_PATIENCE = 3
BICUBIC_DECAY_EVERY = 200
BICUBIC_DECAY = 100.0
BICUBIC_MIN_WEIGHT = 5e-6
CONSTRAINTS_ON_BELOW = 5e-3

# Early stopping: checked every EARLY_STOP_EVERY iterations from the first learning-rate drop on.
# Measured on three known-kernel photos (fp32, 3000 iterations): k2's L2 change over 250
# iterations is 0.23–0.30 before the first drop, 0.020–0.029 at 1000, 0.014–0.018 at 1250,
# 0.010–0.014 at 1500, ≤ 0.003 after the second drop; the ×4 kernel's error at 1250 was within
# 0.001 of its error at 3000 on each. So 0.02 stops at ~1250 iterations, ~2.4× sooner.
EARLY_STOP_EVERY = 50
EARLY_STOP_WINDOW = 250
EARLY_STOP_TOLERANCE = 0.02

K2_KEEP = 40  # clean_kernel keeps at most this many of k2's values (the authors' n_filtering)
K4_MASS = 0.999  # the cropped ×4 kernel keeps this share of the absolute mass
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class KernelEstimate:
    """One image's kernels: k2 (13×13, in the image's pixels, cleaned: non-negative, sum 1) and k4
    (odd square, in the pixels of the ×4 larger image, centre of mass on the centre pixel, sum 1)."""

    k2: np.ndarray
    k4: np.ndarray
    iterations: int
    stopped_early: bool
    seconds: float


# ----------------------------------------------------------------------------- kernel arithmetic


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic (a = -0.5), the kernel of MATLAB's imresize bicubic."""
    t = np.abs(t)
    return np.where(
        t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1, np.where(t < 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0)
    )


def _bicubic_kernel(scale: int) -> np.ndarray:
    """Antialiased bicubic ×scale downscaling kernel sampled at whole-pixel offsets (odd, centred)."""
    taps = np.arange(-2 * scale + 1, 2 * scale)
    w = _cubic(taps / scale)
    k = np.outer(w, w)
    return k / k.sum()


def bicubic_kernel_x4() -> np.ndarray:
    """The isotropic bicubic ×4 kernel in HR pixels (15×15, centred, sum 1): the reference an
    estimate must beat, since assuming bicubic is what a non-blind method does."""
    return _bicubic_kernel(4)


def anisotropic_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A size×size (odd) Gaussian, centred, sum 1; sigma_x along the axis at `theta` RADIANS (the
    usual convention, as in Real-ESRGAN's bivariate Gaussian) from the +x (column) axis towards +y
    (row, downwards), sigma_y across it. long_axis_angle() measures the same angle, in degrees:
    it returns degrees(theta) mod 180 when sigma_x > sigma_y."""
    if size < 1 or size % 2 == 0:
        raise InputError(f"kernel size must be odd and positive, got {size}")
    if sigma_x <= 0 or sigma_y <= 0:
        raise InputError(f"kernel sigmas must be positive, got {sigma_x} and {sigma_y}")
    r = np.arange(size) - size // 2
    y, x = np.meshgrid(r, r, indexing="ij")
    a = float(theta)
    u = x * math.cos(a) + y * math.sin(a)  # along the long axis
    v = -x * math.sin(a) + y * math.cos(a)
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / k.sum()


def centre_of_mass(k: np.ndarray) -> tuple[float, float]:
    """(row, col) of the kernel's centre of mass, in pixels from its top-left pixel's centre."""
    k = np.asarray(k, dtype=np.float64)
    total = k.sum()
    rows, cols = np.indices(k.shape)
    return float((rows * k).sum() / total), float((cols * k).sum() / total)


def _centred(k: np.ndarray) -> np.ndarray:
    """k normalised to sum 1 and shifted so its centre of mass is on the centre pixel of an odd,
    square array, padded by the shift. A cubic-spline shift moves the centre of mass exactly by
    the shift and keeps the sum (it reproduces linear functions), so one pass suffices; a second
    pass only removes what the array's edge cut off."""
    k = np.asarray(k, dtype=np.float64)
    if not k.sum() > 1e-6 * np.abs(k).sum():
        raise InputError("a blur kernel must have a positive sum")
    k = k / k.sum()
    for _ in range(2):
        side = max(k.shape)
        side += 1 - side % 2
        cy, cx = centre_of_mass(k)
        reach = int(math.ceil(max(abs(cy - (k.shape[0] - 1) / 2), abs(cx - (k.shape[1] - 1) / 2))))
        reach = min(reach, side)  # a centre of mass far outside the array is noise, not a shift
        out = side + 2 * reach
        canvas = np.zeros((out, out))
        top, left = (out - k.shape[0]) // 2, (out - k.shape[1]) // 2
        canvas[top : top + k.shape[0], left : left + k.shape[1]] = k
        cy, cx = cy + top, cx + left
        c = (out - 1) / 2
        k = ndimage.shift(canvas, (c - cy, c - cx), order=3, mode="constant")
        k /= k.sum()
        if max(abs(a - c) for a in centre_of_mass(k)) < 1e-9:
            break
    return k


def _crop_to_mass(k: np.ndarray, mass: float) -> np.ndarray:
    """The smallest centred odd square of k that holds `mass` of its absolute mass."""
    a = np.abs(k)
    total = a.sum()
    c = k.shape[0] // 2
    for half in range(c + 1):
        if a[c - half : c + half + 1, c - half : c + half + 1].sum() >= mass * total:
            return k[c - half : c + half + 1, c - half : c + half + 1]
    return k


def clean_kernel(k: np.ndarray, keep: int = K2_KEEP) -> np.ndarray:
    """The estimate as a physical blur: non-negative and compact, sum 1. The GAN leaves a floor of
    small positive and negative values that natural images cannot pin down (they hardly excite the
    kernel's high frequencies), and that floor dominates an L2 error. As in the authors' post-
    processing, everything below 0.75 × the (keep + 1)-th largest value is dropped and that level
    is subtracted from the rest."""
    k = np.asarray(k, dtype=np.float64)
    level = max(0.75 * float(np.sort(k.ravel())[-keep - 1]), 0.0) if k.size > keep else 0.0
    out = np.clip(k - level, 0.0, None)
    if not out.sum() > 0:
        raise InputError("a blur kernel must have positive values")
    return out / out.sum()


def compose_x4(k2: np.ndarray) -> np.ndarray:
    """k2 ∗ (k2 dilated by 2), uncropped: applying it at stride 4 is exactly applying k2 at stride 2
    twice (for a 13×13 k2, 37×37, centre at 3 × k2's centre)."""
    k2 = np.asarray(k2, dtype=np.float64)
    n = k2.shape[0]
    out = np.zeros((3 * n - 2, 3 * n - 2))
    for r in range(n):
        for c in range(n):
            out[2 * r : 2 * r + n, 2 * c : 2 * c + n] += k2[r, c] * k2
    return out


def x4_kernel(k2: np.ndarray) -> np.ndarray:
    """The ×4 kernel in HR pixels from a ×2 kernel: composed (compose_x4), centred on the centre
    pixel by a sub-pixel shift, cropped to the odd square holding 99.9 % of the absolute mass, sum 1
    (the crop can move the centre of mass by a few thousandths of a pixel).
    Applied at stride 4 it equals two stride-2 passes of k2 up to that shift of the sampling grid
    (which only moves where the LR pixels sit) and the cropped 0.1 %."""
    k2 = np.asarray(k2, dtype=np.float64)
    if k2.ndim != 2 or k2.shape[0] != k2.shape[1] or k2.shape[0] % 2 == 0:
        raise InputError(f"a ×2 kernel must be square and odd-sized, got shape {k2.shape}")
    k4 = _crop_to_mass(_centred(compose_x4(k2)), K4_MASS)
    return k4 / k4.sum()


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance between two kernels in HR pixels, after normalising each to sum 1, centring
    each on its centre pixel and zero-padding both to the same odd size (the issue's measure:
    a true anisotropic kernel against bicubic is ≈ 0.15)."""
    a, b = _centred(a), _centred(b)
    side = max(a.shape[0], b.shape[0])
    pa, pb = (side - a.shape[0]) // 2, (side - b.shape[0]) // 2
    return float(np.linalg.norm(np.pad(a, pa) - np.pad(b, pb)))


def long_axis_angle(k: np.ndarray) -> float:
    """Direction of the kernel's long axis in degrees, [0, 180), from its second moments about its
    centre of mass; measured from the +x (column) axis towards +y (row, downwards)."""
    k = np.asarray(k, dtype=np.float64)
    k = k / k.sum()
    cy, cx = centre_of_mass(k)
    rows, cols = np.indices(k.shape)
    y, x = rows - cy, cols - cx
    sxx, syy, sxy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    return float(math.degrees(0.5 * math.atan2(2 * sxy, sxx - syy)) % 180.0)


def angle_error(a: float, b: float) -> float:
    """Smallest difference between two axis directions in degrees (axes repeat every 180°)."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


# ----------------------------------------------------------------------------------- networks


class LinearGenerator(nn.Module):
    """G: convs 7, 5, 3, 1, 1, 1 with no bias and no activation, stride 2 in the last: a 13×13
    kernel at stride 2, parameterised deeply because that is what makes it train well (the paper)."""

    def __init__(self) -> None:
        super().__init__()
        sizes = G_LAYERS
        chans = [1] + [G_CHANNELS] * (len(sizes) - 1) + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], sizes[i], stride=2 if i == len(sizes) - 1 else 1, bias=False)
            for i in range(len(sizes))
        )

    def kernel(self) -> torch.Tensor:
        """The 13×13 cross-correlation kernel G applies. A layer's transposed convolution carries a
        kernel from its output back to its input, T_in[c](u) = Σ_c' Σ_a T_out[c'](u − a) W[c', c, a],
        so a delta at the output, carried back through every layer, is G's kernel: the same
        function as running a delta forward through G, in a few small batch-1 operations."""
        t = torch.ones(1, 1, 1, 1, dtype=self.convs[0].weight.dtype, device=self.convs[0].weight.device)
        for conv in reversed(self.convs):
            t = F.conv_transpose2d(t, conv.weight)
        return t[0, 0]

    def forward(self, x: torch.Tensor, collapsed: bool = True) -> torch.Tensor:
        """x: (N, 1, H, W) single-channel images → (N, 1, (H − 13) // 2 + 1, …)."""
        if collapsed:
            return F.conv2d(x, self.kernel()[None, None], stride=2)
        for conv in self.convs:
            x = conv(x)
        return x


class PatchDiscriminator(nn.Module):
    """D: a 7×7 conv, then 1×1 convs with BN + ReLU, then a 1×1 conv to one channel; spectral
    normalisation on every conv (the paper). Fully convolutional, so it scores every 7×7 patch and
    returns the map. No sigmoid: the loss is least squares (LSGAN)."""

    def __init__(self) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = [sn(nn.Conv2d(3, D_CHANNELS, D_KERNEL))]
        for _ in range(D_LAYERS - 2):
            layers += [sn(nn.Conv2d(D_CHANNELS, D_CHANNELS, 1)), nn.BatchNorm2d(D_CHANNELS), nn.ReLU()]
        layers.append(sn(nn.Conv2d(D_CHANNELS, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _init_weights(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Xavier-normal convs, zero biases, BN scale ~ N(1, 0.02) (the authors' scheme). G uses gain 1,
    not the authors' 0.1: six layers at 0.1 start G's kernel at ~1e-7, on the saddle at zero,
    where it stayed for ~500 iterations (and on one image for good) before the bicubic prior
    pulled it out; at gain 1 it matches the prior within ~10 iterations (measured)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            with torch.no_grad():
                nn.init.xavier_normal_(w, gain, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()


# ------------------------------------------------------------------------------------- losses


def _boundary_mask(size: int) -> torch.Tensor:
    """Weights on the kernel's outer two-pixel ring, growing with distance from the centre, zero
    inside: mass far from the centre is an artefact of the crop borders, not blur."""
    r = np.arange(size) - size // 2
    y, x = np.meshgrid(r, r, indexing="ij")
    mask = BOUNDARY_SCALE * (1.0 - np.exp(-(x**2 + y**2) / (2.0 * size**2)))
    inner = size // 2 - 1  # the ring starts this far (Chebyshev) from the centre
    mask[np.maximum(np.abs(x), np.abs(y)) < inner] = 0.0
    return torch.from_numpy(mask.astype(np.float32))


def _bicubic_x2(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each single-channel image of x bicubic-downscaled ×2, aligned pixel for pixel with G(x):
    G's output i is centred on input pixel 2i + 6, the 7-tap kernel's on 2j + 3 of its input,
    so the prior starts one pixel in and its output is read from index 1."""
    n = (x.shape[-1] - K2_SIZE) // 2 + 1
    out = F.conv2d(x[..., 1:, 1:], kernel, stride=2)
    return out[..., 1 : 1 + n, 1 : 1 + n]


class _Constraints:
    """The kernel terms of G's loss (the paper's R) and the bicubic prior, with their schedule."""

    def __init__(self, device: torch.device) -> None:
        idx = torch.arange(K2_SIZE, dtype=torch.float32, device=device)
        self.rows, self.cols = torch.meshgrid(idx, idx, indexing="ij")
        self.centre = float(K2_SIZE // 2)
        self.mask = _boundary_mask(K2_SIZE).to(device)
        self.bicubic = torch.from_numpy(_bicubic_kernel(2).astype(np.float32)).to(device)[None, None]
        self.w_bicubic = W_BICUBIC
        self.w_sparse = 0.0
        self.w_centre = 0.0
        self.matched = 0  # consecutive iterations the prior was met; -1 once it has been
        self.decay_from = 0  # the iteration it was first met
        self.last_bicubic = float("nan")

    def loss(self, k: torch.Tensor, g_in: torch.Tensor, g_out: torch.Tensor) -> torch.Tensor:
        total = k.sum()
        sum2one = (1.0 - total).abs()
        boundaries = (k * self.mask).abs().mean()
        sparse = (k * k + 1e-12).pow(SPARSE_POWER / 2).mean()  # |k|^0.2, smooth at 0
        cy = (self.rows * k).sum() / total
        cx = (self.cols * k).sum() / total
        centre = ((cy - self.centre) ** 2 + (cx - self.centre) ** 2 + 1e-12).sqrt()
        loss = W_SUM2ONE * sum2one + W_BOUNDARIES * boundaries
        loss = loss + self.w_sparse * sparse + self.w_centre * centre
        if self.w_bicubic > BICUBIC_MIN_WEIGHT or self.matched >= 0:
            target = _bicubic_x2(g_in, self.bicubic)
            mse = F.mse_loss(g_out.float(), target)
            self.last_bicubic = float(mse.detach() / target.pow(2).mean().clamp_min(1e-8))
            loss = loss + self.w_bicubic * mse
        return loss

    def update(self, iteration: int) -> None:
        """After iteration `iteration`: advance the prior's schedule."""
        if self.matched >= 0:
            self.matched = self.matched + 1 if self.last_bicubic < BICUBIC_MATCHED else 0
            if self.matched >= BICUBIC_PATIENCE:
                self.matched = -1
                self.decay_from = iteration
            return
        if (iteration - self.decay_from) % BICUBIC_DECAY_EVERY == 0 and iteration > self.decay_from:
            self.w_bicubic = max(self.w_bicubic / BICUBIC_DECAY, BICUBIC_MIN_WEIGHT)
            if self.w_bicubic < CONSTRAINTS_ON_BELOW:
                self.w_sparse, self.w_centre = W_SPARSE, W_CENTRE


# --------------------------------------------------------------------------------------- data


class _CropSampler:
    """Crop positions drawn with probability proportional to the crop's mean gradient magnitude:
    flat regions teach D nothing about blur, edges do (the paper's sampling). One draw per
    iteration, so a run of N iterations is exactly the first N of a longer run."""

    def __init__(self, gray: np.ndarray, size: int, rng: np.random.Generator) -> None:
        gy, gx = np.gradient(gray)
        sat = np.pad(np.hypot(gx, gy).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        score = sat[size:, size:] - sat[:-size, size:] - sat[size:, :-size] + sat[:-size, :-size]
        score = np.maximum(score, 0.0) + 1e-9 * max(score.max(), 1e-12)  # a flat image: uniform
        self.cdf = np.cumsum(score.ravel())
        self.cdf /= self.cdf[-1]
        self.width = score.shape[1]
        self.rng = rng

    def draw(self) -> tuple[int, int]:
        """(top, left) of one crop."""
        idx = min(int(np.searchsorted(self.cdf, self.rng.random(), side="right")), self.cdf.size - 1)
        return idx // self.width, idx % self.width


# ---------------------------------------------------------------------------------- estimation


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise InputError(f"kernel estimation needs an (H, W, 3) uint8 RGB image, got shape {shape}")
    if min(image.shape[:2]) < CROP:
        raise InputError(
            f"image {image.shape[1]}×{image.shape[0]} is too small to estimate a blur kernel from "
            f"(at least {CROP}×{CROP} pixels are needed)"
        )
    return image


def normalised_k2(g: LinearGenerator) -> np.ndarray:
    """G's current kernel as float64, sum 1."""
    with torch.no_grad():
        k = g.kernel().double().cpu().numpy()
    return k / k.sum()


class _EarlyStop:
    """Stop once the kernel has stopped changing: from the first learning-rate drop on, every
    EARLY_STOP_EVERY iterations, compare k2 (sum 1) with k2 EARLY_STOP_WINDOW iterations earlier."""

    def __init__(self) -> None:
        self.history: dict[int, np.ndarray] = {}
        self.stopped = False

    def should_stop(self, done: int, kernel: Callable[[], np.ndarray]) -> bool:
        if done % EARLY_STOP_EVERY or done < LR_DROP_EVERY - EARLY_STOP_WINDOW:
            return False
        now = self.history[done] = kernel()
        past = self.history.pop(done - EARLY_STOP_WINDOW, None)
        self.stopped = done >= LR_DROP_EVERY and past is not None and bool(
            np.linalg.norm(now - past) < EARLY_STOP_TOLERANCE
        )
        return self.stopped


def _train(
    image: np.ndarray, iters: int, seed: int, precision: str, device: torch.device, collapse_generator: bool
) -> Iterator[LinearGenerator]:
    """KernelGAN's iterations; yields G after each one (the caller decides when to stop)."""
    rng = np.random.default_rng(seed)
    tgen = torch.Generator().manual_seed(seed)
    img = image.astype(np.float32) / 127.5 - 1.0  # the [-1, 1] range both networks see
    gray = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float64)
    out_size = (CROP - K2_SIZE) // 2 + 1  # 26: G's output, and so D's real crops
    g_crops, d_crops = _CropSampler(gray, CROP, rng), _CropSampler(gray, out_size, rng)
    planes = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(device)  # (3, H, W)

    # spectral_norm draws its power-iteration vectors from the global generator: build under a
    # seeded fork of it, so the caller's random state is left alone and the result is repeatable
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g, d = LinearGenerator(), PatchDiscriminator()
    _init_weights(g, G_INIT_GAIN, tgen)
    _init_weights(d, D_INIT_GAIN, tgen)
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=LEARNING_RATE, betas=BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=LEARNING_RATE, betas=BETAS)
    constraints = _Constraints(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    noise_shape = (1, 3, out_size, out_size)

    for it in range(iters):
        if it > 0 and it % LR_DROP_EVERY == 0:
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] /= LR_DROP_FACTOR
        (gt, gl), (dt, dl) = g_crops.draw(), d_crops.draw()
        g_in = planes[:, gt : gt + CROP, gl : gl + CROP].unsqueeze(1)  # the colours as a batch of 3
        d_real = planes[:, dt : dt + out_size, dl : dl + out_size].unsqueeze(0)

        # G: fool D, and keep the kernel a kernel
        opt_g.zero_grad(set_to_none=True)
        k = g.kernel()
        with autocast:
            g_out = F.conv2d(g_in, k[None, None], stride=2) if collapse_generator else g(g_in, False)
            d_fake = d(g_out.transpose(0, 1))
            loss_g = (d_fake.float() - 1.0).pow(2).mean()
        loss_g = loss_g + constraints.loss(k, g_in, g_out)
        loss_g.backward()
        opt_g.step()

        # D: real crops → 1, G's (updated) crops → 0; noise goes on copies, never into the image.
        # Both passes share one spectral-norm evaluation (parametrize.cached).
        opt_d.zero_grad(set_to_none=True)
        noise_r = torch.randn(noise_shape, generator=tgen).to(device) * D_NOISE_STD
        noise_f = torch.randn(noise_shape, generator=tgen).to(device) * D_NOISE_STD
        with torch.no_grad(), autocast:
            fake = g(g_in, collapse_generator).transpose(0, 1).float()
        with parametrize.cached(), autocast:
            d_real_out = d(d_real + noise_r)
            d_fake_out = d(fake + noise_f)
            loss_d = 0.5 * ((d_real_out.float() - 1.0).pow(2).mean() + d_fake_out.float().pow(2).mean())
        loss_d.backward()
        opt_d.step()

        constraints.update(it + 1)
        yield g


def estimate_kernel(
    image: np.ndarray,
    *,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
    precision: str = "auto",
    early_stop: bool = True,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    collapse_generator: bool = True,
) -> KernelEstimate:
    """Estimate the image's blur kernel with KernelGAN: k2 in the image's pixels, k4 in the pixels
    of the (unseen) ×4 higher-resolution image. Same image, seed and settings → same kernel.

    iters is an upper bound when early_stop is on. precision "auto" is bf16 only on a CPU with
    native bf16. collapse_generator=False runs G layer by layer (the paper's way; same result,
    slower), which the benchmark and the tests use to check the default."""
    image = _check_image(image)
    if iters < 1:
        raise InputError(f"kernel iterations must be at least 1, got {iters}")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev, PRECISIONS)
    start = time.perf_counter()
    stopper = _EarlyStop() if early_stop else None
    done = 0
    g: LinearGenerator | None = None
    for done, g in enumerate(_train(image, iters, seed, prec, dev, collapse_generator), start=1):
        if progress is not None:
            progress(done, iters)
        if stopper is not None and done < iters and stopper.should_stop(done, partial(normalised_k2, g)):
            break
    assert g is not None
    k2 = clean_kernel(normalised_k2(g))
    return KernelEstimate(
        k2=k2,
        k4=x4_kernel(k2),
        iterations=done,
        stopped_early=stopper is not None and stopper.stopped,
        seconds=time.perf_counter() - start,
    )


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimate_kernels(
    images: Sequence[np.ndarray],
    seeds: Sequence[int],
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Iterator[tuple[int, KernelEstimate]]:
    """Estimate several images' kernels; yields (position, estimate) as each one finishes.

    Each estimate runs on one torch thread: an iteration is many small ops that a second thread
    only slows (measured: D's forward pass 8 ms at one thread, 190 ms at two on a busy 2-core
    machine). Cores are used by running estimates side by side in `jobs` processes instead, so the
    kernels do not depend on `jobs`. Per-iteration progress is reported only when jobs is 1."""
    if len(images) != len(seeds):
        raise ValueError("one seed per image")
    if jobs <= 1 or len(images) <= 1:
        for position, (image, seed) in enumerate(zip(images, seeds)):
            with _torch_threads(1):
                estimate = estimate_kernel(image, seed=seed, progress=progress, **options)
            yield position, estimate
        return
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    workers = min(jobs, len(images))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {pool.submit(estimate_kernel, image, seed=seed, **options): i for i, (image, seed) in enumerate(zip(images, seeds))}
        for future in as_completed(futures):
            yield futures[future], future.result()
