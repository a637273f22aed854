"""Gather a track's views for fusion as it goes, in bounded memory, and fuse them when it ends.

`fuse_track` wants the same region of every frame: crops of one size, each centred on that frame's
face. The size is only known when the track ends (the median face box, enlarged by the crop
margin), so each sampled frame keeps a window `SLACK` × larger around its face, and the common box
is cut from those windows at the end. Memory is bounded: a track keeps at most 2 × max_frames
windows, spread evenly over it (when the buffer fills, every second one is dropped and the sampling
stride doubles), and `fuse_track` picks the best `max_frames` of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cctvsr.fusion.fuse import MIN_SIDE, FusionResult, fuse_track

SLACK = 1.5  # a sampled window's side over the crop the face has at that frame: how far face sizes may differ


@dataclass(frozen=True)
class FusionSettings:
    """What decides a track's fusion (part of the pipeline options a resumed run must match)."""

    min_frames: int = 4
    max_frames: int = 16


@dataclass
class _View:
    frame_index: int
    window: np.ndarray  # RGB, around the face, clipped to the frame
    origin: tuple[int, int]  # the window's top-left in frame px
    centre: tuple[float, float]  # the face box's centre in frame px
    size: tuple[float, float]  # the face box's width, height
    frame_shape: tuple[int, int]


@dataclass
class _Track:
    views: list[_View] = field(default_factory=list)
    seen: int = 0
    stride: int = 1


@dataclass(frozen=True)
class TrackViews:
    """One track's views, cut around one common box: what `fuse_track` is given."""

    track_id: int
    frames: list[int]  # frame index of each crop
    crops: list[np.ndarray]  # uint8 RGB, one shape
    box_size: tuple[int, int]  # the common box's width, height (frame px)
    skipped: dict[int, str]  # sampled frames not cut, and why
    seen: int  # detections of the track (the views were sampled from these)


@dataclass
class TrackFusion:
    """A track's fusion outcome: its views and `fuse_track`'s result, by frame index."""

    views: TrackViews
    result: FusionResult | None  # None: too few views to run it (`reason` says why)
    reason: str = ""

    @property
    def track_id(self) -> int:
        return self.views.track_id

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    def frame(self, crop_index: int | None) -> int | None:
        return None if crop_index is None else self.views.frames[crop_index]

    def manifest(self) -> dict:
        """The result's record (frames used and rejected with why, residuals, parameters, the check) by frame index."""
        views = self.views
        rejected = {str(k): v for k, v in views.skipped.items()}
        record = {
            "fused": self.ok, "reason": self.reason, "reference": None, "frames_used": [], "frames_rejected": rejected,
            "residuals": {}, "params": None, "check": None, "seconds": 0.0,
        }
        if self.result is not None:
            record = self.result.manifest()
            to_frame = views.frames
            record["reference"] = self.frame(record["reference"])
            record["frames_used"] = [to_frame[i] for i in record["frames_used"]]
            rejected.update({str(to_frame[int(k)]): v for k, v in record["frames_rejected"].items()})
            record["frames_rejected"] = dict(sorted(rejected.items(), key=lambda kv: int(kv[0])))
            record["residuals"] = {str(to_frame[int(k)]): v for k, v in record["residuals"].items()}
            check = record["check"]
            if check is not None:
                check["best_index"] = to_frame[check["best_index"]]
                check["held_out"] = [to_frame[i] for i in check.get("held_out", ())]
                for key in ("fused_rms", "bicubic_rms", "frame_rms"):
                    if check.get(key) is not None:
                        check[key] = round(float(check[key]), 3)
            record["reason"] = self.reason or record["reason"]
        record["box_size"] = list(views.box_size)
        record["frames_seen"] = views.seen
        return record


class TrackGatherer:
    """Samples each track's face windows as frames arrive (at most 2 × max_frames per track)."""

    def __init__(self, settings: FusionSettings, margin: float) -> None:
        self.settings, self.margin = settings, margin
        self.capacity = 2 * settings.max_frames
        self.tracks: dict[int, _Track] = {}

    def add(self, track_id: int, frame_index: int, image: np.ndarray, box: np.ndarray) -> None:
        track = self.tracks.setdefault(track_id, _Track())
        track.seen += 1
        if (track.seen - 1) % track.stride:
            return
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            return
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w, half_h = w * (0.5 + self.margin) * SLACK, h * (0.5 + self.margin) * SLACK
        fh, fw = image.shape[:2]
        left, top = max(int(np.floor(cx - half_w)), 0), max(int(np.floor(cy - half_h)), 0)
        right, bottom = min(int(np.ceil(cx + half_w)), fw), min(int(np.ceil(cy + half_h)), fh)
        if right <= left or bottom <= top:
            return
        window = np.ascontiguousarray(image[top:bottom, left:right])
        track.views.append(_View(frame_index, window, (left, top), (cx, cy), (w, h), (fh, fw)))
        if len(track.views) > self.capacity:
            track.views = track.views[::2]
            track.stride *= 2

    def drop(self, track_id: int) -> None:
        self.tracks.pop(track_id, None)

    def finish(self, track_id: int) -> TrackViews:
        """The track's views cut around the common box (the median face box enlarged by the margin)."""
        track = self.tracks.pop(track_id, _Track())
        if not track.views:
            return TrackViews(track_id, [], [], (0, 0), {}, track.seen)
        sizes = np.array([v.size for v in track.views])
        bw = max(int(round(float(np.median(sizes[:, 0])) * (1 + 2 * self.margin))), 1)
        bh = max(int(round(float(np.median(sizes[:, 1])) * (1 + 2 * self.margin))), 1)
        frames, crops, skipped = [], [], {}
        for v in track.views:
            left, top = int(round(v.centre[0] - bw / 2)), int(round(v.centre[1] - bh / 2))
            if left < 0 or top < 0 or left + bw > v.frame_shape[1] or top + bh > v.frame_shape[0]:
                skipped[v.frame_index] = "the common box leaves the frame"
                continue
            ox, oy = left - v.origin[0], top - v.origin[1]
            if ox < 0 or oy < 0 or ox + bw > v.window.shape[1] or oy + bh > v.window.shape[0]:
                skipped[v.frame_index] = f"face size differs from the track's median by more than ×{SLACK}"
                continue
            frames.append(v.frame_index)
            crops.append(np.ascontiguousarray(v.window[oy : oy + bh, ox : ox + bw]))
        return TrackViews(track_id, frames, crops, (bw, bh), skipped, track.seen)


def fuse_views(views: TrackViews, settings: FusionSettings, best_frame: int | None = None, **footage: float | int | None) -> TrackFusion:
    """Fuse a track's views; `best_frame` is the frame shown as the track's best (the safety check's
    baseline, when among the views); `footage` passes the footage's blur_sigma / noise_sigma /
    jpeg_quality where known (otherwise fuse_track estimates the noise per track)."""
    n = len(views.crops)
    if n < settings.min_frames:
        return TrackFusion(views, None, f"{n} usable frames < {settings.min_frames} (--fuse-min)")
    if min(views.box_size) < MIN_SIDE:
        return TrackFusion(views, None, f"face box {views.box_size[0]}×{views.box_size[1]} px is under {MIN_SIDE} px")
    best = views.frames.index(best_frame) if best_frame in views.frames else None
    result = fuse_track(views.crops, max_frames=settings.max_frames, min_frames=settings.min_frames, best_index=best,
                        **footage)  # type: ignore[arg-type]
    return TrackFusion(views, result, result.reason)
