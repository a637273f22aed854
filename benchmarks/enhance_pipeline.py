"""Enhance pipeline: decode+detect+track speed, SR worker busy share, and memory against clip length.

Why this script exists: issue 3 claims three things about `cctvsr enhance` that no unit test can
show, because they are properties of a whole run on a real machine:

1. how many frames per second decode + detection (CenterFace ×1,2, the offline default) + tracking sustain
   on the demo clip, with no super-resolution in the way;
2. that with `--all-frames` the SR worker is busy ≥ 90 % of the wall time between its first and
   last crop, i.e. decoding and detection hide behind the generator instead of starving it;
3. that peak memory is flat in the length of the input: a 10× longer clip needs ≤ 1.2× the
   peak resident memory.

All three are measured in one run, on clips made afresh from `samples/make_demo_clip.py`.
(1) and (2) run in this process, through the same objects the CLI wires up; (3) runs the real
CLI (`python -m cctvsr enhance`) in a fresh child process per clip and reads each child's RSS
high-water mark (VmHWM, which the child writes at exit), so nothing this process loaded counts.

Run:  .venv/bin/python benchmarks/enhance_pipeline.py                 (≈ 5–6 min expected on an idle
                                                                       2-core CPU; 15 min measured while
                                                                       others loaded it)
      .venv/bin/python benchmarks/enhance_pipeline.py --sr-model tiny  (part 2 with a tiny RRDB)
      .venv/bin/python benchmarks/enhance_pipeline.py --long-factor 3  (shorter memory check)
      .venv/bin/python benchmarks/enhance_pipeline.py --memory-all-frames  (part 3 also with --all-frames,
                                                                       where memory per saved face shows)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `samples` is a folder of the repository, not of the installed package
    sys.path.insert(0, str(REPO))

from cctvsr.faces.detect import create_detector  # noqa: E402
from cctvsr.faces.track import FaceTracker  # noqa: E402
from cctvsr.jobs.enhance import library_versions, provenance  # noqa: E402
from cctvsr.jobs.options import FaceOptions  # noqa: E402
from cctvsr.output.manifest import ManifestWriter  # noqa: E402
from cctvsr.output.records import MANIFEST_FILE, FaceRecord  # noqa: E402
from cctvsr.output.writer import FaceWriter  # noqa: E402
from cctvsr.pipeline import QUEUE_UNITS, EnhanceResult, PipelineOptions, processed_rate, run_enhance  # noqa: E402
from cctvsr.sr.engine import SuperResolver  # noqa: E402
from cctvsr.sr.rrdb import RRDBConfig, RRDBNet  # noqa: E402
from cctvsr.sr.weights import DEFAULT_MODEL, GeneratorWeights, load_generator_weights, save_model_dir  # noqa: E402
from cctvsr.video import DecodeStats, FrameSampling, SourceInfo, list_sources, read_frames  # noqa: E402
from samples.make_demo_clip import make_demo_clip  # noqa: E402

DETECTOR = "centerface"  # the offline default; named explicitly so `auto` cannot pick SCRFD on some machines
TINY = RRDBConfig(num_block=1, num_feat=8, num_grow_ch=4)
TINY_SEED = 0
DEMO_SECONDS = 4.0  # the demo clip's default length (samples/make_demo_clip.py)
BUSY_TARGET = 0.90
MEMORY_TARGET = 1.2
SAMPLE_PERIOD_S = 0.2  # how often per-thread CPU times are read during part 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress goes to stderr: a full run takes minutes, and stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (first column left, the rest right): readable in any log."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


# ---------------------------------------------------------------------------------------------
# Inputs


def write_tiny_model(folder: Path) -> Path:
    """A seeded 1-block, 8-feature RRDBNet as a model directory: the CLI's real loading path, at
    a negligible generator cost (what part 3 measures is the pipeline's memory, not the network's)."""
    torch.manual_seed(TINY_SEED)
    return save_model_dir(folder, TINY, RRDBNet(TINY).state_dict(), metadata={"note": "seeded random tiny RRDB (benchmark)"})


def single_source(clip: Path) -> SourceInfo:
    (source,) = list_sources(str(clip))
    return source


# ---------------------------------------------------------------------------------------------
# Threads: which ones exist, and how much CPU each group used


def task_ids() -> set[int]:
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def thread_cpu_s(tid: int) -> float | None:
    """User + system CPU seconds of one thread of this process (None once it has exited)."""
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


class ThreadCpuSampler:
    """Reads every thread's CPU time a few times a second, so that threads that end during the
    run (the producer, the decoder and FFmpeg's threads) are still accounted for; Python threads
    are named from `threading.enumerate()` while they live."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.start_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def _read(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names.setdefault(thread.native_id, thread.name)
        for tid in task_ids():
            value = thread_cpu_s(tid)
            if value is not None:
                self.cpu[tid] = value

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self._read()

    def __enter__(self) -> ThreadCpuSampler:
        self._read()
        self.start_cpu = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def used(self, tid: int) -> float:
        return self.cpu.get(tid, 0.0) - self.start_cpu.get(tid, 0.0)


# ---------------------------------------------------------------------------------------------
# Part 1: decode + detect + track, no super-resolution


@dataclass
class DetectTrackFigures:
    frames: int
    faces: int
    wall: float
    decode_wait: float  # time spent waiting for the decode thread's next frame
    detect: float
    track: float
    decode_only_fps: float
    detector_message: str
    ort_threads_created: int
    ort_intra_op_setting: str

    @property
    def fps(self) -> float:
        return self.frames / self.wall


def ort_intra_op_setting(detector: object) -> str:
    """The detector sessions' configured intra-op threads, where the backend exposes its sessions."""
    values = []
    for attr in ("_pnet", "_rnet", "_onet", "_session"):
        session = getattr(detector, attr, None)
        if session is not None and hasattr(session, "get_session_options"):
            values.append(session.get_session_options().intra_op_num_threads)
    if not values:
        return "not accessible"
    shown = ",".join(str(v) for v in values)
    return f"{shown} ({len(values)} sessions; 0 = onnxruntime's default, one per physical core)"


def decode_only_fps(source: SourceInfo) -> float:
    """Frames/s of the decode thread alone: how much of part 1's rate the decoder could cost."""
    start = time.perf_counter()
    count = sum(1 for _ in read_frames(source, stats=DecodeStats()))
    return count / (time.perf_counter() - start)


def measure_detect_track(clip: Path, repeats: int) -> DetectTrackFigures:
    """The producer's own loop (read_frames → detect → FaceTracker.update), timed without SR.

    The detector's first run (onnxruntime allocation and planning) happens on a warm-up frame
    before timing: it is a one-off, not part of the sustained rate. Each pass uses a new tracker;
    the fastest pass is reported (on a shared machine, noise only ever adds time).
    """
    source = single_source(clip)
    before = task_ids()
    detector, message = create_detector(DETECTOR)
    ort_created = len(task_ids() - before)
    setting = ort_intra_op_setting(detector)
    with closing(read_frames(source, stats=DecodeStats())) as frames:
        detector.detect(next(frames).image)  # warm-up
    best: DetectTrackFigures | None = None
    for index in range(repeats):
        tracker: FaceTracker | None = None
        n_frames = n_faces = 0
        decode_wait = detect = track = 0.0
        stats = DecodeStats()
        start = time.perf_counter()
        with closing(read_frames(source, stats=stats)) as frames:
            while True:
                t0 = time.perf_counter()
                frame = next(frames, None)
                t1 = time.perf_counter()
                decode_wait += t1 - t0
                if frame is None:
                    break
                if tracker is None:  # as the pipeline does: at the first frame, at the rate the reader found
                    tracker = FaceTracker(processed_rate(stats.fps, FrameSampling()), min_track_len=FaceOptions().min_track_len)
                detections = detector.detect(frame.image)
                t2 = time.perf_counter()
                tracker.update(detections)
                t3 = time.perf_counter()
                detect += t2 - t1
                track += t3 - t2
                n_frames += 1
                n_faces += len(detections)
        wall = time.perf_counter() - start
        log(f"  pass {index + 1}/{repeats}: {n_frames} frames in {wall:.1f} s ({n_frames / wall:.2f} frames/s)")
        figures = DetectTrackFigures(n_frames, n_faces, wall, decode_wait, detect, track, 0.0, message, ort_created, setting)
        if best is None or figures.wall < best.wall:
            best = figures
    assert best is not None
    best.decode_only_fps = decode_only_fps(source)
    del detector
    gc.collect()  # the sessions' thread pools go with them, before part 2 builds its own
    return best


# ---------------------------------------------------------------------------------------------
# Part 2: SR worker busy share with --all-frames


@dataclass
class ThreadGroup:
    name: str
    threads: int
    cpu: float


@dataclass
class SrFigures:
    model: str
    plan: str
    end: float
    wall: float
    result: EnhanceResult
    sr_span: float  # first crop handed to the generator → last face written
    records: list[FaceRecord]
    torch_threads: int
    torch_interop_threads: int
    ort_threads: int
    groups: list[ThreadGroup] = field(default_factory=list)

    @property
    def sr_busy(self) -> float:
        """The SR worker's time upscaling and writing."""
        return self.result.times.sr + self.result.times.write

    @property
    def busy_share(self) -> float:
        return self.sr_busy / self.sr_span if self.sr_span else float("nan")


class _SpanClock:
    """Wraps the resolver and the sink to time the SR worker's span: first upscale → last write."""

    def __init__(self, resolver: SuperResolver, sink: FaceWriter) -> None:
        self.resolver, self.sink = resolver, sink
        self.first: float | None = None
        self.last: float | None = None
        self.records: list[FaceRecord] = []

    def upscale(self, crops):  # the resolver's, timed
        self.first = self.first or time.perf_counter()
        return self.resolver.upscale(crops)

    def write(self, face, sr):  # the sink's, timed
        record = self.sink.write(face, sr)
        self.last = time.perf_counter()
        self.records.append(record)
        return record

    @property
    def span(self) -> float:
        return self.last - self.first if self.first is not None and self.last is not None else 0.0


def group_threads(
    sampler: ThreadCpuSampler, main_tid: int, ort: set[int], torch_pool: set[int], existing: set[int]
) -> list[ThreadGroup]:
    """CPU used during the run, per kind of thread. Native threads are told apart by when they
    appeared: onnxruntime's pools when the detector was built, torch's OpenMP pool at its first
    parallel op, and FFmpeg's decoder threads (thread_type AUTO) once decoding started."""
    groups: dict[str, list[int]] = {}
    for tid in sampler.cpu:
        name = sampler.names.get(tid, "")
        if tid == main_tid:
            kind = "SR worker (main thread: upscale + PNG/manifest write)"
        elif name == "bench-sampler":
            kind = "benchmark sampler"
        elif name.startswith("cctvsr-producer"):
            kind = "producer thread (detect + track + select + crop)"
        elif name.startswith("cctvsr-decode"):
            kind = "decode thread (PyAV demux + RGB conversion)"
        elif tid in ort:
            kind = "onnxruntime intra-op pools (detector sessions)"
        elif tid in torch_pool:
            kind = "torch intra-op pool (OpenMP workers)"
        elif tid not in existing:
            kind = "native threads started during the run (FFmpeg decode, swscale per frame)"
        else:
            kind = "other threads of this process"
        groups.setdefault(kind, []).append(tid)
    rows = [ThreadGroup(kind, len(tids), sum(sampler.used(t) for t in tids)) for kind, tids in groups.items()]
    return sorted(rows, key=lambda g: -g.cpu)


def measure_sr_busy(clip: Path, weights: GeneratorWeights, end: float | None, folder: Path) -> SrFigures:
    """run_enhance with --all-frames, the given generator and SuperResolver's defaults, wired as
    the job wires it (the detector, the default tracker, FaceWriter + ManifestWriter)."""
    source = single_source(clip)
    options = PipelineOptions(all_frames=True, min_track_len=FaceOptions().min_track_len, sampling=FrameSampling(end=end))
    base = task_ids()
    detector, _ = create_detector(DETECTOR)
    ort = task_ids() - base
    resolver = SuperResolver(weights)
    torch.ones(1 << 21).sum()  # starts torch's OpenMP pool now, so its threads can be told apart
    torch_pool = task_ids() - base - ort
    existing = task_ids()
    folder.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(folder / MANIFEST_FILE) as manifest, ThreadCpuSampler() as sampler:
        writer = FaceWriter(
            folder, manifest, provenance(source, options, detector, resolver, library_versions()),
            f"{weights.name} (sha256 {weights.sha256[:12]})",
        )
        clock = _SpanClock(resolver, writer)
        start = time.perf_counter()
        result = run_enhance(source, options, detector, clock, clock)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
    groups = group_threads(sampler, threading.main_thread().native_id or -1, ort, torch_pool, existing)
    return SrFigures(
        weights.name, resolver.plan.describe(), DEMO_SECONDS if end is None else end, wall, result, clock.span, clock.records,
        torch.get_num_threads(), torch.get_num_interop_threads(), len(ort), groups,
    )


# ---------------------------------------------------------------------------------------------
# Part 3: peak memory of the CLI, 1× against N× the clip length


@dataclass(frozen=True)
class MemoryCase:
    """One CLI run of part 3: which clip, with which extra options."""

    label: str
    tag: str  # ASCII, for file names
    clip: Path
    frames: int
    options: tuple[str, ...] = ()


@dataclass
class MemoryRun:
    case: MemoryCase
    peak_mib: float
    wall: float
    saved: int


# Runs the real entry point (cctvsr/__main__.py) and, at exit, writes this process's own RSS
# high-water mark. Why not wait4's ru_maxrss: Linux carries the PARENT's peak into a child across
# fork/vfork + exec, so every child would report at least this benchmark's own peak (≈ 1.2 GB with
# the x4plus model loaded), and both clips would measure the same number.
CHILD_CODE = """
import atexit, runpy, sys
report = sys.argv.pop(1)

def write_hwm():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(kib)

atexit.register(write_hwm)
sys.argv[0] = "cctvsr"
runpy.run_module("cctvsr", run_name="__main__", alter_sys=True)
"""


def run_cli_child(case: MemoryCase, out: Path, model_dir: Path, work: Path) -> tuple[float, float]:
    """`python -m cctvsr enhance` in a fresh process: (its peak RSS in MiB from VmHWM, wall s)."""
    hwm_file, log_path = work / f"hwm-{case.tag}.txt", work / f"cli-{case.tag}.log"
    arguments = ["enhance", str(case.clip), "--out", str(out), "--model", str(model_dir), "--detector", DETECTOR, *case.options]
    start = time.perf_counter()
    with open(log_path, "wb") as output:
        code = subprocess.call([sys.executable, "-c", CHILD_CODE, str(hwm_file), *arguments], stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - start
    if code != 0 or not hwm_file.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"cctvsr {' '.join(arguments)} exited {code}:\n{tail}")
    return int(hwm_file.read_text()) / 1024.0, wall


def saved_faces(out: Path) -> int:
    return sum(len(path.read_text(encoding="utf-8").splitlines()) for path in out.glob("*/manifest.jsonl"))


def measure_memory(cases: Sequence[MemoryCase], model_dir: Path, work: Path) -> list[MemoryRun]:
    runs = []
    for case in cases:
        out = work / f"out-{case.tag}"
        log(f"  {case.label}: cctvsr enhance on {case.frames} frames …")
        peak, wall = run_cli_child(case, out, model_dir, work)
        runs.append(MemoryRun(case, peak, wall, saved_faces(out)))
        log(f"  {case.label}: peak RSS {peak:.0f} MiB, {wall:.1f} s")
    return runs


# ---------------------------------------------------------------------------------------------
# Report


def clip_frames(clip: Path) -> int:
    return int(json.loads(clip.with_suffix(".gt.json").read_text(encoding="utf-8"))["frames"])


def print_part1(p1: DetectTrackFigures) -> None:
    print("\n== 1. decode + detect + track (no super-resolution) ==")
    print(f"{p1.detector_message}; detector session intra-op threads: {p1.ort_intra_op_setting};"
          f" native threads started by building it: {p1.ort_threads_created}")
    rows = [
        ["decode + detect + track", f"{p1.frames}", f"{p1.wall:.2f}", f"{p1.fps:.2f}", f"{p1.faces / p1.frames:.1f} faces/frame"],
        ["  of which detect", "", f"{p1.detect:.2f}", f"{p1.frames / p1.detect:.2f}", f"{1000 * p1.detect / p1.frames:.0f} ms/frame"],
        ["  of which track (ByteTrack)", "", f"{p1.track:.2f}", f"{p1.frames / p1.track:.0f}", f"{1000 * p1.track / p1.frames:.1f} ms/frame"],
        ["  of which waiting for decode", "", f"{p1.decode_wait:.2f}", "", "decoder runs ahead in its own thread"],
        ["decode alone (read_frames)", "", "", f"{p1.decode_only_fps:.0f}", "same clip, no detection"],
    ]
    print(table(["measured", "frames", "seconds", "frames/s", "note"], rows))


def print_part2(p2: SrFigures) -> None:
    r, t = p2.result, p2.result.times
    print("\n== 2. SR worker busy share, --all-frames ==")
    print(f"model {p2.model} on {p2.plan} (SuperResolver defaults); clip window 0–{p2.end:g} s (FrameSampling(end=…))")
    print(f"threads: torch intra-op {p2.torch_threads}, inter-op {p2.torch_interop_threads}; onnxruntime pool threads"
          f" {p2.ort_threads} (plus each session's calling thread); 1 producer thread; 1 decode thread + FFmpeg's"
          f" (thread_type AUTO); cores usable"
          f" {len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})")
    sizes = [tuple(record.crop_size) for record in p2.records]
    side = sorted(max(size) for size in sizes)
    print(f"{r.frames} frames, {r.faces_found} faces found, {r.faces_saved} saved, wall {p2.wall:.1f} s; crops"
          f" {side[0] if side else 0}–{side[-1] if side else 0} px, {len(set(sizes))} distinct sizes"
          f" (on CPU only identical sizes share a batch); upscale {t.sr / max(1, r.faces_saved):.2f} s per crop")
    idle = p2.sr_span - p2.sr_busy
    rows = [
        ["SR span (first crop → last crop)", f"{p2.sr_span:.2f}", "100.0"],
        ["SR worker busy (upscale + write)", f"{p2.sr_busy:.2f}", f"{100 * p2.busy_share:.1f}"],
        ["  upscale", f"{t.sr:.2f}", f"{100 * t.sr / p2.sr_span:.1f}" if p2.sr_span else "-"],
        ["  write PNGs + manifest", f"{t.write:.2f}", f"{100 * t.write / p2.sr_span:.1f}" if p2.sr_span else "-"],
        ["SR worker waiting on an empty queue", f"{idle:.2f}", f"{100 * idle / p2.sr_span:.1f}" if p2.sr_span else "-"],
        ["producer: decode wait / detect / track", f"{t.decode:.1f} / {t.detect:.1f} / {t.track:.1f}", ""],
        ["producer: select + crop + queue put (blocks while full)", f"{t.select:.1f}", ""],
    ]
    print(table(["", "seconds", "% of span"], rows))
    if r.frames and r.faces_saved:
        detect_per_frame = t.detect / r.frames
        sr_per_frame = p2.sr_busy / r.frames
        ratio = sr_per_frame / max(detect_per_frame, 1e-9)
        consequence = (
            f"the worker is the slower stage by {ratio:.1f}×: the queue ({QUEUE_UNITS} units) stays full and the producer waits on it"
            if ratio >= 1 else f"detection is the slower stage by {1 / ratio:.1f}×: the worker waits for work whatever the queue depth"
        )
        print(f"per frame: producer detect {detect_per_frame:.2f} s, SR worker {sr_per_frame:.2f} s"
              f" ({r.faces_saved / r.frames:.1f} faces saved per frame) — {consequence}")
    used = sum(g.cpu for g in p2.groups)
    print(f"CPU used during the run, by thread group (cores' worth = CPU s / wall s; this process got {used / p2.wall:.2f}"
          f" of {len(os.sched_getaffinity(0))} cores, the rest went to other processes):")
    print(table(
        ["thread group", "threads", "CPU s", "cores' worth"],
        [[g.name, str(g.threads), f"{g.cpu:.1f}", f"{g.cpu / p2.wall:.2f}"] for g in p2.groups],
    ))
    if len(os.sched_getaffinity(0)) <= 2:
        print("note: on this 2-core CPU the producer (decode + detection, onnxruntime pools) and the SR worker (torch's"
              " OpenMP pool) compete for the same cores, as do other processes: every time per crop above is longer"
              " than on an idle machine, and the busy share only says which stage waits for which.")


def print_part3(runs: Sequence[MemoryRun], model_note: str) -> None:
    print("\n== 3. peak memory of `python -m cctvsr enhance` (fresh process per clip, its VmHWM at exit) ==")
    print(f"model: {model_note}; detector {DETECTOR}")
    rows = [
        [r.case.label, " ".join(r.case.options) or "defaults (best 3)", str(r.case.frames), str(r.saved), f"{r.wall:.1f}", f"{r.peak_mib:.0f}"]
        for r in runs
    ]
    print(table(["clip", "options", "frames", "faces saved", "wall s", "peak RSS MiB"], rows))
    for base, long in zip(runs[::2], runs[1::2]):
        growth = long.peak_mib - base.peak_mib
        extra = long.saved - base.saved
        # Per saved face only where many more faces were saved: a few MiB of noise over 3 faces means nothing.
        per_face = f", {1024 * growth / extra:+.0f} KiB per extra saved face" if extra >= 100 else ""
        print(f"{' '.join(base.case.options) or 'defaults'}: growth {growth:+.0f} MiB over {long.case.frames - base.case.frames}"
              f" extra frames{per_face} (a few MiB either way is allocator and thread-timing noise)")


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "MISSES target"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Progress goes to stderr, the report to stdout.")
    parser.add_argument("--sr-model", choices=("real", "tiny"), default="real",
                        help=f"part 2's generator: real = {DEFAULT_MODEL} (default), tiny = a seeded 1-block 8-feature RRDB")
    parser.add_argument("--sr-seconds", type=float, default=1.0,
                        help="part 2 processes the first this many seconds of the demo clip (default 1, i.e. 13 frames,"
                        " to bound the real model's time; 0 = all 4 s)")
    parser.add_argument("--long-factor", type=int, default=10, help="part 3's long clip is this many times the demo clip (default 10)")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes of part 1; the fastest is reported (default 1)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads before part 2 (default 0 = leave torch's default)")
    parser.add_argument("--memory-all-frames", action="store_true",
                        help="part 3 also runs both clips with --all-frames (every face saved: memory that grows per saved face shows)")
    parser.add_argument("--skip", choices=("1", "2", "3"), action="append", default=[], help="skip a part (repeatable)")
    parser.add_argument("--workdir", type=Path, help="keep clips and outputs here (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    if args.sr_seconds < 0 or args.long_factor < 2 or args.repeats < 1 or args.torch_threads < 0:
        parser.error("--sr-seconds ≥ 0, --long-factor ≥ 2, --repeats ≥ 1, --torch-threads ≥ 0")
    return args


def run(args: argparse.Namespace, work: Path) -> None:
    started = time.perf_counter()
    load_before = os.getloadavg()
    log("making the demo clip …")
    demo = make_demo_clip(work / "demo.mp4", seconds=DEMO_SECONDS)
    tiny_dir = write_tiny_model(work / "tiny-rrdb")
    print(f"enhance pipeline benchmark — torch {torch.__version__}, {len(os.sched_getaffinity(0))} usable cores,"
          f" load average before {load_before[0]:.2f} (others' work on a shared machine slows every figure)")
    print(f"demo clip: {demo.name}, {clip_frames(demo)} frames 480×270 at 12 fps, 6 faces 33–41 px (samples/make_demo_clip.py)")
    finals: list[str] = []

    if "1" not in args.skip:
        log("part 1: decode + detect + track …")
        p1 = measure_detect_track(demo, args.repeats)
        print_part1(p1)
        finals.append(f"decode+detect+track: {p1.fps:.2f} frames/s")

    if "2" not in args.skip:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        weights = load_generator_weights(DEFAULT_MODEL if args.sr_model == "real" else str(tiny_dir))
        end = args.sr_seconds or None
        log(f"part 2: enhance --all-frames with {weights.name} on 0–{args.sr_seconds or DEMO_SECONDS:g} s …")
        p2 = measure_sr_busy(demo, weights, end, work / "out-busy")
        print_part2(p2)
        finals.append(f"SR busy share (--all-frames): {100 * p2.busy_share:.1f} % "
                      f"({verdict(p2.busy_share, BUSY_TARGET, True)} ≥ {100 * BUSY_TARGET:.0f} %; model {p2.model}, {p2.plan})")

    if "3" not in args.skip:
        log(f"part 3: making the {args.long_factor}× clip and running the CLI twice …")
        long_clip = make_demo_clip(work / f"demo-x{args.long_factor}.mp4", seconds=DEMO_SECONDS * args.long_factor)
        factor = args.long_factor
        cases = [MemoryCase("1× (demo)", "x1", demo, clip_frames(demo)), MemoryCase(f"{factor}×", f"x{factor}", long_clip, clip_frames(long_clip))]
        if args.memory_all_frames:
            cases += [MemoryCase(c.label, f"{c.tag}-all", c.clip, c.frames, ("--all-frames",)) for c in cases]
        runs = measure_memory(cases, tiny_dir, work)
        note = (f"tiny RRDB {TINY.num_block} block / {TINY.num_feat} features / growth {TINY.num_grow_ch} "
                "(seeded, --model <dir>): the generator's size is not what is measured")
        print_part3(runs, note)
        ratio = runs[1].peak_mib / runs[0].peak_mib
        finals.append(f"peak memory {factor}x/1x: {ratio:.2f}× ({verdict(ratio, MEMORY_TARGET, False)} ≤ {MEMORY_TARGET}×; default options)")
        if args.memory_all_frames:
            ratio = runs[3].peak_mib / runs[2].peak_mib
            finals.append(f"peak memory {factor}x/1x with --all-frames: {ratio:.2f}×")

    print(f"\nload average after {os.getloadavg()[0]:.2f}; benchmark wall time {time.perf_counter() - started:.0f} s")
    for line in finals:
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if any(args.workdir.iterdir()):
            print(f"error: {args.workdir}: not empty (the CLI refuses a non-empty --out)", file=sys.stderr)
            return 2
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="cctvsr-bench-") as tmp:
            run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
