"""Sensor-noise estimates against known truth: real photos made into static-camera footage with
known Gaussian noise σ per RGB channel, then compressed (issue 15's protocol).

Footage: real photos from /work/shared/data/faces_hq (PHOTOS, ≥ 8), each reduced ×4 with
INTER_AREA to a frame 300–700 px wide, blurred with a Gaussian of 0, 0.8 or 1.5 px (in turn),
then 8 frames, each with its own independent Gaussian noise σ ∈ {0, 2, 4, 6, 10, 15} per RGB
channel (rounded and clipped to uint8). A 4-frame sequence is the first 4 of those 8 frames.

Sections (one function each; each returns its rows and whether its bars hold):

* `jpeg_sequences`: JPEG 4:2:0 via OpenCV at quality 30, 40, 60, 80, 95, read by
  `jpeg_multiframe_sigma`. Bars on the worst error over the photos of each cell: 8 frames — σ 0
  reads ≤ 0.3, |error| ≤ 0.5 for σ 2–6, ≤ 12 % for σ ≥ 10; 4 frames — ≤ 0.6 or 15 %.
* `jpeg_textures`: clean frames of strong texture (3-px stripes, a 2-px checkerboard, the most
  textured region of a photo as "fabric") must read ≤ 0.5 or be refused; the same textures with
  σ 4 must read within the 8-frame bar or be refused (textures must neither read as noise nor
  hide it; the synthetic periodic ones hold a few clean values, not the smooth spread the method's
  prior needs, and are refused at low quality, "ref" in the table).
* `jpeg_channels`: σ of R, G, B apart — (3, 2, 6), (6, 4, 9), (10, 10, 10), (2, 2, 2) — through JPEG
  4:2:0 at q 95, 90, 80, 60 and 4:4:4 at q 80, 60, 8 frames. Where `jpeg_multiframe_sigma` tells
  the channels apart, every channel must be within the 8-frame bar of σ itself (±0.5, ±12 % from
  σ 10); at 4:2:0 q 95 every sequence must be told apart. Elsewhere it may give equal channels.
* `h264_sequences`: 16 static frames (independent noise each) through libx264 veryfast at CRF 23,
  30, 35 (PyAV, yuv420p), read by `video_synthesis_sigma`. Bars: CRF 23 — σ 0 reads ≤ 2.0,
  |error| ≤ 1.5 for σ 2–4, ≤ 20 % for σ ≥ 6; CRF 30 — σ 15 within ±25 %, σ ≤ 10 within ±25 % or
  an upper bound that holds and is ≤ 16. CRF 35 is shown (bounds must hold) without a bar.
* `single_frames`: one JPEG frame per photo and σ at q 30–95, read by `jpeg_single_frame_sigma`.
  Bars: the median within ±25 % where σ ≥ the quality's floor (8 / 6.5 / 5 / 3.5 / 2), and ≥ 85 %
  of all frames within ±25 % or correctly answered "σ ≤ floor"; textured frames refused are counted.
* `real_clips`: `video_synthesis_sigma` on the .mp4 clips of /work/shared/data/video (no truth).

The last line checks the bars. Also printed: the CPU kind (AMX / AVX512-BF16 / no bf16, from
/proc/cpuinfo) and the median time per 8-frame sequence (decode + estimate).

Run:  .venv/bin/python benchmarks/noise_estimate.py            all cells (≈ 17 min on a 2-core CPU, 3.5 of them the channels section)
      .venv/bin/python benchmarks/noise_estimate.py --quick    σ {0, 2, 6, 15} × q {30, 60, 95}, 8 photos
      --sections h264,single,clips                                 only some sections (jpeg, channels, textures, h264, single, clips)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cctvsr.device import describe_cpu  # noqa: E402
from cctvsr.degrade.sensor_noise import (  # noqa: E402
    NoiseEstimate,
    jpeg_multiframe_sigma,
    jpeg_single_frame_sigma,
    single_frame_floor,
    video_synthesis_sigma,
)

FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces_hq"
VIDEO_DIR = FACES_DIR.parent / "video"
CRFS = (23, 30, 35)
H264_FRAMES = 16
# Photos whose ×4 reduction is 300–700 px wide and mostly unsaturated (the faces_hq photos with a
# white background leave too few unclipped blocks to be a fair cell), in order of use.
PHOTOS = (
    "deepface__img23.jpg",
    "deepface__img2.jpg",
    "deepface__img3.jpg",
    "deepface__img30.jpg",
    "deepface__img34.jpg",
    "deepface__img36.jpg",
    "deepface__img4.jpg",
    "deepface__img7.jpg",
    "facenet-pytorch__angelina_jolie_1.jpg",
    "facenet-pytorch__paul_rudd_1.jpg",
)
BLURS = (0.0, 0.8, 1.5)
SIGMAS = (0.0, 2.0, 4.0, 6.0, 10.0, 15.0)
QUALITIES = (30, 40, 60, 80, 95)
FRAMES = (8, 4)
SAMPLINGS = {
    "4:2:0": getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR_420", 0),
    "4:2:2": getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR_422", 0),
    "4:4:4": getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR_444", 0),
}
# σ of R, G, B: a sensor whose white balance lifts blue (and red) over green, a stronger one, equal
# channels, and weak equal noise; 8 frames each, through the settings below.
CHANNEL_SIGMAS = ((3.0, 2.0, 6.0), (6.0, 4.0, 9.0), (10.0, 10.0, 10.0), (2.0, 2.0, 2.0))
CHANNEL_SETTINGS = (("4:2:0", 95), ("4:2:0", 90), ("4:2:0", 80), ("4:2:0", 60), ("4:4:4", 80), ("4:4:4", 60))


def within_bar(sigma: float, estimate: float | None, frames: int, refused_ok: bool = False) -> bool:
    """The issue's bars: 8 frames — σ 0 ≤ 0.3, σ 2–6 |error| ≤ 0.5, σ ≥ 10 ≤ 12 %; 4 frames — 0.6 / 15 %."""
    if estimate is None:
        return refused_ok
    error = abs(estimate - sigma)
    absolute, relative = (0.3 if sigma == 0 else 0.5, 0.12) if frames >= 8 else (0.6, 0.15)
    return error <= (relative * sigma if sigma >= 10 else absolute)


