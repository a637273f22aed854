"""Hours of footage: what motion gating and the SR budget save in `enhance`, on real footage (issue 17).

Why this script exists: a fixed camera sees an empty scene most of the time, and a face that is
already large gains nothing real from a ×4 GAN. Both savings must not lose a face, so every figure
below comes with the check that nothing was lost.

Part 1 — motion gating on a long clip. The clip is made from the real 1080p street clip
(`facenet-pytorch__video.mp4`, a handheld camera in a London arcade): its per-pixel median (the
people-free scene) with fresh sensor noise σ 2–4 in every frame, and the clip itself (played at
the long clip's rate, forwards then backwards) in stretches covering ~20 % of the time; 768×432,
10 fps, libx264 CRF 23. `enhance` runs on it with and without `--motion-gate` (everything else
default but `--no-fuse`, as in parts 0 and 2, and the tiny test generator, because SR and fusion
are the same work in both runs and would only dilute the ratio — SR's own saving is part 2's). Printed: per-stage time, × real time, tracks, and
whether every ungated track has a gated one sharing ≥ 50 % of its frames at IoU ≥ 0.5.
Bar: gated ≥ 3× faster overall, every ungated track matched.

Part 2 — the SR budget on the 1080p street clip as it is, with the default generator: `enhance`
with `--sr-max-face 0` (no limit) and with the default, same everything else. Printed: SR time of
each and their ratio, and whether every face under the limit got the same SR PNG bytes in both.
Bar: SR time cut ≥ 4×, every face under the limit enhanced as before.

Part 0 — recall with the gate on: the demo clip (made as `samples/make_demo_clip.py` makes it)
and every real clip in `../shared/data/video`, each through `enhance` with and without the gate
(tiny generator); printed per clip: tracks kept by each, the ungated tracks with no gated match and
the gated ones with no ungated match (same matching as part 1), and what the gate searched.
Bar: every ungated track matched on every clip.

Part 3 — × real time of the defaults (gate on, default generator and budget) on one minute of the
long clip made at 1080p and at 854×480, and on the 768×432 clip with --fps 5.

Run:  .venv/bin/python benchmarks/throughput.py            (≈ 30 min on a 2-core CPU)
      .venv/bin/python benchmarks/throughput.py --device cuda --parts 1,3   (benchmarks/gpu.sh: on the GPU)
      .venv/bin/python benchmarks/throughput.py --quick    (2-minute clip, part 3 on 30 s: ≈ 12 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cctvsr.device import describe_cpu  # noqa: E402
from cctvsr.faces.detections import FaceDetections  # noqa: E402
from cctvsr.jobs.enhance import EnhanceOptions, _Run, library_versions, output_folder, prepare_folder, run_identity  # noqa: E402
from cctvsr.jobs.options import FusionOptions, SrOptions  # noqa: E402
from cctvsr.output.manifest import ManifestWriter  # noqa: E402
from cctvsr.output.records import MANIFEST_FILE, read_faces  # noqa: E402
from cctvsr.output.writer import FaceWriter  # noqa: E402
from cctvsr.pipeline import EnhanceResult, face_size, run_enhance  # noqa: E402
from cctvsr.video import Frame, list_sources  # noqa: E402

VIDEO = REPO.parent / "shared" / "data" / "video"
# Parts 0–2 measure the gate and the SR budget alone: fusion is the same per-track work with and
# without either (it would only dilute the ratios) and has its own benchmarks (fusion*.py). Part 3
# runs the true defaults, fusion included.
NO_FUSION = FusionOptions(fuse=False)
STREET = VIDEO / "facenet-pytorch__video.mp4"
GATE_BAR, SR_BAR = 3.0, 4.0
MATCH_IOU, MATCH_SHARE = 0.5, 0.5


@dataclass
class LongClip:
    path: Path
    seconds: float
    people: list[tuple[int, int]]  # frame ranges [start, end) of the people stretches


def make_long_clip(path: Path, size: tuple[int, int], seconds: float, fps: int = 10, people_share: float = 0.2,
                   crf: int = 23, seed: int = 0) -> LongClip:
    """The street clip's empty scene with fresh noise, and the clip itself in stretches (see the docstring)."""
    import av
    import cv2

    from cctvsr.video import DecodeStats, FrameSampling, read_frames

    source = list_sources(str(STREET))[0]
    frames = [cv2.resize(f.image, size, interpolation=cv2.INTER_AREA) for f in read_frames(source, FrameSampling(), stats=DecodeStats())]
    background = np.median(np.stack(frames), axis=0).astype(np.float32)
    played = [frames[i] for i in np.arange(0, len(frames), 25 / fps).astype(int)]  # the clip is 25 fps
    stretch = played + played[::-1]
    total = int(round(seconds * fps))
    count = max(1, int(round(total * people_share / len(stretch))))
    gap = (total - count * len(stretch)) / count
    starts = [int(round(gap / 2 + k * (gap + len(stretch)))) for k in range(count)]
    people = [(s, s + len(stretch)) for s in starts]
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for index in range(total):
            inside = next((index - s for s, e in people if s <= index < e), None)
            base = background if inside is None else stretch[inside].astype(np.float32)
            noisy = base + rng.normal(0.0, rng.uniform(2.0, 4.0), base.shape)
            image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return LongClip(path, total / fps, people)


