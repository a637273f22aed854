"""Motion gating: where in a frame anything moved, so that faces are searched only there.

A fixed camera sees an empty scene most of the time, and the detector is the costliest stage per
frame. The gate compares each frame, grey and shrunk (area-averaged, which also averages sensor
noise away: σ 4 becomes about 1 grey level at 1/4 size), with a background that follows the scene
with a time constant of a second (a person who stops fades into it over a few seconds). Two things move every pixel alike and are not motion: a compressor's or an
auto-exposure's flicker, so the frame's median difference is taken off before thresholding; and
noise, so the threshold is a multiple of the difference's robust spread. Blobs under a minimum area
are dropped; the rest, grown by a margin, are the regions the detector looks at, together with the
neighbourhood of every face being tracked (so a person who stands still keeps their track).

OpenCV's MOG2 was the library alternative; it has no notion of a global brightness step, so a single
exposure change marks the whole frame as foreground for many frames. The primitives used here are
OpenCV's (area resize, morphology, connected components, running average).

The noise level is the difference's lower quartile scaled to a standard deviation (a crowd moves
many pixels, and a median would call that noise), capped at what a real sensor gives after the
shrinking (a moving camera misaligns every pixel with the background: that is motion, not noise).

The whole frame is searched at the first frames (the background is being learnt), every
`full_every` frames (a person who walked in unseen and stood still is found), and when more than
half of it moved (a scene cut: the background is then reset to the new frame). A frame whose
picture shifted as a whole since the last one (phase correlation of the shrunk frames finds a
clear peak off zero) or where most of it moved, on `pan_frames` frames in a row, means the camera
itself moves (panning, handheld): the gate stands aside until the picture has been still for as
long again (a PTZ camera at rest), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ANALYSIS_FACTOR = 4  # frames are shrunk by up to this much for the motion mask
MIN_ANALYSIS_WIDTH = 160  # ... but not below this width (small frames are shrunk less)
NOISE_MULTIPLE = 5.0  # a pixel moved when it differs from the background by this many noise spreads...
MIN_LEVEL = 6.0  # ... and by at least this many grey levels (compression pumping on a clean scene)
MAX_NOISE = 3.0  # grey levels of the shrunk frame: σ 12 at full size; a larger spread is motion (a moving camera)
MIN_AREA = 4  # analysis pixels: smaller blobs are noise (a 10-px face's body is ~20× this at ×4)
MARGIN = 32  # frame pixels added around a moving blob: a face at the blob's edge is whole inside
MARGIN_SHARE = 0.15  # ... plus this share of the blob's longer side
TRACK_REACH = 1.0  # a tracked face's region: its box grown by this many box sizes on every side
MIN_REGION = 64  # frame pixels: the smallest region side the detector is given
WHOLE_SHARE = 0.5  # regions covering more of the frame than this: search the whole frame instead
CUT_SHARE = 0.5  # more of the frame moved than this: a scene cut, or a moving camera
SHIFT_PX = 0.5  # analysis pixels: a whole-picture shift this large between frames is the camera moving...
SHIFT_RESPONSE = 0.2  # ... when phase correlation's peak is at least this clear (a walking person's is not)
WARMUP = 3  # frames searched whole at the start, while the background settles


@dataclass(frozen=True)
class GateSettings:
    """How often the gate looks at everything, in processed frames (see `pipeline.processed_rate`)."""

    full_every: int  # frames between whole-frame searches (0: only at the start and at cuts)
    adapt_frames: float  # the background's time constant: a still object fades into it over this many frames
    pan_frames: int  # frames in a row with most of the picture moving: the camera moves, gating off

    @classmethod
    def for_rate(cls, frame_rate: float, full_every_s: float, adapt_s: float = 1.0, pan_s: float = 1.0) -> GateSettings:
        return cls(
            full_every=max(0, round(full_every_s * frame_rate)),
            adapt_frames=max(1.0, adapt_s * frame_rate),
            pan_frames=max(3, round(pan_s * frame_rate)),
        )


Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels, end exclusive


@dataclass(frozen=True)
class SearchPlan:
    """Where the detector looks in one frame: the whole frame, some regions, or nowhere."""

    whole: bool
    regions: tuple[Region, ...] = ()
    share: float = 0.0  # of the frame's pixels searched

    @property
    def searched(self) -> bool:
        return self.whole or bool(self.regions)


WHOLE = SearchPlan(True, share=1.0)


@dataclass
class GateStats:
    """What the summary says about the gate: frames and pixels searched, and whether it switched off."""

    frames: int = 0
    searched: int = 0  # frames the detector ran on (whole or in regions)
    whole: int = 0  # of those, whole-frame searches
    pixel_share: float = 0.0  # sum over frames of the share of the frame searched
    off: str | None = None  # why the gate switched itself off, when it did

    def count(self, plan: SearchPlan) -> None:
        self.frames += 1
        self.searched += plan.searched
        self.whole += plan.whole
        self.pixel_share += plan.share

    def describe(self) -> str:
        if self.frames == 0:
            return "no frames"
        pixels = self.pixel_share / self.frames
        return (
            f"faces searched in {self.searched} of {self.frames} frames ({self.searched / self.frames:.0%}; "
            f"{self.whole} whole), {pixels:.1%} of the pixels"
        )


def camera_moved_note(moved: int, frames: int) -> str | None:
    """The summary's sentence for a gate that stood aside in `moved` of `frames` frames (None: in none)."""
    if not moved:
        return None
    return (
        f"the whole picture moved in {moved} of {frames} frames (a panning or handheld camera): "
        "motion gating stood aside there and searched those frames whole"
    )


