"""The enhance job across inputs: one output folder per input, resume checks, and the per-input
records a forensic analyst cites (run.json, manifest.jsonl, tracks.json, report.html)."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cctvsr import __version__
from cctvsr.errors import InputError
from cctvsr.manifest import read_manifest
from cctvsr.pipeline import EnhanceOptions, EnhanceResult, TrackLog
from cctvsr.report import write_report
from cctvsr.run_folder import read_state, verify_listed, write_state
from cctvsr.video import SourceInfo

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.jsonl"
TRACKS_FILE = "tracks.json"
REPORT_FILE = "report.html"
FINISHED_FILE = "finished.json"  # written last: the run of this input is complete
FAILED_FILE = "failed.json"  # in --out, only when inputs of a folder run failed: which, and why


def library_versions() -> dict[str, str]:
    import av
    import cv2
    import numpy
    import onnxruntime
    import torch

    return {
        "cctvsr": __version__,
        "torch": torch.__version__,
        "av": av.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }


def output_folder(out: Path, source: SourceInfo) -> Path:
    """`<out>/<input-stem>-<sha8>`: stable for the same input, distinct for different ones."""
    if source.sha256:
        stem, digest = Path(source.label).stem, source.sha256
    else:  # a stream: name it after its redacted address
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.label.split("://", 1)[-1]).strip("_")[:60] or "stream"
        digest = hashlib.sha256(source.label.encode()).hexdigest()
    return out / f"{stem}-{digest[:8]}"


@dataclass(frozen=True)
class RunIdentity:
    """What must be equal for `--resume` to continue a folder instead of starting over."""

    input: dict[str, Any]
    options: dict[str, Any]
    detector: str
    model: dict[str, Any]
    execution: str

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "options": self.options, "detector": self.detector, "model": self.model, "execution": self.execution}


def check_out_dir(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not resume and out.is_dir() and any(p.name != FAILED_FILE for p in out.iterdir()):
        raise InputError(f"{out}: folder is not empty; use --resume to continue a run there, or choose another --out")


@dataclass
class FolderState:
    """An input's output folder as reopened: the faces already saved, and whether the run finished."""

    done: set[tuple[int, int]]
    finished: dict[str, Any] | None = None
    created: bool = False


def prepare_folder(folder: Path, identity: RunIdentity, resume: bool) -> FolderState:
    """Create an input's folder, or reopen it for --resume after checking that the run matches and
    that every file its manifest lists is there unchanged."""
    run_file = folder / RUN_FILE
    if run_file.exists():
        if not resume:
            raise InputError(f"{folder}: holds an earlier run; use --resume or another --out")
        previous = read_state(run_file)
        current = identity.to_json()
        for key in current:
            if previous.get(key) != current[key]:
                raise InputError(f"--resume: the {key} differ from the interrupted run in {folder}; use a new --out")
        records = read_manifest(folder / MANIFEST_FILE)
        verify_listed(folder, ((o["path"], o["sha256"]) for r in records for o in r["outputs"].values()))
        finished = read_state(folder / FINISHED_FILE) if (folder / FINISHED_FILE).exists() else None
        return FolderState({(r["track_id"], r["frame_index"]) for r in records}, finished)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    write_state(run_file, identity.to_json())
    return FolderState(set(), None, created)


def discard_failed_start(folder: Path, state: FolderState) -> None:
    """An input that failed before saving anything leaves no folder, so a plain retry is accepted."""
    if state.created and not read_manifest(folder / MANIFEST_FILE):
        shutil.rmtree(folder, ignore_errors=True)


def _best_entry(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "frame_index": record["frame_index"],
        "pts": record["pts"],
        "wall_time": record["wall_time"],
        "quality": record["quality"]["total"],
        "crop_size": record["crop_size"],
        **{kind: record["outputs"][kind]["path"] for kind in ("lr", "bicubic", "sr")},
    }


def tracks_document(source: SourceInfo, model: dict[str, Any], result: EnhanceResult, folder: Path) -> dict[str, Any]:
    """tracks.json: every track with saved faces, built from the manifest so it always agrees with it."""
    by_track: dict[int, list[dict[str, Any]]] = {}
    for record in read_manifest(folder / MANIFEST_FILE):
        by_track.setdefault(record["track_id"], []).append(record)
    tracks = []
    for track_id in sorted(by_track):
        records = by_track[track_id]
        log = result.tracks.get(track_id) or TrackLog(track_id, {"frame": records[0]["frame_index"]}, {"frame": records[-1]["frame_index"]})
        best = max(records, key=lambda r: (r["quality"]["total"], -r["frame_index"]))
        tracks.append(
            {
                "track_id": track_id,
                "first": log.first,
                "last": log.last,
                "faces_seen": log.faces_seen,
                "faces_saved": len(records),
                "best": _best_entry(best),
            }
        )
    return {"input": {"label": source.label, "sha256": source.sha256}, "model": model, "tracks": tracks}


def why_no_faces(result: EnhanceResult, tracks_kept: int, min_face: int, min_track_len: int) -> str | None:
    """Why a run that read frames kept no track, and which option to change; None when it kept one."""
    if tracks_kept or result.frames == 0 or result.faces_resumed:
        return None
    if result.faces_found == 0 and result.faces_too_small:
        return (
            f"no face of at least {min_face} px in {result.frames} frames; {result.faces_too_small} smaller ones were "
            "seen: lower --min-face"
        )
    if result.faces_found == 0:
        return (
            f"no face found in {result.frames} frames: faces under about 12 px, turned away or in the dark are not "
            "found; try --det-scales 1,2,3 (also looks closer at ×3, about 1.5× slower) or a lower --det-threshold"
        )
    longest = max((log.faces_seen for log in result.tracks.values()), default=0)
    if longest == 0:
        return (
            f"{result.faces_found} faces detected but never in consecutive processed frames, so no track formed: "
            "process more frames (--every 1, no --fps)"
        )
    return (
        f"{result.faces_found} faces detected but no track lasted {min_track_len} frames (the longest: {longest}): "
        "lower --min-track-len"
    )


def write_summaries(folder: Path, document: dict[str, Any]) -> None:
    write_state(folder / TRACKS_FILE, document)
    write_report(folder / REPORT_FILE, document)


def run_identity(source: SourceInfo, options: EnhanceOptions, detector_name: str, model: dict[str, Any], execution: str) -> RunIdentity:
    return RunIdentity(
        input={"sha256": source.sha256} if source.sha256 else {"label": source.label},
        options=options.to_json(),
        detector=detector_name,
        model=model,
        execution=execution,
    )
