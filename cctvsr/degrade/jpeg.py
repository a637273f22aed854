"""How hard a camera compresses, as the IJG JPEG quality (1–100) that the pool re-applies.

* JPEG files and MJPEG video carry their quantisation tables: each libjpeg quality gives one pair
  of tables (`ijg_tables`), so the quality is read back exactly when a file's tables are among
  them. Pillow returns a JPEG's tables in natural (row-major) order: it undoes the file's zigzag
  order (`JpegImagePlugin.DQT`, checked in Pillow 13: the Annex K table reads 16, 11, 10, 16, …).
  Table 0 is compared with the luminance table, table 1 with the chrominance table; a greyscale
  file (or FFmpeg's MJPEG, which quantises all three components with table 0) has only table 0.
* Other encoders' tables (FFmpeg's MJPEG scales the MPEG-1 intra matrix by its qscale, DC fixed at
  8) match no quality. Their shape differs from Annex K, so the closest table by log-ratio is far
  from the damage they do (FFmpeg qscale 10 → log-ratio Q 59, while IJG Q 45 gives the same luma
  PSNR on the same frames). Where the image is at hand, each DCT coefficient's Laplacian scale is
  estimated from the share of its quantised values that are zero, and the chosen quality is the one
  whose tables give the same expected luma quantisation error (`equal_error_quality`). Measured
  against the IJG quality of equal luma PSNR on the same frames, FFmpeg qscale 2–31: within ±4 on
  real photos, within ±7 on frames of an H.264 clip (worst at qscale 2: 89 for 82).
* Other video (H.264/HEVC/…) keeps no tables. There the quality is the JPEG quality whose 8×8
  blockiness (boundary steps over inner steps) on the footage's own frames, re-encoded, equals the
  footage's (`blockiness_quality`). The re-encode is done on the frames moved by half a block:
  on the same grid a re-encode is never less blocky than its input (and JPEG on JPEG is nearly
  idempotent), so a direct match ends at the top of the range (measured: 95 for CRF 18–42), while
  with the half-block shift the footage's own edges fall mid-block, which roughly cancels the
  texture the footage has lost. Measured on real frames: JPEG sequences of quality 30/50/70/90 →
  28.5–29.6 / 46.9–47.7 / 67.7–70.6 / 86.0–88.1; libx264 CRF 18/30/42/48 within 7 of the quality
  that gives the same blockiness on the clean frames.
* The codec's own QP is read where FFmpeg's decoder exports it (`AV_FRAME_DATA_VIDEO_ENC_PARAMS`,
  which PyAV 18 exposes): H.264 (0–51) and MPEG-1/2/4-part-2 (qscale 1–31); not HEVC.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import av
import cv2
import numpy as np
from PIL import Image

from cctvsr.errors import InputError

Method = Literal["ijg-tables", "blockiness"]

# ITU-T T.81 Annex K tables (K.1 luminance, K.2 chrominance), natural row-major order; libjpeg's
# std_luminance_quant_tbl / std_chrominance_quant_tbl.
LUMINANCE_BASE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.int64,
).ravel()
CHROMINANCE_BASE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
    ]
    + [[99] * 8] * 4,
    np.int64,
).ravel()

QUALITIES = np.arange(1, 101)
BLOCK = 8
COARSE_QUALITIES = tuple(range(5, 101, 5))  # the blockiness search grid, refined to 1 around the match
MAX_BLOCKINESS_SIDE = 512  # frames are centre-cropped to this (grid-aligned) to bound re-encode time
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class CompressionEstimate:
    """The compression a pool re-applies, with how it was found and how much it varied."""

    quality: float  # IJG JPEG quality, 1–100
    spread: float  # interquartile range of the per-sample qualities (0 for one sample)
    method: Method  # "ijg-tables": read from JPEG/MJPEG tables; "blockiness": matched on 8×8 blocking
    exact: bool  # every sample's tables were libjpeg's own for an integer quality
    samples: int  # JPEG images, MJPEG packets or video frames the estimate rests on
    qp: float | None = None  # the codec's mean QP where its decoder exports it (H.264: 0–51)
    qp_codec: str | None = None  # whose QP scale `qp` is on ("h264", "mpeg2video", …)
    note: str = ""  # what was left out and why, for the summary


# ---------------------------------------------------------------------------------------------
# IJG tables


def ijg_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's (luminance, chrominance) tables for `quality`, natural order, baseline (≤ 255):
    jpeg_quality_scaling then jpeg_add_quant_table with force_baseline."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1–100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    luminance, chrominance = (np.clip((base * scale + 50) // 100, 1, 255) for base in (LUMINANCE_BASE, CHROMINANCE_BASE))
    return luminance, chrominance


_TABLES = np.stack([np.stack(ijg_tables(int(q))) for q in QUALITIES])  # (100, 2, 64)


def _as_table(values: Sequence[int]) -> np.ndarray:
    table = np.asarray(values, np.int64).ravel()
    if table.size != 64:
        raise ValueError(f"a quantisation table has 64 entries, got {table.size}")
    return table


def _compared(tables: dict[int, Sequence[int]]) -> tuple[list[int], np.ndarray]:
    """Which of libjpeg's two tables to compare with (0 luminance, 1 chrominance), and the file's."""
    ids = [i for i in (0, 1) if i in tables]
    if not ids:
        raise ValueError("no quantisation table 0 or 1 to compare")
    return ids, np.stack([_as_table(tables[i]) for i in ids])


def exact_ijg_quality(tables: dict[int, Sequence[int]]) -> int | None:
    """The libjpeg quality whose tables equal `tables` (ids 0 and 1, natural order), or None."""
    ids, found = _compared(tables)
    hits = np.nonzero((_TABLES[:, ids] == found).all(axis=(1, 2)))[0]
    return int(QUALITIES[hits[0]]) if len(hits) else None  # the 100 table pairs are all distinct


def ijg_quality(tables: dict[int, Sequence[int]]) -> tuple[int, bool]:
    """(quality, exact): the libjpeg quality that reproduces the tables exactly, else the one with
    the least sum of squared log-ratios over the compared tables. That fallback sees only the
    tables' shape; `equal_error_quality` is used instead wherever the image is at hand (module note)."""
    exact = exact_ijg_quality(tables)
    if exact is not None:
        return exact, True
    ids, found = _compared(tables)
    error = ((np.log(_TABLES[:, ids]) - np.log(found)) ** 2).sum(axis=(1, 2))
    return int(QUALITIES[np.argmin(error)]), False


