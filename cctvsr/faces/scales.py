"""Run a detector over a frame at several scales: whole (in tiles where it is large) or in windows.

A detector that misses faces under ~14 px finds them on the frame enlarged ×2; the frame as it
is keeps the large faces (which an enlarged frame makes too big for the network's receptive
field). An enlarged 1080p frame is 3840×2160, so it is cut into the fewest overlapping tiles that
keep memory bounded (four there); each face is kept from the one tile whose core holds its
centre, and a face smaller than the overlap is whole in that tile. Larger faces are the
frame-as-it-is pass's job.

Enlarging the whole frame costs four times the frame-as-it-is pass. Where that pass can say where
a face might be (a weak heatmap peak), `focus_windows` enlarges only small windows around those
places: on real 1080p footage about a hundred 64-px windows, a fifth of the pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from cctvsr.faces.detections import FaceDetections

TILE_PIXELS = 2_400_000  # most resized pixels one network run sees (about 1.5 GB of activations for CenterFace)
TILE_OVERLAP = 128  # resized pixels two neighbouring tiles share: faces up to this size are whole in one
FOCUS_WINDOW = 128  # resized pixels of a focused window's side: a face up to ~48 px with context all round
FOCUS_BATCH = 32  # windows per network run (about 0.4 GB of activations for CenterFace)


def concat(parts: list[FaceDetections]) -> FaceDetections:
    """Detections of several runs as one set (not merged: NMS is the caller's)."""
    if not parts:
        return FaceDetections.empty()
    return FaceDetections(
        np.concatenate([p.boxes for p in parts]).astype(np.float32),
        np.concatenate([p.scores for p in parts]).astype(np.float32),
        np.concatenate([p.landmarks for p in parts]).astype(np.float32),
    )


def moved(faces: FaceDetections, dx: float, dy: float, scale: float) -> FaceDetections:
    """Shifted by (dx, dy), then divided by `scale`: tile coordinates to frame coordinates."""
    shift = np.array([dx, dy], np.float32)
    return FaceDetections((faces.boxes + np.tile(shift, 2)) / scale, faces.scores, (faces.landmarks + shift) / scale)


def parse_scales(text: str) -> tuple[float, ...]:
    """'1,2' → (1.0, 2.0); each between 0.25 and 4, no repeats."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--det-scales must be numbers separated by commas (e.g. 1,2), got {text!r}") from None
    if not scales or any(not 0.25 <= s <= 4.0 for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(f"--det-scales must be distinct numbers between 0.25 and 4, got {text!r}")
    return scales


def tile_origins(length: int, count: int, overlap: int = TILE_OVERLAP) -> tuple[list[int], int]:
    """Start offsets of `count` equal tiles covering `length` with `overlap` shared, and the tile side."""
    if count <= 1:
        return [0], length
    side = int(np.ceil((length + (count - 1) * overlap) / count))
    step = (length - side) / (count - 1)
    return [int(round(i * step)) for i in range(count)], side


def tile_counts(width: int, height: int, limit: int = TILE_PIXELS) -> tuple[int, int]:
    """The fewest tiles across and down whose tiles (with overlap) stay within `limit` pixels."""
    best: tuple[int, int] | None = None
    for across in range(1, 64):
        for down in range(1, 64):
            tw = (width + (across - 1) * TILE_OVERLAP) / across
            th = (height + (down - 1) * TILE_OVERLAP) / down
            if tw * th <= limit and (best is None or across * down < best[0] * best[1]):
                best = (across, down)
                break
    return best or (64, 64)


def _core(origins: list[int], index: int, tile: int, length: int) -> tuple[float, float]:
    """The part of tile `index` that is its own: halfway into each overlap with a neighbour."""
    start = 0.0 if index == 0 else (origins[index] + origins[index - 1] + tile) / 2
    end = float(length) if index == len(origins) - 1 else (origins[index + 1] + origins[index] + tile) / 2
    return start, end


def detect_at_scales(frame: np.ndarray, scales: tuple[float, ...], run: Callable[[np.ndarray], FaceDetections]) -> FaceDetections:
    """Every face `run` finds in `frame` resized by each scale, in frame coordinates (not merged)."""
    h, w = frame.shape[:2]
    found = []
    for scale in scales:
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        if scale == 1.0:
            image = frame
        else:
            image = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        across, down = tile_counts(sw, sh)
        xs, tw = tile_origins(sw, across)
        ys, th = tile_origins(sh, down)
        for j, y0 in enumerate(ys):
            y_lo, y_hi = _core(ys, j, th, sh)
            for i, x0 in enumerate(xs):
                x_lo, x_hi = _core(xs, i, tw, sw)
                faces = moved(run(image[y0 : y0 + th, x0 : x0 + tw]), x0, y0, 1.0)
                cx = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
                cy = (faces.boxes[:, 1] + faces.boxes[:, 3]) / 2
                own = (cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)
                found.append(moved(faces.take(own), 0, 0, scale))
    return concat(found)


def spread_out(centres: np.ndarray, scores: np.ndarray, spacing: float) -> np.ndarray:
    """The strongest of `centres` (N, 2) first, each at least `spacing` from those kept before it."""
    kept: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if not kept or np.min(np.hypot(*(centres[kept] - centres[index]).T)) >= spacing:
            kept.append(int(index))
    return centres[kept].reshape(-1, 2)


def focus_windows(
    frame: np.ndarray,
    centres: np.ndarray,
    scale: float,
    run_batch: Callable[[np.ndarray], list[FaceDetections]],
    window: int = FOCUS_WINDOW,
) -> FaceDetections:
    """Faces `run_batch` finds in square windows of `frame` resized by `scale`, one centred on each
    of `centres` (frame x, y); a face counts where its centre is in its window's middle half (the
    rest is context), in frame coordinates, not merged. Windows reaching past the frame edge see
    its edge pixels repeated."""
    if len(centres) == 0:
        return FaceDetections.empty()
    corners = np.asarray(centres, np.float64) - window / scale / 2
    found = []
    for start in range(0, len(corners), FOCUS_BATCH):
        batch = corners[start : start + FOCUS_BATCH]
        crops = np.stack([
            cv2.warpAffine(
                frame,
                # resize's pixel-centre convention: window pixel u sees frame x0 + (u + 0.5) / scale - 0.5
                np.array([[scale, 0, scale * (0.5 - x0) - 0.5], [0, scale, scale * (0.5 - y0) - 0.5]]),
                (window, window),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            for x0, y0 in batch
        ])
        for (x0, y0), faces in zip(batch, run_batch(crops)):
            cx = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
            cy = (faces.boxes[:, 1] + faces.boxes[:, 3]) / 2
            middle = (np.abs(cx - window / 2) <= window / 4) & (np.abs(cy - window / 2) <= window / 4)
            found.append(moved(faces.take(middle), x0 * scale, y0 * scale, scale))
    return concat(found)
