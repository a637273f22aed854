"""Reconstruct the face on the reference's ×4 grid from registered frames, and its ×1 version.

Why this method: a robust MAP estimate (Farsiu et al. 2004) — a Huber data term, so a frame
pixel that disagrees (a mis-registered patch, a compression block) pulls with bounded force, and a
bilateral-TV prior, which keeps edges — was the best of the methods measured for issue 16 (robust
shift-and-add + Wiener 0.1–0.6 dB behind, a median of warped frames almost nothing). It starts
from a registered trimmed mean and takes a fixed number of gradient steps, so its cost is known.
The forward model is the camera's: blur (the estimated lens blur convolved with the pixel's box),
then sampling at each frame pixel's registered position.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse

from cctvsr.fusion.grid import GRID


@dataclass(frozen=True)
class MapSettings:
    """The solve's knobs. delta and lam are set from the footage's noise (see fuse.strengths)."""

    delta: float  # Huber threshold, grey levels
    lam: float  # bilateral-TV weight
    steps: int  # gradient steps (fuse.SOLVER_STEPS)
    step_size: float = 1.0  # scaled by 16 / frames inside (the data term's curvature grows with N)
    btv_radius: int = 2
    btv_decay: float = 0.7
    btv_eps: float = 1.0  # grey levels: smooths |·| at 0 so the gradient is defined


def camera_psf(blur_sigma: float, kernel: np.ndarray | None = None) -> np.ndarray:
    """The point-spread function on the ×GRID grid: lens blur (an isotropic Gaussian of
    `blur_sigma` LR px, or `kernel` given on the ×GRID grid) convolved with the GRID×GRID pixel box."""
    if kernel is None:
        s = max(float(blur_sigma) * GRID, 1e-3)
        r = int(np.ceil(3 * s))
        t = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-0.5 * (t / s) ** 2)
        kernel = np.outer(g, g)
    kernel = np.asarray(kernel, dtype=np.float64)
    kernel = kernel / kernel.sum()
    box = np.ones((GRID, GRID)) / GRID**2
    size = (kernel.shape[0] + GRID - 1, kernel.shape[1] + GRID - 1)
    out = np.zeros(size)
    for i in range(GRID):
        for j in range(GRID):
            out[i : i + kernel.shape[0], j : j + kernel.shape[1]] += kernel * box[i, j]
    return (out / out.sum()).astype(np.float32)


class ForwardModel:
    """Blur then sample: predicts every frame's luma from a face on the reference's ×GRID grid.

    Why not torch autograd (as first built): its conv2d backward for one 16×16 kernel on a
    ~300×400 grid took ~150 ms a step, 90 % of fusion's time (profiled for issue 16). Here the
    blur is OpenCV's filter (separable when the PSF is, as the Gaussian one is) with its explicit
    adjoint, and the sampling a sparse matrix of exact bilinear weights (grid_sample's
    align_corners/border convention) with its transpose: the same operator, ~20× cheaper.
    """

    def __init__(self, psf: np.ndarray, positions: list[tuple[np.ndarray, np.ndarray]], grid_shape: tuple[int, int]) -> None:
        psf = np.asarray(psf, dtype=np.float32)
        self.psf = psf
        self.k = psf.shape[0]
        self.pad = psf.shape[0] // 2
        self.separable = _separable(psf)
        # an even-sided psf centres half a pixel early: sample that much later to compensate
        shift = self.pad - (psf.shape[0] - 1) / 2
        h, w = grid_shape
        self.grid_shape = (h, w)
        self.frame_shape = positions[0][0].shape if positions else (0, 0)
        self.count = len(positions)
        self.sample = _bilinear_matrix([(x + shift, y + shift) for x, y in positions], h, w)
        self.sample_t = self.sample.T.tocsr()
        m = self.pad
        inside = [(x >= m) & (x <= w - 1 - m) & (y >= m) & (y <= h - 1 - m) for x, y in positions]
        self.inside = np.stack(inside).astype(np.float32)

    def _filter(self, img: np.ndarray, flipped: bool) -> np.ndarray:
        """Correlation with the psf (or its flip) anchored at the top-left: out[i, j] = Σ img[i+a, j+b]·k[a, b]."""
        if self.separable is not None:
            col, row = self.separable
            if flipped:
                col, row = col[::-1].copy(), row[::-1].copy()
            return cv2.sepFilter2D(img, cv2.CV_32F, row, col, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        kernel = self.psf[::-1, ::-1].copy() if flipped else self.psf
        return cv2.filter2D(img, cv2.CV_32F, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)

    def blur(self, x: np.ndarray) -> np.ndarray:
        """x (H, W) convolved with the psf, the outside replicated from the edge."""
        h, w = x.shape
        lo, hi = self.pad, self.k - 1 - self.pad
        padded = cv2.copyMakeBorder(np.ascontiguousarray(x, dtype=np.float32), lo, hi, lo, hi, cv2.BORDER_REPLICATE)
        return self._filter(padded, False)[:h, :w]

    def blur_adjoint(self, g: np.ndarray) -> np.ndarray:
        """The transpose of `blur`: spread g back through the psf, then fold the replicated border onto the edge."""
        h, w = g.shape
        k, lo = self.k, self.pad
        z = cv2.copyMakeBorder(np.ascontiguousarray(g, dtype=np.float32), k - 1, k - 1, k - 1, k - 1, cv2.BORDER_CONSTANT, value=0)
        gp = self._filter(z, True)[: h + k - 1, : w + k - 1]
        gp[:, lo] += gp[:, :lo].sum(axis=1)
        gp[:, lo + w - 1] += gp[:, lo + w :].sum(axis=1)
        gp[lo] += gp[:lo].sum(axis=0)
        gp[lo + h - 1] += gp[lo + h :].sum(axis=0)
        return gp[lo : lo + h, lo : lo + w]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (H, W) → (N, h, w) predicted frames."""
        return (self.sample @ self.blur(x).ravel()).reshape(self.count, *self.frame_shape)

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        """The transpose of the whole model: (N, h, w) → (H, W)."""
        return self.blur_adjoint((self.sample_t @ r.ravel().astype(np.float32)).reshape(self.grid_shape))


