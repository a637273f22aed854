"""`cctvsr enhance`: the job across inputs. Lists the sources, builds the detector and the
super-resolver once, then per input: its output folder (`<stem>-<sha8>/`), the --resume checks,
the pipeline with a `FaceWriter` sink, and the records a forensic analyst cites (run.json,
manifest.jsonl, tracks.json, report.html, finished.json); a folder run's failures in failed.json.

Heavy modules (numpy, cv2, torch, av) are imported inside functions: the CLI builds its flags from
`EnhanceOptions` before parsing, and an argument error must stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from cctvsr import __version__
from cctvsr.errors import CctvsrError, InputError
from cctvsr.jobs.options import REQUIRED, FaceOptions, FusionOptions, SrOptions, argument, option
from cctvsr.output.records import (
    FAILED_FILE, FINISHED_FILE, MANIFEST_FILE, REPORT_FILE, RUN_FILE, SCHEMA, TRACKS_FILE, BestFace, Provenance,
    FusedFace, Sighting, TracksDocument, TrackSummary, best_of, read_faces, read_records,
)
from cctvsr.run_folder import check_schema, read_state, verify_listed, write_state

if TYPE_CHECKING:
    from cctvsr.faces.detections import FaceDetector
    from cctvsr.pipeline import EnhanceResult, PipelineOptions, ProgressHooks
    from cctvsr.sr.engine import SuperResolver
    from cctvsr.video import SourceInfo

# --sr-max-face's default, measured by benchmarks/sr_budget.py (20 real photos, faces 10–128 px, dlib
# identity distance to the full-resolution face): the default generator brings a face closer to its
# person than bicubic at no size; up to 24 px it is not measurably farther, from 32 px on it is.
SR_MAX_FACE = 24


@dataclass(frozen=True, kw_only=True)
class EnhanceOptions:
    source: str = argument(
        "Video file (mp4, mkv, avi, ts, raw .h264/.264, gif, ...), folder of videos/images, image, or rtsp:// / "
        "http(s):// stream.",
        REQUIRED,
    )
    out: Path = option(REQUIRED, "Output folder: one sub-folder per input (<stem>-<sha8>/).", "--out", "-o")
    sr: SrOptions = SrOptions()
    faces: FaceOptions = FaceOptions()
    fusion: FusionOptions = FusionOptions()
    every: int = option(1, "Process every Nth frame.", min=1)
    fps: Optional[float] = option(None, "Process at most this many frames per second (by timestamp).", min=0.001)
    start: Optional[float] = option(None, "Start at this time, seconds.", min=0.0)
    end: Optional[float] = option(None, "Stop at this time, seconds.", min=0.0)
    motion_gate: bool = option(
        True,
        "Search for faces only where the picture moved, around the faces being tracked, and in the whole frame every "
        "--full-detect-every seconds (videos and streams; switches itself off when the whole picture moves).",
        "--motion-gate/--no-motion-gate",
    )
    full_detect_every: float = option(
        2.0, "With --motion-gate: seconds between whole-frame searches (finds people who stand still).", min=0.0
    )
    sr_max_face: int = option(
        SR_MAX_FACE,
        "Do not super-resolve faces whose box's longer side is over this many px: their crop and bicubic view are "
        "saved, marked 'not enhanced'. The default is measured (benchmarks/sr_budget.py): above it the default "
        "generator's output is measurably farther from the person than bicubic. 0: no limit.",
        min=0,
    )
    time_offset: float = option(0.0, "Seconds added to the container's creation time (to correct a DVR clock).")
    reconnect: int = option(3, "Reconnect attempts when a stream drops (exponential back-off).", min=0)
    annotate: Optional[Path] = option(
        None, "Also write the input with face boxes and track ids drawn (a single video input)."
    )
    resume: bool = option(False, "Continue an interrupted run in --out (same input, options and model).", "--resume")
    ray: Optional[str] = option(
        None,
        "Run on a Ray cluster, with the same outputs as one machine: 'local' (start Ray here), 'auto' (join the "
        "running cluster) or the head's address (ray://host:10001). Needs pip install 'cctvsr[cluster]'.",
    )
    segment_minutes: float = option(
        10.0, "With --ray: files longer than this are cut into overlapping time segments, worked on in parallel.", min=0.01
    )

    def pipeline(self) -> PipelineOptions:
        """What the pipeline needs of these options (and what run.json records of them)."""
        from cctvsr.pipeline import PipelineOptions
        from cctvsr.video import FrameSampling

        faces = self.faces
        return PipelineOptions(
            best=faces.best, all_frames=faces.all_frames, margin=faces.margin, min_track_len=faces.min_track_len,
            sampling=FrameSampling(every=self.every, fps=self.fps, start=self.start, end=self.end),
            time_offset=self.time_offset, reconnect=self.reconnect, fusion=self.fusion.settings(),
            full_detect_every=self.full_detect_every if self.motion_gate else None, sr_max_face=self.sr_max_face,
        )


@dataclass
class InputSummary:
    """One input's outcome; `result` is None when an earlier run had finished it (left as it is)."""

    label: str
    folder: Path
    result: EnhanceResult | None = None
    tracks: int = 0  # tracks kept (with saved faces)
    why_none: str | None = None  # why no track was kept, and which option to change
    annotated: Path | None = None


