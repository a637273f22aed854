"""The sensor noise σ of a static camera, measured from several of its compressed frames.

Noise model: every frame is the same clean RGB image plus independent Gaussian noise of σ per
pixel and per channel (0–255 units), rounded to uint8, then compressed. The codec erases most of
that noise, so σ is measured where the codec states exactly what it kept: the quantised DCT levels.

JPEG / MJPEG, several frames (`jpeg_multiframe_sigma`, `mjpeg_multiframe_sigma`)
--------------------------------------------------------------------------------
* The luma plane is decoded exactly as the decoder produced it (Pillow with `draft("YCbCr")`: no
  colour conversion), cut into the codec's 8×8 blocks from (0, 0), transformed with the
  orthonormal DCT (JPEG's own) and divided by the file's luma quantisation table: level =
  round(coefficient / q). For q ≥ 2 this gives back the encoder's levels exactly (the decoder's
  rounding moves a coefficient by ~0.3); coefficients with q = 1 are not used.
* In a static block the clean coefficient c of each frequency ("site") is the same in every frame;
  frame k carries c + n_k, n_k ~ N(0, s²), with s² the luma noise variance per pixel (orthonormal
  DCT). The levels of a site change between frames only when c + n crosses a bin edge.
* The likelihood of s. Where s ≥ q/2 (Sheppard's regime) the site's sample variance of level·q is
  s² + q²/12 whatever c is (the periodic error term is ≤ e^(−2π²s²/q²) < 1 %), used as a Gaussian
  quasi-likelihood. Where s < q/2 the chance of a flip depends on how far c sits from the bin
  edges, and c is not uniform in its bin: the AC coefficients of smooth blocks crowd the middle of
  the zero bin, so a "flip rate with c uniform" inversion is biased. There c is integrated out over
  a prior, and the likelihood of each site's levels is taken conditional on its lowest level m:
      P(levels | min = m, s) = ∫ p(c) Π_k P(l_k | c, s) dc / ∫ p(c) P(min = m | c, s) dc,
      P(l | c, s) = Φ((q(l + ½) − c) / s) − Φ((q(l − ½) − c) / s),
  integrated on cells of s/4 around the bin edges (the prior's exact mass per cell from its CDF),
  the inside of each bin in one cell. How the zero bin's mass is spread inside it (and so its
  density at ±q/2) cannot be read from quantised levels: a Laplacian mixture fitted to all the
  levels put 0.6–2.9× the true density there (measured against the clean coefficients on real
  photos) and read σ 6 as 5.5 at JPEG 30. So only the sites whose levels all lie beyond the zero
  bin on one side are used (levels ≥ 1, or ≤ −1 mirrored), against that side's outer density: a
  mixture of two exponentials in |c| − q/2, fitted by EM to the sites' median levels 1, 2, …
  (conditioning on min ≥ 1 makes the zero bin's inside irrelevant). ŝ maximises the sum over
  sites and frequencies; which regime a frequency is in is settled by iterating from a robust
  first guess. The DC (not Laplacian) and steps q < 2 are not used.
* Repeated blocks: a periodic texture or a gradient puts a few clean values c in many blocks
  instead of a smooth spread, and whether those few sit near a bin edge is luck. Blocks whose
  median levels repeat (≥ REPEATS blocks, or within NEAR_REPEAT levels of a repeated textured
  pattern) are left out of the flip likelihood (Sheppard's needs no prior and keeps them); when
  nothing is left the estimate is refused.
* Static blocks come from the frames themselves: a block is left out when in any frame one of its
  levels is further from the site's median level than noise of the current ŝ can move it
  (1 + ⌊5ŝ/q⌋ levels: a change of two levels where s ≪ q), which a moving person, a passing shadow
  or a shaken camera produce and noise does not. Frames where most blocks changed are dropped. A
  camera that pans slowly (1–2 px a frame) leaves smooth blocks that pass this test and read as
  σ 8–14 at JPEG 30–60 (true σ 3), so a global shift of the frames (phase correlation against the
  median frame, frames against each other) over 0.3 px refuses the estimate.
  Blocks where over 10 % of the median frame's RGB values lie within 3 + 2.5σ̂ of 0 or 255 are
  left out (clipping is not Gaussian noise), and so are blocks whose decoded luma reaches 0 or 255
  in any frame (the decoder clipped them: their levels are not read back; these misreads alone
  read σ 2 as 2.13 at JPEG 30). Identical frames (a camera repeating one) are counted once; when
  all frames are identical σ is 0, and the note says so.
* From luma to RGB. Luma noise variance s² = g·(σ² + 1/12) + 1/12 with g = 0.299² + 0.587² +
  0.114² = 0.447: each channel's noise is rounded to uint8 (Sheppard: σ² + 1/12), and the encoder
  rounds Y to an integer again (1/12). `sigma` is always this luma-equivalent σ (the one value, the
  same in R, G and B, that gives the luma noise measured); a greyscale JPEG's luma is the grey value
  itself: s² = σ² + 1/12 (`channels = "grey"`).
* R, G and B apart (`channels = "measured"`). Cb and Cr are read as coded (FFmpeg's MJPEG decoder
  hands over the planes before upsampling) and measured like luma with the chroma table. Under the
  JFIF conversion (libjpeg's: each chroma value computed from the rounded RGB and rounded, then
  averaged over the n = 1, 2 or 4 pixels one chroma sample stands for and rounded again), the
  three planes' noise variances are linear in σ_R², σ_G², σ_B² (`_plane_noise`), and the 3×3
  system is solved (non-negative least squares). The chroma planes hold a quarter of the samples
  at 4:2:0 and 0.31σ of noise against steps about twice luma's, so they keep enough of it only at
  high qualities: each plane's standard error comes from the curvature of its log-likelihood, is
  carried through the solve, and R, G, B are given apart only when every channel's ±3 SE interval
  lies within ±CHANNEL_ERROR_ABS (±CHANNEL_ERROR_REL·σ from σ 10: the 8-frame bar of σ itself);
  otherwise `channels = "equal"` and the note says why. Measured on real photos (benchmarks/
  noise_estimate.py, section `channels`, σ R, G, B from (2, 2, 2) to (10, 10, 10)): 4:2:0 told
  apart at q 95 every time, at q 90 in 6–10 of 10, never at q 80 or below; 4:4:4 in 5–10 of 10 at
  q 80, not at 60; where told apart, every channel within the bar (worst 0.52 at σ 10). The solve
  assumes the encoder averaged chroma as libjpeg does: an encoder that filters chroma otherwise
  changes its noise gain, which the planes cannot reveal. FFmpeg's (its "Lavc" comment: the
  scaler's chroma filter read σ 10 as R 7, B 7.6) is therefore given equal channels; other camera
  encoders are taken to average.
* σ above MAX_SIGMA (20) is not measured: the static-block tests are sized for noise up to it, and
  frames that change more (a panning camera) are refused rather than read as noise.

Measured (benchmarks/noise_estimate.py, real photos, JPEG 4:2:0 via OpenCV): see that script.
MJPEG from FFmpeg's own encoder (its tables and its RGB → YUV conversion, not libjpeg's): σ 4
read as 4.04 / 4.09 at qscale 3 / 8 on a real photo (tests/test_sensor_noise.py checks qscale 6).
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image
from scipy import optimize, special

from cctvsr.degrade.jpeg import BLOCK, _block_dct, _mjpeg_packets, _read_bytes, jpeg_tables
from cctvsr.errors import InputError

METHOD_JPEG_MULTIFRAME = "jpeg-multiframe-dct"
YCBCR_WEIGHTS = (  # JFIF / BT.601 Y, Cb, Cr from R, G, B
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)

MIN_FRAMES = 3  # the benchmark measures 4 and 8; 2 can be asked for (min_frames=2) but is not benchmarked
MIN_BLOCKS = 32  # static, unsaturated 8×8 blocks below which the estimate is refused
MIN_STEP = 2  # quantisation steps below this are not read back exactly from decoded pixels
SHEPPARD_RATIO = 0.5  # s / q from which a frequency uses the variance (Sheppard) likelihood
REPEATS = 4  # blocks with the same median levels as ≥ 3 others are left out of the flip likelihood
NEAR_REPEAT = 3  # … and blocks within this many differing levels of a repeated textured pattern
MAX_SPAN = 4  # a site whose levels span more than this (in the flip regime) is not noise
SATURATION_MARGIN = 3.0  # grey levels kept from 0 and 255, plus 2.5 σ̂
SATURATED_SHARE = 0.1  # of a block's values that may lie within that margin (clipping ≤ ~3 % of s²)
MOVING_FRAME_SHARE = 0.5  # a frame where more blocks than this changed is dropped
MAX_CAMERA_SHIFT = 0.3  # px of global shift between frames (phase correlation) taken as a moving camera
SHIFT_RESPONSE = 0.5  # phase-correlation peak below which a frame has too little structure to place
MAX_SIGMA = 20.0  # the largest sensor σ measured: the static-block tests assume no more
CHANNEL_SE = 3.0  # R, G, B are given apart when each one's ±3 SE interval is within the 8-frame bar:
CHANNEL_ERROR_ABS, CHANNEL_ERROR_REL = 0.5, 0.12  # ±0.5, or ±12 % from σ 10 (the bar of σ itself)
_S_RANGE = (0.02, 80.0)  # search range of the luma noise s (DCT units)
_WINDOW = 7.0  # half-width, in s, of the integration windows around bin edges
_CELLS_PER_S = 4  # integration cells per s near bin edges
_CONTAMINATION = 1e-9  # share of a site's likelihood given to "not noise" (an outlier floor)


@dataclass(frozen=True)
class NoiseEstimate:
    """The sensor noise a pool re-applies before compression: σ per pixel and RGB channel, 0–255.

    sigma is None when it could not be measured; then `upper_bound` holds what is known (or None)
    and `note` says why. `method` names how it was measured; `frames_used` and `blocks_used` what
    it rests on; `codec` the footage's codec ("jpeg", "mjpeg", …); `textured_frames_rejected` the
    frames a single-frame method refused as too textured (0 for the multi-frame method, which
    textures do not fool); `channels` how the per-channel values were obtained ("measured": R, G
    and B apart, from the noise of Y, Cb and Cr; "equal": one σ measured on luma, assumed the same
    in R, G and B; "grey": a one-channel camera, σ of its grey values before rounding, repeated for
    R, G and B)."""

    sigma: float | None
    sigma_per_channel: tuple[float, float, float] | None
    upper_bound: float | None
    method: str
    frames_used: int
    codec: str | None
    textured_frames_rejected: int = 0
    blocks_used: int = 0
    channels: str = "equal"
    note: str = ""

    def header(self) -> dict:
        """The pool header's `noise` entry (JSON-ready: plain floats, lists and strings)."""
        return {
            "sigma": self.sigma,
            "sigma_per_channel": list(self.sigma_per_channel) if self.sigma_per_channel is not None else None,
            "upper_bound": self.upper_bound,
            "method": self.method,
            "frames_used": self.frames_used,
            "codec": self.codec,
            "textured_frames_rejected": self.textured_frames_rejected,
            "blocks_used": self.blocks_used,
            "channels": self.channels,
            "note": self.note,
        }