def _separable(psf: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) factors when the psf is an outer product (to float precision), else None."""
    u, s, vt = np.linalg.svd(psf.astype(np.float64))
    if s[0] <= 0 or (s[1:].sum() if s.size > 1 else 0.0) > 1e-6 * s[0]:
        return None
    col, row = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
    if col.sum() < 0:
        col, row = -col, -row
    return col.astype(np.float32), row.astype(np.float32)


def _bilinear_matrix(positions: list[tuple[np.ndarray, np.ndarray]], h: int, w: int) -> sparse.csr_matrix:
    """Rows: every frame pixel; columns: the h × w grid; bilinear weights, coordinates clamped to the grid."""
    x = np.concatenate([np.asarray(p[0], np.float64).ravel() for p in positions]) if positions else np.zeros(0)
    y = np.concatenate([np.asarray(p[1], np.float64).ravel() for p in positions]) if positions else np.zeros(0)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x), w - 2).astype(np.int64), np.minimum(np.floor(y), h - 2).astype(np.int64)
    x0, y0 = np.maximum(x0, 0), np.maximum(y0, 0)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    rows = np.repeat(np.arange(x.size), 4)
    cols = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], axis=1).ravel()
    vals = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1).ravel()
    return sparse.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(x.size, h * w))


def _btv_gradient(x: np.ndarray, radius: int, decay: float, eps: float) -> np.ndarray:
    """Gradient of Σ_offsets decay^(|dx|+|dy|)·Σ sqrt((x − x shifted)² + eps²) over the inner grid
    (OpenCV's fused element-wise ops on views: this runs 12 times a step, the solve's largest cost)."""
    h, w = x.shape
    r = radius
    grad = np.zeros_like(x)
    inner = (slice(r, h - r), slice(r, w - r))
    xi, gi = x[inner], grad[inner]
    e = np.full(xi.shape, eps, np.float32)
    for dy in range(-r, r + 1):
        for dx in range(0, r + 1):
            if dx == 0 and dy <= 0:
                continue  # each pair of offsets once
            other = (slice(r - dy, h - r - dy), slice(r - dx, w - r - dx))
            d = cv2.subtract(xi, x[other])
            g = cv2.divide(d, cv2.magnitude(d, e), scale=decay ** (abs(dx) + abs(dy)))
            cv2.add(gi, g, dst=gi)
            go = grad[other]
            cv2.subtract(go, g, dst=go)
    return grad


def map_reconstruct(
    frames: list[np.ndarray],
    model: ForwardModel,
    init: np.ndarray,
    settings: MapSettings,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Minimise Σ_k w_k Σ Huber(model_k(x) − y_k) + λ·BTV(x) from `init` by gradient descent (with momentum)."""
    y = np.stack(frames).astype(np.float32)
    w = np.ones(len(frames), np.float32) if weights is None else np.asarray(weights, np.float32)
    mask = model.inside * w[:, None, None]
    x = np.array(init, dtype=np.float32)
    step = np.float32(settings.step_size * GRID**2 / max(float(w.sum()), 1.0))
    velocity = np.zeros_like(x)
    for _ in range(settings.steps):
        r = np.clip(model(x) - y, -settings.delta, settings.delta) * mask  # Huber'(r), weighted
        grad = model.adjoint(r)
        grad += np.float32(settings.lam) * _btv_gradient(x, settings.btv_radius, settings.btv_decay, settings.btv_eps)
        velocity = 0.5 * velocity - step * grad
        x += velocity
        np.clip(x, 0.0, 255.0, out=x)
    return x


