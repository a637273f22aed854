"""`--annotate out.mp4`: the input with face boxes and track ids drawn, encoded with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from cctvsr.faces.detections import FaceDetections
from cctvsr.fsutil import fsync_dir
from cctvsr.video import Frame

TRACKED = (40, 220, 40)
UNTRACKED = (160, 160, 160)


def draw_faces(image: np.ndarray, detections: FaceDetections) -> np.ndarray:
    """A copy of the RGB frame with each face's box, and its track id where it has one."""
    canvas = image.copy()
    track_ids = detections.track_ids if detections.track_ids is not None else np.full(len(detections), -1)
    for box, track_id in zip(detections.boxes, track_ids):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = TRACKED if track_id >= 0 else UNTRACKED
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 1 if min(canvas.shape[:2]) < 600 else 2)
        if track_id >= 0:
            cv2.putText(canvas, f"#{track_id}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return canvas


class AnnotatedVideo:
    """H.264 written to a temporary file and renamed on close, so a killed run leaves no torn video.
    Frames keep their source timestamps (variable frame rate stays correct)."""

    TIME_BASE = Fraction(1, 1000)

    NOMINAL_FPS = 25.0  # the stream's declared rate; frame timestamps come from the source

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.annotate.tmp")
        self.container: av.container.OutputContainer | None = None
        self.stream = None
        self.last_pts = -1

    def add(self, frame: Frame, detections: FaceDetections) -> None:
        image = draw_faces(frame.image, detections)
        h, w = image.shape[:2]
        if self.container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.tmp), mode="w", format="mp4")
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.NOMINAL_FPS).limit_denominator(1001))
            self.stream.width, self.stream.height = w - w % 2, h - h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = self.TIME_BASE
        image = image[: self.stream.height, : self.stream.width]
        if image.shape[:2] != (self.stream.height, self.stream.width):
            return  # a frame of another size (folder inputs): not part of this video
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = round(frame.pts * 1000) if frame.pts is not None else self.last_pts + round(1000 / self.NOMINAL_FPS)
        video_frame.pts = max(pts, self.last_pts + 1)
        video_frame.time_base = self.TIME_BASE
        self.last_pts = video_frame.pts
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        self.container = None

    def abort(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        self.tmp.unlink(missing_ok=True)