@dataclass
class RunFigures:
    label: str
    wall: float
    result: EnhanceResult
    boxes: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # track -> frame -> box
    folder: Path | None = None

    def kept_tracks(self, min_len: int) -> dict[int, dict[int, np.ndarray]]:
        return {t: b for t, b in self.boxes.items() if len(b) >= min_len}


@dataclass
class Placement:
    """Where detection and SR run: the CPU, or (--device cuda, benchmarks/gpu.sh) the GPU with decoding on the CPU."""

    device: str = "cpu"
    detect_providers: list[str] | None = None  # ONNX Runtime providers of the detector (None: the CPU)


PLACEMENT = Placement()


def use_gpu() -> str:
    """Detection on ONNX Runtime's CUDA provider and SR on torch CUDA; a line saying so (exits when either is missing)."""
    import torch

    from cctvsr.sr.onnx_runtime import usable_providers

    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in usable_providers():
        raise SystemExit("--device cuda needs torch with CUDA and onnxruntime-gpu (see the README's GPU install)")
    PLACEMENT.device = "cuda"
    PLACEMENT.detect_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return f"GPU: {torch.cuda.get_device_name(0)} (detection on ONNX Runtime CUDA, SR on torch CUDA, decoding on the CPU)"


def run_job(label: str, options: EnhanceOptions) -> RunFigures:
    """One input through `enhance`'s pipeline wired as the job wires it, recording every track's boxes."""
    source = list_sources(options.source)[0]
    if PLACEMENT.device != "cpu":
        options = replace(options, sr=replace(options.sr, device=PLACEMENT.device))
    pipeline = options.pipeline()
    detector, _ = options.faces.create_detector(providers=PLACEMENT.detect_providers)
    resolver = options.sr.resolver(None)
    job = _Run(options, pipeline, detector, resolver, library_versions())
    folder = output_folder(options.out, source)
    prepare_folder(folder, run_identity(source, pipeline, detector.name, job.model, resolver.plan.describe()), False)
    figures = RunFigures(label, 0.0, EnhanceResult(), folder=folder)

    def on_frame(frame: Frame, found: FaceDetections) -> None:
        for row in np.flatnonzero(found.track_ids > 0):
            figures.boxes.setdefault(int(found.track_ids[row]), {})[frame.index] = found.boxes[row].copy()

    with ManifestWriter(folder / MANIFEST_FILE) as manifest:
        writer = FaceWriter(folder, manifest, job.provenance(source), job.model_label, resolver.scale)
        start = time.perf_counter()
        figures.result = run_enhance(source, pipeline, detector, resolver, writer, on_frame=on_frame)
        figures.wall = time.perf_counter() - start
    return figures


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def unmatched(reference: dict[int, dict[int, np.ndarray]], other: dict[int, dict[int, np.ndarray]]) -> list[int]:
    """Tracks of `reference` no track of `other` shares ≥ MATCH_SHARE of the frames with (IoU ≥ MATCH_IOU)."""
    missing = []
    for track, boxes in reference.items():
        best = max(
            (sum(1 for f, box in boxes.items() if f in theirs and iou(box, theirs[f]) >= MATCH_IOU) for theirs in other.values()),
            default=0,
        )
        if best < MATCH_SHARE * len(boxes):
            missing.append(track)
    return missing