def predict(model: ForwardModel, x: np.ndarray) -> np.ndarray:
    """Frames (N, h, w) as the camera would have recorded the face x (on the ×GRID grid)."""
    return model(np.asarray(x, dtype=np.float32))


def trimmed_mean(stack: np.ndarray, valid: np.ndarray, trim: float = 0.2) -> np.ndarray:
    """Per-pixel mean over frames after dropping the `trim` share at each end (valid samples only):
    robust to a frame that is locally wrong, without the median's loss of sub-pixel detail.
    `valid` broadcasts against `stack`. Points every frame saw (nearly all) take a plain sort; only
    the rest take the general path, which was most of fusion's set-up time when used everywhere."""
    stack = np.asarray(stack, dtype=np.float32)
    valid = np.broadcast_to(valid, stack.shape)
    n_frames = stack.shape[0]
    lo = int(np.floor(trim * n_frames))
    hi = max(n_frames - lo, lo + 1)
    out = np.sort(stack, axis=0)[lo:hi].mean(axis=0, dtype=np.float32)
    partial = ~valid.all(axis=0)
    if partial.any():
        out[partial] = _trimmed_mean_general(stack[:, partial], valid[:, partial], trim)
    return out


def _trimmed_mean_general(stack: np.ndarray, valid: np.ndarray, trim: float) -> np.ndarray:
    """trimmed_mean where frames see a point or not: (N, M) samples → (M,)."""
    data = np.sort(np.where(valid, stack, np.nan), axis=0)  # NaN (invalid) sort last
    n = valid.sum(axis=0)
    lo = np.floor(trim * n).astype(int)
    hi = np.maximum(n - lo, lo + 1)
    csum = np.concatenate([np.zeros_like(data[:1]), np.cumsum(np.nan_to_num(data), axis=0)])
    top = np.take_along_axis(csum, hi[None], axis=0)[0]
    bottom = np.take_along_axis(csum, lo[None], axis=0)[0]
    out = (top - bottom) / np.maximum(hi - lo, 1)
    fallback = stack.mean(axis=0)  # no frame saw this point: any value will do, the data term ignores it
    return np.where(n > 0, out, fallback).astype(np.float32)
