"""Work units: every input file, and files longer than --segment-minutes cut into time segments.

A segment owns the frames [own_start, own_end) (frame numbers in the file, as `Frame.index`) and
decodes from `start` before them: that overlap lets every stage with a memory rebuild it before the
cut. It is the tracker's lost-track buffer (a person missing for longer gets a new track on one
machine too) plus two frames to confirm a track, plus the motion gate's warm-up: its first whole-frame
searches, the time its background needs to forget where it started (GATE_SETTLE time constants) and
its moving-camera run. The decode start is then moved back to a multiple of the gate's whole-frame
period, counted from the first frame, so that a segment searches the whole frame on the frames one
machine does (one machine's gate searches whole at frames 0, 1, 2 and every `full_every` after 2).

Files are cut only with every frame processed (no --every / --fps): sampling counts frames from where
decoding starts, so a segment could not keep the frames one machine keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cctvsr.faces.motion import WARMUP, GateSettings
from cctvsr.pipeline import PipelineOptions, processed_rate
from cctvsr.video import SourceInfo, probe_fps

GATE_SETTLE = 8.0  # background time constants a segment's gate runs before its first owned frame


@dataclass(frozen=True)
class WorkUnit:
    """One input, or one time segment of it; `segment` counts from 0 within the input."""

    input: int  # index of the input in the run's source list
    segment: int
    segments: int  # how many units the input was cut into (1: the whole file)
    own_start: int  # first frame number owned (0 for a whole file)
    own_end: int | None  # first frame number not owned (None: to the end)
    start: float | None  # decode window in seconds (FrameSampling.start/end); None: the options' own
    end: float | None

    def owns(self, frame_index: int) -> bool:
        return frame_index >= self.own_start and (self.own_end is None or frame_index < self.own_end)


def frame_times(source: SourceInfo) -> list[float] | None:
    """Each frame's time in seconds on `Frame.pts`'s clock, in frame order, from the demuxed packets
    alone (nothing is decoded); None when the file is not a video or has packets without timestamps
    (it is then one unit). Cuts are placed between two frames' times, so a segment's decode window
    holds exactly the frames it should, whatever the frame rate does."""
    import av

    if source.kind != "video" or source.path is None:
        return None
    try:
        with av.open(str(source.path)) as container:
            stream = container.streams.video[0]
            origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            times = []
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None or packet.time_base is None:
                    return None
                times.append(float(packet.pts * packet.time_base) - origin)
    except (av.FFmpegError, OSError, IndexError):
        return None
    times.sort()  # decode order → presentation order, the order frames are numbered in
    return times if times and len(set(times)) == len(times) else None


def overlap_frames(rate: float, options: PipelineOptions) -> int:
    """Frames decoded before a segment's first owned frame (see the module's docstring)."""
    buffer = max(1, round(rate))  # FaceTracker's default lost-track buffer: one second of frames
    frames = buffer + 2
    if options.full_detect_every is not None:
        gate = GateSettings.for_rate(rate, options.full_detect_every)
        frames += WARMUP + max(gate.pan_frames, math.ceil(GATE_SETTLE * gate.adapt_frames))
    return frames


def plan_input(index: int, source: SourceInfo, times: list[float] | None, options: PipelineOptions, segment_minutes: float) -> list[WorkUnit]:
    """The units of one input: the whole file, or overlapping segments of `segment_minutes`.
    `times`: `frame_times(source)`."""
    whole = [WorkUnit(index, 0, 1, 0, None, None, None)]
    sampling = options.sampling
    if not times or sampling.every != 1 or sampling.fps is not None:
        return whole
    eps = 1e-3  # the reader's tolerance on window edges (`video._Sampler.EPS`)
    first = 0 if sampling.start is None else next((i for i, t in enumerate(times) if t >= sampling.start - eps), len(times))
    last = len(times) if sampling.end is None else next((i for i, t in enumerate(times) if t > sampling.end + eps), len(times))
    fps = (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 25.0
    length = max(1, round(segment_minutes * 60.0 * fps))
    if last - first <= length:
        return whole
    rate = processed_rate(probe_fps(source) or fps, sampling)  # the rate the tracker and the gate are set up with
    overlap = overlap_frames(rate, options)
    period = 1
    if options.full_detect_every is not None:
        period = max(1, GateSettings.for_rate(rate, options.full_detect_every).full_every)

    def between(i: int) -> float:  # a time between frame i - 1 and frame i
        return (times[i - 1] + times[i]) / 2

    cuts = list(range(first, last, length))
    units = []
    for k, own_start in enumerate(cuts):
        own_end = cuts[k + 1] if k + 1 < len(cuts) else None
        start = first + max(0, (own_start - overlap - first) // period * period) if k else first
        window_start = between(start) if start > first else sampling.start
        window_end = sampling.end if own_end is None else between(own_end)
        units.append(WorkUnit(index, k, len(cuts), own_start if k else 0, own_end, window_start, window_end))
    return units