def _laplace_mse(scale: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Expected squared error of rounding a Laplacian variable (density e^(−|x|/scale) / 2·scale)
    to multiples of `step`: the zero bin plus the geometric sum over the other bins, closed form."""
    b, h = np.broadcast_arrays(np.asarray(scale, np.float64), np.asarray(step, np.float64) / 2.0)
    s = h / np.maximum(b, 1e-12)
    with np.errstate(over="ignore", invalid="ignore"):
        zero_bin = 2 * b * b - np.exp(-s) * (h * h + 2 * b * h + 2 * b * b)
        other_bins = (np.exp(-s) * (h * h - 2 * b * h + 2 * b * b) - np.exp(-3 * s) * (h * h + 2 * b * h + 2 * b * b)) / (
            -np.expm1(-2 * s)
        )
        mse = zero_bin + other_bins
    return np.where(s < 1e-3, (2 * h) ** 2 / 12.0, mse)  # a step far below the spread: uniform error


def _dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II: JPEG's FDCT is exactly this, applied to rows and columns."""
    k, n = np.meshgrid(np.arange(BLOCK), np.arange(BLOCK), indexing="ij")
    matrix = np.sqrt(2.0 / BLOCK) * np.cos((2 * n + 1) * k * np.pi / (2 * BLOCK))
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix()


def _block_dct(grey: np.ndarray) -> np.ndarray:
    """(blocks, 64) 8×8 DCT coefficients of grey − 128, as JPEG computes them; natural order."""
    height, width = (grey.shape[0] // BLOCK) * BLOCK, (grey.shape[1] // BLOCK) * BLOCK
    blocks = grey[:height, :width].astype(np.float64) - 128.0
    blocks = blocks.reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK).transpose(0, 2, 1, 3)
    return (_DCT @ blocks @ _DCT.T).reshape(-1, BLOCK * BLOCK)


def laplace_scales(greys: Sequence[np.ndarray], table: Sequence[int]) -> np.ndarray:
    """Per-coefficient Laplacian scale (64, natural order) of the DCT coefficients before they were
    quantised with `table`, from decoded luma: P(level = 0) = 1 − exp(−step / 2·scale)."""
    step = _as_table(table).astype(np.float64)
    zeros, blocks = np.zeros(64), 0
    for grey in greys:
        levels = _block_dct(grey) / step
        zeros += (np.abs(levels) < 0.5).sum(axis=0)
        blocks += len(levels)
    if blocks == 0:
        raise ValueError("no 8×8 block to estimate coefficient statistics from")
    share = np.clip(zeros / blocks, 0.5 / blocks, 1 - 0.5 / blocks)
    return -(step / 2.0) / np.log1p(-share)


def equal_error_quality(table: Sequence[int], scales: np.ndarray) -> int:
    """The libjpeg quality whose luminance table gives the same expected quantisation error as
    `table` on coefficients with these Laplacian `scales` (compared on a log scale)."""
    target = _laplace_mse(scales, _as_table(table)).sum()
    errors = _laplace_mse(scales[None, :], _TABLES[:, 0].astype(np.float64)).sum(axis=1)
    return int(QUALITIES[np.argmin(np.abs(np.log(errors) - np.log(target)))])


# ---------------------------------------------------------------------------------------------
# JPEG files and MJPEG packets


def jpeg_tables(data: bytes) -> dict[int, list[int]] | None:
    """The quantisation tables (id → 64 values, natural order) of a JPEG byte string, or None."""
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            tables = getattr(image, "quantization", None)
            return {int(k): list(v) for k, v in tables.items()} if tables else None
    except (OSError, SyntaxError, ValueError):
        return None


def _jpeg_quality(data: bytes) -> tuple[int, bool] | None:
    """(quality, exact) of one JPEG; non-IJG tables are matched on expected error (module note)."""
    tables = jpeg_tables(data)
    if tables is None or 0 not in tables:
        return None
    exact = exact_ijg_quality(tables)
    if exact is not None:
        return exact, True
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)  # libjpeg's Y plane
    if grey is None or min(grey.shape) < BLOCK:
        return ijg_quality(tables)
    return equal_error_quality(tables[0], laplace_scales([grey], tables[0])), False


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def jpeg_file_quality(path: Path) -> int | None:
    """The IJG quality of a JPEG file (exact for libjpeg's tables), or None when it is not a JPEG."""
    found = _jpeg_quality(_read_bytes(path))
    return None if found is None else found[0]