@dataclass
class EnhanceSummary:
    inputs: int = 0
    done: list[InputSummary] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    warnings: list[str] = field(default_factory=list)  # to show once the run ended
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # --ray: units and faces per node


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
    """What must be equal for `--resume` to continue a folder instead of starting over (run.json)."""

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
    fused: set[int] = field(default_factory=set)  # tracks whose fusion line is in the manifest
    finished: dict[str, Any] | None = None
    created: bool = False


def prepare_folder(folder: Path, identity: RunIdentity, resume: bool) -> FolderState:
    """Create an input's folder, or reopen it for --resume after checking that the run matches (and
    was written in this output format) and that every file its manifest lists is there unchanged."""
    run_file = folder / RUN_FILE
    if run_file.exists():
        if not resume:
            raise InputError(f"{folder}: holds an earlier run; use --resume or another --out")
        previous = read_state(run_file)
        check_schema(previous, SCHEMA, run_file)
        current = identity.to_json()
        for key in current:
            if previous.get(key) != current[key]:
                raise InputError(f"--resume: the {key} differ from the interrupted run in {folder}; use a new --out")
        records, fusions = read_records(folder / MANIFEST_FILE)
        verify_listed(folder, ((o.path, o.sha256) for r in [*records, *fusions] for o in r.outputs.values()))
        finished = read_state(folder / FINISHED_FILE) if (folder / FINISHED_FILE).exists() else None
        return FolderState({r.key for r in records}, {f.track_id for f in fusions}, finished)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    write_state(run_file, {**identity.to_json(), "schema": SCHEMA})
    return FolderState(set(), created=created)


def discard_failed_start(folder: Path, state: FolderState) -> None:
    """An input that failed before saving anything leaves no folder, so a plain retry is accepted."""
    if state.created and not read_faces(folder / MANIFEST_FILE):
        shutil.rmtree(folder, ignore_errors=True)


def tracks_document(source: SourceInfo, model: dict[str, Any], result: EnhanceResult, folder: Path) -> TracksDocument:
    """tracks.json: every track with saved faces, built from the manifest so it always agrees with it."""
    by_track: dict[int, list] = {}
    records, fusions = read_records(folder / MANIFEST_FILE)
    for record in records:
        by_track.setdefault(record.track_id, []).append(record)
    fused = {f.track_id: FusedFace.of(f) for f in fusions}
    tracks = []
    for track_id in sorted(by_track):
        records = by_track[track_id]
        log = result.tracks.get(track_id)
        first = log.first if log else Sighting(records[0].frame_index, records[0].pts, records[0].wall_time)
        last = log.last if log else Sighting(records[-1].frame_index, records[-1].pts, records[-1].wall_time)
        tracks.append(TrackSummary(
            track_id, first, last, log.faces_seen if log else 0, len(records), BestFace.of(best_of(records)), fused.get(track_id)
        ))
    return TracksDocument({"label": source.label, "sha256": source.sha256}, model, tracks)


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


def write_summaries(folder: Path, document: TracksDocument) -> None:
    from cctvsr.output.report import write_report

    write_state(folder / TRACKS_FILE, document.to_json())
    write_report(folder / REPORT_FILE, document)


def run_identity(source: SourceInfo, options: PipelineOptions, detector_name: str, model: dict[str, Any], execution: str) -> RunIdentity:
    return RunIdentity(
        input={"sha256": source.sha256} if source.sha256 else {"label": source.label},
        options=options.to_json(),
        detector=detector_name,
        model=model,
        execution=execution,
    )