@dataclass(frozen=True)
class _PlaneNoise:
    """How RGB noise of σ per channel reaches one coded plane: s² = Σ gains·σ_c² + rounding."""

    gains: tuple[float, float, float]
    rounding: float

    def sigma(self, s: float) -> float:
        """σ, equal in every channel, that gives plane noise s."""
        return math.sqrt(max(0.0, s * s - self.rounding) / sum(self.gains))

    def s(self, sigma: float) -> float:
        """The plane noise s (DCT units) that σ, equal in every channel, gives."""
        return math.sqrt(sum(self.gains) * sigma * sigma + self.rounding) if sigma > 0 else 0.0


def _plane_noise(weights: tuple[float, float, float], samples: int) -> _PlaneNoise:
    """A plane computed from RGB (each value rounded to uint8) with `weights`, rounded, then
    averaged over `samples` pixels (4 for 4:2:0 chroma, libjpeg's box downsampling) and rounded again."""
    squares = tuple(w * w / samples for w in weights)
    rounding = (sum(w * w for w in weights) + 1.0) / 12.0 / samples + (1.0 / 12.0 if samples > 1 else 0.0)
    return _PlaneNoise(squares, rounding)  # type: ignore[arg-type]


LUMA = _plane_noise(YCBCR_WEIGHTS[0], 1)  # Y: s² = 0.447·(σ² + 1/12) + 1/12 for equal channels


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True)
class _Decoded:
    pixels: np.ndarray  # (H, W, 3) YCbCr or (H, W, 1) Y, uint8, as the decoder produced them
    table: tuple[int, ...]  # the luma quantisation table, 64 entries in natural order
    chroma_table: tuple[int, ...] | None = None  # Cb's and Cr's table, where both share one
    subsampling: tuple[int, int] | None = None  # luma samples per chroma sample, across and down
    by_ffmpeg: bool = False  # FFmpeg's encoder wrote it (its "Lavc…" comment)