def _mjpeg_packets(path: Path, max_frames: int) -> list[bytes]:
    """Up to `max_frames` packets spread evenly over an MJPEG video's first video stream; [] when
    the file is not MJPEG video."""
    if max_frames <= 0:
        return []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video or container.format.name in ("image2", "jpeg_pipe"):
                return []
            stream = container.streams.video[0]
            if stream.codec_context.name != "mjpeg":
                return []
            every = max(1, math.ceil(stream.frames / max_frames)) if stream.frames else 1
            packets: list[bytes] = []
            index = 0
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if index % every == 0:
                    packets.append(bytes(packet))
                    if len(packets) >= max_frames:
                        break
                index += 1
            return packets
    except (av.FFmpegError, OSError):
        return []


def _mjpeg_estimates(path: Path, max_frames: int) -> list[tuple[int, bool]]:
    known: dict[bytes, tuple[int, bool]] = {}  # exact tables repeat from packet to packet
    found: list[tuple[int, bool]] = []
    for data in _mjpeg_packets(path, max_frames):
        tables = jpeg_tables(data)
        if tables is None or 0 not in tables:
            continue
        key = repr(sorted(tables.items())).encode()
        estimate = known.get(key) or _jpeg_quality(data)
        if estimate is None:
            continue
        if estimate[1]:
            known[key] = estimate
        found.append(estimate)
    return found


def mjpeg_qualities(path: Path, max_frames: int) -> list[int]:
    """The IJG quality of up to `max_frames` packets spread over an MJPEG video; [] for other files."""
    return [quality for quality, _ in _mjpeg_estimates(path, max_frames)]


# ---------------------------------------------------------------------------------------------
# Blockiness


def _iqr(values: Sequence[float]) -> float:
    q25, q75 = np.percentile(np.asarray(values, np.float64), [25, 75])
    return float(q75 - q25)


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame if frame.dtype == np.uint8 else np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3) frame, got shape {frame.shape}")


def block_steps(luma: np.ndarray, block: int = BLOCK, phase: int = BLOCK - 1) -> tuple[np.ndarray, np.ndarray]:
    """Absolute steps between neighbouring pixels of `luma` (H, W), along rows then down columns:
    those across the edges of a `block`-pixel grid, and those inside its blocks. Step k lies between
    pixels k and k + 1; it crosses an edge where k % block == phase (block − 1: the codec's grid,
    with blocks starting at the top-left pixel)."""
    dx, dy = np.abs(np.diff(luma, axis=1)), np.abs(np.diff(luma, axis=0))
    on_x = np.arange(dx.shape[1]) % block == phase
    on_y = np.arange(dy.shape[0]) % block == phase
    across = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()])
    inside = np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()])
    return across, inside


