"""The sensor noise of a calibration's footage: the best method the footage allows, chosen here.

Compressed footage hides its noise from the paper's smooth-patch rule (JPEG and H.264 smooth it
away), so each kind of footage gets the method that can see through its codec, best first:

1. several JPEG frames (a folder of stills, or MJPEG video) of a static camera: the quantised DCT
   levels of static blocks flip from frame to frame with the noise
   (`sensor_noise.jpeg_multiframe_sigma`);
2. H.264 / H.265 video: analysis by synthesis through the camera's own encoder settings
   (`sensor_noise.video_synthesis_sigma`), which may only bound σ where the codec erased it;
3. uncompressed footage: the σ of the paper's smooth patches themselves;
4. a single JPEG frame: analysis by synthesis through JPEG (`sensor_noise.jpeg_single_frame_sigma`),
   which answers "σ ≤ floor" below what that quality leaves measurable.

The estimate with a σ from the best method wins; where none measured σ, the tightest bound; where
nothing could be measured, the refusal whose note says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from cctvsr.degrade import sensor_noise
from cctvsr.degrade.jpeg import is_jpeg_file
from cctvsr.degrade.sensor_noise import NoiseEstimate
from cctvsr.errors import InputError
from cctvsr.video import SourceInfo

MULTIFRAME_FRAMES = 8  # frames the multi-frame JPEG method reads (benchmarked at 8 and 4)
VIDEO_FRAMES = 16  # frames the video method reads
SINGLE_FRAMES = 4  # JPEG stills read one by one where the multi-frame method cannot apply (a moving camera, one still)
METHOD_PATCHES = "smooth-patches"
_RANK = {sensor_noise.METHOD_JPEG_MULTIFRAME: 0, sensor_noise.METHOD_VIDEO_SYNTHESIS: 1, METHOD_PATCHES: 2, sensor_noise.METHOD_JPEG_SINGLE: 3}


def _is_jpeg(path: Path) -> bool:
    try:
        return is_jpeg_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _video_codec(path: Path) -> str | None:
    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].codec_context.name if container.streams.video else None
    except (av.FFmpegError, OSError):
        return None


def _spread(items: Sequence[Path], count: int) -> list[Path]:
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _refused(method: str, codec: str | None, note: str) -> NoiseEstimate:
    return NoiseEstimate(sigma=None, sigma_per_channel=None, upper_bound=None, method=method, frames_used=0, codec=codec, note=note)


def _single_frames(paths: Sequence[Path]) -> NoiseEstimate:
    """The single-frame method on each of `paths`: the median of the σ measured, else the smallest
    bound; the textured frames it refused are counted."""
    found = [sensor_noise.jpeg_single_frame_sigma(path) for path in paths]
    textured = sum(e.textured_frames_rejected for e in found)
    measured = [e.sigma for e in found if e.sigma is not None]
    if measured:
        sigma = round(float(np.median(measured)), 3)
        return replace(found[0], sigma=sigma, sigma_per_channel=(sigma,) * 3, upper_bound=None, frames_used=len(measured),
                       textured_frames_rejected=textured, note=f"median of {len(measured)} single frames")
    bounds = [e.upper_bound for e in found if e.upper_bound is not None]
    if bounds:
        return replace(found[0], sigma=None, sigma_per_channel=None, upper_bound=min(bounds), frames_used=len(bounds),
                       textured_frames_rejected=textured, note="σ at or below what this JPEG quality leaves measurable")
    return replace(found[0], textured_frames_rejected=textured)


def measure_camera_noise(
    sources: Sequence[SourceInfo], *, patch_sigma: float | None, patches_frames: int
) -> NoiseEstimate:
    """One sensor-noise estimate for a calibration's `sources`. `patch_sigma` is the mean σ of the
    smooth patches the paper's rule kept (None when it found none) over `patches_frames` frames."""
    estimates: list[NoiseEstimate] = []
    stills = [s.path for s in sources if s.kind == "image" and _is_jpeg(s.path)]
    if len(stills) >= sensor_noise.MIN_FRAMES:
        estimates.append(sensor_noise.jpeg_multiframe_sigma(_spread(stills, MULTIFRAME_FRAMES)))
    for source in sources:
        if source.kind != "video":
            continue
        codec = _video_codec(source.path)
        if codec == "mjpeg":
            estimates.append(sensor_noise.mjpeg_multiframe_sigma(source.path, max_frames=MULTIFRAME_FRAMES))
        elif codec in ("h264", "hevc"):
            estimates.append(sensor_noise.video_synthesis_sigma(source.path, max_frames=VIDEO_FRAMES))
    if patch_sigma is not None and not any(e.codec for e in estimates):
        estimates.append(NoiseEstimate(
            sigma=round(patch_sigma, 3), sigma_per_channel=(round(patch_sigma, 3),) * 3, upper_bound=None,
            method=METHOD_PATCHES, frames_used=patches_frames, codec=None,
            note="the paper's smooth-patch rule on uncompressed footage",
        ))
    if stills and not any(e.sigma is not None or e.upper_bound is not None for e in estimates):
        estimates.append(_single_frames(_spread(stills, SINGLE_FRAMES)))
    measured = [e for e in estimates if e.sigma is not None]
    if measured:
        return min(measured, key=lambda e: (_RANK.get(e.method, 3), -e.frames_used))
    bounded = [e for e in estimates if e.upper_bound is not None]
    if bounded:
        return min(bounded, key=lambda e: e.upper_bound)  # type: ignore[arg-type, return-value]
    if estimates:
        return estimates[0]
    return _refused("none", None, "no JPEG, MJPEG, H.264/H.265 or uncompressed footage with smooth patches to measure it on")
