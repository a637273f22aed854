"""fuse_track: a face track's crops in, one reconstructed face (×4 and ×1) and its record out.

Plain data both ways, so `enhance` (or a test) can call it without files: the result holds the
images, which frames were used and which were rejected and why, the registration residuals, the
parameters that re-create it, and the numbers of the run-time safety check. The check is held
out: the face is reconstructed again without some registered frames, degraded again by the
estimated blur and sampling, and must predict those held-out frames better than the best single
frame does — both its own pixels resampled into each held-out frame and its bicubic ×4 degraded
again; otherwise it is not to be shown. (Predicting frames the reconstruction was fitted to is no
test: a MAP estimate with more unknowns than observations fits their noise.)
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from cctvsr.errors import InputError
from cctvsr.fusion.grid import GRID, hr_coords, luma, rgb_to_ycc, ycc_to_rgb
from cctvsr.fusion.reconstruct import ForwardModel, MapSettings, camera_psf, map_reconstruct, predict, trimmed_mean
from cctvsr.fusion.reference import choose_reference, quality_scores, spread_best
from cctvsr.fusion.register import Registration, register, warp_to_reference

METHOD = "multi-frame reconstruction: ECC affine + DIS flow registration, Huber/bilateral-TV MAP on a ×4 grid"
MIN_SIDE = 8  # LR px: below this there is nothing to register
DEFAULT_BLUR_SIGMA = 0.5  # LR px, used when the footage's blur is not known (a typical CCTV lens + demosaic)
DELTA_PER_SIGMA = 1.5  # Huber threshold in units of the effective luma noise (tuned on the tuning faces)
LAMBDA_PER_SIGMA2 = 0.002  # bilateral-TV weight per (effective luma noise)² (tuned on the tuning faces)
MIN_SIGMA = 1.0  # grey levels: even clean footage has quantisation and model error
# Gradient steps of the MAP solve from its trimmed-mean start: stopping early is part of the prior.
# On the tuning faces (benchmarks/fusion.py) 10 steps beat 30 in every condition (H.264 CRF 26
# +0.40 → +0.56 dB, JPEG 40 +1.36 → +1.49, N 4 +1.65 → +1.81, base +2.17 → +2.23), 15 and 7 lie
# between, 5 falls back (base +1.88); and a third of the steps is a third of the solve's time.
SOLVER_STEPS = 10
RESIDUAL_FACTOR = 2.5  # a registered frame whose residual exceeds this × the track median is rejected
RESIDUAL_FLOOR_PER_SIGMA = 1.0  # ... unless it is below this × the effective luma noise
H264_QSTEP_AT_QP0 = 0.625  # H.264's quantiser step at QP 0; it doubles every 6 QP
LUMA_PER_CHANNEL = math.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # σ of luma for i.i.d. RGB noise of σ 1
WORKERS = max(1, min(4, os.cpu_count() or 1))  # registrations and the two solves are independent (OpenCV/NumPy drop the GIL)


@dataclass(frozen=True)
class FusionParams:
    """Everything that, with the same crops, re-creates the result (goes into the manifest)."""

    method: str
    grid: int
    blur_sigma: float
    blur_kernel_given: bool
    noise_sigma: float
    noise_source: str  # "given" or "per-track estimate"
    jpeg_quality: int | None
    video_qp: float | None  # the H.264 stream's mean quantiser parameter, when known
    effective_sigma: float  # luma grey levels: noise and compression together, what the strengths follow
    huber_delta: float
    btv_lambda: float
    steps: int
    check_steps: int  # the held-out check's solve
    max_frames: int
    min_frames: int
    use_flow: bool


@dataclass(frozen=True)
class FrameRecord:
    """One input frame's fate: used, or rejected with the reason."""

    index: int
    used: bool
    reason: str = ""
    residual: float | None = None
    correlation: float | None = None
    flow: bool = False


@dataclass(frozen=True)
class ConsistencyCheck:
    """RMS (luma grey levels) by which each candidate misses the held-out registered frames: the face
    fused without them and the best frame's bicubic ×4, both degraded again, and the best frame's own
    pixels resampled into each held-out frame (frame_rms)."""

    fused_rms: float
    bicubic_rms: float
    best_index: int
    frame_rms: float | None = None
    held_out: tuple[int, ...] = ()

    @property
    def consistent(self) -> bool:
        return self.fused_rms < self.bicubic_rms and (self.frame_rms is None or self.fused_rms < self.frame_rms)


