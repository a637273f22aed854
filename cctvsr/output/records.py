"""What `enhance` writes, as typed records, and where: spelled once.

An input's output folder (`<out>/<stem>-<sha8>/`) holds run.json (what must match for --resume),
manifest.jsonl (one `FaceRecord` per saved face), tracks.json (a `TracksDocument`), report.html,
finished.json, `track_NNNN/FFFFFF_{lr,bicubic,sr}.png`, and with fusion `track_NNNN/fused_{x4,sr}.png`
(a manifest line with "record": "fusion" per kept track: a `FusionRecord`; lines without "record"
are faces, as in manifests written before fusion existed). Every reader and writer of those goes
through this module: the names, the JSON shape of a manifest line, and its schema version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cctvsr.errors import InputError

SCHEMA = 1  # of manifest lines and run.json
UNVERSIONED = 1  # what a line without "schema" is read as (the format before it was added)

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.jsonl"
TRACKS_FILE = "tracks.json"
REPORT_FILE = "report.html"
FINISHED_FILE = "finished.json"  # written last: the run of this input is complete
FAILED_FILE = "failed.json"  # in --out, only when inputs of a folder run failed: which, and why
KINDS = ("lr", "bicubic", "sr")  # the three PNGs of every saved face
TRACK_PREFIX = "track_"
FUSION_KINDS = ("fused_x4", "fused_sr")  # a track's fused face (classical) and the generator's output on it
FUSION_RECORD = "fusion"  # the "record" of a fusion manifest line


def track_folder(track_id: int) -> str:
    return f"{TRACK_PREFIX}{track_id:04d}"


def face_file(track_id: int, frame_index: int, kind: str) -> str:
    """A face's PNG, relative to its input's folder."""
    return f"{track_folder(track_id)}/{frame_index:06d}_{kind}.png"


def fusion_file(track_id: int, kind: str) -> str:
    """A track's fused PNG, relative to its input's folder."""
    return f"{track_folder(track_id)}/{kind}.png"


def check_schema(found: Any, where: str) -> None:
    if found != SCHEMA:
        raise InputError(
            f"{where}: written by a different cctvsr output format (schema {found}, this version reads {SCHEMA}); "
            "use a new --out"
        )


@dataclass(frozen=True)
class Sighting:
    """A moment a track was seen: its frame, presentation time (s) and wall-clock time."""

    frame: int
    pts: float | None = None
    wall_time: str | None = None  # ISO 8601

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "pts": self.pts, "wall_time": self.wall_time}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Sighting:
        return cls(value["frame"], value.get("pts"), value.get("wall_time"))


@dataclass(frozen=True)
class Provenance:
    """What every manifest line of one input repeats: where the face came from and what made it."""

    input: dict[str, Any]  # label, sha256 (None for a stream)
    detector: str
    model: dict[str, Any]  # name, sha256, source
    backend: str
    device: str
    precision: str
    options: dict[str, Any]  # PipelineOptions.to_json()
    versions: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input, "detector": self.detector, "model": self.model, "backend": self.backend,
            "device": self.device, "precision": self.precision, "options": self.options, "versions": self.versions,
        }


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the input's folder
    sha256: str


@dataclass(frozen=True)
class FaceRecord:
    """One saved face: one manifest line."""

    provenance: Provenance
    track_id: int
    frame_index: int
    pts: float | None
    wall_time: str | None
    box: list[float]  # the detector's box, x1 y1 x2 y2
    crop_box: list[int]  # the saved LR crop in frame pixels
    crop_size: list[int]  # its width, height
    clipped: list[str]  # sides the frame edge cut
    landmarks: list[list[float]]
    det_score: float
    quality: dict[str, float]  # QualityScore's terms and "total"
    outputs: dict[str, FileRecord]  # kind (KINDS) -> file; no "sr" when not enhanced
    schema: int = SCHEMA
    not_enhanced: str | None = None  # why there is no SR image ("already 152 px": over --sr-max-face)

    @property
    def key(self) -> tuple[int, int]:
        return self.track_id, self.frame_index

    def to_json(self) -> dict[str, Any]:
        record = {
            **self.provenance.to_json(),
            "schema": self.schema,
            "frame_index": self.frame_index,
            "pts": self.pts,
            "wall_time": self.wall_time,
            "track_id": self.track_id,
            "box": self.box,
            "crop_box": self.crop_box,
            "crop_size": self.crop_size,
            "clipped": self.clipped,
            "landmarks": self.landmarks,
            "det_score": self.det_score,
            "quality": self.quality,
            "outputs": {kind: {"path": f.path, "sha256": f.sha256} for kind, f in self.outputs.items()},
        }
        if self.not_enhanced is not None:
            record["not_enhanced"] = self.not_enhanced
        return record

    @classmethod
    def from_json(cls, value: Any, where: str = "manifest line") -> FaceRecord:
        """A record from a parsed manifest line; another schema, or a line that is not a face record,
        is refused in one line naming `where`."""
        if not isinstance(value, dict):
            raise InputError(f"{where}: not a cctvsr face record")
        check_schema(value.get("schema", UNVERSIONED), where)
        try:
            provenance = Provenance(**{key: value[key] for key in Provenance.__dataclass_fields__})
            return cls(
                provenance=provenance,
                track_id=value["track_id"],
                frame_index=value["frame_index"],
                pts=value["pts"],
                wall_time=value["wall_time"],
                box=value["box"],
                crop_box=value["crop_box"],
                crop_size=value["crop_size"],
                clipped=value["clipped"],
                landmarks=value["landmarks"],
                det_score=value["det_score"],
                quality=value["quality"],
                outputs={kind: FileRecord(o["path"], o["sha256"]) for kind, o in value["outputs"].items()},
                schema=SCHEMA,
                not_enhanced=value.get("not_enhanced"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{where}: not a cctvsr face record (missing or malformed {exc})") from None


@dataclass(frozen=True)
class FusionRecord:
    """One kept track's multi-frame fusion: a manifest line with "record": "fusion". `fusion` is
    `TrackFusion.manifest()`: fused or not and why, the frames used, those rejected and why, the
    registration residuals, the method's parameters and the safety check, by frame index."""

    provenance: Provenance
    track_id: int
    fusion: dict[str, Any]
    outputs: dict[str, FileRecord]  # FUSION_KINDS -> file; empty when nothing was fused
    schema: int = SCHEMA

    @property
    def fused(self) -> bool:
        return bool(self.fusion.get("fused")) and bool(self.outputs)

    @property
    def reason(self) -> str:
        return str(self.fusion.get("reason") or "")

    @property
    def frames_used(self) -> list[int]:
        return list(self.fusion.get("frames_used") or [])

    def to_json(self) -> dict[str, Any]:
        return {
            **self.provenance.to_json(),
            "record": FUSION_RECORD,
            "schema": self.schema,
            "track_id": self.track_id,
            "fusion": self.fusion,
            "outputs": {kind: {"path": f.path, "sha256": f.sha256} for kind, f in self.outputs.items()},
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "manifest line") -> FusionRecord:
        if not isinstance(value, dict) or value.get("record") != FUSION_RECORD:
            raise InputError(f"{where}: not a cctvsr fusion record")
        check_schema(value.get("schema", UNVERSIONED), where)
        try:
            provenance = Provenance(**{key: value[key] for key in Provenance.__dataclass_fields__})
            return cls(
                provenance=provenance, track_id=value["track_id"], fusion=dict(value["fusion"]),
                outputs={kind: FileRecord(o["path"], o["sha256"]) for kind, o in value["outputs"].items()}, schema=SCHEMA,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(f"{where}: not a cctvsr fusion record (missing or malformed {exc})") from None


def read_records(path: Path) -> tuple[list[FaceRecord], list[FusionRecord]]:
    """Every complete face record and fusion record of a manifest.jsonl (none when it does not exist)."""
    from cctvsr.output.manifest import read_manifest

    faces, fusions = [], []
    for number, value in enumerate(read_manifest(path), 1):
        where = f"{path}: line {number}"
        if isinstance(value, dict) and value.get("record") == FUSION_RECORD:
            fusions.append(FusionRecord.from_json(value, where))
        else:
            faces.append(FaceRecord.from_json(value, where))
    return faces, fusions


def read_faces(path: Path) -> list[FaceRecord]:
    """Every complete face record of a manifest.jsonl (none when it does not exist)."""
    return read_records(path)[0]


def read_fusions(path: Path) -> list[FusionRecord]:
    """Every complete fusion record of a manifest.jsonl (none when it does not exist)."""
    return read_records(path)[1]


@dataclass(frozen=True)
class BestFace:
    """The face tracks.json and the report show for a track."""

    frame_index: int
    pts: float | None
    wall_time: str | None
    quality: float
    crop_size: list[int]
    lr: str
    bicubic: str
    sr: str | None  # None: not enhanced (`not_enhanced` says why)
    not_enhanced: str | None = None

    @classmethod
    def of(cls, record: FaceRecord) -> BestFace:
        outputs = record.outputs
        return cls(
            record.frame_index, record.pts, record.wall_time, record.quality["total"], record.crop_size,
            outputs["lr"].path, outputs["bicubic"].path, outputs["sr"].path if "sr" in outputs else None, record.not_enhanced,
        )

    def to_json(self) -> dict[str, Any]:
        record = {
            "frame_index": self.frame_index, "pts": self.pts, "wall_time": self.wall_time, "quality": self.quality,
            "crop_size": self.crop_size, "lr": self.lr, "bicubic": self.bicubic, "sr": self.sr,
        }
        if self.not_enhanced is not None:
            record["not_enhanced"] = self.not_enhanced
        return record

    @property
    def seen(self) -> Sighting:
        return Sighting(self.frame_index, self.pts, self.wall_time)


@dataclass(frozen=True)
class FusedFace:
    """A track's fusion as tracks.json and the report show it: the PNGs, or why there are none."""

    fused: bool
    frames: int  # frames used
    reason: str = ""
    x4: str | None = None
    sr: str | None = None  # None when fused: over --sr-max-face

    @classmethod
    def of(cls, record: FusionRecord) -> FusedFace:
        if not record.fused:
            return cls(False, 0, record.reason or "not fused")
        sr = record.outputs.get("fused_sr")
        return cls(True, len(record.frames_used), "", record.outputs["fused_x4"].path, sr.path if sr else None)

    def to_json(self) -> dict[str, Any]:
        return {"fused": self.fused, "frames": self.frames, "reason": self.reason, "x4": self.x4, "sr": self.sr}


@dataclass(frozen=True)
class TrackSummary:
    """One track with saved faces: when it was seen, how often, its best face, and its fusion (if run)."""

    track_id: int
    first: Sighting
    last: Sighting
    faces_seen: int
    faces_saved: int
    best: BestFace
    fusion: FusedFace | None = None

    def to_json(self) -> dict[str, Any]:
        record = {
            "track_id": self.track_id, "first": self.first.to_json(), "last": self.last.to_json(),
            "faces_seen": self.faces_seen, "faces_saved": self.faces_saved, "best": self.best.to_json(),
        }
        if self.fusion is not None:
            record["fusion"] = self.fusion.to_json()
        return record


@dataclass(frozen=True)
class TracksDocument:
    """tracks.json: every track of one input with saved faces (and what report.html shows)."""

    input: dict[str, Any]
    model: dict[str, Any]
    tracks: list[TrackSummary]

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "model": self.model, "tracks": [t.to_json() for t in self.tracks]}


def best_of(records: Iterable[FaceRecord]) -> FaceRecord:
    """A track's best face: the highest quality, the earliest of equals."""
    return max(records, key=lambda r: (r.quality["total"], -r.frame_index))


def face_files(folder: Path) -> dict[Path, list[dict[str, Path]]]:
    """Every face whose three PNGs are all under `folder` (an `enhance` --out or one input's folder),
    by track folder, in path order: {track folder: [{kind: PNG}]}."""
    tracks: dict[Path, list[dict[str, Path]]] = {}
    for sr in sorted(folder.rglob(f"{TRACK_PREFIX}*/*_sr.png")):
        stem = sr.name.removesuffix("_sr.png")
        paths = {kind: sr.with_name(f"{stem}_{kind}.png") for kind in KINDS}
        if all(p.is_file() for p in paths.values()):
            tracks.setdefault(sr.parent, []).append(paths)
    return tracks