def load_frame(name: str, blur: float) -> np.ndarray:
    """A photo reduced ×4 with INTER_AREA (then blurred), RGB uint8."""
    image = cv2.imread(str(FACES_DIR / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(FACES_DIR / name)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    frame = cv2.resize(image, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    if blur > 0:
        frame = np.clip(np.rint(cv2.GaussianBlur(frame.astype(np.float64), (0, 0), blur)), 0, 255).astype(np.uint8)
    return frame


def noisy_frames(clean: np.ndarray, sigma: float, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if sigma == 0:
        return [clean.copy() for _ in range(count)]
    return [np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8) for _ in range(count)]


def jpeg_bytes(frame: np.ndarray, quality: int, sampling: str = "4:2:0") -> bytes:
    """JPEG via OpenCV's libjpeg, 4:2:0 by default as most cameras write it."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLINGS[sampling]]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return encoded.tobytes()


@dataclass
class Cell:
    sigma: float
    quality: int
    frames: int
    estimates: list[float | None]

    def errors(self) -> list[float]:
        return [abs(e - self.sigma) if e is not None else float("inf") for e in self.estimates]

    def passes(self) -> bool:
        return all(within_bar(self.sigma, e, self.frames) for e in self.estimates)


def _fmt(value: float | None) -> str:
    return "  ref" if value is None else f"{value:5.2f}"


# ---------------------------------------------------------------------------------------------
# Sections


def jpeg_sequences(photos: Sequence[str], sigmas: Sequence[float], qualities: Sequence[int]) -> tuple[bool, list[float]]:
    """Multi-frame JPEG: per (σ, quality) cell, median and worst |error| over the photos."""
    cells: dict[tuple[float, int, int], Cell] = {}
    times: list[float] = []
    refusals: list[str] = []
    for index, name in enumerate(photos):
        clean = load_frame(name, BLURS[index % len(BLURS)])
        for sigma in sigmas:
            frames = noisy_frames(clean, sigma, max(FRAMES), seed=1000 * index + int(sigma * 10))
            for quality in qualities:
                data = [jpeg_bytes(frame, quality) for frame in frames]
                for count in FRAMES:
                    start = time.perf_counter()
                    estimate = jpeg_multiframe_sigma(data[:count])
                    if count == 8:
                        times.append(time.perf_counter() - start)
                    cell = cells.setdefault((sigma, quality, count), Cell(sigma, quality, count, []))
                    cell.estimates.append(estimate.sigma)
                    if estimate.sigma is None:
                        refusals.append(f"{name} σ {sigma:g} q {quality} {count} frames: {estimate.note}")
        print(f"  {name} ({clean.shape[1]}×{clean.shape[0]}, blur {BLURS[index % len(BLURS)]}) done", flush=True)

    print()
    print("JPEG 4:2:0 sequences, multi-frame DCT method: |error| median / worst over photos")
    header = "   σ  q  " + "".join(f"| {count} frames: med  worst  bar " for count in FRAMES)
    print(header)
    ok = True
    for sigma in sigmas:
        for quality in qualities:
            line = f"{sigma:4.0f} {quality:3d} "
            for count in FRAMES:
                cell = cells[(sigma, quality, count)]
                errors = cell.errors()
                passed = cell.passes()
                ok &= passed
                worst = max(errors)
                relative = f"{100 * worst / sigma:3.0f}%" if sigma >= 10 and np.isfinite(worst) else "    "
                line += f"| {statistics.median(errors):12.2f} {worst:6.2f} {relative} {'ok ' if passed else 'FAIL'} "
            print(line)
    bias = {}
    for count in FRAMES:
        signed = [e - c.sigma for c in cells.values() if c.frames == count and c.sigma > 0 for e in c.estimates if e is not None]
        bias[count] = statistics.median(signed) if signed else float("nan")
    print(f"refused: {len(refusals)}" + "".join(f"\n  {line}" for line in refusals[:10]))
    print("median signed error (σ > 0): " + ", ".join(f"{count} frames {bias[count]:+.3f}" for count in FRAMES))
    return ok, times


def channel_bar(sigma: float, error: float) -> bool:
    """A channel told apart is within the 8-frame bar of σ itself: ±0.5, or ±12 % from σ 10."""
    return abs(error) <= (0.12 * sigma if sigma >= 10 else 0.5)


def jpeg_channels(photos: Sequence[str], triples: Sequence[tuple[float, float, float]],
                  settings: Sequence[tuple[str, int]]) -> bool:
    """σ of R, G and B apart (`channels = "measured"`), 8 static JPEG frames per photo: how often
    they are told apart, and the worst error of each channel where they are. Bars: every channel
    told apart within the 8-frame bar (±0.5, ±12 % from σ 10); at 4:2:0 q 95 every sequence told apart."""
    print()
    print("R, G, B apart (8 JPEG frames): sequences told apart, and the worst |error| of R / G / B where they are")
    print("  σ R,G,B    sampling  q  | apart |  worst R   G     B   | equal-channel σ (luma) when not apart")
    ok = True
    for triple in triples:
        sigma = np.asarray(triple)
        for sampling, quality in settings:
            errors, fallback = [], []
            for index, name in enumerate(photos):
                clean = load_frame(name, BLURS[index % len(BLURS)]).astype(np.float64)
                rng = np.random.default_rng(7000 + 100 * index + int(sigma.sum()))
                frames = [np.clip(np.rint(clean + rng.normal(0.0, 1.0, clean.shape) * sigma), 0, 255).astype(np.uint8) for _ in range(8)]
                estimate = jpeg_multiframe_sigma([jpeg_bytes(frame, quality, sampling) for frame in frames])
                if estimate.channels == "measured" and estimate.sigma_per_channel is not None:
                    errors.append(np.asarray(estimate.sigma_per_channel) - sigma)
                else:
                    fallback.append(estimate.sigma)
            worst = np.abs(np.asarray(errors)).max(axis=0) if errors else None
            passed = all(channel_bar(float(s), float(e)) for row in errors for s, e in zip(sigma, row))
            if (sampling, quality) == ("4:2:0", 95):
                passed &= len(errors) == len(photos)
            ok &= passed
            shown = " ".join(f"{v:5.2f}" for v in worst) if worst is not None else "   –     –     –  "
            rest = ", ".join(_fmt(v).strip() for v in fallback[:5]) + (" …" if len(fallback) > 5 else "")
            print(f"  {','.join(f'{v:g}' for v in triple):9s} {sampling:8s} {quality:3d} | {len(errors):2d}/{len(photos):<2d} | "
                  f"{shown} {'ok ' if passed else 'FAIL'} | {rest}")
    return ok


def texture_frames() -> list[tuple[str, np.ndarray]]:
    """Clean frames of strong texture, 480×360 RGB: 3-px stripes, a 2-px checkerboard and the most
    textured 480×360 region of a real photo at full resolution ("fabric")."""
    height, width = 360, 480
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    stripes = np.where((x // 3) % 2 == 0, 60, 190).astype(np.uint8) * np.ones((height, 1), np.uint8)
    checker = np.where(((x // 2) + (y // 2)) % 2 == 0, 50, 200).astype(np.uint8)
    frames = [
        ("stripes 3px", np.repeat(stripes[:, :, None], 3, axis=2)),
        ("checker 2px", np.repeat(checker[:, :, None], 3, axis=2)),
    ]
    image = cv2.imread(str(FACES_DIR / "deepface__img36.jpg"), cv2.IMREAD_COLOR)
    if image is not None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
        energy = cv2.boxFilter(np.abs(cv2.Laplacian(grey, cv2.CV_64F)), -1, (width, height), normalize=True)
        rows, cols = image.shape[0] - height, image.shape[1] - width
        window = energy[height // 2 : height // 2 + rows + 1, width // 2 : width // 2 + cols + 1]
        top, left = np.unravel_index(int(np.argmax(window)), window.shape)
        frames.append(("fabric (photo)", np.ascontiguousarray(image[top : top + height, left : left + width])))
    return frames


def jpeg_textures(qualities: Sequence[int]) -> bool:
    """Clean textures read ≤ 0.5 or are refused; the same textures with σ 4 read within the bar or
    are refused."""
    print()
    print("Strong textures, 8 JPEG frames: σ̂ for clean frames (bar ≤ 0.5 or refused) and for σ 4 (bar ±0.5 or refused)")
    print("texture          " + "".join(f"   q{q:<3d} 0 / 4" for q in qualities))
    ok = True
    for index, (name, clean) in enumerate(texture_frames()):
        line = f"{name:16s} "
        for quality in qualities:
            readings = []
            for sigma in (0.0, 4.0):
                data = [jpeg_bytes(frame, quality) for frame in noisy_frames(clean, sigma, 8, seed=77 + index)]
                estimate: NoiseEstimate = jpeg_multiframe_sigma(data)
                if sigma == 0:
                    ok &= estimate.sigma is None or estimate.sigma <= 0.5
                else:
                    ok &= within_bar(sigma, estimate.sigma, 8, refused_ok=True)
                readings.append(estimate.sigma)
            line += f"  {_fmt(readings[0])}/{_fmt(readings[1])}"
        print(line)
    return ok


def h264_file(frames: Sequence[np.ndarray], path: Path, crf: int) -> None:
    """libx264 veryfast at `crf`, yuv420p via PyAV (even size), 10 fps."""
    import av

    height, width = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")))
        out.mux(stream.encode())


def h264_bar(sigma: float, crf: int, estimate: NoiseEstimate) -> bool | None:
    """The issue's H.264 bars; None where a cell has no bar (CRF 35: only that bounds hold)."""
    value, bound = estimate.sigma, estimate.upper_bound
    if crf == 23:
        if sigma == 0:
            return (value is not None and value <= 2.0) or (value is None and bound is not None and bound <= 2.0)
        if value is None:
            return False
        return abs(value - sigma) <= (1.5 if sigma <= 4 else 0.2 * sigma)
    if crf == 30:
        if value is not None:
            return abs(value - sigma) <= 0.25 * sigma if sigma > 0 else value <= 2.0
        return sigma <= 10 and bound is not None and sigma <= bound <= 16.0
    return value is not None or (bound is not None and bound >= sigma)


def _reading(estimate: NoiseEstimate) -> str:
    if estimate.sigma is not None:
        return f"{estimate.sigma:5.2f}"
    if estimate.upper_bound is not None:
        return f"≤{estimate.upper_bound:4.1f}"
    return "  T  " if estimate.textured_frames_rejected else " ref "


def h264_sequences(photos: Sequence[str], sigmas: Sequence[float], crfs: Sequence[int]) -> tuple[bool, list[float]]:
    """H.264 analysis by synthesis: per (σ, CRF) cell, median and worst |error| over the photos
    (bounds: shown as ≤ b, counted by whether they hold)."""
    import tempfile

    rows: dict[tuple[float, int], list[NoiseEstimate]] = {}
    times: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        for index, name in enumerate(photos):
            clean = load_frame(name, BLURS[index % len(BLURS)])
            for sigma in sigmas:
                frames = noisy_frames(clean, sigma, H264_FRAMES, seed=5000 + 1000 * index + int(sigma * 10))
                for crf in crfs:
                    h264_file(frames, path, crf)
                    start = time.perf_counter()
                    rows.setdefault((sigma, crf), []).append(video_synthesis_sigma(path))
                    times.append(time.perf_counter() - start)
            print(f"  {name} done", flush=True)
    print()
    print("H.264 libx264 veryfast, 16 static frames, codec-synthesis method: median / worst |error| of values;")
    print("bounds (≤ b) count as passing where the bar allows them and they hold; readings per photo")
    ok = True
    for crf in crfs:
        for sigma in sigmas:
            estimates = rows[(sigma, crf)]
            values = [abs(e.sigma - sigma) for e in estimates if e.sigma is not None]
            bounds = [e.upper_bound for e in estimates if e.sigma is None and e.upper_bound is not None]
            verdicts = [h264_bar(sigma, crf, e) for e in estimates]
            passed = all(verdicts)
            if crf in (23, 30):
                ok &= passed
            held = sum(b >= sigma for b in bounds)
            summary = f"med {statistics.median(values):5.2f} worst {max(values):5.2f}" if values else "med    —  worst    — "
            bound_text = f" bounds {len(bounds)} (held {held}, max {max(bounds):4.1f})" if bounds else ""
            label = ("ok  " if passed else "FAIL") if crf in (23, 30) else ("held" if passed else "MISS")
            print(f"  CRF {crf} σ {sigma:4.1f}: {summary}{bound_text:32s} {label} | " + " ".join(_reading(e) for e in estimates))
    return ok, times


def single_frames(photos: Sequence[str], sigmas: Sequence[float], qualities: Sequence[int]) -> bool:
    """One JPEG frame: per (σ, q) cell the median |error| of values and what was answered."""
    cells: dict[tuple[float, int], list[NoiseEstimate]] = {}
    for index, name in enumerate(photos):
        clean = load_frame(name, BLURS[index % len(BLURS)])
        for sigma in sigmas:
            frame = noisy_frames(clean, sigma, 1, seed=9000 + 1000 * index + int(sigma * 10))[0]
            for quality in qualities:
                cells.setdefault((sigma, quality), []).append(jpeg_single_frame_sigma(jpeg_bytes(frame, quality)))
    print()
    print("Single JPEG frames, synthesis through the file's tables: median |error| (values; a bound ≥ σ counts as 0),")
    print("share of frames within ±25 % or correctly answered '≤ floor', textured refusals; readings per photo")
    ok = True
    good = total = textured = 0
    for quality in qualities:
        floor = single_frame_floor(quality)
        for sigma in sigmas:
            estimates = cells[(sigma, quality)]
            errors = []
            for e in estimates:
                if e.sigma is not None:
                    errors.append(abs(e.sigma - sigma))
                elif e.upper_bound is not None and e.upper_bound >= sigma:
                    errors.append(0.0 if sigma < floor else float("inf"))
                else:
                    errors.append(float("inf"))
            right = [
                (e.sigma is not None and sigma > 0 and abs(e.sigma - sigma) <= 0.25 * sigma)
                or (e.sigma is None and e.upper_bound is not None and sigma <= e.upper_bound)
                for e in estimates
            ]
            good += sum(right)
            total += len(right)
            textured += sum(e.textured_frames_rejected for e in estimates)
            median = statistics.median(errors)
            cell_ok = True
            if sigma > 0 and sigma >= floor:
                cell_ok = median <= 0.25 * sigma
                ok &= cell_ok
            finite = [x for x in errors if np.isfinite(x)]
            worst = f"{max(finite):5.2f}" if finite else "  —  "
            print(
                f"  q {quality:2d} (floor {floor:3.1f}) σ {sigma:4.1f}: med {median:5.2f} worst(finite) {worst} "
                f"right {sum(right)}/{len(right)} {'ok  ' if cell_ok else 'FAIL'} | " + " ".join(_reading(e) for e in estimates)
            )
    share = good / max(total, 1)
    ok &= share >= 0.85
    print(f"  frames within ±25 % or correctly '≤ floor': {good}/{total} = {100 * share:.0f} % (bar ≥ 85 %); textured refusals {textured}")
    return ok


def single_frame_textures(qualities: Sequence[int]) -> None:
    print()
    print("Single clean textured frames (must be flagged 'T' or answered ≤ floor):")
    for name, clean in texture_frames():
        print(f"  {name:16s} " + " ".join(f"q{q}:{_reading(jpeg_single_frame_sigma(jpeg_bytes(clean, q)))}" for q in qualities))


def real_clips() -> None:
    print()
    print(f"Real clips ({VIDEO_DIR}), codec-synthesis on the first 16 frames (no truth):")
    for path in sorted(VIDEO_DIR.glob("*.mp4")):
        start = time.perf_counter()
        estimate = video_synthesis_sigma(path)
        print(f"  {path.name}: {_reading(estimate)} ({time.perf_counter() - start:.1f} s) {estimate.note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="σ {0, 2, 6, 15} × q {30, 60, 95} on 8 photos")
    parser.add_argument("--photos", type=int, default=None, help="how many photos (≥ 8 for the bars to count)")
    parser.add_argument("--sections", default="jpeg,channels,textures,h264,single,clips",
                        help="comma-separated: jpeg, channels, textures, h264, single, clips")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}

    photos = [name for name in PHOTOS if (FACES_DIR / name).is_file()]
    wanted = args.photos or (8 if args.quick else len(photos))
    photos = photos[:wanted]
    if len(photos) < 8:
        print(f"only {len(photos)} of the photos found under {FACES_DIR}; the bars need ≥ 8 per cell")
    sigmas = (0.0, 2.0, 6.0, 15.0) if args.quick else SIGMAS
    qualities = (30, 60, 95) if args.quick else QUALITIES
    crfs = (23, 30) if args.quick else CRFS

    print(f"CPU: {describe_cpu()}; photos: {len(photos)}; σ {list(sigmas)}; JPEG q {list(qualities)}; CRF {list(crfs)}")
    verdicts: dict[str, bool] = {}
    if "jpeg" in sections:
        verdicts["JPEG sequences (8 frames: σ0 ≤ 0.3, σ2–6 ±0.5, σ≥10 ±12 %; 4 frames: ±0.6 / 15 %)"], times = jpeg_sequences(photos, sigmas, qualities)
        print(f"time per 8-frame sequence (decode + estimate, {describe_cpu()}): median {1000 * statistics.median(times):.0f} ms, "
              f"max {1000 * max(times):.0f} ms over {len(times)} sequences")
    if "channels" in sections:
        triples = CHANNEL_SIGMAS[:2] if args.quick else CHANNEL_SIGMAS
        settings = CHANNEL_SETTINGS[:3] if args.quick else CHANNEL_SETTINGS
        start = time.perf_counter()
        verdicts["R, G, B apart (told apart: ±0.5 / ±12 %; all at 4:2:0 q 95)"] = jpeg_channels(photos, triples, settings)
        print(f"channels section: {time.perf_counter() - start:.0f} s")
    if "textures" in sections:
        verdicts["textures (clean ≤ 0.5 or refused)"] = jpeg_textures(qualities)
    if "h264" in sections:
        verdicts["H.264 (CRF 23: σ0 ≤ 2, ±1.5, ±20 %; CRF 30: σ15 ±25 %, σ≤10 ±25 % or bound ≤ 16)"], h264_times = h264_sequences(photos, sigmas, crfs)
        print(f"time per H.264 estimate (16 frames): median {statistics.median(h264_times):.2f} s, max {max(h264_times):.2f} s")
    if "single" in sections:
        start = time.perf_counter()
        verdicts["single JPEG frames (median ±25 % at/above floor; ≥ 85 % right)"] = single_frames(photos, sigmas, qualities)
        single_frame_textures(qualities)
        print(f"single-frame section: {time.perf_counter() - start:.0f} s")
    if "clips" in sections:
        real_clips()
    verdict = all(verdicts.values()) and len(photos) >= 8
    print()
    print(f"BARS {'PASS' if verdict else 'FAIL'}: " + "; ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in verdicts.items()) + f"; photos {len(photos)} (≥ 8)")
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