def _edge_sums(grey: np.ndarray) -> np.ndarray:
    """[boundary sum, boundary count, inner sum, inner count] of `block_steps` on the codec's grid:
    sums, so that frames can be pooled (exact: the steps of uint8 grey are integers)."""
    across, inside = block_steps(grey.astype(np.float64))
    return np.array([across.sum(), across.size, inside.sum(), inside.size], np.float64)


def _ratio(sums: np.ndarray) -> float:
    boundary, inner = sums[0] / max(sums[1], 1.0), sums[2] / max(sums[3], 1.0)
    return float((boundary + 1e-6) / (inner + 1e-6))


def _aligned(grey: np.ndarray) -> np.ndarray:
    """Whole 8×8 blocks of `grey`, at most MAX_BLOCKINESS_SIDE per side around the centre, cut at
    multiples of 8 so that the codec's block grid stays at (0, 0)."""
    keep_h = min(grey.shape[0] // BLOCK * BLOCK, MAX_BLOCKINESS_SIDE)
    keep_w = min(grey.shape[1] // BLOCK * BLOCK, MAX_BLOCKINESS_SIDE)
    top = (grey.shape[0] - keep_h) // 2 // BLOCK * BLOCK
    left = (grey.shape[1] - keep_w) // 2 // BLOCK * BLOCK
    return np.ascontiguousarray(grey[top : top + keep_h, left : left + keep_w])


def blockiness(grey: np.ndarray) -> float:
    """Mean absolute luma step across 8×8 block boundaries over the mean step inside blocks: ≈ 1
    for clean images, rising as blocking appears. The grid is the codec's: blocks start at the
    top-left pixel, as in a whole decoded frame (a crop must start at multiples of 8)."""
    return _ratio(_edge_sums(_aligned(_grey(grey))))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with OpenCV's libjpeg (colour with 4:2:0 chroma, like most cameras):
    uint8 RGB (H, W, 3) or grey (H, W) in, the same kind out."""
    colour = image.ndim == 3
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    if not colour:
        return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _crossing(qualities: np.ndarray, ratios: np.ndarray, target: float) -> float:
    """The quality where `ratios` (falling as quality rises) comes down through `target`, linearly
    interpolated; the ends of the range where it never does."""
    above = ratios >= target
    if not above.any():  # blockier than the lowest quality tried
        return float(qualities[0])
    last = int(np.nonzero(above)[0][-1])
    if last == len(qualities) - 1:
        return float(qualities[-1])
    r0, r1 = ratios[last], ratios[last + 1]
    t = 0.0 if r0 == r1 else (r0 - target) / (r0 - r1)
    return float(qualities[last] + t * (qualities[last + 1] - qualities[last]))


def _half_block_shifted(grey: np.ndarray) -> np.ndarray:
    """The frame moved by half a block (4 px) each way, cut to whole blocks: the re-encode's blocks
    straddle the footage's block edges instead of repeating them."""
    return _aligned(grey[BLOCK // 2 :, BLOCK // 2 :])


def _reencoded_sums(references: list[np.ndarray], qualities: Sequence[int], cache: dict[int, np.ndarray]) -> np.ndarray:
    """(frames, len(qualities), 4) edge sums of each reference's JPEG round trip, cached by quality."""
    for quality in qualities:
        if quality not in cache:
            cache[quality] = np.stack([_edge_sums(jpeg_roundtrip(r, quality)) for r in references])
    return np.stack([cache[q] for q in qualities], axis=1)


def _match(footage: np.ndarray, reencoded: np.ndarray, qualities: np.ndarray) -> float:
    return _crossing(qualities, np.array([_ratio(sums) for sums in reencoded]), _ratio(footage))


def blockiness_quality(frames: Sequence[np.ndarray]) -> CompressionEstimate:
    """The JPEG quality whose 8×8 blocking matches the frames' (whole decoded frames, RGB or grey,
    uint8): matched on the frames' pooled edge statistics, refined to single qualities; the spread
    is the interquartile range of the frames' own matches (on the coarse grid)."""
    greys = [_aligned(_grey(frame)) for frame in frames]
    greys = [g for g in greys if min(g.shape) >= 3 * BLOCK]
    if not greys:
        raise ValueError("no frame of at least 24×24 pixels to measure blockiness on")
    footage = np.stack([_edge_sums(g) for g in greys])
    references = [_half_block_shifted(g) for g in greys]
    cache: dict[int, np.ndarray] = {}
    coarse = np.array(COARSE_QUALITIES)
    curve = _reencoded_sums(references, COARSE_QUALITIES, cache)

    total = footage.sum(axis=0)
    pooled = _match(total, curve.sum(axis=0), coarse)
    if pooled < coarse[-1]:  # refine to single qualities inside the bracketing coarse step
        low = int(coarse[coarse <= pooled].max()) if pooled > coarse[0] else 1
        fine = np.arange(low, min(100, low + 5) + 1)
        pooled = _match(total, _reencoded_sums(references, fine.tolist(), cache).sum(axis=0), fine)
    per_frame = [_match(footage[i], curve[i], coarse) for i in range(len(greys))]
    return CompressionEstimate(
        quality=round(pooled, 1), spread=round(_iqr(per_frame), 1), method="blockiness", exact=False, samples=len(greys)
    )


# ---------------------------------------------------------------------------------------------
# The codec's own quantiser


def codec_qp(path: Path | BinaryIO, max_frames: int) -> tuple[str, float] | None:
    """(codec name, mean QP) over the first `max_frames` decoded frames where FFmpeg's decoder
    exports per-block QPs (H.264 on 0–51; MPEG-1/2/4 part 2 on qscale 1–31); None otherwise
    (HEVC, MJPEG, images, unreadable files). The mean includes each block's delta. `path` may be
    an open binary file (a clip encoded in memory)."""
    if max_frames <= 0:
        return None
    try:
        with av.open(str(path) if isinstance(path, Path) else path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            stream.codec_context.options = {"export_side_data": "venc_params"}
            means: list[float] = []
            for index, frame in enumerate(container.decode(stream)):
                if index >= max_frames:
                    break
                params = frame.side_data.get(av.sidedata.sidedata.Type.VIDEO_ENC_PARAMS)
                if params is None:
                    continue
                qp_map = params.qp_map()
                means.append(float(qp_map.mean()) if qp_map is not None and qp_map.size else float(params.qp))
            return (stream.codec_context.name, float(np.mean(means))) if means else None
    except (av.FFmpegError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# One estimate for a calibration


def is_jpeg_file(path: Path) -> bool:
    """Whether the file's bytes start as a JPEG's do (never the extension)."""
    with open(path, "rb") as handle:
        return handle.read(len(_JPEG_MAGIC)) == _JPEG_MAGIC


def _table_estimates(path: Path, max_frames: int) -> list[tuple[int, bool]]:
    """Table-based (quality, exact) of a JPEG file or an MJPEG video's packets; [] for others."""
    if is_jpeg_file(path):
        found = _jpeg_quality(_read_bytes(path))
        return [found] if found is not None else []
    return _mjpeg_estimates(path, max_frames)


def estimate_compression(
    sources: Sequence[tuple[Path | None, Sequence[np.ndarray]]], *, max_frames: int = 64
) -> CompressionEstimate:
    """One compression estimate for a calibration, from (source file or None for a stream, whole
    decoded frames sampled from it) pairs.

    JPEG files and MJPEG videos are read from their tables (up to `max_frames` packets a video);
    the other sources' frames are matched on blockiness (at most `max_frames` in all, spread over
    the sources). When both kinds are present the tables win: they measure exactly what those
    cameras did, while blockiness is an estimate; the sources left out are named in `note`.
    """
    tables: list[tuple[int, bool]] = []
    others: list[tuple[Path | None, Sequence[np.ndarray]]] = []
    for path, frames in sources:
        try:
            found = _table_estimates(path, max_frames) if path is not None else []
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if found:
            tables += found
        else:
            others.append((path, frames))

    if tables:
        qualities = [quality for quality, _ in tables]
        note = ""
        if others:
            names = ", ".join(str(path) if path is not None else "a stream" for path, _ in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            note = f"{len(others)} source(s) without JPEG tables not used ({names}{more}): tables take precedence"
        return CompressionEstimate(
            quality=float(np.median(qualities)),
            spread=_iqr(qualities),
            method="ijg-tables",
            exact=all(exact for _, exact in tables),
            samples=len(tables),
            note=note,
        )

    frames = [frame for _, source_frames in others for frame in source_frames]
    if not frames:
        raise InputError("no frames to estimate the compression from")
    if len(frames) > max_frames:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    estimate = blockiness_quality(frames)

    readings = [codec_qp(path, max_frames) for path, _ in others if path is not None]
    codecs = {reading[0] for reading in readings if reading is not None}
    if len(codecs) == 1:
        values = [reading[1] for reading in readings if reading is not None]
        return replace(estimate, qp=round(float(np.mean(values)), 2), qp_codec=codecs.pop())
    if len(codecs) > 1:
        return replace(estimate, note=f"QP not given: the sources use {', '.join(sorted(codecs))}")
    return estimate
