"""Multi-frame fusion (cctvsr.fusion) against the best single frame, on synthetic CCTV tracks of real faces.

Why this script exists: issue 16 claims fusing a face track gives real detail a single frame has
not. This is the issue's protocol, re-made: each real photo in /work/shared/data/faces_hq gives a
track — every frame a random similarity transform (±2 LR px, ±3°, ±3 %) and optionally a head
yaw (a cylindrical warp of the HR face), the track's anisotropic blur, a ×4 box downsample to
32 px (or ×8 to 16 px), Gaussian noise, and JPEG per frame or H.264 (libx264 via PyAV, whole
frames). The truth of a frame is its own HR view before blur. The baseline is bicubic ×4 of the
frame enhance would save as the best (its sharpness rule, cctvsr.faces.select.sharpness_part);
the oracle is the single frame whose bicubic ×4 is truly closest. Every output is aligned to its
truth the same way (ECC translation on luma) before PSNR-Y / SSIM-Y on the inner 80 %.

Faces are split by a fixed rule: every third photo (sorted by name) is for tuning, the rest are
held out and measured here. Strengths inside fuse_track follow the noise/JPEG passed in, which
the benchmark gives as the true values, as an estimate from the footage would be; for H.264 the
stream's mean QP, read from the encoded clip as `enhance` reads it from its input.

Run:  .venv/bin/python benchmarks/fusion.py            (12 held-out faces, all conditions; ≈ 10 min on 2 busy cores)
      .venv/bin/python benchmarks/fusion.py --quick    (5 faces, the bar conditions only)
      .venv/bin/python benchmarks/fusion.py --tuning   (the tuning faces instead)
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np
from skimage.metrics import structural_similarity

from cctvsr.degrade.kernels import anisotropic_gaussian_kernel
from cctvsr.degrade.jpeg import codec_qp
from cctvsr.device import describe_cpu
from cctvsr.faces.select import sharpness_part
from cctvsr.fusion import fuse_track

FACES_DIR = Path("/work/shared/data/faces_hq")
HR = 128  # the HR face side (px) that is degraded
CONTEXT = 3  # whole frames are CONTEXT × the face crop, so H.264 sees a frame, not a crop


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Condition:
    name: str
    n: int = 8
    lr: int = 32
    noise: float = 8.0
    jpeg: int | None = 75
    crf: int | None = None
    yaw: float = 0.0


BASE = Condition("base (32 px σ 8 JPEG 75 N 8)")
CONDITIONS = [
    BASE,
    replace(BASE, name="N 4", n=4),
    replace(BASE, name="N 16", n=16),
    replace(BASE, name="16 px", lr=16),
    replace(BASE, name="σ 2", noise=2.0),
    replace(BASE, name="σ 16", noise=16.0),
    replace(BASE, name="JPEG 40", jpeg=40),
    replace(BASE, name="JPEG 95", jpeg=95),
    replace(BASE, name="H.264 CRF 26", jpeg=None, crf=26),
    replace(BASE, name="H.264 CRF 32", jpeg=None, crf=32),
    replace(BASE, name="yaw ±5°", yaw=5.0),
    replace(BASE, name="yaw ±10°", yaw=10.0),
    replace(BASE, name="yaw ±20°", yaw=20.0),
]
# (condition name, PSNR-Y bar dB, SSIM bar or None, no face below 0 dB)
BARS = [
    (BASE.name, 1.5, 0.04, True),
    ("16 px", 1.0, None, False),
    ("N 4", 1.0, None, False),
    ("yaw ±5°", 1.0, None, False),
    ("JPEG 40", 0.8, None, False),
    ("H.264 CRF 26", 0.5, None, False),
]
QUICK = {c[0] for c in BARS}


# ---------------------------------------------------------------------------------------------
# Faces


def face_regions(names: list[str]) -> list[tuple[str, np.ndarray]]:
    """A CONTEXT·HR square RGB region around each photo's face (CenterFace, the best-scoring box)."""
    from cctvsr.faces.detect import create_detector

    detector, _ = create_detector("centerface", scales=(1.0,))
    out = []
    for name in names:
        rgb = cv2.cvtColor(cv2.imread(str(FACES_DIR / name)), cv2.COLOR_BGR2RGB)
        s = 640 / max(rgb.shape[:2])
        found = detector.detect(cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
        if len(found) == 0:
            continue
        x1, y1, x2, y2 = found.boxes[0] / s
        side = 1.1 * max(x2 - x1, y2 - y1)  # forehead to chin plus a little margin, as a tracker crops
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        big = CONTEXT * side
        m = np.float32([[HR * CONTEXT / big, 0, 0], [0, HR * CONTEXT / big, 0]])
        m[:, 2] = HR * CONTEXT / 2 - m[:, :2] @ np.float32([cx, cy])
        pre = cv2.GaussianBlur(rgb, (0, 0), max(0.01, 0.4 * big / (HR * CONTEXT)))  # anti-alias the shrink
        region = cv2.warpAffine(pre, m, (HR * CONTEXT, HR * CONTEXT), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        out.append((name, region))
    return out


def split_faces() -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in FACES_DIR.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    tuning = names[::3]
    held = [n for n in names if n not in tuning]
    return tuning, held


# ---------------------------------------------------------------------------------------------
# Tracks


@dataclass
class Track:
    crops: list[np.ndarray]  # LR uint8 RGB
    truths: list[np.ndarray]  # each frame's truth on its ×4 grid, uint8 RGB
    video_qp: float | None = None  # H.264 tracks: the stream's mean QP


def _frame_maps(size: int, angle: float, scale: float, shift: tuple[float, float], yaw: float, face_half: float) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates in the region for every output pixel: similarity⁻¹, then the yaw warp⁻¹."""
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    a = math.radians(angle)
    x0, y0 = xs - c - shift[0], ys - c - shift[1]
    xr = (math.cos(a) * x0 + math.sin(a) * y0) / scale
    yr = (-math.sin(a) * x0 + math.cos(a) * y0) / scale
    if yaw:
        r = face_half
        t = np.clip(xr / r, -1, 1)
        xs_src = r * np.sin(np.arcsin(t) - math.radians(yaw))
        weight = np.clip(1.5 - np.abs(xr) / r, 0, 1) * np.clip(1.5 - np.abs(yr) / (1.3 * r), 0, 1)  # taper to the background
        xr = weight * xs_src + (1 - weight) * xr
    return (xr + c).astype(np.float32), (yr + c).astype(np.float32)


def _h264(frames: list[np.ndarray], crf: int) -> tuple[list[np.ndarray], float | None]:
    """The frames through libx264 at this CRF, decoded, and the stream's mean QP (what `enhance` tells fusion)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    found = codec_qp(buf, 16)
    buf.seek(0)
    with av.open(buf) as inp:
        return [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)], found[1] if found else None


def make_track(region: np.ndarray, cond: Condition, rng: np.random.Generator) -> tuple[Track, float, float]:
    """One synthetic track; returns it with the blur σ (LR px, geometric mean) and noise σ used."""
    factor = HR // cond.lr
    size = region.shape[0]
    sx, sy = rng.uniform(0.3, 0.7, 2)  # LR px
    theta = rng.uniform(0, math.pi)
    ksize = int(2 * math.ceil(3 * max(sx, sy) * factor) + 1)
    kernel = anisotropic_gaussian_kernel(ksize, sx * factor, sy * factor, theta)
    wholes, truths = [], []
    inner = slice((size - HR) // 2, (size + HR) // 2)
    for _ in range(cond.n):
        shift = tuple(rng.uniform(-2, 2, 2) * factor)
        mx, my = _frame_maps(size, rng.uniform(-3, 3), 1 + rng.uniform(-0.03, 0.03), shift, rng.uniform(-cond.yaw, cond.yaw), HR * 0.42)
        hr = cv2.remap(region.astype(np.float32), mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        truth = np.clip(hr[inner, inner], 0, 255)
        if factor != 4:
            truth = cv2.resize(truth, None, fx=4 / factor, fy=4 / factor, interpolation=cv2.INTER_AREA)
        truths.append(np.rint(truth).astype(np.uint8))
        blurred = cv2.filter2D(hr, -1, kernel, borderType=cv2.BORDER_REFLECT)
        lr = cv2.resize(blurred, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
        lr = lr + rng.normal(0, cond.noise, lr.shape)
        lr = np.clip(np.rint(lr), 0, 255).astype(np.uint8)
        if cond.jpeg is not None:
            ok, enc = cv2.imencode(".jpg", cv2.cvtColor(lr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg])
            lr = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        wholes.append(lr)
    qp = None
    if cond.crf is not None:
        wholes, qp = _h264(wholes, cond.crf)
    lo = (wholes[0].shape[0] - cond.lr) // 2
    crops = [np.ascontiguousarray(w[lo : lo + cond.lr, lo : lo + cond.lr]) for w in wholes]
    return Track(crops, truths, qp), float(math.sqrt(sx * sy)), cond.noise


# ---------------------------------------------------------------------------------------------
# Scoring


def _y(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)


def aligned_scores(out: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """PSNR-Y and SSIM-Y of `out` against `truth` after an ECC translation, on the inner 80 %."""
    a, b = _y(out), _y(truth)
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(b, a, warp, cv2.MOTION_TRANSLATION, (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4), None, 5)
    except cv2.error:
        pass
    if np.abs(warp[:, 2]).max() > 4:
        warp = np.eye(2, 3, dtype=np.float32)
    a = cv2.warpAffine(a, warp, a.shape[::-1], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    m = a.shape[0] // 10
    a, b = np.clip(a, 0, 255)[m:-m, m:-m], b[m:-m, m:-m]
    mse = float(np.mean((a - b) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-9)), float(structural_similarity(a, b, data_range=255))


def bicubic(crop: np.ndarray) -> np.ndarray:
    return cv2.resize(crop, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)


@dataclass
class Outcome:
    gain: float  # dB over the baseline (enhance's best frame)
    gain_oracle: float
    ssim_gain: float
    seconds: float
    used: int
    fused: bool


def run_one(region: np.ndarray, cond: Condition, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    track, blur, noise = make_track(region, cond, rng)
    greys = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in track.crops]
    best = int(np.argmax([sharpness_part(g) for g in greys]))
    singles = [aligned_scores(bicubic(c), t) for c, t in zip(track.crops, track.truths)]
    start = time.perf_counter()
    result = fuse_track(track.crops, blur_sigma=blur, noise_sigma=noise, jpeg_quality=cond.jpeg, video_qp=track.video_qp, best_index=best)
    seconds = time.perf_counter() - start
    if result.fused_x4 is None:  # nothing shown: the user gets the best frame, a gain of 0
        return Outcome(0.0, 0.0, 0.0, seconds, len(result.used), False)
    p, s = aligned_scores(result.fused_x4, track.truths[result.reference])
    oracle = max(singles, key=lambda v: v[0])
    return Outcome(p - singles[best][0], p - oracle[0], s - singles[best][1], seconds, len(result.used), True)


# ---------------------------------------------------------------------------------------------
# Report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 faces, the bar conditions only")
    parser.add_argument("--tuning", action="store_true", help="measure the tuning faces instead of the held-out ones")
    parser.add_argument("--faces", type=int, default=None, help="how many faces (default 12, quick 5)")
    parser.add_argument("--only", default=None, help="comma-separated condition names to run")
    args = parser.parse_args(argv)
    tuning, held = split_faces()
    names = tuning if args.tuning else held
    count = args.faces or (5 if args.quick else 12)
    step = max(1, len(names) // count)
    faces = face_regions(names[::step][:count])
    conds = [c for c in CONDITIONS if (not args.quick or c.name in QUICK)]
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        conds = [c for c in conds if c.name in wanted]
    log(f"{len(faces)} {'tuning' if args.tuning else 'held-out'} faces, {len(conds)} conditions")
    results: dict[str, list[Outcome]] = {}
    for cond in conds:
        outs = []
        for k, (name, region) in enumerate(faces):
            outs.append(run_one(region, cond, seed=1000 * k + cond.n + cond.lr))
        results[cond.name] = outs
        g = [o.gain for o in outs]
        log(f"  {cond.name}: median {statistics.median(g):+.2f} dB (min {min(g):+.2f})")
    print(f"fusion benchmark — {len(faces)} {'tuning' if args.tuning else 'held-out'} faces from {FACES_DIR}, CPU: {describe_cpu()}")
    header = f"{'condition':<32} {'ΔPSNR-Y vs best':>16} {'min':>7} {'vs oracle':>10} {'ΔSSIM':>7} {'fused':>6} {'frames':>6} {'s/track':>8}"
    print(header)
    print("-" * len(header))
    for name, outs in results.items():
        g = [o.gain for o in outs]
        print(f"{name:<32} {statistics.median(g):>+16.2f} {min(g):>+7.2f} {statistics.median(o.gain_oracle for o in outs):>+10.2f} "
              f"{statistics.median(o.ssim_gain for o in outs):>+7.3f} {sum(o.fused for o in outs):>3}/{len(outs):<2} "
              f"{statistics.median(o.used for o in outs):>6.0f} {statistics.median(o.seconds for o in outs):>8.2f}")
    verdicts = []
    for name, bar, ssim_bar, no_negative in BARS:
        if name not in results:
            continue
        outs = results[name]
        g = statistics.median(o.gain for o in outs)
        ok = g >= bar and len(outs) >= 10
        text = f"{name} {g:+.2f}≥{bar}"
        if ssim_bar is not None:
            s = statistics.median(o.ssim_gain for o in outs)
            ok = ok and s >= ssim_bar
            text += f" SSIM {s:+.3f}≥{ssim_bar}"
        if no_negative:
            lowest = min(o.gain for o in outs)
            ok = ok and lowest >= 0
            text += f" min {lowest:+.2f}≥0"
        verdicts.append((ok, text))
    passed = all(ok for ok, _ in verdicts) and len(verdicts) == len(BARS)
    print(("PASS" if passed else "FAIL") + f" (median over {len(faces)} faces; bars need ≥ 10): " + "; ".join(("✓ " if ok else "✗ ") + t for ok, t in verdicts))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