def stage_line(figures: RunFigures, seconds: float) -> str:
    t, gate = figures.result.times, figures.result.gate
    return (
        f"{figures.label:<14} wall {figures.wall:7.1f} s  ×{seconds / figures.wall:5.2f} real time | decode {t.decode:6.1f} "
        f"detect {t.detect:6.1f} track+select {t.track + t.select:5.1f} SR {t.sr:6.1f} write {t.write:5.1f} fuse {t.fuse:5.1f} | "
        f"{gate.describe()}"
    )


def compare_tracks(label: str, source: Path, root: Path, tiny: str, **options: object) -> bool:
    """One clip through `enhance` without and with the gate: does every ungated track have a gated match?"""
    runs = {}
    for name, gate in (("ungated", False), ("gated", True)):
        job = EnhanceOptions(source=str(source), out=root / f"{label}-{name}", sr=SrOptions(model=tiny), motion_gate=gate,
                             fusion=NO_FUSION, **options)
        runs[name] = run_job(name, job)
    min_len = EnhanceOptions(source="", out=Path()).faces.min_track_len
    ungated, gated = runs["ungated"].kept_tracks(min_len), runs["gated"].kept_tracks(min_len)
    lost, new = unmatched(ungated, gated), unmatched(gated, ungated)
    result = runs["gated"].result
    print(f"| {label} | {result.frames} | {len(ungated)} | {len(gated)} | {len(lost)} | {len(new)} | "
          f"{runs['ungated'].wall:.1f} / {runs['gated'].wall:.1f} s | {result.gate.describe()}"
          + (f"; {result.gate.off}" if result.gate.off else "") + " |", flush=True)
    return not lost