@dataclass
class FusionResult:
    """The stage's output. fused_x4/fused_x1 are None when no fused face may be shown (`reason` says why)."""

    fused_x4: np.ndarray | None
    fused_x1: np.ndarray | None
    reference: int | None
    frames: list[FrameRecord]
    params: FusionParams | None
    check: ConsistencyCheck | None = None
    reason: str = ""
    seconds: float = 0.0
    registrations: dict[int, Registration] = field(default_factory=dict, repr=False)

    @property
    def used(self) -> list[int]:
        return [f.index for f in self.frames if f.used]

    @property
    def rejected(self) -> dict[int, str]:
        return {f.index: f.reason for f in self.frames if not f.used}

    @property
    def residuals(self) -> dict[int, float]:
        return {f.index: f.residual for f in self.frames if f.residual is not None}

    @property
    def consistent(self) -> bool:
        return self.check is not None and self.check.consistent

    @property
    def ok(self) -> bool:
        return self.fused_x4 is not None

    def manifest(self) -> dict:
        """JSON-ready record: frames used and rejected (why), residuals, parameters, the check."""
        return {
            "fused": self.ok,
            "reason": self.reason,
            "reference": self.reference,
            "frames_used": self.used,
            "frames_rejected": {str(k): v for k, v in self.rejected.items()},
            "residuals": {str(k): round(v, 3) for k, v in self.residuals.items() if math.isfinite(v)},
            "params": asdict(self.params) if self.params else None,
            "check": None if self.check is None else {**asdict(self.check), "consistent": self.check.consistent},
        }  # no timing: a resumed run must end with the same manifest as an uninterrupted one


def _check_crops(crops: list[np.ndarray]) -> None:
    if not crops:
        raise InputError("fuse_track needs at least one crop")
    shape = crops[0].shape
    for i, c in enumerate(crops):
        if not isinstance(c, np.ndarray) or c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 3:
            raise InputError(f"crop {i} must be a uint8 RGB array (H, W, 3)")
        if c.shape != shape:
            raise InputError(f"crops must share one shape (cut around one common box): crop {i} is {c.shape}, crop 0 {shape}")
    if min(shape[:2]) < MIN_SIDE:
        raise InputError(f"crops of {shape[1]}×{shape[0]} px are too small to register (need {MIN_SIDE} px)")


def estimate_noise(grey: np.ndarray) -> float:
    """Immerkær's (1996) fast σ estimate from the Laplacian-difference residual, grey levels."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(grey.astype(np.float32), -1, k)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.mean(np.abs(r)) / 6)


def compression_sigma(jpeg_quality: int | None, video_qp: float | None = None) -> float:
    """Luma RMS error the codec adds, grey levels; 0 when unknown or none. JPEG: from its IJG quality.
    H.264: a uniform quantiser's error, step/√12, at the stream's mean QP (step 0.625 × 2^(QP/6),
    the same at every frequency, unlike JPEG's tables) — no tuning: on the tuning faces of
    benchmarks/fusion.py, CRF 26 clips have mean QP ≈ 33 (σ 8.2), and a σ of 8 gave the best gain
    of those tried (0, 3, 5, 8, 12: +0.52, +0.55, +0.63, +0.74, +0.32 dB)."""
    if video_qp is not None:
        return H264_QSTEP_AT_QP0 * 2.0 ** (float(video_qp) / 6.0) / math.sqrt(12.0)
    if jpeg_quality is None:
        return 0.0
    q = min(max(int(jpeg_quality), 1), 100)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return 0.04 * scale


def strengths(effective_sigma: float) -> tuple[float, float]:
    """Huber threshold and bilateral-TV weight from the footage's effective noise, nothing else."""
    s = max(effective_sigma, MIN_SIGMA)
    return DELTA_PER_SIGMA * s, LAMBDA_PER_SIGMA2 * s * s


def _no_output(reason: str, records: list[FrameRecord], start: float, reference: int | None = None, params: FusionParams | None = None) -> FusionResult:
    return FusionResult(None, None, reference, records, params, reason=reason, seconds=time.perf_counter() - start)


def fuse_track(
    crops: list[np.ndarray],
    *,
    blur_sigma: float | None = None,
    blur_kernel: np.ndarray | None = None,
    noise_sigma: float | None = None,
    jpeg_quality: int | None = None,
    video_qp: float | None = None,
    max_frames: int = 16,
    min_frames: int = 4,
    best_index: int | None = None,
    use_flow: bool = True,
    steps: int = SOLVER_STEPS,
    check_steps: int | None = None,
) -> FusionResult:
    """Fuse a track's face crops (uint8 RGB, one shape, cut around one common box, in track order).

    blur_sigma: the camera's lens blur in LR px (Gaussian), or blur_kernel on the ×4 grid;
    noise_sigma: per-channel sensor noise (grey levels) estimated from the footage, else estimated
    from this track; jpeg_quality: the footage's estimated JPEG quality (None: not JPEG); video_qp:
    the H.264 stream's mean QP (`jpeg.codec_qp`; None: not known);
    best_index: the frame shown as the track's best, for the safety check (default: the reference);
    check_steps: gradient steps of the check's held-out solve (default: `steps`, so the check tests
    the estimate that is shown; fewer steps early-stop it, which predicts held-out frames *better* on
    H.264 — measured for issue 16 — so a shorter check would pass faces the full solve may not earn).
    """
    start = time.perf_counter()
    _check_crops(crops)
    n = len(crops)
    if n < min_frames:
        records = [FrameRecord(i, False, f"track has {n} frames, fewer than the {min_frames} fusion needs") for i in range(n)]
        return _no_output(f"{n} frames < {min_frames} (min_frames)", records, start)
    greys = [luma(c) for c in crops]
    chosen = spread_best(quality_scores(greys), max_frames)
    ref = chosen[choose_reference([greys[i] for i in chosen])]

    if noise_sigma is None:
        noise_source, noise = "per-track estimate", float(np.median([estimate_noise(greys[i]) for i in chosen])) / LUMA_PER_CHANNEL
    else:
        noise_source, noise = "given", float(noise_sigma)
    eff = math.hypot(noise * LUMA_PER_CHANNEL, compression_sigma(jpeg_quality, video_qp))
    delta, lam = strengths(eff)
    sigma = DEFAULT_BLUR_SIGMA if blur_sigma is None else float(blur_sigma)
    if check_steps is None:
        check_steps = steps
    params = FusionParams(METHOD, GRID, sigma, blur_kernel is not None, round(noise, 3), noise_source, jpeg_quality,
                          None if video_qp is None else round(float(video_qp), 2),
                          round(eff, 3), round(delta, 3), round(lam, 5), steps, check_steps, max_frames, min_frames, use_flow)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="cctvsr-fusion") as pool:
        return _fuse_chosen(crops, greys, chosen, ref, params, blur_kernel, best_index, pool, start)


