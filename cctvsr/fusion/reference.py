"""Choose the track's reference frame and rank frames by quality, robustly.

Why not Laplacian variance alone: noise and compression artefacts (block edges, ringing) are
high-frequency energy too, so the "sharpest" frame by that rule is often the worst-compressed one
(measured for issue 16). Here a frame's detail is measured after a σ = 1 LR px smoothing (which
keeps facial structure and removes most noise and 8×8 block edges) and only frames that agree with
the track's consensus (residual to the per-pixel median of all frames, coarsely aligned, no worse
than the median frame's) may become the reference: an outlier — occluded, mis-detected, a burst of
artefacts — never does.
"""

from __future__ import annotations

import cv2
import numpy as np

DETAIL_SMOOTH_LR = 1.0


def detail(grey: np.ndarray) -> float:
    """Mean squared gradient of the smoothed luma: structure, not noise or block edges."""
    smooth = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), DETAIL_SMOOTH_LR)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx[2:-2, 2:-2] ** 2 + gy[2:-2, 2:-2] ** 2))


def consensus_residuals(greys: list[np.ndarray]) -> np.ndarray:
    """Each frame's RMS distance (smoothed, grey levels) to the per-pixel median of the track after a
    translation-only alignment (phase correlation) to the middle frame."""
    anchor = greys[len(greys) // 2].astype(np.float32)
    window = cv2.createHanningWindow(anchor.shape[::-1], cv2.CV_32F)
    aligned = []
    for g in greys:
        (dx, dy), _ = cv2.phaseCorrelate(anchor, g.astype(np.float32), window)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        aligned.append(cv2.warpAffine(g.astype(np.float32), m, anchor.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT))
    stack = np.stack([cv2.GaussianBlur(a, (0, 0), DETAIL_SMOOTH_LR) for a in aligned])
    median = np.median(stack, axis=0)
    b = max(2, min(anchor.shape) // 8)
    return np.sqrt(np.mean((stack - median)[:, b:-b, b:-b] ** 2, axis=(1, 2)))


def quality_scores(greys: list[np.ndarray]) -> np.ndarray:
    """Detail, discounted by disagreement with the track: higher is better."""
    d = np.array([detail(g) for g in greys])
    r = consensus_residuals(greys)
    typical = max(float(np.median(r)), 1e-3)
    return d / (1.0 + (r / typical) ** 2)


def choose_reference(greys: list[np.ndarray]) -> int:
    """The most detailed frame among those at least as consistent with the track as the median one."""
    d = np.array([detail(g) for g in greys])
    r = consensus_residuals(greys)
    eligible = r <= np.median(r) + 1e-9
    return int(np.argmax(np.where(eligible, d, -np.inf)))


def spread_best(scores: np.ndarray, count: int) -> list[int]:
    """At most `count` frames spread over the track: the best-scoring frame of each of `count`
    equal stretches (so a long track is sampled across its length), in track order."""
    n = len(scores)
    if n <= count:
        return list(range(n))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [int(a + np.argmax(scores[a:b])) for a, b in zip(edges[:-1], edges[1:]) if b > a]
