"""A file's segments joined back into the tracks one machine makes, in the order it saves them.

Consecutive segments both track the frames of their overlap. A track of the later segment is the
continuation of the earlier segment's track whose box overlaps its own most (IoU ≥ JOIN_IOU) on the
latest overlap frame where both have one; each earlier track continues at most once. Joined tracks are
numbered as ByteTrack numbers them on one machine, in the order they were first confirmed (frame, then
the segment's own order), so the ids equal one machine's. A joined track keeps the best
`--best` views of all its parts (the same order as `BestFaces`: quality, then the earlier frame),
is dropped when its sightings number fewer than --min-track-len, and is released, as on one
machine, at the frame where it ended (ties by id), or at the end of the input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cctvsr.cluster.segment import TrackPart, UnitResult
from cctvsr.faces.motion import camera_moved_note
from cctvsr.pipeline import EnhanceResult, FaceCandidate, PipelineOptions, TrackLog
from cctvsr.video import DecodeStats

JOIN_IOU = 0.5


@dataclass
class JoinedInput:
    """One input as one machine would have produced it: its face units in release order and its result."""

    units: list[list[FaceCandidate]]  # each one SR call on one machine: a track's kept faces, best first
    result: EnhanceResult


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = float(w * h)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def _links(earlier: UnitResult, later: UnitResult) -> dict[int, int]:
    """later's local track id -> earlier's, for tracks seen in later's overlap frames."""
    taken: set[int] = set()
    links: dict[int, int] = {}
    for part in later.parts:
        overlap = sorted((f for f in part.boxes if f < later.unit.own_start), reverse=True)
        for frame in overlap:
            scored = [
                (_iou(other.boxes[frame], part.boxes[frame]), other.local_id)
                for other in earlier.parts if frame in other.boxes and other.local_id not in taken
            ]
            best = max(scored, default=(0.0, 0))
            if best[0] >= JOIN_IOU:
                links[part.local_id] = best[1]
                taken.add(best[1])
                break
    return links


def _merge_logs(logs: list[TrackLog], track_id: int) -> TrackLog:
    first = min(logs, key=lambda log: log.first.frame).first
    last = max(logs, key=lambda log: log.last.frame).last
    return TrackLog(track_id, first, last, sum(log.faces_seen for log in logs))


def join_input(results: list[UnitResult], options: PipelineOptions) -> JoinedInput:
    """Join one input's unit results (any order) into its tracks, face units and counts."""
    results = sorted(results, key=lambda r: r.unit.segment)
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def root(key: tuple[int, int]) -> tuple[int, int]:
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    for k in range(1, len(results)):
        for later, earlier in _links(results[k - 1], results[k]).items():
            parent[(k, later)] = root((k - 1, earlier))
    groups: dict[tuple[int, int], list[tuple[int, TrackPart]]] = {}
    for k, r in enumerate(results):
        for part in r.parts:
            groups.setdefault(root((k, part.local_id)), []).append((k, part))

    def first_seen(members: list[tuple[int, TrackPart]]) -> tuple[int, int, int]:
        k, part = min(((k, p) for k, p in members if p.log is not None), key=lambda m: (m[1].log.first.frame, m[0]))
        return part.log.first.frame, k, part.local_id

    seen = [members for members in groups.values() if any(p.log is not None for _, p in members)]
    seen.sort(key=first_seen)
    result = EnhanceResult()
    released: list[tuple[float, int, list[FaceCandidate]]] = []
    for track_id, members in enumerate(seen, 1):
        logs = [p.log for _, p in members if p.log is not None]
        log = result.tracks[track_id] = _merge_logs(logs, track_id)
        if log.faces_seen < options.min_track_len:
            continue
        faces = [dataclasses.replace(face, track_id=track_id) for _, p in members for face in p.faces]
        faces.sort(key=lambda f: (-f.quality.total, f.frame_index))
        if not options.all_frames:
            faces = faces[: options.best]
        ends = [p.ended_at for _, p in members if p.ended_at is not None]
        if faces:
            released.append((max(ends) if ends else float("inf"), track_id, faces))
    released.sort(key=lambda item: item[:2])
    moved = 0
    for r in results:
        result.frames += r.frames
        result.faces_found += r.faces_found
        result.faces_too_small += r.faces_too_small
        for name in ("frames", "searched", "whole", "pixel_share"):
            setattr(result.gate, name, getattr(result.gate, name) + getattr(r.gate, name))
        moved += r.camera_moved
        for name in ("decode", "detect", "track", "select"):
            setattr(result.times, name, getattr(result.times, name) + getattr(r.times, name))
    result.gate.off = camera_moved_note(moved, result.gate.frames) if options.full_detect_every is not None else None
    result.decode = _merge_decode([r.decode for r in results])
    return JoinedInput([faces for _, _, faces in released], result)


def _merge_decode(stats: list[DecodeStats]) -> DecodeStats:
    merged = DecodeStats(fps=stats[0].fps if stats else None)
    for s in stats:
        merged.frames_decoded += s.frames_decoded
        merged.frames_yielded += s.frames_yielded
        merged.errors_skipped += s.errors_skipped
        merged.warnings += [w for w in s.warnings if w not in merged.warnings]  # a segment repeats its file's warnings
    return merged