def _fuse_chosen(crops: list[np.ndarray], greys: list[np.ndarray], chosen: list[int], ref: int, params: FusionParams,
                 blur_kernel: np.ndarray | None, best_index: int | None, pool: ThreadPoolExecutor, start: float) -> FusionResult:
    """Register the chosen frames, reject what does not register, reconstruct and check (pool: independent parts at once)."""
    n, shape, eff = len(crops), greys[ref].shape, params.effective_sigma
    regs: dict[int, Registration] = {ref: Registration(np.eye(2, 3), None, 0.0, 1.0, True)}
    records: dict[int, FrameRecord] = {i: FrameRecord(i, False, f"not among the {params.max_frames} frames chosen (max_frames)")
                                       for i in range(n) if i not in chosen}
    moving = [i for i in chosen if i != ref]
    regs.update(zip(moving, pool.map(lambda i: register(greys[ref], greys[i], use_flow=params.use_flow, noise=eff), moving)))
    others = [regs[i].residual for i in chosen if i != ref and regs[i].ok]
    limit = max(RESIDUAL_FACTOR * float(np.median(others)) if others else math.inf, RESIDUAL_FLOOR_PER_SIGMA * eff)
    for i in chosen:
        r = regs[i]
        reason = r.reason
        if r.ok and i != ref and r.residual > limit:
            reason = f"registration residual {r.residual:.1f} > {limit:.1f} grey levels"
        records[i] = FrameRecord(i, not reason, reason, round(r.residual, 4) if math.isfinite(r.residual) else r.residual,
                                 round(r.correlation, 4), r.flow is not None)
    frames = [records[i] for i in range(n)]
    used = [i for i in chosen if records[i].used]
    if len(used) < params.min_frames:
        return _no_output(f"only {len(used)} frames registered, fewer than {params.min_frames} (min_frames)", frames, start, ref, params)

    ycc = {i: rgb_to_ycc(crops[i]) for i in used}
    psf = camera_psf(params.blur_sigma, blur_kernel)
    settings = MapSettings(delta=params.huber_delta, lam=params.btv_lambda, steps=params.steps)
    best = ref if best_index is None else best_index
    warped = dict(zip(used, pool.map(lambda i: warp_to_reference(ycc[i], regs[i], shape, lr=False), used)))  # once: the check reuses them
    full = pool.submit(_reconstruct, used, ycc, warped, regs, shape, psf, settings)  # beside the check's own solve
    check = _consistency(used, ycc, warped, crops, regs, shape, psf, replace(settings, steps=params.check_steps), ref, best, full)
    y4, init, _ = full.result()
    fused_ycc = np.dstack([y4, init[..., 1], init[..., 2]])
    ref_model = ForwardModel(psf, [_identity_positions(shape)], init.shape[:2])
    x1 = np.dstack([predict(ref_model, fused_ycc[..., c])[0] for c in range(3)])
    fused_x4 = ycc_to_rgb(fused_ycc)
    fused_x1 = ycc_to_rgb(x1)
    reason = "" if check.consistent else _inconsistent(check)
    return FusionResult(fused_x4 if check.consistent else None, fused_x1 if check.consistent else None, ref, frames, params,
                        check, reason, time.perf_counter() - start, regs)