class MotionGate:
    """Plans, frame by frame, where the detector looks. One gate per input."""

    def __init__(self, settings: GateSettings) -> None:
        self.settings = settings
        self.camera_moved = 0  # frames searched whole because the camera itself moved
        self._still_run = 0  # frames in a row where most of the picture did not move
        self._camera_moving = False
        self._frames = 0
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None  # the last shrunk frame: the camera's own motion is measured on it
        self._noise = 0.0
        self._since_whole = 0
        self._moving_run = 0  # frames in a row where most of the picture moved
        self._factor = 1

    @property
    def off(self) -> str | None:
        """What the summary says when the gate stood aside for a moving camera (None: it never did)."""
        return camera_moved_note(self.camera_moved, self._frames)

    def plan(self, frame: np.ndarray, tracked: np.ndarray) -> SearchPlan:
        """Where to search `frame` (H, W, 3 uint8) for faces; `tracked` (K, 4) are the last boxes of
        the faces being tracked, each searched again around where it was."""
        plan = self._plan(frame, tracked)
        self._since_whole = 0 if plan.whole else self._since_whole + 1
        self._frames += 1
        return plan

    def _plan(self, frame: np.ndarray, tracked: np.ndarray) -> SearchPlan:
        h, w = frame.shape[:2]
        small = self._shrink(frame)
        previous, self._previous = self._previous, small
        if self._background is None or self._background.shape != small.shape:
            self._background = small
            return WHOLE
        mask, moving = self._moving(small)
        shifted = _shifted(previous, small)
        pan = self.settings.pan_frames
        if moving > CUT_SHARE or shifted:
            self._moving_run, self._still_run = self._moving_run + 1, 0
        elif shifted is False:  # None: no clear answer (a frame phase correlation cannot read) changes nothing
            self._moving_run, self._still_run = 0, self._still_run + 1
        if self._moving_run >= pan:
            self._camera_moving = True
        elif self._still_run >= pan:
            self._camera_moving = False
        self.camera_moved += self._camera_moving
        if self._camera_moving or moving > CUT_SHARE:
            self._background = small  # a cut, or a moving camera: the picture as it is now is the background
            return WHOLE
        cv2.accumulateWeighted(small, self._background, 1.0 / self.settings.adapt_frames)
        full_every = self.settings.full_every
        if self._frames < WARMUP or (full_every and self._since_whole + 1 >= full_every):
            return WHOLE
        regions = merge_regions([*self._blobs(mask), *_around(tracked)], w, h)
        share = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in regions) / float(w * h)
        if share > WHOLE_SHARE:
            return WHOLE
        return SearchPlan(False, tuple(regions), share)

    def _shrink(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        self._factor = max(1, min(ANALYSIS_FACTOR, w // MIN_ANALYSIS_WIDTH))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        size = (max(1, w // self._factor), max(1, h // self._factor))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return cv2.GaussianBlur(small, (3, 3), 0)

    def _moving(self, small: np.ndarray) -> tuple[np.ndarray, float]:
        """The mask of moved analysis pixels (uint8) and the share of the picture that moved."""
        diff = small - self._background
        diff -= float(np.median(diff))  # flicker: the whole picture brighter or darker alike
        spread = np.abs(diff)
        noise = min(MAX_NOISE, float(np.percentile(spread, 25)) / 0.3186)  # |x| of a normal: lower quartile 0.3186 σ
        self._noise = noise if self._noise == 0.0 else 0.9 * self._noise + 0.1 * noise
        mask = (spread > max(MIN_LEVEL, NOISE_MULTIPLE * self._noise)).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        return mask, float(np.count_nonzero(mask)) / mask.size

    def _blobs(self, mask: np.ndarray) -> list[Region]:
        """Frame-pixel boxes of the moving blobs of at least MIN_AREA, grown by the margin."""
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        f = self._factor
        blobs = []
        for x, y, bw, bh, area in stats[1:count]:
            if area < MIN_AREA:
                continue
            grow = MARGIN + MARGIN_SHARE * f * max(bw, bh)
            blobs.append((int(x * f - grow), int(y * f - grow), int((x + bw) * f + grow), int((y + bh) * f + grow)))
        return blobs


def _shifted(previous: np.ndarray, current: np.ndarray) -> bool | None:
    """Whether the picture as a whole moved between two shrunk frames (the camera, not something in
    view); None when phase correlation finds no clear peak."""
    (dx, dy), response = cv2.phaseCorrelate(previous, current)
    if response < SHIFT_RESPONSE:
        return None
    return bool(np.hypot(dx, dy) >= SHIFT_PX)


def _around(boxes: np.ndarray) -> list[Region]:
    """A region around each tracked face box: where it can be in the next frame."""
    regions = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        reach = TRACK_REACH * max(x2 - x1, y2 - y1, 1.0)
        regions.append((int(x1 - reach), int(y1 - reach), int(np.ceil(x2 + reach)), int(np.ceil(y2 + reach))))
    return regions


def merge_regions(regions: list[Region], width: int, height: int) -> list[Region]:
    """The regions clipped to the frame, at least MIN_REGION on a side, with any that overlap or
    touch joined into their bounding box (so no pixel is searched twice and no face is cut between
    two neighbours), sorted."""
    boxes = [_clip(_at_least(r, MIN_REGION), width, height) for r in regions]
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    merged = True
    while merged:
        merged = False
        out: list[Region] = []
        for box in boxes:
            for i, other in enumerate(out):
                if box[0] <= other[2] and other[0] <= box[2] and box[1] <= other[3] and other[1] <= box[3]:
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]), max(box[3], other[3]))
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return sorted(boxes)


def _at_least(region: Region, side: int) -> Region:
    x1, y1, x2, y2 = region
    grow_x, grow_y = max(0, side - (x2 - x1)), max(0, side - (y2 - y1))
    return x1 - grow_x // 2, y1 - grow_y // 2, x2 + grow_x - grow_x // 2, y2 + grow_y - grow_y // 2


def _clip(region: Region, width: int, height: int) -> Region:
    x1, y1, x2, y2 = region
    return max(0, x1), max(0, y1), min(width, x2), min(height, y2)