def _decode(data: bytes, name: str) -> _Decoded:
    tables = jpeg_tables(data)
    if tables is None:
        raise InputError(f"{name}: not a JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            layers = list(getattr(image, "layer", None) or [])  # (component id, h, v, table id) per component
            by_ffmpeg = bytes(image.info.get("comment", b"")).startswith(b"Lavc")
            if image.mode not in ("L", "RGB", "YCbCr"):
                raise InputError(f"{name}: JPEG in {image.mode} is not supported (luma + chroma or grey only)")
            if image.mode == "RGB":
                image.draft("YCbCr", None)  # libjpeg's own YCbCr: Y exactly as decoded, no conversion
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: cannot decode JPEG ({exc})") from None
    luma_id = layers[0][3] if layers else 0
    if luma_id not in tables:
        raise InputError(f"{name}: the luma quantisation table {luma_id} is missing")
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    chroma_table, subsampling = None, None
    if pixels.shape[2] == 3 and len(layers) == 3 and layers[1][1:] == layers[2][1:] and layers[1][3] in tables:
        (_, h_luma, v_luma, _), (_, h_chroma, v_chroma, chroma_id) = layers[0], layers[1]
        if h_luma % h_chroma == 0 and v_luma % v_chroma == 0:
            chroma_table = tuple(int(v) for v in tables[chroma_id])
            subsampling = (h_luma // h_chroma, v_luma // v_chroma)
    return _Decoded(np.ascontiguousarray(pixels), tuple(int(v) for v in tables[luma_id]), chroma_table, subsampling, by_ffmpeg)


def _chroma_planes(data: bytes, subsampling: tuple[int, int], height: int, width: int) -> np.ndarray | None:
    """(2, h, w) the Cb and Cr planes as coded (before the decoder upsamples them: FFmpeg's MJPEG
    decoder hands them over as they are), or None when they do not have the size `subsampling` says."""
    try:
        decoded = av.CodecContext.create("mjpeg", "r").decode(av.Packet(data))
    except av.FFmpegError:
        return None
    if len(decoded) != 1 or len(decoded[0].planes) != 3:
        return None
    shape = (-(-height // subsampling[1]), -(-width // subsampling[0]))
    planes = []
    for plane in decoded[0].planes[1:]:
        if (plane.height, plane.width) != shape:
            return None
        planes.append(np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width])
    return np.stack(planes)


def _as_bytes(frame: bytes | str | Path) -> tuple[bytes, str]:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame), "a JPEG frame"
    path = Path(frame)
    return _read_bytes(path), str(path)


# ---------------------------------------------------------------------------------------------
# The clean coefficients' prior beyond the zero bin: a mixture of two exponentials, one per side


@dataclass(frozen=True)
class _OuterPrior:
    """The density of c beyond the zero bin's edge h = q/2, one side: a mixture of exponentials in
    c − h (weights, scales), continued flat down to 0 (only its shape matters: the likelihood is a
    ratio of integrals over it, so it need not be normalised)."""

    weights: tuple[float, ...]
    scales: tuple[float, ...]
    edge: float

    def cdf(self, c: np.ndarray) -> np.ndarray:
        w, b = np.asarray(self.weights)[:, None], np.asarray(self.scales)[:, None]
        flat = float((w[:, 0] / b[:, 0]).sum())
        x = np.asarray(c, np.float64)
        shape = x.shape
        x = x.ravel()
        beyond = np.maximum(x - self.edge, 0.0)
        with np.errstate(over="ignore"):
            tail = (w * -np.expm1(-beyond[None, :] / b)).sum(axis=0)
        inside = flat * np.clip(x, 0.0, self.edge)
        return (inside + tail).reshape(shape)


def _truncated_mean(lower: np.ndarray, upper: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """E[x | lower ≤ x < upper] for x exponential with `scale` (0 ≤ lower < upper ≤ inf)."""
    a, b = lower / scale, upper / scale
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tail = np.where(np.isinf(b), 0.0, b * np.exp(a - b))
        inside = -np.expm1(a - b)
        mean = scale * (1.0 + (a - tail) / inside)
    return np.where(inside > 1e-12, mean, 0.5 * (lower + np.where(np.isinf(upper), lower + scale, upper)))


def _fit_outer_priors(histograms: list[np.ndarray], steps: list[float], iterations: int = 80) -> list[_OuterPrior]:
    """Each side's density beyond the zero bin, fitted by EM (all at once) to the sites' median
    levels 1, 2, … on that side (histograms[i][j] for level j + 1): a mixture of two exponentials in
    c − q/2, whose bins are [(j − 1)q, jq)."""
    if not histograms:
        return []
    width = max(len(h) for h in histograms)
    counts = np.zeros((len(histograms), width))
    for i, hist in enumerate(histograms):
        counts[i, : len(hist)] = hist
    step = np.asarray(steps, np.float64)[:, None]
    j = np.arange(width)[None, :]
    lower, upper = j * step, np.where(j == width - 1, np.inf, (j + 1) * step)
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1e-300)
    first = np.clip(counts[:, :1] / total, 0.5 / total, 1.0 - 0.5 / total)
    guess = -step / np.log1p(-first)
    floor = step / 200.0
    scales = np.concatenate([np.maximum(guess / 3.0, floor), guess * 3.0], axis=1)[:, :, None]
    weight = np.full((len(histograms), 2, 1), 0.5)
    lo, hi = lower[:, None, :], upper[:, None, :]
    for _ in range(iterations):
        with np.errstate(over="ignore", under="ignore"):
            mass = np.exp(-lo / scales) - np.exp(-hi / scales)
        joint = weight * mass
        responsibility = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)
        share = responsibility * counts[:, None, :]
        weight = np.maximum(share.sum(axis=2, keepdims=True) / total[:, None, :], 1e-6)
        weight /= weight.sum(axis=1, keepdims=True)
        mean = (share * _truncated_mean(lo, np.broadcast_to(hi, lo.shape), scales)).sum(axis=2, keepdims=True)
        scales = np.maximum(mean / np.maximum(share.sum(axis=2, keepdims=True), 1e-300), floor[:, :, None])
    return [
        _OuterPrior(tuple(float(v) for v in weight[i, :, 0]), tuple(float(v) for v in scales[i, :, 0]), 0.5 * steps[i])
        for i in range(len(histograms))
    ]


# ---------------------------------------------------------------------------------------------
# Per-frequency statistics and their likelihoods


@dataclass
class _FlipSites:
    """One frequency's static sites in the flip regime, grouped by (lowest level, pattern)."""

    step: float
    span: int  # the largest span of levels of a site
    patterns: np.ndarray  # (U, span + 1) how many frames sit 0, 1, … levels above the site's lowest
    lowest: np.ndarray  # (M,) the distinct lowest levels
    group_pattern: np.ndarray  # (G,) index into patterns
    group_lowest: np.ndarray  # (G,) index into lowest
    group_sites: np.ndarray  # (G,) sites in the group
    prior: _OuterPrior | None = None


@dataclass
class _VarianceSites:
    """One frequency's sites in Sheppard's regime: their sum of sample variances of level·q."""

    step: float
    sites: int
    variance_sum: float


def _grouped(levels: np.ndarray, step: float) -> _FlipSites | None:
    """(K, N) levels of one frequency's sites, grouped by (lowest level, pattern above it)."""
    k = levels.shape[0]
    lowest = levels.min(axis=0)
    relative = levels - lowest
    keep = relative.max(axis=0) <= MAX_SPAN
    if not keep.any():
        return None
    lowest, relative = lowest[keep], relative[:, keep]
    base = k + 1
    digits = base ** np.arange(MAX_SPAN + 1)
    code = np.zeros(lowest.shape, np.int64)
    for j in range(MAX_SPAN + 1):
        code += (relative == j).sum(axis=0).astype(np.int64) * digits[j]
    low_min = int(lowest.min())
    keys, group_sites = np.unique((lowest - low_min).astype(np.int64) * base ** (MAX_SPAN + 1) + code, return_counts=True)
    group_low, group_code = np.divmod(keys, base ** (MAX_SPAN + 1))
    codes, group_pattern = np.unique(group_code, return_inverse=True)
    lows, group_lowest = np.unique(group_low, return_inverse=True)
    patterns = (codes[:, None] // digits[None, :]) % base
    top = int(np.flatnonzero(patterns.any(axis=0)).max())
    return _FlipSites(
        step=step,
        span=top,
        patterns=patterns[:, : top + 1].astype(np.float64),
        lowest=(lows + low_min).astype(np.float64),
        group_pattern=group_pattern.ravel(),
        group_lowest=group_lowest.ravel(),
        group_sites=group_sites.astype(np.float64),
    )


def _repeated_blocks(medians: np.ndarray) -> np.ndarray:
    """(N,) blocks whose 64 median levels are those of at least REPEATS − 1 other blocks, or (for a
    textured pattern: some AC level not 0) differ from such a pattern's in at most NEAR_REPEAT
    sites (noise moves the median of the sites near a bin edge): a periodic texture or a gradient,
    where c takes a few values rather than a smooth spread."""
    keys, inverse, counts = np.unique(medians, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    repeated = counts[inverse] >= REPEATS
    patterns = keys[(counts >= REPEATS) & keys[:, 1:].any(axis=1)]
    others = np.flatnonzero(~repeated)
    if len(patterns) and len(others):
        for start in range(0, len(others), 512):
            chunk = others[start : start + 512]
            differing = (medians[chunk][:, None, :] != patterns[None, :, :]).sum(axis=2)
            repeated[chunk] = differing.min(axis=1) <= NEAR_REPEAT
    return repeated


def _site_statistics(used: np.ndarray, steps: np.ndarray, frequencies: np.ndarray) -> tuple[dict, dict]:
    """From (K, N, 64) levels of the static sites: for each frequency and side (+1, −1), the
    flip-regime sites whose levels all lie beyond the zero bin on that side (mirrored to positive
    for −1), grouped, with the outer prior fitted to that side's median levels; and each frequency's
    Sheppard-regime sufficient statistic. Repeated blocks (`_repeated_blocks`) are left out of the
    flip regime, whose prior assumes a smooth spread of clean values; Sheppard's needs none."""
    k = used.shape[0]
    chosen = used[:, :, frequencies]
    medians = np.sort(chosen, axis=0)[k // 2]
    values = chosen * steps[frequencies]
    variance_sums = values.var(axis=0, ddof=1).sum(axis=0)
    flips: dict[tuple[int, int], _FlipSites] = {}
    variances: dict[int, _VarianceSites] = {}
    pending: list[tuple[tuple[int, int], np.ndarray, float]] = []
    lowest, highest = chosen.min(axis=0), chosen.max(axis=0)
    distinct = ~_repeated_blocks(np.sort(used, axis=0)[k // 2])
    for i, f in enumerate(frequencies):
        q = float(steps[f])
        variances[int(f)] = _VarianceSites(q, chosen.shape[1], float(variance_sums[i]))
        for side in (1, -1):
            beyond = distinct & (lowest[:, i] >= 1 if side > 0 else highest[:, i] <= -1)
            if not beyond.any():
                continue
            sites = _grouped(side * chosen[:, beyond, i], q)
            if sites is None:
                continue
            outer = side * medians[distinct, i]
            flips[(int(f), side)] = sites
            pending.append(((int(f), side), np.bincount(outer[outer >= 1] - 1).astype(np.float64), q))
    for (key, _, _), prior in zip(pending, _fit_outer_priors([h for _, h, _ in pending], [q for _, _, q in pending])):
        flips[key].prior = prior
    return flips, variances


def _cells(s: float, step: float, span: int) -> np.ndarray:
    """Integration cell bounds (relative to q·lowest), −inf and +inf at the ends."""
    edges = (np.arange(-1, span + 1) + 0.5) * step
    if 2 * _WINDOW * s < step:
        offsets = s * np.linspace(-_WINDOW, _WINDOW, int(2 * _WINDOW * _CELLS_PER_S) + 1)
        inner = (edges[:, None] + offsets[None, :]).ravel()
    else:
        inner = np.arange(edges[0] - _WINDOW * s, edges[-1] + _WINDOW * s + s / _CELLS_PER_S, s / _CELLS_PER_S)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _bin_probability(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Φ(upper) − Φ(lower) for standardised bounds, accurate in both tails."""
    return np.where(lower > 0, special.ndtr(-lower) - special.ndtr(-upper), special.ndtr(upper) - special.ndtr(lower))


def _flip_loglik(sites: _FlipSites, s: float) -> float:
    step, span = sites.step, sites.span
    bounds = _cells(s, step, span)
    mids = 0.5 * (bounds[:-1] + bounds[1:])
    mids[0], mids[-1] = bounds[1], bounds[-2]
    rel = (np.arange(span + 1)[:, None] + 0.5) * step  # upper edge of each relative level
    log_p = np.log(np.maximum(_bin_probability((rel - step - mids) / s, (rel - mids) / s), 1e-300))
    pattern_lik = np.exp(sites.patterns @ log_p)  # (U, C)
    at_least_0 = special.ndtr((mids + 0.5 * step) / s)
    at_least_1 = special.ndtr((mids - 0.5 * step) / s)
    k = sites.patterns[0].sum()
    lowest_lik = at_least_0**k - at_least_1**k  # P(min relative level = 0 | c)
    mass = np.diff(sites.prior.cdf(sites.lowest[:, None] * step + bounds[None, :]), axis=1)  # (M, C)
    numerator = np.einsum("gc,gc->g", mass[sites.group_lowest], pattern_lik[sites.group_pattern])
    denominator = mass @ lowest_lik
    den = denominator[sites.group_lowest]
    return float(sites.group_sites @ (np.log(numerator + _CONTAMINATION * den + 1e-300) - np.log(den + 1e-300)))


def _variance_loglik(sites: _VarianceSites, s: float, frames: int) -> float:
    total = s * s + sites.step * sites.step / 12.0
    return -0.5 * (frames - 1) * (sites.sites * math.log(total) + sites.variance_sum / total)


def _maximise(loglik, bounds: tuple[float, float]) -> float:
    """The s maximising loglik(s), on a log grid then refined (bounded Brent on log s)."""
    grid = np.geomspace(bounds[0], bounds[1], 14 if bounds[1] / bounds[0] > 10 else 5)
    values = np.array([loglik(float(s)) for s in grid])
    best = int(np.argmax(values))
    if best == 0:
        return float(grid[0])
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = optimize.minimize_scalar(
        lambda u: -loglik(math.exp(u)), bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": 2e-3}
    )
    return float(math.exp(found.x)) if -found.fun >= values[best] else float(grid[best])


# ---------------------------------------------------------------------------------------------
# Static blocks


def _median_rgb_blocks(pixels: np.ndarray, block: tuple[int, int] = (BLOCK, BLOCK)) -> np.ndarray:
    """(B, area·channels) the temporal median frame's values, in RGB, over blocks of (rows, cols)."""
    median = np.median(pixels, axis=0)  # (H, W, C)
    if median.shape[2] == 3:
        y, cb, cr = median[..., 0], median[..., 1] - 128.0, median[..., 2] - 128.0
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    else:
        rgb = median
    rows, cols = rgb.shape[0] // block[0], rgb.shape[1] // block[1]
    blocks = rgb[: rows * block[0], : cols * block[1]].reshape(rows, block[0], cols, block[1], -1).transpose(0, 2, 1, 3, 4)
    return blocks.reshape(rows * cols, -1)


def _decoded_clipped(plane: np.ndarray) -> np.ndarray:
    """(B,) blocks of a decoded (K, H, W) plane that reach 0 or 255 in some frame: the decoder
    clipped them, so their DCT no longer gives back the encoder's levels."""
    frames, height, width = plane.shape
    rows, cols = height // BLOCK, width // BLOCK
    blocks = plane[:, : rows * BLOCK, : cols * BLOCK].reshape(frames, rows, BLOCK, cols, BLOCK)
    return ((blocks == 0) | (blocks == 255)).any(axis=(0, 2, 4)).ravel()


def _unsaturated(blocks: np.ndarray, sigma: float) -> np.ndarray:
    """Blocks where at most SATURATED_SHARE of the values lie within 3 + 2.5σ of 0 or 255."""
    margin = SATURATION_MARGIN + 2.5 * sigma
    near = (blocks < margin) | (blocks > 255.0 - margin)
    return near.mean(axis=1) <= SATURATED_SHARE


def _changed(levels: np.ndarray, median: np.ndarray, steps: np.ndarray, s: float) -> np.ndarray:
    """(K, B) whether a frame's block moves a level further from the site's median than noise of
    luma s can (1 + ⌊5s/q⌋ levels)."""
    tolerance = 1.0 + np.floor(5.0 * s / steps)
    return (np.abs(levels - median[None]) > tolerance[None, None, :]).any(axis=2)


def _first_guess(levels: np.ndarray, steps: np.ndarray, usable: np.ndarray) -> float:
    """A robust s to start from: the median over blocks of the Sheppard-corrected variance of the
    eight finest-quantised AC frequencies (0 where they rarely flip, i.e. s ≪ q)."""
    ac = np.flatnonzero((np.arange(64) > 0) & usable)
    finest = ac[np.argsort(steps[ac], kind="stable")[:8]]
    if not len(finest):
        return 0.0
    values = levels[:, :, finest] * steps[finest]
    per_block = (values.var(axis=0, ddof=1) - steps[finest] ** 2 / 12.0).mean(axis=1)
    return math.sqrt(max(float(np.median(per_block)), 0.0))


# ---------------------------------------------------------------------------------------------
# The estimate


@dataclass
class _Fit:
    s: float
    blocks: int
    frames: int
    note: str = ""
    flip_frequencies: int = 0
    variance_frequencies: int = 0
    s_error: float = float("nan")  # standard error of ŝ, from the log-likelihood's curvature


def _standard_error(loglik, s: float, step: float = 0.05) -> float:
    """SE of ŝ from the curvature of loglik in log s (nan where it is not a maximum)."""
    up, mid, down = loglik(s * math.exp(step)), loglik(s), loglik(s * math.exp(-step))
    curvature = (2.0 * mid - up - down) / (step * step)
    return s / math.sqrt(curvature) if curvature > 0 else float("nan")


def _estimate_plane(
    levels: np.ndarray,
    steps: np.ndarray,
    rgb_blocks: np.ndarray,
    clipped: np.ndarray,
    noise: _PlaneNoise,
    min_frames: int,
    min_blocks: int,
) -> _Fit:
    """ŝ of one plane from its (K, B, 64) levels and (64,) table; `rgb_blocks` (B, ·) the median
    frame's RGB over each block's area and `clipped` (B,) its decoded clipping, for the masks."""
    usable = steps >= MIN_STEP
    usable[0] = False  # the DC's clean values are spread over the whole range: not Laplacian
    frequencies = np.flatnonzero(usable)
    if not len(frequencies):
        return _Fit(s=float("nan"), blocks=0, frames=levels.shape[0], note="every AC quantisation step is below 2")
    medians: dict[tuple, np.ndarray] = {}
    statistics: dict[tuple, tuple] = {}
    all_frames = tuple(range(levels.shape[0]))
    s_cap = noise.s(MAX_SIGMA)
    s = min(_first_guess(levels, steps, usable), s_cap)  # motion inflates the guess: cap it
    done: set = set()
    previous: float | None = None
    fit: _Fit | None = None
    for _ in range(4):  # masks and regimes settle in 2–3 rounds; the 4th only confirms
        s = min(s, s_cap)
        unsaturated = _unsaturated(rgb_blocks, noise.sigma(s)) & ~clipped
        if not unsaturated.any():
            return _Fit(s=float("nan"), blocks=0, frames=levels.shape[0], note="every block is near black or white")
        if all_frames not in medians:
            medians[all_frames] = np.median(levels, axis=0)
        share = _changed(levels, medians[all_frames], steps, s)[:, unsaturated].mean(axis=1)
        kept = tuple(int(i) for i in np.flatnonzero(share <= MOVING_FRAME_SHARE))
        if len(kept) < min_frames:
            note = f"only {len(kept)} frame(s) agree on a static scene (at least {min_frames} needed)"
            return _Fit(s=float("nan"), blocks=0, frames=len(kept), note=note)
        if kept not in medians:
            medians[kept] = np.median(levels[list(kept)], axis=0)
        static = unsaturated & ~_changed(levels[list(kept)], medians[kept], steps, s).any(axis=0)
        blocks = int(static.sum())
        if blocks < min_blocks:
            note = f"only {blocks} static, unsaturated 8×8 block(s) (at least {min_blocks} needed)"
            return _Fit(s=float("nan"), blocks=blocks, frames=len(kept), note=note)
        mask = (kept, static.tobytes())
        flip_set = tuple(bool(s < SHEPPARD_RATIO * steps[f]) for f in frequencies)
        if (mask, flip_set) in done:
            break
        done.add((mask, flip_set))
        if mask not in statistics:
            statistics[mask] = _site_statistics(levels[list(kept)][:, static], steps, frequencies)
        flips_all, variances_all = statistics[mask]
        in_flip_regime = {int(f) for f, flip in zip(frequencies, flip_set) if flip}
        flips = [sites for (f, _), sites in flips_all.items() if f in in_flip_regime]
        variances = [variances_all[f] for f, flip in zip(frequencies, flip_set) if not flip]
        k = len(kept)

        def loglik(candidate: float) -> float:
            total = sum(_flip_loglik(sites, candidate) for sites in flips)
            return total + sum(_variance_loglik(sites, candidate, k) for sites in variances)

        if not flips and not variances:
            note = (
                f"none of the {blocks} static blocks has levels beyond the zero bin that are not repeats "
                "(flat, gradient or periodic content): nothing to read the noise against"
            )
            return _Fit(s=float("nan"), blocks=blocks, frames=k, note=note)
        s = _maximise(loglik, _S_RANGE if previous is None else (previous / 1.5, previous * 1.5))
        if s > 1.25 * s_cap:
            note = (
                f"the {blocks} blocks that pass as static change more than sensor noise up to σ {MAX_SIGMA:g} can "
                "(a moving camera or scene?)"
            )
            return _Fit(s=float("nan"), blocks=blocks, frames=k, note=note)
        previous = max(s, _S_RANGE[0] * 1.5)
        fit = _Fit(s=s, blocks=blocks, frames=k, flip_frequencies=len(flips), variance_frequencies=len(variances))
        fit_loglik = loglik
    assert fit is not None  # the first round always fits or returns
    fit.s_error = _standard_error(fit_loglik, fit.s)
    return fit


def _levels(planes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(K, B, 64) quantised DCT levels of (K, H, W) decoded planes."""
    return np.stack([np.rint(_block_dct(plane) / steps).astype(np.int32) for plane in planes])


def _channels_apart(
    frames: Sequence[bytes], group: Sequence[_Decoded], pixels: np.ndarray, luma_fit: _Fit, min_frames: int, min_blocks: int
) -> tuple[tuple[float, float, float] | None, str]:
    """σ of R, G and B apart, from the noise of Y (`luma_fit`), Cb and Cr (module note), or None and why not."""
    first = group[0]
    if first.subsampling is None or any((d.chroma_table, d.subsampling) != (first.chroma_table, first.subsampling) for d in group):
        return None, "R, G, B not told apart: the frames' chroma planes do not share one table and sampling"
    if first.by_ffmpeg:
        return None, "R, G, B not told apart: FFmpeg's encoder filters chroma with its scaler, not a 2×2 average (module note)"
    across, down = first.subsampling
    height, width = first.pixels.shape[:2]
    rows, cols = height // (BLOCK * down), width // (BLOCK * across)
    coded = [_chroma_planes(data, first.subsampling, height, width) for data in frames]
    if any(planes is None for planes in coded) or not rows or not cols:
        return None, "R, G, B not told apart: the chroma planes could not be read as coded"
    chroma = np.stack(coded)[:, :, : rows * BLOCK, : cols * BLOCK]  # type: ignore[call-overload]
    steps = np.asarray(first.chroma_table, np.float64)
    rgb_blocks = _median_rgb_blocks(pixels, (BLOCK * down, BLOCK * across))
    models = [LUMA] + [_plane_noise(weights, across * down) for weights in YCBCR_WEIGHTS[1:]]
    fits = [luma_fit]
    for index in (0, 1):
        plane = chroma[:, index]
        fits.append(_estimate_plane(_levels(plane, steps), steps, rgb_blocks, _decoded_clipped(plane), models[index + 1], min_frames, min_blocks))
        if not math.isfinite(fits[-1].s):
            return None, f"R, G, B not told apart: {'Cb' if index == 0 else 'Cr'} {fits[-1].note}"
    gains = np.array([m.gains for m in models])
    s = np.array([f.s for f in fits])
    variances, _ = optimize.nnls(gains, np.maximum(s * s - np.array([m.rounding for m in models]), 0.0))
    inverse = np.linalg.inv(gains)
    spread = np.sqrt(((inverse * (2.0 * s * np.array([f.s_error for f in fits]))[None, :]) ** 2).sum(axis=1))
    sigmas = np.sqrt(variances)
    low = np.sqrt(np.maximum(variances - CHANNEL_SE * spread, 0.0))
    half = 0.5 * (np.sqrt(variances + CHANNEL_SE * spread) - low)
    allowed = np.where(sigmas >= 10.0, CHANNEL_ERROR_REL * sigmas, CHANNEL_ERROR_ABS)
    if not np.all(half <= allowed):  # nan (no curvature) fails too
        worst = int(np.nanargmax(half / allowed)) if np.isfinite(half).any() else 0
        return None, (
            f"R, G, B not told apart: chroma at this quantisation keeps too little noise "
            f"({'RGB'[worst]} ±{half[worst]:.1f}, more than ±{allowed[worst]:.1f})"
        )
    return (float(sigmas[0]), float(sigmas[1]), float(sigmas[2])), ""


def _camera_shift(luma: np.ndarray) -> float:
    """How far the frames move against each other (px): each frame's global shift from the
    temporal median frame by phase correlation on (K, H, W) decoded luma (cut to whole blocks: an
    odd size puts a spurious half pixel in every shift), then the largest distance of a shift from
    their median. A panning or shaken camera moves every block by a fraction of its content, which
    is not noise. Only peaks of response ≥ SHIFT_RESPONSE count: frames with structure peak at ≈ 1
    (real photos, σ 2–15, JPEG 30–95), flat or gradient frames at 0.06–0.45, where the peak's place
    is chance."""
    height, width = (luma.shape[1] // BLOCK) * BLOCK, (luma.shape[2] // BLOCK) * BLOCK
    luma = luma[:, :height, :width]
    reference = np.median(luma, axis=0).astype(np.float32)
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    shifts = []
    for frame in luma:
        (dx, dy), response = cv2.phaseCorrelate(reference, frame.astype(np.float32), window)
        if response >= SHIFT_RESPONSE:
            shifts.append((dx, dy))
    if len(shifts) < 2:
        return 0.0
    offsets = np.asarray(shifts) - np.median(shifts, axis=0)
    return float(np.hypot(offsets[:, 0], offsets[:, 1]).max())


def _dedupe(frames: Sequence[bytes]) -> list[bytes]:
    seen: set[bytes] = set()
    unique = []
    for data in frames:
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(data)
    return unique


def jpeg_multiframe_sigma(
    frames: Sequence[bytes | str | Path],
    *,
    codec: str | None = "jpeg",
    min_frames: int = MIN_FRAMES,
    min_blocks: int = MIN_BLOCKS,
) -> NoiseEstimate:
    """σ per RGB channel (0–255, before compression) from JPEG frames of one static camera: JPEG
    byte strings (MJPEG packets are JPEGs) or JPEG file paths, in any order. Frames are grouped by
    size and luma table and the largest group is used; identical frames count once. Refused
    (sigma None, `note` saying why) with fewer than `min_frames` distinct frames or `min_blocks`
    static, unsaturated 8×8 blocks. Raises InputError for unreadable or non-JPEG input."""
    raw = [_as_bytes(frame) for frame in frames]
    unique = _dedupe([data for data, _ in raw])
    if len(unique) == 1 and len(raw) >= min_frames:
        _decode(unique[0], raw[0][1])  # still a JPEG we can read
        return NoiseEstimate(
            0.0,
            (0.0, 0.0, 0.0),
            None,
            METHOD_JPEG_MULTIFRAME,
            len(raw),
            codec,
            note=f"all {len(raw)} frames are identical: no noise reached the codec (or the camera repeats one frame)",
        )
    names = {data: name for data, name in raw}
    decoded = [(data, _decode(data, names[data])) for data in unique]

    def refused(note: str, used: int, blocks: int = 0) -> NoiseEstimate:
        return NoiseEstimate(None, None, None, METHOD_JPEG_MULTIFRAME, used, codec, blocks_used=blocks, note=note)

    groups: dict[tuple, list[tuple[bytes, _Decoded]]] = {}
    for data, item in decoded:
        groups.setdefault((item.pixels.shape, item.table), []).append((data, item))
    if not groups:
        return refused("no frames", 0)
    key, members = max(groups.items(), key=lambda kv: len(kv[1]))
    group = [item for _, item in members]
    note = ""
    if len(group) < len(decoded):
        note = f"{len(decoded) - len(group)} frame(s) of another size or quantisation table left out"
    if len(unique) < len(raw):
        note = "; ".join(filter(None, [note, f"{len(raw) - len(unique)} repeated frame(s) counted once"]))
    if len(group) < min_frames:
        return refused(f"{len(group)} distinct frame(s) with the same size and tables: at least {min_frames} needed", len(group))
    height, width = key[0][:2]
    if height < BLOCK or width < BLOCK:
        return refused(f"frames of {width}×{height} hold no 8×8 block", len(group))

    steps = np.asarray(key[1], np.float64)
    pixels = np.stack([item.pixels for item in group])
    shift = _camera_shift(pixels[..., 0]) if min(height, width) >= 4 * BLOCK else 0.0
    if shift > MAX_CAMERA_SHIFT:
        return refused(f"the camera moved (frames shifted by up to {shift:.1f} px): not a static view", len(group))
    luma = pixels[..., 0]
    fit = _estimate_plane(_levels(luma, steps), steps, _median_rgb_blocks(pixels), _decoded_clipped(luma), LUMA, min_frames, min_blocks)
    if not math.isfinite(fit.s):
        return refused("; ".join(filter(None, [fit.note, note])), fit.frames, fit.blocks)
    grey = pixels.shape[3] == 1
    sigma = round(math.sqrt(max(0.0, fit.s**2 - 1.0 / 12.0)) if grey else LUMA.sigma(fit.s), 3)
    apart, why = (None, "") if grey else _channels_apart([data for data, _ in members], group, pixels, fit, min_frames, min_blocks)
    return NoiseEstimate(
        sigma=sigma,
        sigma_per_channel=tuple(round(v, 3) for v in apart) if apart else (sigma, sigma, sigma),  # type: ignore[arg-type]
        upper_bound=None,
        method=METHOD_JPEG_MULTIFRAME,
        frames_used=fit.frames,
        codec=codec,
        blocks_used=fit.blocks,
        channels="grey" if grey else "measured" if apart else "equal",
        note="; ".join(filter(None, [note, why])),
    )


def mjpeg_multiframe_sigma(path: Path, *, max_frames: int = 8, **options) -> NoiseEstimate:
    """`jpeg_multiframe_sigma` on up to `max_frames` packets spread over an MJPEG video. Raises
    InputError when the file is not MJPEG video."""
    packets = _mjpeg_packets(Path(path), max_frames)
    if not packets:
        raise InputError(f"{path}: not an MJPEG video (or no frame could be read)")
    return jpeg_multiframe_sigma(packets, codec="mjpeg", **options)


# ---------------------------------------------------------------------------------------------
# H.264 / H.265: analysis by synthesis through the camera's own encoder settings

METHOD_VIDEO_SYNTHESIS = "codec-synthesis"
MACROBLOCK = 16
SYNTH_MAX_FRAMES = 16
SYNTH_MAX_WIDTH = 640  # the crop's width at most (px)
SYNTH_MAX_PIXELS = 640 * 368  # the crop re-encoded per candidate σ (about 0.1 s per x264 veryfast encode)
SYNTH_MAX_SIGMA = 30.0  # candidates above this are not tried: more temporal change than that is not sensor noise
SYNTH_STATIC_RATIO = 4.0  # a macroblock whose temporal variance exceeds this × the median is not static
SYNTH_POINT_SPREAD_ABS = 3.0  # σ is given when the consistent range is at most this wide …
SYNTH_POINT_SPREAD_REL = 0.5  # … or this share of σ̂; otherwise its upper end is given as a bound
SYNTH_DRIFT, SYNTH_DRIFT_PER_STD = 1.5, 0.35  # grey levels a static macroblock's mean may move in a frame
SYNTH_MIN_VARIANCE = 0.5  # temporal variance (grey levels²) below which the codec kept noise in too few macroblocks …
SYNTH_SMALL_SIGMA = 4.0  # … to give σ̂ above this as a value rather than a bound
SYNTH_BOUND_FACTOR = 2.5  # a bound is where re-encoded noise gives this × the footage's variance (seed spread ≤ 2.4×)
SYNTH_BOUND_MARGIN = 1.3  # … times this: where few macroblocks keep noise, the re-encode keeps more than the camera did (σ 10 read 9.3)
SYNTH_MIN_MACROBLOCKS = 24  # static macroblocks (in the crop) below which the estimate is refused
_STUDIO_LUMA, _STUDIO_CHROMA = 219.0 / 255.0, 224.0 / 255.0  # limited ("tv") range scales Y and C
_X264_NAMES = {  # x264's option SEI names → x264_param_parse names (values passed as written)
    "cabac": "cabac", "ref": "ref", "me": "me", "subme": "subme", "psy": "psy", "mixed_ref": "mixed-refs",
    "me_range": "merange", "chroma_me": "chroma-me", "trellis": "trellis", "8x8dct": "8x8dct",
    "fast_pskip": "fast-pskip", "chroma_qp_offset": "chroma-qp-offset", "nr": "nr", "bframes": "bframes",
    "b_adapt": "b-adapt", "b_bias": "b-bias", "weightb": "weightb", "open_gop": "open-gop", "weightp": "weightp",
    "keyint": "keyint", "keyint_min": "min-keyint", "scenecut": "scenecut", "rc_lookahead": "rc-lookahead",
    "mbtree": "mbtree", "qcomp": "qcomp", "qpmin": "qpmin", "qpmax": "qpmax", "qpstep": "qpstep",
    "ip_ratio": "ipratio", "pb_ratio": "pbratio", "constrained_intra": "constrained-intra", "slices": "slices",
    "sliced_threads": "sliced-threads", "intra_refresh": "intra-refresh",
}
_PICT_TYPES = {1: "I", 2: "P", 3: "B"}


@dataclass
class _Clip:
    """The first frames of a video's first stream, decoded as the decoder produced them."""

    codec: str  # "h264" or "hevc"
    profile: str | None
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]  # Y (K, H, W), Cb and Cr (K, H/2, W/2), uint8
    types: list[str]  # "I", "P", "B" or "?" per frame, display order
    qp_maps: list[np.ndarray | None]  # per-macroblock QP per frame (H.264 only)
    encoder_options: str | None  # the x264 / x265 option string the encoder wrote into the stream
    full_range: bool
    rate: float


def _encoder_options(data: bytes) -> str | None:
    for tag in (b"x264 - core", b"x265 ("):
        at = data.find(tag)
        if at >= 0:
            end = data.find(b"\x00", at)
            return data[at : end if end > 0 else at + 4000].decode("latin-1")
    return None


def _read_clip(path: Path, max_frames: int) -> _Clip:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot open as video ({exc})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in ("h264", "hevc"):
            raise InputError(f"{path}: {codec} video; the codec-synthesis estimate reads H.264 or H.265 only")
        stream.codec_context.options = {"export_side_data": "venc_params"}
        extradata = bytes(stream.codec_context.extradata or b"")
        options = _encoder_options(extradata)
        planes: list[list[np.ndarray]] = [[], [], []]
        types: list[str] = []
        qp_maps: list[np.ndarray | None] = []
        full_range = False
        try:
            for packet_index, packet in enumerate(container.demux(stream)):
                if options is None and packet_index < 8 and packet.size:
                    options = _encoder_options(bytes(packet))
                for frame in packet.decode():
                    if len(types) >= max_frames:
                        break
                    full_range = frame.format.name.startswith("yuvj") or int(getattr(frame, "color_range", 0) or 0) == 2
                    height, width = frame.height - frame.height % 2, frame.width - frame.width % 2
                    yuv = frame.reformat(format="yuv420p").to_ndarray()
                    rows = frame.height
                    planes[0].append(yuv[:rows][:height, :width])
                    chroma = yuv[rows:].reshape(2, rows // 2, -1) if rows % 2 == 0 else None
                    if chroma is None:  # odd heights: let FFmpeg lay the chroma out, then cut
                        yuv = frame.reformat(width=width, height=height, format="yuv420p").to_ndarray()
                        planes[0][-1] = yuv[:height]
                        chroma = yuv[height:].reshape(2, height // 2, -1)
                    planes[1].append(chroma[0][: height // 2, : width // 2])
                    planes[2].append(chroma[1][: height // 2, : width // 2])
                    types.append(_PICT_TYPES.get(int(frame.pict_type), "?"))
                    params = frame.side_data.get(av.sidedata.sidedata.Type.VIDEO_ENC_PARAMS)
                    qp_map = params.qp_map() if params is not None else None
                    qp_maps.append(np.asarray(qp_map, np.float64) if qp_map is not None and qp_map.size else None)
                if len(types) >= max_frames:
                    break
        except av.FFmpegError as exc:
            if not types:
                raise InputError(f"{path}: cannot decode ({exc})") from None
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        profile = stream.codec_context.profile
    if not types:
        raise InputError(f"{path}: no frame could be decoded")
    stacked = tuple(np.stack(p) for p in planes)
    return _Clip(codec, profile, stacked, types, qp_maps, options, full_range, rate)  # type: ignore[arg-type]


def _x264_params(options: str) -> dict[str, str]:
    """x264_param_parse options that reproduce an x264 option SEI (rate control included)."""
    given = dict(item.split("=", 1) for item in options.split("options:", 1)[-1].split() if "=" in item)
    params = {_X264_NAMES[k]: v for k, v in given.items() if k in _X264_NAMES}
    if "decimate" in given:
        params["no-dct-decimate"] = "0" if given["decimate"] == "1" else "1"
    if "deblock" in given:
        enabled, alpha, beta = (given["deblock"].split(":") + ["0", "0"])[:3]
        params["deblock" if enabled == "1" else "no-deblock"] = f"{alpha},{beta}" if enabled == "1" else "1"
    if "psy_rd" in given:
        params["psy-rd"] = given["psy_rd"].replace(":", ",")
    if "aq" in given:
        mode, *strength = given["aq"].split(":")
        params["aq-mode"] = mode
        if strength:
            params["aq-strength"] = strength[0]
    if "deadzone" in given and "," in given["deadzone"]:
        params["deadzone-inter"], params["deadzone-intra"] = given["deadzone"].split(",")[:2]
    if "b_pyramid" in given:
        params["b-pyramid"] = {"0": "none", "1": "strict", "2": "normal"}.get(given["b_pyramid"], "normal")
    if "direct" in given:
        params["direct"] = {"0": "none", "1": "spatial", "2": "temporal", "3": "auto"}.get(given["direct"], "spatial")
    if "analyse" in given and ":" in given["analyse"]:
        bits = int(given["analyse"].split(":")[1], 16)
        names = [n for n, b in (("i4x4", 0x1), ("i8x8", 0x2), ("p8x8", 0x10), ("p4x4", 0x20), ("b8x8", 0x100)) if bits & b]
        params["partitions"] = ",".join(names) or "none"
    rc = given.get("rc", "crf")
    if rc == "crf" and "crf" in given:
        params["crf"] = given["crf"]
    elif rc == "cqp" and "qp" in given:
        params["qp"] = given["qp"]
    else:
        params.pop("crf", None)  # bitrate control: the QPs read from the stream stand in (see _synthesis_encoder)
    params["threads"] = "1"
    return params


@dataclass(frozen=True)
class _Encoder:
    name: str  # "libx264" or "libx265"
    options: dict[str, str]
    described: str  # how the settings were obtained, for the note


def _type_qps(clip: _Clip, macroblocks: np.ndarray | None) -> dict[str, float]:
    """Mean QP per frame type over the given macroblocks (all where None)."""
    found: dict[str, list[float]] = {}
    for kind, qp_map in zip(clip.types, clip.qp_maps):
        if qp_map is None:
            continue
        values = qp_map
        if macroblocks is not None and qp_map.shape[0] >= macroblocks.shape[0] and qp_map.shape[1] >= macroblocks.shape[1]:
            values = qp_map[: macroblocks.shape[0], : macroblocks.shape[1]][macroblocks]
        if not values.size:
            values = qp_map
        found.setdefault(kind, []).append(float(np.mean(values)))
    return {kind: float(np.mean(v)) for kind, v in found.items()}


def _synthesis_encoder(clip: _Clip, static: np.ndarray | None) -> _Encoder | None:
    """The encoder and settings that stand in for the camera's: its own x264 options when it wrote
    them (CRF or constant QP), otherwise constant QPs per frame type equal to the stream's mean QP
    over the static macroblocks (I, P and B each, x264 veryfast); None when neither is known."""
    options = clip.encoder_options
    if clip.codec == "h264":
        if options and "x264" in options:
            params = _x264_params(options)
            if "crf" in params or "qp" in params:
                rc = f"crf {params['crf']}" if "crf" in params else f"qp {params['qp']}"
                return _Encoder("libx264", {"preset": "medium", "x264-params": _join(params)}, f"x264 options from the stream ({rc})")
        qps = _type_qps(clip, static)
        if "P" in qps or "I" in qps:
            p = qps.get("P", qps.get("I", 0.0) + 3.0)
            params = _x264_params(options) if options and "x264" in options else {"threads": "1"}
            for key in ("crf", "bitrate", "aq-mode"):
                params.pop(key, None)
            params["qp"] = f"{p:.0f}"
            if "I" in qps:
                params["ipratio"] = f"{2 ** ((p - qps['I']) / 6):.3f}"
            if "B" in qps:
                params["pbratio"] = f"{2 ** ((qps['B'] - p) / 6):.3f}"
                params.setdefault("bframes", "3")
            preset = "medium" if options and "x264" in options else "veryfast"
            described = "constant QP " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(qps.items())) + " read from the stream"
            return _Encoder("libx264", {"preset": preset, "x264-params": _join(params)}, described)
        return None
    if options and "x265" in options:
        given = dict(item.split("=", 1) for item in options.split() if "=" in item)
        if "crf" not in given:
            return None
        keep = {k: given[k] for k in ("crf", "bframes", "keyint", "min-keyint", "aq-mode", "aq-strength", "rd", "subme", "ref") if k in given}
        keep.update({"log-level": "error", "pools": "1", "frame-threads": "1"})
        return _Encoder("libx265", {"preset": "fast", "x265-params": _join(keep)}, f"x265 options from the stream (crf {given['crf']})")
    return None


def _join(params: dict[str, str]) -> str:
    return ":".join(f"{k}={v}" for k, v in params.items())


def _macroblock_means(values: np.ndarray, size: int) -> np.ndarray:
    """(…, rows, cols) means of size × size blocks of the last two axes (cut to whole blocks)."""
    rows, cols = values.shape[-2] // size, values.shape[-1] // size
    cut = values[..., : rows * size, : cols * size]
    return cut.reshape(*cut.shape[:-2], rows, size, cols, size).mean(axis=(-3, -1))


def _temporal_variance(luma: np.ndarray) -> np.ndarray:
    """(rows, cols) per macroblock: the mean over its pixels of the sample variance over frames."""
    return _macroblock_means(luma.astype(np.float64).var(axis=0, ddof=1), MACROBLOCK)


def _static_macroblocks(luma: np.ndarray) -> np.ndarray:
    """(rows, cols) macroblocks of a static camera's view that nothing moved through: temporal
    variance within SYNTH_STATIC_RATIO × the median (noise is spread evenly; a person walking or
    a light switching puts tens of times more change into a few macroblocks) and a mean that no
    frame moves by more than SYNTH_DRIFT + SYNTH_DRIFT_PER_STD·√median grey levels (noise moves a
    16×16 mean by its std / 16; a scene that changes everywhere raises the median variance but
    moves the means by far more), away from black and white (clipped noise)."""
    variance = _temporal_variance(luma)
    typical = float(np.median(variance))
    means = _macroblock_means(luma.astype(np.float64), MACROBLOCK)
    drift = np.abs(means - np.median(means, axis=0)[None]).max(axis=0)
    level = means.mean(axis=0)
    return (
        (variance <= max(SYNTH_STATIC_RATIO * typical, typical + 2.0))
        & (drift <= SYNTH_DRIFT + SYNTH_DRIFT_PER_STD * math.sqrt(typical))
        & (level > 24.0)
        & (level < 231.0)
    )


def _best_window(static: np.ndarray, rows: int, cols: int) -> tuple[int, int]:
    """(top, left) in macroblocks of the rows × cols window holding the most static macroblocks."""
    table = np.pad(static.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = table[rows:, cols:] - table[:-rows, cols:] - table[rows:, :-cols] + table[:-rows, :-cols]
    top, left = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(top), int(left)


def _encode_decode(encoder: _Encoder, planes: tuple[np.ndarray, np.ndarray, np.ndarray], types: list[str], rate: float, full_range: bool) -> np.ndarray:
    """Encode (K, H, W) Y and (K, H/2, W/2) Cb, Cr with `encoder` (frame types forced as given,
    "?" left to the encoder) and decode; returns the decoded Y."""
    y, cb, cr = planes
    frames, height, width = y.shape
    context = av.CodecContext.create(encoder.name, "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuvj420p" if full_range and encoder.name == "libx264" else "yuv420p"
    rate_fraction = Fraction(rate).limit_denominator(1001)
    context.time_base = 1 / rate_fraction
    context.framerate = rate_fraction
    context.options = dict(encoder.options)
    packets = []
    picture = {"I": av.video.frame.PictureType.I, "P": av.video.frame.PictureType.P, "B": av.video.frame.PictureType.B}
    for index in range(frames):
        data = np.concatenate([y[index], cb[index].reshape(-1, width), cr[index].reshape(-1, width)])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(data), format="yuv420p")
        frame.pts = index
        if types[index] in picture:
            frame.pict_type = picture[types[index]]
        packets.extend(context.encode(frame))
    packets.extend(context.encode(None))
    decoder = av.CodecContext.create("h264" if encoder.name == "libx264" else "hevc", "r")
    decoded = []
    for packet in packets:
        decoded.extend(decoder.decode(packet))
    decoded.extend(decoder.decode(None))
    decoded.sort(key=lambda f: f.pts if f.pts is not None else 0)
    return np.stack([_luma_plane(f)[:height, :width] for f in decoded])


def _luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The decoded Y plane as it is (no range conversion)."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]


def _noise_scales(full_range: bool) -> tuple[float, float, float]:
    """Noise std of Y, Cb, Cr (4:2:0) per unit of per-channel RGB σ."""
    luma, chroma = (1.0, 1.0) if full_range else (_STUDIO_LUMA, _STUDIO_CHROMA)
    y, cb, cr = (math.sqrt(sum(_plane_noise(weights, n).gains)) for weights, n in zip(YCBCR_WEIGHTS, (1, 4, 4)))
    return luma * y, chroma * cb, chroma * cr


def _inverse(points: list[tuple[float, float]], target: float) -> float | None:
    """The smallest σ where the piecewise-linear (in σ²) curve through (σ, T) reaches target;
    0 when it starts above it, None when it never reaches it."""
    points = sorted(points)
    if target <= points[0][1]:
        return points[0][0] if points[0][0] == 0 else None
    for (s0, t0), (s1, t1) in zip(points, points[1:]):
        if t0 < target <= t1:
            share = (target - t0) / (t1 - t0)
            return math.sqrt(s0 * s0 + share * (s1 * s1 - s0 * s0))
    return None


def video_synthesis_sigma(
    path: str | Path,
    *,
    max_frames: int = SYNTH_MAX_FRAMES,
    time_budget: float = 60.0,
    seed: int = 0,
) -> NoiseEstimate:
    """σ per RGB channel (0–255, before compression) of a static H.264 / H.265 camera, by analysis
    by synthesis through its own encoder settings (module note, "H.264 / H.265"): the first
    `max_frames` frames are read, a crop of at most SYNTH_MAX_PIXELS holding the most static
    macroblocks is re-encoded from its temporal mean with noise of candidate σ added, and σ̂ is
    the candidate whose decoded temporal variance in the static macroblocks matches the stream's.
    Where the codec erases noise (high QP) the match is flat near 0: then sigma is None and
    `upper_bound` the largest σ the footage is consistent with. Refused (sigma and bound None,
    `note` saying why) when too few frames or static macroblocks, or no encoder settings are known
    (HEVC without an x265 option SEI). `time_budget` (s) stops the search early (the note says so).
    Raises InputError when the file is not H.264 / H.265 video."""
    start = time.perf_counter()
    clip = _read_clip(Path(path), max_frames)
    frames = len(clip.types)

    def refused(note: str, blocks: int = 0) -> NoiseEstimate:
        return NoiseEstimate(None, None, None, METHOD_VIDEO_SYNTHESIS, frames, clip.codec, blocks_used=blocks, note=note)

    if frames < MIN_FRAMES:
        return refused(f"only {frames} frame(s) decoded (at least {MIN_FRAMES} needed)")
    y, cb, cr = clip.planes
    if min(y.shape[1:]) < MACROBLOCK * 2:
        return refused(f"frames of {y.shape[2]}×{y.shape[1]} are too small")
    shift = _camera_shift(y)
    if shift > MAX_CAMERA_SHIFT:
        return refused(f"the camera moved (frames shifted by up to {shift:.1f} px): not a static view")
    static_full = _static_macroblocks(y)
    rows, cols = static_full.shape
    window_cols = min(cols, SYNTH_MAX_WIDTH // MACROBLOCK)
    window_rows = min(rows, max(1, SYNTH_MAX_PIXELS // (window_cols * MACROBLOCK * MACROBLOCK)))
    top, left = _best_window(static_full, window_rows, window_cols)
    static = static_full[top : top + window_rows, left : left + window_cols]
    blocks = int(static.sum())
    if blocks < SYNTH_MIN_MACROBLOCKS:
        return refused(f"only {blocks} static macroblock(s) (at least {SYNTH_MIN_MACROBLOCKS} needed)", blocks)
    encoder = _synthesis_encoder(clip, static_full)
    if encoder is None:
        return refused(f"{clip.codec}: the stream states neither its encoder settings nor its QPs: nothing to re-encode with", blocks)

    y0, x0, height, width = top * MACROBLOCK, left * MACROBLOCK, window_rows * MACROBLOCK, window_cols * MACROBLOCK
    real = (
        y[:, y0 : y0 + height, x0 : x0 + width],
        cb[:, y0 // 2 : (y0 + height) // 2, x0 // 2 : (x0 + width) // 2],
        cr[:, y0 // 2 : (y0 + height) // 2, x0 // 2 : (x0 + width) // 2],
    )
    masks = (
        np.kron(static, np.ones((MACROBLOCK, MACROBLOCK), bool)),
        np.kron(static, np.ones((MACROBLOCK // 2, MACROBLOCK // 2), bool)),
    )
    bases = [
        np.where(masks[min(i, 1)][None], plane.astype(np.float64).mean(axis=0)[None], plane.astype(np.float64))
        for i, plane in enumerate(real)
    ]
    rng = np.random.default_rng(seed)
    scales = _noise_scales(clip.full_range)
    fields = [rng.standard_normal(b.shape) * masks[min(i, 1)][None] * scales[i] for i, b in enumerate(bases)]
    real_variance = _temporal_variance(real[0])[static]
    target = float(real_variance.mean())
    curve: dict[float, float] = {}
    variances: dict[float, np.ndarray] = {}

    def measure(sigma: float) -> float:
        if sigma not in curve:
            planes = tuple(np.clip(np.rint(b + sigma * f), 0, 255).astype(np.uint8) for b, f in zip(bases, fields))
            decoded = _encode_decode(encoder, planes, clip.types, clip.rate, clip.full_range)  # type: ignore[arg-type]
            variances[sigma] = _temporal_variance(decoded)[static]
            curve[sigma] = float(variances[sigma].mean())
        return curve[sigma]

    def over_budget() -> bool:
        return time.perf_counter() - start > time_budget

    note = f"{encoder.described}; {blocks} static macroblocks in a {width}×{height} crop"
    grid = (0.0, 2.0, 4.0, 8.0, 16.0, SYNTH_MAX_SIGMA)

    def solve(level: float, rounds: int = 3) -> float | None:
        """The σ where the re-encoded variance reaches `level`: walk the grid up to a bracket, then
        regula falsi in σ² (the curve is flat, then steep: straight lines between far points
        overshoot it, so the bracket is narrowed to 4 %)."""
        for sigma in grid:
            if (sigma in curve or sigma > max(curve, default=-1.0)) and measure(sigma) >= level:
                break
            if over_budget():
                break
        for _ in range(rounds):
            found = _inverse(list(curve.items()), level)
            if found is None or over_budget():
                return found
            below = max((s for s, t in curve.items() if t < level), default=0.0)
            above = min(s for s, t in curve.items() if t >= level)
            if above - below <= max(0.25, 0.04 * above):
                break
            measure(round(min(max(found, below + 0.02 * (above - below)), above - 0.02 * (above - below)), 3))
        return _inverse(list(curve.items()), level)

    estimate = solve(target)
    if estimate is None:
        if over_budget():
            return refused(f"time budget of {time_budget:g} s spent before the match; {note}", blocks)
        return refused(f"the static macroblocks change more than noise of σ {SYNTH_MAX_SIGMA:g} re-encoded does; {note}", blocks)
    nearest = min(curve, key=lambda s: abs(s - estimate))
    difference = real_variance - variances[nearest]
    tolerance = 2.0 * float(difference.std(ddof=1)) / math.sqrt(blocks) + 0.03 * target + 0.01
    lower = _inverse(list(curve.items()), target - tolerance) or 0.0
    upper = solve(target + tolerance, rounds=1)
    coded = target >= SYNTH_MIN_VARIANCE or estimate <= SYNTH_SMALL_SIGMA
    identified = coded and upper is not None and upper - lower <= max(SYNTH_POINT_SPREAD_ABS, SYNTH_POINT_SPREAD_REL * estimate)
    bound = None if identified else solve(max(target + tolerance, SYNTH_BOUND_FACTOR * target), rounds=2)
    note += f"; T {target:.3g} ± {tolerance:.2g}, consistent σ {lower:.1f}–{'?' if upper is None else f'{upper:.1f}'}"
    if over_budget():
        note += f"; time budget of {time_budget:g} s reached"
    if not identified:
        if bound is None:
            return refused(f"noise up to σ {SYNTH_MAX_SIGMA:g} re-encoded stays consistent with the footage: no bound; {note}", blocks)
        note += (
            "; the codec erased most of the noise (few static macroblocks keep any), so σ is not identified: "
            f"bound {SYNTH_BOUND_MARGIN:g}× the σ whose re-encode gives {SYNTH_BOUND_FACTOR:g}× the temporal variance"
            if not coded else "; σ is not identified"
        )
        return NoiseEstimate(None, None, round(SYNTH_BOUND_MARGIN * bound, 2), METHOD_VIDEO_SYNTHESIS, frames, clip.codec, blocks_used=blocks, note=note)
    sigma = round(estimate, 3)
    return NoiseEstimate(sigma, (sigma, sigma, sigma), None, METHOD_VIDEO_SYNTHESIS, frames, clip.codec, blocks_used=blocks, note=note)


# ---------------------------------------------------------------------------------------------
# One JPEG frame: analysis by synthesis through the file's own quantisation tables

METHOD_JPEG_SINGLE = "jpeg-single-synthesis"
SINGLE_BLUR = 3.0  # px: the Gaussian that makes the denoised copy (only smooth blocks are compared)
SINGLE_SMOOTH_SHARE = 0.25  # the smoothest quarter of the blocks (AC energy of the denoised luma) is compared …
SINGLE_SMOOTH_MAX = 400.0  # … unless the quarter's smoothest-but-last block has more AC energy than this: textured
SINGLE_MIN_BLOCKS = 32  # blocks below which the frame is refused
SINGLE_FLOORS = ((30, 8.0), (40, 6.5), (60, 5.0), (80, 3.5), (95, 2.0))  # (quality, σ below which noise is not told from texture)
SINGLE_BAND_SHARE = 0.5  # fine/mid band ratio outside [½, 2]× re-encoded noise's (± the slack): texture, not noise
SINGLE_BAND_SLACK = 0.02
# Profile distance (`_profile_distance`) above which a reading over the floor is refused as texture.
# On benchmarks/noise_estimate.py's frames, readings over the floor: the photos with σ 2–15 reach
# 0.22 where the reading is right (0.26 for one, refused: the margin is kept on texture's side) and
# 0.34 where it is 35 % high (σ 4 read 5.4 at q 60); a clean fabric crop 0.38 at q 40, 0.29 at q 80
# (both refused now) but 0.21 at q 60, where it still reads 7.0: not told from noise.
SINGLE_PROFILE_DISTANCE = 0.25
SINGLE_GRID = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0)
# The DCT band whose energy is matched, by quality: (IJG quality from which on, lowest u + v). Noise
# spreads over every frequency the table keeps, clean detail left in the smoothest blocks crowds the
# low ones, so the band starts as high as the table still keeps noise there: at q 95, σ 2 read
# 2.41 (median of 10 photos) from u + v ≥ 2 and 2.19 from u + v ≥ 6; at q 80, σ 0 read 2.16 / 1.71
# and σ 2 2.70 / 2.46 from u + v ≥ 2 / ≥ 4 (benchmarks/noise_estimate.py's photos); below q 70 the
# table zeroes most fine coefficients and the whole band is needed.
SINGLE_BANDS = ((90, 6), (70, 4), (0, 2))


def _rgb_luma(data: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
    """(RGB, Y as decoded, save options: the file's own tables and chroma subsampling)."""
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        options = {"qtables": image.quantization, "subsampling": JpegImagePlugin.get_sampling(image)}
        if image.mode == "L":
            options.pop("subsampling")
        rgb = np.asarray(image.convert("RGB"))
    return rgb, _decode(data, "a JPEG frame").pixels[..., 0], options


def _recompressed_luma(rgb: np.ndarray, options: dict, grey: bool) -> np.ndarray:
    buffer = io.BytesIO()
    image = Image.fromarray(rgb[..., 0] if grey else rgb, "L" if grey else "RGB")
    image.save(buffer, format="JPEG", **{k: v for k, v in options.items() if v is not None and v != -1})
    return _decode(buffer.getvalue(), "a re-encoded frame").pixels[..., 0]


def _band(quality: int) -> np.ndarray:
    """The coefficients (natural order) whose energy `jpeg_single_frame_sigma` matches at this quality."""
    lowest = next(first for start, first in SINGLE_BANDS if quality >= start)
    return np.array([u + v >= lowest for u in range(BLOCK) for v in range(BLOCK)])


def _high_pass(luma: np.ndarray, band: np.ndarray) -> np.ndarray:
    """(B,) per 8×8 block (the codec's grid): energy of the DCT coefficients in `band`."""
    return (_block_dct(luma)[:, band] ** 2).sum(axis=1)


def single_frame_floor(quality: int) -> float:
    """σ below which one JPEG frame of this IJG quality cannot tell noise from fine clean texture
    (measured: benchmarks/noise_estimate.py), interpolated between SINGLE_FLOORS."""
    qualities, floors = zip(*SINGLE_FLOORS)
    return float(np.interp(quality, qualities, floors))


def jpeg_single_frame_sigma(frame: bytes | str | Path, *, seed: int = 0) -> NoiseEstimate:
    """σ per RGB channel (0–255, before compression) from one JPEG frame, by analysis by synthesis
    through its own quantisation tables and chroma subsampling (module note, "One JPEG frame").
    Below the quality's floor (`single_frame_floor`) the answer is "σ ≤ floor" (sigma None,
    upper_bound the floor). A frame without smooth blocks is refused as textured
    (`textured_frames_rejected` 1). Raises InputError for unreadable or non-JPEG input."""
    from cctvsr.degrade.jpeg import ijg_quality

    data, name = _as_bytes(frame)
    tables = jpeg_tables(data)
    if tables is None:
        raise InputError(f"{name}: not a JPEG image")
    try:
        rgb, luma, options = _rgb_luma(data)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: cannot decode JPEG ({exc})") from None
    grey = "subsampling" not in options
    quality, exact = ijg_quality({k: v for k, v in tables.items() if k in (0, 1)}) if (0 in tables or 1 in tables) else (75, False)
    floor = single_frame_floor(quality)
    codec = "jpeg"

    def answer(sigma: float | None, bound: float | None, note: str, blocks: int = 0, textured: int = 0) -> NoiseEstimate:
        per_channel = (sigma, sigma, sigma) if sigma is not None else None
        return NoiseEstimate(sigma, per_channel, bound, METHOD_JPEG_SINGLE, 1, codec, textured, blocks, "grey" if grey else "equal", note)

    if min(luma.shape) < 4 * BLOCK:
        return answer(None, None, f"a {luma.shape[1]}×{luma.shape[0]} frame is too small")
    smooth_luma = cv2.GaussianBlur(luma.astype(np.float64), (0, 0), SINGLE_BLUR)
    structure = (_block_dct(smooth_luma)[:, 1:] ** 2).sum(axis=1)
    clean_rgb = cv2.GaussianBlur(rgb.astype(np.float64), (0, 0), SINGLE_BLUR)
    cols = luma.shape[1] // BLOCK
    block_rgb = rgb[: (luma.shape[0] // BLOCK) * BLOCK, : cols * BLOCK].reshape(-1, BLOCK, cols, BLOCK, rgb.shape[2])
    block_rgb = block_rgb.transpose(0, 2, 1, 3, 4).reshape(-1, BLOCK * BLOCK * rgb.shape[2])
    unsaturated = ((block_rgb < 8) | (block_rgb > 247)).mean(axis=1) <= SATURATED_SHARE
    candidates = np.flatnonzero(unsaturated)
    if len(candidates) < SINGLE_MIN_BLOCKS:
        return answer(None, None, "too few unsaturated blocks", len(candidates))
    order = candidates[np.argsort(structure[candidates], kind="stable")]
    chosen = order[: max(SINGLE_MIN_BLOCKS, int(SINGLE_SMOOTH_SHARE * len(order)))]
    roughness = float(structure[chosen[-1]])
    note = f"IJG quality {quality}{'' if exact else ' (nearest)'}; floor σ {floor:.1f}; {len(chosen)} smooth blocks"
    if roughness > SINGLE_SMOOTH_MAX:
        note = f"textured frame: even its smoothest blocks hold structure (AC energy {roughness:.0f} > {SINGLE_SMOOTH_MAX:g}); {note}"
        return answer(None, None, note, len(chosen), textured=1)
    band = _band(quality)
    target = float(_high_pass(luma, band)[chosen].mean())
    field = np.random.default_rng(seed).standard_normal(rgb.shape)
    curve: dict[float, float] = {}

    def measure(sigma: float) -> float:
        if sigma not in curve:
            synthetic = np.clip(np.rint(clean_rgb + sigma * field), 0, 255).astype(np.uint8)
            curve[sigma] = float(_high_pass(_recompressed_luma(synthetic, options, grey), band)[chosen].mean())
        return curve[sigma]

    for sigma in SINGLE_GRID:
        if measure(sigma) >= target:
            break
    for _ in range(4):
        found = _inverse(list(curve.items()), target)
        if found is None:
            break
        below = max((s for s, t in curve.items() if t < target), default=0.0)
        above = min(s for s, t in curve.items() if t >= target)
        if above - below <= max(0.1, 0.03 * above):
            break
        measure(round(min(max(found, below + 0.02 * (above - below)), above - 0.02 * (above - below)), 3))
    estimate = _inverse(list(curve.items()), target)
    if estimate is None:
        note = f"more high-frequency energy than noise of σ {SINGLE_GRID[-1]:g} leaves: texture or a moving scene; {note}"
        return answer(None, None, note, len(chosen), textured=1)
    note += f"; read σ {estimate:.2f}"
    nearest = min((s for s in curve if s > 0), key=lambda s: abs(s - estimate), default=None)
    if nearest is not None:
        synthetic = np.clip(np.rint(clean_rgb + nearest * field), 0, 255).astype(np.uint8)
        real_energy = _block_dct(luma)[chosen] ** 2
        noise_energy = _block_dct(_recompressed_luma(synthetic, options, grey))[chosen] ** 2
        shape_real, shape_synthetic = _band_ratio(real_energy), _band_ratio(noise_energy)
        distance = _profile_distance(real_energy, noise_energy)
        note += f"; fine/mid band ratio {shape_real:.2f} (noise re-encoded: {shape_synthetic:.2f}); profile distance {distance:.2f}"
        spread_unlike_noise = (
            shape_real < SINGLE_BAND_SHARE * shape_synthetic - SINGLE_BAND_SLACK
            or shape_real > shape_synthetic / SINGLE_BAND_SHARE + SINGLE_BAND_SLACK
            or distance > SINGLE_PROFILE_DISTANCE
        )
        if estimate > floor and spread_unlike_noise:
            return answer(None, None, "textured frame: its high-frequency energy is not spread like noise; " + note, len(chosen), textured=1)
    if estimate <= floor:
        return answer(None, round(floor, 2), note + f" (≤ the floor: answered σ ≤ {floor:.1f})", len(chosen))
    return answer(round(estimate, 3), None, note, len(chosen))


_AC = np.array([u + v >= 2 for u in range(BLOCK) for v in range(BLOCK)])
_FINE = np.array([u + v >= 6 for u in range(BLOCK) for v in range(BLOCK)])
_MID = np.array([2 <= u + v <= 4 for u in range(BLOCK) for v in range(BLOCK)])


def _band_ratio(energy: np.ndarray) -> float:
    """Energy of the fine DCT band (u + v ≥ 6) over the mid band (2–4), from blocks' squared DCT
    coefficients: noise spreads over all frequencies (what survives the table); texture and detail
    crowd the low ones."""
    return float(energy[:, _FINE].sum() / max(energy[:, _MID].sum(), 1e-9))


def _profile_distance(real: np.ndarray, noise: np.ndarray) -> float:
    """Total-variation distance between how the energy of the coefficients with u + v ≥ 2 is shared
    out among them, in the frame and in re-encoded noise (squared DCT coefficients of the same
    blocks): a woven or striped texture puts its energy in a few coefficients of one orientation,
    noise in every coefficient the table keeps."""
    shares = [e[:, _AC].sum(axis=0) / max(float(e[:, _AC].sum()), 1e-9) for e in (real, noise)]
    return float(0.5 * np.abs(shares[0] - shares[1]).sum())