def _identity_positions(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    x, y = hr_coords(*shape)
    return GRID * x + (GRID - 1) / 2, GRID * y + (GRID - 1) / 2


def _rms(pred: np.ndarray, frames: list[np.ndarray], inside: np.ndarray) -> float:
    d = (pred - np.stack(frames)) * inside
    return float(np.sqrt((d**2).sum() / max(inside.sum(), 1)))


Warped = dict[int, tuple[np.ndarray, np.ndarray]]  # frame → (its YCrCb on the reference's ×GRID grid, where it had pixels)


def _reconstruct(frames: list[int], ycc: dict[int, np.ndarray], warped: Warped, regs: dict[int, Registration],
                 shape: tuple[int, int], psf: np.ndarray, settings: MapSettings,
                 channels: int = 3) -> tuple[np.ndarray, np.ndarray, ForwardModel]:
    """Luma MAP reconstruction from `frames` on the ×GRID grid; its trimmed-mean start (the first
    `channels` of YCrCb: the check needs luma only) and forward model."""
    stack = np.stack([warped[i][0][..., :channels] for i in frames])
    valid = np.stack([warped[i][1] for i in frames])[..., None]
    init = trimmed_mean(stack, valid)
    model = ForwardModel(psf, [regs[i].from_frame_lr(shape) for i in frames], init.shape[:2])
    return map_reconstruct([ycc[i][..., 0] for i in frames], model, init[..., 0], settings), init, model


def held_out_frames(used: list[int], ref: int, best: int) -> list[int]:
    """Every second used frame other than the reference and the best: what the check predicts."""
    others = [i for i in used if i not in (ref, best)]
    return others[1::2] or others[:1]


def _consistency(used: list[int], ycc: dict[int, np.ndarray], warped: Warped, crops: list[np.ndarray], regs: dict[int, Registration],
                 shape: tuple[int, int], psf: np.ndarray, settings: MapSettings, ref: int, best: int,
                 full: Future) -> ConsistencyCheck:
    """Fuse without the held-out frames, then predict them: from that face degraded again, from the
    bicubic ×4 of the best frame degraded again, and from the best frame's own pixels resampled."""
    best_reg = regs.get(best)
    if best_reg is None or not best_reg.ok:
        best_reg = Registration(np.eye(2, 3), None, 0.0, 1.0, True) if best not in regs else best_reg
    bicubic, _ = warp_to_reference(luma(crops[best]), best_reg, shape, lr=False)
    held = held_out_frames(used, ref, best)
    fit = [i for i in used if i not in held]
    if len(fit) < 2:  # too few frames to hold any out: the frames the face was fitted to (lenient)
        y4, _, model = full.result()
        frames = [ycc[i][..., 0] for i in used]
        inside = model.inside
        return ConsistencyCheck(_rms(predict(model, y4), frames, inside), _rms(predict(model, bicubic), frames, inside), best)
    y4, _, _ = _reconstruct(fit, ycc, warped, regs, shape, psf, settings, channels=1)
    positions = [regs[i].from_frame_lr(shape) for i in held]
    model = ForwardModel(psf, positions, y4.shape)
    as_seen = ForwardModel(np.ones((1, 1), np.float32), positions, y4.shape)  # sampling only: the best frame is already blurred
    frames = [ycc[i][..., 0] for i in held]
    inside = model.inside
    return ConsistencyCheck(_rms(predict(model, y4), frames, inside), _rms(predict(model, bicubic), frames, inside), best,
                            _rms(predict(as_seen, bicubic), frames, inside), tuple(held))


def _inconsistent(check: ConsistencyCheck) -> str:
    held = f"the {len(check.held_out)} held-out frames" if check.held_out else "the frames"
    worse = [f"bicubic of frame {check.best_index} ({check.bicubic_rms:.2f})"] if check.fused_rms >= check.bicubic_rms else []
    if check.frame_rms is not None and check.fused_rms >= check.frame_rms:
        worse.append(f"frame {check.best_index} itself ({check.frame_rms:.2f})")
    return f"fused face predicts {held} worse than " + " and ".join(worse) + f": {check.fused_rms:.2f} grey levels RMS"
