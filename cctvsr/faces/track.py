"""Face tracks across frames: ByteTrack (roboflow `trackers`, Apache-2.0) behind our plain-data seam.

Facts about `trackers` 2.6.1 this module relies on (read in its source, pinned by tests):
* `ByteTrackTracker.update` returns every input detection, but REORDERED (matched high-score rows
  first, then low-score rows, then new tracks); it indexes the input `sv.Detections`, so `data`
  fields survive. We therefore send each row's index in `data` and map the ids back by it.
* Unconfirmed rows get `tracker_id == -1`. A new track is never confirmed on its first detection:
  the earliest is its second consecutive one. Only rows scoring at least `activation_threshold`
  start tracks; rows below `high_score_threshold` can only extend existing ones.
* Its ids start at 0; ours are its ids + 1, so that 0 never looks like a real track.
* `lost_track_buffer` is counted in 30-fps frames and scaled by `frame_rate`; we count it in frames
  of this video instead (see `FaceTracker.__init__`). A track missed for more than the buffer is
  dropped; a person who comes back after that gets a new id.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from cctvsr.errors import InputError
from cctvsr.faces.detections import FaceDetections

_ROW = "cctvsr_row"
# Tuned for CenterFace on real footage (benchmarks/detect_recall.py, issue 13): a 12 px face scores
# 0.3–0.75, so detections from the detector's 0.3 up extend tracks, 0.4 and up are matched first,
# and 0.55 starts one. Starting at 0.5 gave two false tracks on the one-by-one-person clip (the
# back of a head, a profile at the frame edge); 0.55 gives none there and still tracks a 12 px face.
ACTIVATION_THRESHOLD = 0.55
HIGH_SCORE_THRESHOLD = 0.4


class FaceTracker:
    """Gives each face detection a track id, frame by frame, and says when tracks end."""

    def __init__(
        self,
        frame_rate: float,
        *,
        lost_track_buffer: int | None = None,
        min_track_len: int = 1,
        activation_threshold: float = ACTIVATION_THRESHOLD,
        high_score_threshold: float = HIGH_SCORE_THRESHOLD,
        min_iou: float = 0.1,
        confirm_frames: int = 2,
    ) -> None:
        """Set up the tracker.

        Args:
            frame_rate: Frames per second of the video; sets the default lost-track buffer.
            lost_track_buffer: How many frames of THIS video a track survives unmatched (a face
                hidden for at most this many frames keeps its id). None = one second.
            min_track_len: Tracks shorter than this are not worth keeping. The tracker only
                records it: a track's length is known only once it has ended, so the pipeline
                drops short tracks with `track_lengths()` when it releases their faces.
            activation_threshold: Lowest detector score that starts a new track.
            high_score_threshold: Rows scoring below this are matched only in ByteTrack's second,
                low-score stage (they extend tracks, never start them).
            min_iou: Lowest box overlap (IoU) that links a detection to a track's predicted box.
            confirm_frames: Consecutive detections before a track gets an id (at least 2 in effect).
        """
        if not frame_rate > 0:
            raise InputError(f"the frame rate must be positive, got {frame_rate}")
        if lost_track_buffer is None:
            lost_track_buffer = max(1, round(frame_rate))
        if lost_track_buffer < 0:
            raise InputError(f"the lost-track buffer must be >= 0 frames, got {lost_track_buffer}")
        if min_track_len < 1:
            raise InputError(f"the minimum track length must be at least 1, got {min_track_len}")
        self.frame_rate = float(frame_rate)
        self.lost_track_buffer = int(lost_track_buffer)
        self.min_track_len = int(min_track_len)
        # trackers scales the buffer by frame_rate / 30; at 30 it is exactly our frame count. In
        # fixed-rate mode (no timestamps) frame_rate has no other effect.
        self._tracker = ByteTrackTracker(
            lost_track_buffer=self.lost_track_buffer,
            frame_rate=30.0,
            track_activation_threshold=activation_threshold,
            minimum_consecutive_frames=confirm_frames,
            minimum_iou_threshold=min_iou,
            high_conf_det_threshold=high_score_threshold,
        )
        self._alive: set[int] = set()
        self._ended: set[int] = set()
        self._lengths: dict[int, int] = {}

    def update(self, detections: FaceDetections) -> np.ndarray:
        """Track ids (int64) per detection row, in the input's order; -1 where no confirmed track yet.

        Call once per frame, also for frames without faces: that is how lost tracks age.
        """
        n = len(detections)
        ids = np.full(n, -1, dtype=np.int64)
        batch = sv.Detections(
            xyxy=np.asarray(detections.boxes, dtype=np.float32).reshape(n, 4),
            confidence=np.asarray(detections.scores, dtype=np.float32).reshape(n),
            data={_ROW: np.arange(n)},
        )
        result = self._tracker.update(batch)
        if len(result):
            rows = np.asarray(result.data[_ROW], dtype=np.int64)
            tracker_ids = np.asarray(result.tracker_id, dtype=np.int64)
            ids[rows] = np.where(tracker_ids >= 0, tracker_ids + 1, -1)
        for track_id in ids[ids > 0]:
            self._lengths[int(track_id)] = self._lengths.get(int(track_id), 0) + 1
        alive = {t.tracker_id + 1 for t in self._tracker.tracks if t.tracker_id >= 0}
        self._ended |= self._alive - alive
        self._alive = alive
        return ids

    def track(self, detections: FaceDetections) -> FaceDetections:
        """The same detections with `track_ids` filled in (see `update`); every other field kept."""
        return dataclasses.replace(detections, track_ids=self.update(detections))

    def ended(self) -> set[int]:
        """Track ids that ended (lost for longer than the buffer) since the last call."""
        ended, self._ended = self._ended, set()
        return ended

    def alive(self) -> set[int]:
        """Confirmed tracks still alive (seen, or lost for at most the buffer)."""
        return set(self._alive)

    def long_enough(self, track_id: int) -> bool:
        """Whether a track has at least `min_track_len` detections (ask once it has ended)."""
        return self._lengths.get(track_id, 0) >= self.min_track_len

    def track_lengths(self) -> dict[int, int]:
        """Detections assigned to each track id so far (compare with `min_track_len`)."""
        return dict(self._lengths)
