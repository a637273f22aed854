"""Real footage without ground truth (`evaluate --no-reference DIR`, DIR an `enhance` output).

Nothing here is a quality score: sharpness, blockiness and noise σ describe images, and a GAN can
raise sharpness with texture that is not there. Identity consistency asks whether a track's SR
faces still look like one person as much as its bicubic faces do: the mean pairwise dlib
descriptor distance within each track, for SR and for bicubic, with each face's landmarks found
once (on its bicubic image) and used for both.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cctvsr import metrics
from cctvsr.errors import InputError
from cctvsr.images import read_image
from cctvsr.output.records import KINDS, face_files
STATISTICS = {"sharpness (Laplacian variance)": metrics.laplacian_variance, "blockiness (8-px grid)": metrics.blockiness, "noise σ (estimate_sigma)": metrics.noise_sigma}


@dataclass
class TrackFaces:
    track: str  # "<input folder>/track_0001"
    faces: list[dict[str, Path]] = field(default_factory=list)  # kind -> PNG


def find_tracks(folder: Path) -> list[TrackFaces]:
    """Every face `enhance` wrote under `folder` (the layout `cctvsr.output.records` spells)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: --no-reference is not a folder")
    tracks = [TrackFaces(str(track.relative_to(folder)), faces) for track, faces in face_files(folder).items()]
    if not tracks:
        raise InputError(f"{folder}: no enhance output (track_*/NNNNNN_sr.png with _lr and _bicubic beside it)")
    return tracks


def image_statistics(tracks: list[TrackFaces]) -> dict[str, dict[str, float]]:
    """Mean of each statistic per image kind (LR, bicubic, SR), over every face."""
    values: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in KINDS} for name in STATISTICS}
    for track in tracks:
        for face in track.faces:
            images = {kind: read_image(face[kind]).rgb for kind in KINDS}
            for name, fn in STATISTICS.items():
                for kind, image in images.items():
                    try:
                        values[name][kind].append(fn(image))
                    except InputError:  # a crop too small for the statistic
                        continue
    return {name: {kind: float(np.mean(v)) for kind, v in by_kind.items() if v} for name, by_kind in values.items()}


def identity_consistency(tracks: list[TrackFaces]) -> list[dict[str, float | int | str]]:
    """Per track with ≥ 2 faces: mean pairwise descriptor distance among SR faces and among bicubic faces."""
    from cctvsr.evaluate.identity import face_identity

    model = face_identity()
    rows = []
    for track in tracks:
        if len(track.faces) < 2:
            continue
        descriptors: dict[str, list[np.ndarray]] = {"sr": [], "bicubic": []}
        for face in track.faces:
            bicubic, sr = read_image(face["bicubic"]).rgb, read_image(face["sr"]).rgb
            reference = model.reference(bicubic)
            assert reference is not None  # a face crop always yields landmarks
            descriptors["bicubic"].append(reference.descriptor)
            descriptors["sr"].append(model.descriptor(sr, reference.shape))
        spread = {
            kind: float(np.mean([np.linalg.norm(a - b) for a, b in itertools.combinations(d, 2)])) for kind, d in descriptors.items()
        }
        rows.append({"track": track.track, "faces": len(track.faces), "sr": spread["sr"], "bicubic": spread["bicubic"]})
    return rows


@dataclass
class NoReference:
    """What `evaluate --no-reference` found: descriptions of the images, not quality scores."""

    faces: int
    tracks: int
    statistics: dict[str, dict[str, float]]  # statistic -> kind (lr, bicubic, sr) -> mean
    identity_consistency: list[dict[str, float | int | str]]  # per track; empty without identity

    def to_json(self) -> dict:
        return {"faces": self.faces, "tracks": self.tracks, "statistics": self.statistics, "identity_consistency": self.identity_consistency}


def measure(tracks: list[TrackFaces], identity: bool, step: Callable[[], None] = lambda: None) -> NoReference:
    """Image statistics of every face, then (with `identity`) consistency within each track; `step()` after each part."""
    stats = image_statistics(tracks)
    step()
    consistency: list[dict[str, float | int | str]] = []
    if identity:
        consistency = identity_consistency(tracks)
        step()
    return NoReference(sum(len(t.faces) for t in tracks), len(tracks), stats, consistency)