ProgressFactory = Callable[[str], AbstractContextManager["ProgressHooks"]]


@contextlib.contextmanager
def _no_progress(label: str) -> Iterator[ProgressHooks]:
    from cctvsr.pipeline import ProgressHooks

    yield ProgressHooks()


def model_record(resolver: SuperResolver) -> dict[str, Any]:
    weights = resolver.weights
    return {"name": weights.name, "sha256": weights.sha256, "source": weights.source}


def provenance(
    source: SourceInfo, options: PipelineOptions, detector: FaceDetector, resolver: SuperResolver, versions: dict[str, str]
) -> Provenance:
    """What every manifest line of `source` records about where its face came from and what made it."""
    plan = resolver.plan
    return Provenance(
        input={"label": source.label, "sha256": source.sha256}, detector=detector.name, model=model_record(resolver),
        backend=plan.backend, device=plan.device.type, precision=plan.precision, options=options.to_json(), versions=versions,
    )


@dataclass
class _Run:
    """What every input of one `enhance` run shares: the options, the stages and the library versions."""

    options: EnhanceOptions
    pipeline: PipelineOptions
    detector: FaceDetector
    resolver: SuperResolver
    versions: dict[str, str]

    @property
    def model(self) -> dict[str, Any]:
        return model_record(self.resolver)

    @property
    def model_label(self) -> str:
        return f"{self.model['name']} (sha256 {self.model['sha256'][:12]})"

    def provenance(self, source: SourceInfo) -> Provenance:
        return provenance(source, self.pipeline, self.detector, self.resolver, self.versions)


def _enhance_input(job: _Run, item: SourceInfo, state: FolderState, folder: Path, progress: ProgressFactory) -> InputSummary:
    """One input through the pipeline into its folder, then its summaries and finished.json."""
    from cctvsr.output.annotate import AnnotatedVideo
    from cctvsr.output.manifest import ManifestWriter
    from cctvsr.output.writer import FaceWriter
    from cctvsr.pipeline import run_enhance

    annotate = job.options.annotate
    annotated = AnnotatedVideo(annotate) if annotate else None
    try:
        with progress(item.label) as hooks, ManifestWriter(folder / MANIFEST_FILE) as manifest:
            result = run_enhance(
                item, job.pipeline, job.detector, job.resolver,
                FaceWriter(folder, manifest, job.provenance(item), job.model_label, job.resolver.scale),
                done=state.done, fused_done=state.fused, hooks=hooks, on_frame=annotated.add if annotated else None,
            )
    except BaseException:
        if annotated:
            annotated.abort()
        raise
    if annotated:
        annotated.close()
    return finish_input(job, item, folder, result, annotate)


def finish_input(job: _Run, item: SourceInfo, folder: Path, result: EnhanceResult, annotate: Path | None = None) -> InputSummary:
    """An input's faces are all written: its tracks.json, report.html and finished.json, and its summary."""
    document = tracks_document(item, job.model, result, folder)
    write_summaries(folder, document)
    stats = result.decode
    write_state(folder / FINISHED_FILE, {
        "frames": result.frames, "frames_decoded": stats.frames_decoded, "faces_found": result.faces_found,
        "tracks": len(document.tracks), "faces_saved": result.faces_saved + result.faces_resumed,
        "tracks_fused": sum(1 for t in document.tracks if t.fusion is not None and t.fusion.fused),
        "faces_not_enhanced": result.faces_not_enhanced, "frames_searched": result.gate.searched,
        "pixels_searched": round(result.gate.pixel_share / max(result.frames, 1), 4), "motion_gate_off": result.gate.off,
        "damaged_skipped": stats.errors_skipped, "warnings": list(stats.warnings),
    })
    why = why_no_faces(result, len(document.tracks), job.detector.min_face, job.pipeline.min_track_len)
    return InputSummary(item.label, folder, result, len(document.tracks), why, annotate)


def input_warnings(done: InputSummary) -> list[str]:
    """What the run says about one input once it ended: why nothing was kept, damage skipped."""
    if done.result is None:
        return []
    stats, warnings = done.result.decode, []
    if done.why_none:
        warnings.append(f"{done.label}: {done.why_none}")
    if stats.errors_skipped or stats.reconnects:
        warnings.append(f"{done.label}: {stats.errors_skipped} damaged packets/frames skipped, {stats.reconnects} reconnect attempt(s)")
    return warnings + stats.warnings  # each already names its input


