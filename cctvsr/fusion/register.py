"""Register one face crop to the reference crop: phase correlation, ECC affine, then dense flow.

Why this chain: phase correlation finds the integer-ish shift robustly even under noise; ECC
(Evangelidis & Psarakis 2008) on ×4-upsampled frames then reaches 0.02–0.08 LR px for a
global affine motion (measured for issue 16); a head that turns is not affine, so DIS optical
flow (Kroeger et al. 2016), smoothed over ~2 LR px so it cannot follow noise, corrects what is
left where it measurably helps. Every frame gets a residual, and a frame that does not register
gets a reason instead of silently spoiling the fused face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cctvsr.fusion.grid import GRID, apply_affine, hr_coords, hr_to_lr, invert_affine, lr_to_hr

ECC_ITERATIONS = 60
ECC_EPS = 1e-5
ECC_SMOOTH = 5  # ECC's own Gaussian pre-filter (px on the ×4 grid)
ECC_GRID = 2  # ECC runs on the ×2 grid (a quarter of the ×4 grid's pixels); its warp is carried to ×GRID
MIN_CORRELATION = 0.75  # ECC coefficient below which the frame is not the same view of the face
MAX_SCALE_CHANGE = 0.25  # |log scale| beyond this is not a face seen from the same camera
MAX_SHIFT_SHARE = 0.25  # shift beyond this share of the crop side is a different region
FLOW_SMOOTH_LR = 2.0  # σ (LR px) of the smoothing applied to the DIS flow
FLOW_MIN_GAIN = 0.10  # keep the flow only if it lowers the residual by at least this share
RESIDUAL_SMOOTH_LR = 1.0  # σ (LR px) applied before the residual, so aliasing is not counted as error
# RMS of `residual` for two frames that differ by white noise of σ 1 alone: √2 / (2√π × the
# smoothing σ in px). Where the affine residual is no more than the noise's, flow could only fit
# noise and codec artefacts (on the demo clip, a pan, it was kept for 33 of 63 pairs that way).
NOISE_RESIDUAL = math.sqrt(2.0) / (2.0 * math.sqrt(math.pi) * RESIDUAL_SMOOTH_LR)
BORDER_LR = 2  # LR px at the crop edge left out of residuals (warps pull in the outside there)


@dataclass(frozen=True)
class Registration:
    """How one frame maps onto the reference, in the ×GRID grids of both.

    warp: 2×3 affine taking a reference grid point to the frame's grid point (ECC's convention);
    flow: (H·GRID, W·GRID, 2) correction on the reference grid (grid px) or None: the reference point u
    corresponds to the frame point warp(u + flow(u)).
    residual: robust RMS (grey levels) of the smoothed luma difference after registration.
    """

    warp: np.ndarray
    flow: np.ndarray | None
    residual: float
    correlation: float
    ok: bool
    reason: str = ""

    def to_frame_lr(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Frame LR coordinates (x, y) of every point of the reference's ×GRID grid (for warping)."""
        h, w = shape[0] * GRID, shape[1] * GRID
        x, y = hr_coords(h, w)
        if self.flow is not None:
            x, y = x + self.flow[..., 0], y + self.flow[..., 1]
        fx, fy = apply_affine(self.warp, x, y)
        return hr_to_lr(fx), hr_to_lr(fy)

    def from_frame_lr(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Reference ×GRID-grid coordinates (x, y) of every frame LR pixel centre (the forward model)."""
        qx, qy = hr_coords(shape[0], shape[1])
        ux, uy = apply_affine(invert_affine(self.warp), lr_to_hr(qx), lr_to_hr(qy))
        if self.flow is None:
            return ux, uy
        x, y = ux.copy(), uy.copy()
        for _ in range(3):  # fixed point of u = u0 − flow(u)
            fx = cv2.remap(self.flow[..., 0], x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fy = cv2.remap(self.flow[..., 1], x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            x, y = ux - fx, uy - fy
        return x, y


def _upsampled(grey: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


def _rescale_warp(warp: np.ndarray, source: int, target: int) -> np.ndarray:
    """An affine warp between ×`source` grids as the same motion between ×`target` grids (a ×s grid
    point is s·x + (s − 1)/2 for the LR point x, the centres `cv2.resize` keeps)."""
    lin = warp[:, :2]
    bend = lin - np.eye(2)
    shift = (target / source) * (warp[:, 2] + bend @ np.full(2, (source - 1) / 2)) - bend @ np.full(2, (target - 1) / 2)
    return np.hstack([lin, shift[:, None]])


def _phase_shift(ref: np.ndarray, mov: np.ndarray) -> tuple[float, float]:
    """Shift (dx, dy) in LR px such that mov(p + shift) ≈ ref(p)."""
    window = cv2.createHanningWindow(ref.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ref.astype(np.float32), mov.astype(np.float32), window)
    return float(dx), float(dy)


def warp_to_reference(frame: np.ndarray, reg: Registration, shape: tuple[int, int], lr: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The frame resampled onto the reference's LR grid (lr=True, bilinear) or its ×GRID grid
    (bicubic: the registered bicubic upsample), and where it had pixels to sample."""
    if lr:
        x, y = _lr_points(reg, *hr_coords(*shape))
    else:
        x, y = reg.to_frame_lr(shape)
    h, w = frame.shape[:2]
    valid = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    method = cv2.INTER_LINEAR if lr else cv2.INTER_CUBIC
    return cv2.remap(frame.astype(np.float32), x, y, method, borderMode=cv2.BORDER_REFLECT), valid


def _lr_points(reg: Registration, qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame LR coordinates of reference LR pixel centres (qx, qy)."""
    ux, uy = lr_to_hr(qx), lr_to_hr(qy)
    if reg.flow is not None:
        fx = cv2.remap(reg.flow[..., 0], ux, uy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fy = cv2.remap(reg.flow[..., 1], ux, uy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ux, uy = ux + fx, uy + fy
    fx, fy = apply_affine(reg.warp, ux, uy)
    return hr_to_lr(fx), hr_to_lr(fy)


def residual(ref: np.ndarray, frame: np.ndarray, reg: Registration) -> float:
    """Robust RMS (1.4826·MAD, grey levels) of smoothed ref − registered frame, inside the crop."""
    warped, valid = warp_to_reference(frame, reg, ref.shape)
    diff = cv2.GaussianBlur(ref, (0, 0), RESIDUAL_SMOOTH_LR) - cv2.GaussianBlur(warped, (0, 0), RESIDUAL_SMOOTH_LR)
    valid[:BORDER_LR], valid[-BORDER_LR:], valid[:, :BORDER_LR], valid[:, -BORDER_LR:] = False, False, False, False
    d = diff[valid]
    if d.size < 16:
        return float("inf")
    return float(np.sqrt(np.mean(d**2)))


def _implausible(warp: np.ndarray, shape: tuple[int, int]) -> str:
    lin = warp[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))
    if abs(np.log(max(scale, 1e-6))) > MAX_SCALE_CHANGE:
        return f"implausible motion: scale ×{scale:.2f}"
    centre = np.array([shape[1] * GRID / 2, shape[0] * GRID / 2])
    shift = lin @ centre + warp[:, 2] - centre
    if np.hypot(*shift) / GRID > MAX_SHIFT_SHARE * min(shape):
        return f"implausible motion: shift {np.hypot(*shift) / GRID:.1f} LR px"
    return ""


def register(ref: np.ndarray, frame: np.ndarray, *, use_flow: bool = True, noise: float = 0.0) -> Registration:
    """Register `frame` to `ref` (both float32 luma, same LR shape). Never raises for a bad frame:
    the result says ok=False and why. noise: the footage's effective luma noise (grey levels); dense
    flow is tried only where the affine residual is more than that noise leaves in it."""
    shape = ref.shape
    dx, dy = _phase_shift(ref, frame)
    warp = np.array([[1, 0, ECC_GRID * dx], [0, 1, ECC_GRID * dy]], dtype=np.float32)
    ref_ecc, frame_ecc = _upsampled(ref, ECC_GRID), _upsampled(frame, ECC_GRID)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
    smooth = max(1, ECC_SMOOTH * ECC_GRID // GRID) | 1
    try:
        correlation, warp = cv2.findTransformECC(ref_ecc, frame_ecc, warp, cv2.MOTION_AFFINE, criteria, None, smooth)
    except cv2.error:
        try:  # a bad phase-correlation start can diverge; the identity is the other sensible start
            warp = np.eye(2, 3, dtype=np.float32)
            correlation, warp = cv2.findTransformECC(ref_ecc, frame_ecc, warp, cv2.MOTION_AFFINE, criteria, None, smooth)
        except cv2.error:
            return Registration(np.eye(2, 3), None, float("inf"), 0.0, False, "ECC registration did not converge")
    warp = _rescale_warp(warp.astype(np.float64), ECC_GRID, GRID)
    reg = Registration(warp, None, 0.0, float(correlation), True)
    reg = Registration(warp, None, residual(ref, frame, reg), float(correlation), True)
    if use_flow and reg.residual > NOISE_RESIDUAL * noise:
        reg = _refine_with_flow(ref, frame, reg)
    why = _implausible(warp, shape)
    if not why and reg.correlation < MIN_CORRELATION:
        why = f"does not match the reference (ECC correlation {reg.correlation:.2f} < {MIN_CORRELATION})"
    if why:
        return Registration(reg.warp, reg.flow, reg.residual, reg.correlation, False, why)
    return reg


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _refine_with_flow(ref: np.ndarray, frame: np.ndarray, reg: Registration) -> Registration:
    """DIS flow between the reference and the affinely warped frame on the ×GRID grid, kept only where it helps."""
    ref_up, frame_up = _upsampled(ref, GRID), _upsampled(frame, GRID)
    h, w = ref_up.shape
    x, y = hr_coords(h, w)
    fx, fy = apply_affine(reg.warp, x, y)
    warped = cv2.remap(frame_up, fx, fy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(_to_u8(ref_up), _to_u8(warped), None)
    sigma = FLOW_SMOOTH_LR * GRID
    flow = np.dstack([cv2.GaussianBlur(flow[..., i], (0, 0), sigma) for i in range(2)]).astype(np.float32)
    candidate = Registration(reg.warp, flow, 0.0, reg.correlation, True)
    res = residual(ref, frame, candidate)
    if res < (1.0 - FLOW_MIN_GAIN) * reg.residual:
        return Registration(reg.warp, flow, res, reg.correlation, True)
    return reg