def part_recall(root: Path, tiny: str) -> bool:
    sys.path.insert(0, str(REPO / "samples"))
    from make_demo_clip import make_demo_clip

    print("\n## Part 0: recall with the gate on (tiny generator; tracks of ≥ --min-track-len frames)")
    print("| clip | frames | tracks ungated | tracks gated | ungated without a gated match | gated without an ungated match | wall | gate |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    demo = make_demo_clip(root / "demo.mp4")
    run_job("warm-up", EnhanceOptions(source=str(demo), out=root / "warm-up", sr=SrOptions(model=tiny), end=0.5, fusion=NO_FUSION))  # first-call costs
    ok = compare_tracks("demo clip", demo, root, tiny)
    for clip in sorted(VIDEO.iterdir()):
        ok &= compare_tracks(clip.name, clip, root, tiny)
    print(f"recall with the gate on — {'PASS' if ok else 'FAIL'} (bar: every ungated track matched on every clip)")
    return ok


def part_gating(root: Path, seconds: float, tiny: str) -> bool:
    clip = make_long_clip(root / "long.mp4", (768, 432), seconds)
    people = sum(e - s for s, e in clip.people) / (clip.seconds * 10)
    print(f"\n## Part 1: motion gating, {clip.seconds / 60:.1f}-minute 768×432 10 fps clip, people {people:.0%} of the time "
          f"({len(clip.people)} stretches), tiny generator")
    runs = {}
    for label, gate in (("--no-motion-gate", False), ("--motion-gate", True)):
        options = EnhanceOptions(source=str(clip.path), out=root / label, sr=SrOptions(model=tiny), motion_gate=gate, fusion=NO_FUSION)
        runs[label] = run_job(label, options)
        print(stage_line(runs[label], clip.seconds), flush=True)
    min_len = EnhanceOptions(source="", out=Path()).faces.min_track_len
    ungated, gated = runs["--no-motion-gate"].kept_tracks(min_len), runs["--motion-gate"].kept_tracks(min_len)
    missing = unmatched(ungated, gated)
    ratio = runs["--no-motion-gate"].wall / runs["--motion-gate"].wall
    detect = runs["--no-motion-gate"].result.times.detect / max(runs["--motion-gate"].result.times.detect, 1e-9)
    print(f"tracks: ungated {len(ungated)}, gated {len(gated)}; ungated tracks without a gated match: {len(missing)} {missing}")
    ok = ratio >= GATE_BAR and not missing
    print(f"gated vs ungated: overall {ratio:.2f}× faster (detect {detect:.2f}×) — {'PASS' if ok else 'FAIL'} "
          f"(bar: ≥ {GATE_BAR}× and every ungated track matched)")
    return ok


def sr_options(model: str | None) -> SrOptions:
    """--model as given, or the option's own default."""
    return SrOptions(model=model) if model else SrOptions()


def part_budget(root: Path, model: str | None, limit: int) -> bool:
    print(f"\n## Part 2: SR budget on the 1080p street clip ({STREET.name}), default generator, --sr-max-face {limit} vs 0")
    runs = {}
    for label, max_face in (("no limit", 0), (f"limit {limit}", limit)):
        options = EnhanceOptions(source=str(STREET), out=root / f"budget-{max_face}", sr=sr_options(model), sr_max_face=max_face,
                                 fusion=NO_FUSION)
        runs[max_face] = run_job(label, options)
        print(stage_line(runs[max_face], 105 / 25), flush=True)
    everything = {r.key: r for r in read_faces(runs[0].folder / MANIFEST_FILE)}
    limited = {r.key: r for r in read_faces(runs[limit].folder / MANIFEST_FILE)}
    small = [k for k, r in everything.items() if face_size(np.array(r.box)) <= limit]
    same = [k for k in small if k in limited and "sr" in limited[k].outputs and limited[k].outputs["sr"].sha256 == everything[k].outputs["sr"].sha256]
    plain = sum(1 for r in limited.values() if r.not_enhanced)
    ratio = runs[0].result.times.sr / max(runs[limit].result.times.sr, 1e-9)
    print(f"faces saved: {len(everything)} (no limit), {len(limited)} (limit; {plain} not enhanced); faces under the limit: "
          f"{len(small)}, with the same SR bytes in both runs: {len(same)}")
    ok = ratio >= SR_BAR and len(same) == len(small) and set(limited) == set(everything)
    print(f"SR time {runs[0].result.times.sr:.1f} s → {runs[limit].result.times.sr:.1f} s: cut {ratio:.2f}× — "
          f"{'PASS' if ok else 'FAIL'} (bar: ≥ {SR_BAR}×, every face under the limit enhanced as before)")
    return ok


def part_realtime(root: Path, seconds: float, model: str | None) -> None:
    print(f"\n## Part 3: × real time with the defaults (gate on, default generator and --sr-max-face), {seconds:.0f} s clips")
    cases = [("1080p", (1920, 1080), None), ("480p", (854, 480), None), ("432p --fps 5", (768, 432), 5.0)]
    for label, size, fps in cases:
        clip = make_long_clip(root / f"rt-{size[1]}.mp4", size, seconds)
        options = EnhanceOptions(source=str(clip.path), out=root / f"rt-{label}", sr=sr_options(model), fps=fps)
        print(stage_line(run_job(label, options), clip.seconds), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-minute clip for part 1 and 30 s clips for part 3")
    parser.add_argument("--model", default=None, help="generator for parts 2 and 3 (default: the registry's default)")
    parser.add_argument("--parts", default="0,1,2,3", help="which parts to run, e.g. 1,2")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: detection and SR on the GPU (gpu.sh)")
    args = parser.parse_args(argv)
    if not STREET.is_file():
        print(f"{STREET} is missing: this benchmark needs ../shared/data/video", file=sys.stderr)
        return 2
    parts = {int(p) for p in args.parts.split(",")}
    print(f"CPU: {describe_cpu()}")
    if args.device == "cuda":
        print(use_gpu())
    limit = EnhanceOptions(source="", out=Path()).sr_max_face
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if parts & {0, 1}:
            from cctvsr.sr.weights import save_model_dir
            from tests.conftest import tiny_weights

            weights = tiny_weights()
            tiny = str(save_model_dir(root / "tiny", weights.config, weights.state_dict))
        if 0 in parts:
            ok &= part_recall(root, tiny)
        if 1 in parts:
            ok &= part_gating(root, 120.0 if args.quick else 300.0, tiny)
        if 2 in parts:
            ok &= part_budget(root, args.model, limit)
        if 3 in parts:
            part_realtime(root, 30.0 if args.quick else 60.0, args.model)
    print(f"\n{'all bars met' if ok else 'a bar was missed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