def run(
    options: EnhanceOptions,
    *,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
    progress: ProgressFactory = _no_progress,
    on_input: Callable[[InputSummary], None] | None = None,
) -> EnhanceSummary:
    """The `enhance` command. `note(line)` says which detector and model run; `progress(input label)`
    gives the pipeline's progress hooks for one input; `on_input(summary)` as each input ends
    (finished now, or by an earlier run). One damaged input of several never stops the others:
    it is in the summary's `failed`, and in <out>/failed.json."""
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_file, ensure_writable_folder
    from cctvsr.video import list_sources

    note = note or (lambda line: None)
    if options.ray is not None:  # Ray is imported only here, and only with --ray
        from cctvsr.cluster.driver import check_options

        check_options(options)
    out, annotate = options.out, options.annotate
    if options.end is not None and options.start is not None and options.end <= options.start:
        raise InputError("--end must be after --start")
    check_out_dir(out, options.resume)
    skipped: list[str] = []
    sources = list_sources(options.source, skipped=skipped)
    if sources[0].kind != "stream":
        keep_apart([("--out", out), ("--annotate", annotate)], [Path(options.source), *(item.path for item in sources)])
    if annotate is not None and (len(sources) != 1 or sources[0].kind == "image"):
        raise InputError("--annotate needs a single video or stream input")
    if annotate is not None:
        ensure_writable_file(annotate, "--annotate")
    ensure_writable_folder(out)
    pipeline = options.pipeline()
    detector, message = options.faces.create_detector()
    note(message)
    resolver = options.sr.resolver(warn)
    weights = resolver.weights
    note(f"model [bold]{weights.name}[/] on {resolver.plan.describe()}")
    job = _Run(options, pipeline, detector, resolver, library_versions())
    if options.ray is not None:
        from cctvsr.cluster.driver import run_cluster

        return run_cluster(job, sources, skipped, note=note, progress=progress, on_input=on_input)

    summary = EnhanceSummary(inputs=len(sources), warnings=list(skipped))
    for item in sources:
        opened = open_input(job, item, summary, on_input, single=len(sources) == 1)
        if opened is None:
            continue
        folder, state = opened
        try:
            done = _enhance_input(job, item, state, folder, progress)
        except InputError as exc:
            discard_failed_start(folder, state)
            if len(sources) == 1:
                raise
            summary.failed.append((item.label, str(exc)))  # one damaged file never stops the others
            continue
        end_input(summary, done, on_input)
    record_failures(out, summary, skipped)
    return summary


def open_input(
    job: _Run, item: SourceInfo, summary: EnhanceSummary, on_input: Callable[[InputSummary], None] | None, *, single: bool
) -> tuple[Path, FolderState] | None:
    """The input's output folder and its state, checked against --resume; None when there is no work
    to do: an earlier run finished it (it ends here), or its folder cannot be used (it is in the
    summary's `failed`; the run stops instead when it is the only input)."""
    folder = output_folder(job.options.out, item)
    identity = run_identity(item, job.pipeline, job.detector.name, job.model, job.resolver.plan.describe())
    try:
        state = prepare_folder(folder, identity, job.options.resume)
    except CctvsrError as exc:
        if single:
            raise
        summary.failed.append((item.label, str(exc)))
        return None
    if state.finished is not None:
        end_input(summary, InputSummary(item.label, folder), on_input)
        return None
    return folder, state


def end_input(summary: EnhanceSummary, done: InputSummary, on_input: Callable[[InputSummary], None] | None) -> None:
    """An input has ended (now, or in an earlier run): into the summary, with what to warn about."""
    summary.done.append(done)
    summary.warnings += input_warnings(done)
    if on_input:
        on_input(done)


def record_failures(out: Path, summary: EnhanceSummary, skipped: list[str]) -> None:
    """<out>/failed.json lists the inputs that failed and those skipped; gone when none failed."""
    if summary.failed:
        write_state(out / FAILED_FILE, {"failed": [{"input": label, "reason": reason} for label, reason in summary.failed], "skipped": skipped})
    else:
        (out / FAILED_FILE).unlink(missing_ok=True)
