"""Run a face detector on the parts of a frame a `SearchPlan` names, with the answers in frame coordinates."""

from __future__ import annotations

import dataclasses

import numpy as np

from cctvsr.faces.detections import FaceDetections, FaceDetector
from cctvsr.faces.motion import SearchPlan

_EDGE_PX = 1.0  # a box this close to a region's side was cut by it


def detect_planned(detector: FaceDetector, frame: np.ndarray, plan: SearchPlan) -> FaceDetections:
    """The faces `detector` finds where `plan` says to look (nothing where it says nowhere)."""
    if plan.whole:
        return detector.detect(frame)
    h, w = frame.shape[:2]
    parts: list[FaceDetections] = []
    too_small = 0
    for x1, y1, x2, y2 in plan.regions:
        found = detector.detect(np.ascontiguousarray(frame[y1:y2, x1:x2]))
        too_small += found.too_small
        boxes = found.boxes
        # A face cut by a side of the region that is not the frame's edge is not kept: the region's
        # margin makes a face near moving pixels whole inside it, and its box here would be a part.
        cut = (
            ((x1 > 0) & (boxes[:, 0] <= _EDGE_PX)) | ((y1 > 0) & (boxes[:, 1] <= _EDGE_PX))
            | ((x2 < w) & (boxes[:, 2] >= x2 - x1 - _EDGE_PX)) | ((y2 < h) & (boxes[:, 3] >= y2 - y1 - _EDGE_PX))
        )
        kept = found.take(~cut)
        shift = np.array([x1, y1], np.float32)
        parts.append(FaceDetections(kept.boxes + np.tile(shift, 2), kept.scores, kept.landmarks + shift, kept.inside))
    if not parts:
        return dataclasses.replace(FaceDetections.empty(), too_small=too_small)
    boxes = np.concatenate([p.boxes for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    order = np.argsort(-scores, kind="stable")  # as every detector returns them: best first
    return FaceDetections(
        boxes[order], scores[order], np.concatenate([p.landmarks for p in parts])[order],
        np.concatenate([p.inside for p in parts])[order], too_small,
    )

