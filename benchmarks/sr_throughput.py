"""SR throughput: cctvsr's SuperResolver against the way Real-ESRGAN runs, on one fixed set of real faces.

Why this script exists: the project claims its generator runs several times faster than the
anchor (Real-ESRGAN's own inference: fp32, one crop at a time, NCHW, no padding) at the same
output (PSNR ≥ 45 dB against the anchor). A claim of that kind only holds when both sides run in
the same process, on the same crops, on the same (noisy, shared) machine, so everything here is
measured in one run, and each speed-up lever (precision, memory layout, batching) is also measured
on its own so that a regression can be pinned on one of them.

The crops are real faces from /work/shared/data/faces_hq (fixed files and fixed boxes, chosen by
eye), each shrunk with INTER_AREA to one of a fixed list of sizes (24–128 px, some repeated,
because a face track yields many same-size crops). Without that folder the faces come from
skimage's astronaut photo, and the output says so.

Run:  .venv/bin/python benchmarks/sr_throughput.py            (≈ 2–3 min expected on an idle 2-core
                                                               CPU; 10 min when others load it)
      .venv/bin/python benchmarks/sr_throughput.py --quick    (fewer crops)
      .venv/bin/python benchmarks/sr_throughput.py --repeats 3  (steadier on a busy machine)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from cctvsr.device import cpu_has_native_bf16, describe_cpu
from cctvsr.metrics import psnr
from cctvsr.sr.engine import SuperResolver
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights

DEFAULT_FACES_DIR = Path("/work/shared/data/faces_hq")
DEFAULT_SIZES = (24, 30, 30, 37, 45, 45, 61, 61, 80, 97, 128)  # a face track yields repeats; detector sizes are arbitrary
QUICK_SIZES = (24, 30, 30, 45, 45, 61)
# (top, left, side) of a square around the face, in the photo's own pixels; chosen by looking at
# each photo (forehead to chin, a little hair and background), files listed in SOURCES.md.
FACE_BOXES: dict[str, tuple[int, int, int]] = {
    "deepface__img10.jpg": (100, 30, 340),
    "deepface__img12.jpg": (25, 150, 240),
    "deepface__img14.jpg": (15, 295, 250),
    "deepface__img16.jpg": (30, 240, 280),
    "deepface__img18.jpg": (140, 320, 580),
    "face_recognition__obama-1080p.jpg": (50, 760, 380),
}
ASTRONAUT_BOX = (30, 150, 130)  # rows 30–160, cols 150–280 of skimage.data.astronaut()
TARGET_RATIO = 4.0
PSNR_BAR_DB = 45.0

Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def log(message: str) -> None:
    """Progress goes to stderr: a full run takes minutes, and stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The crop set


@dataclass(frozen=True)
class Crop:
    source: str
    image: np.ndarray  # (size, size, 3) uint8 RGB

    @property
    def pixels(self) -> int:
        return self.image.shape[0] * self.image.shape[1]


def load_face_squares(faces_dir: Path) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Square face regions (RGB) cut from the fixed portraits; the astronaut when none is there."""
    squares: list[tuple[str, np.ndarray]] = []
    for name, (top, left, side) in FACE_BOXES.items():
        path = faces_dir / name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if bgr is None:
            continue
        region = bgr[top : top + side, left : left + side]
        if min(region.shape[:2]) < side // 2:  # a different file under that name: skip it
            continue
        squares.append((name, cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_BGR2RGB)))
    if squares:
        note = f"{len(squares)} real portraits from {faces_dir}"
        if len(squares) < len(FACE_BOXES):
            note += f" ({len(FACE_BOXES) - len(squares)} of the fixed files missing)"
        return squares, note
    from skimage import data  # only needed for the fallback

    top, left, side = ASTRONAUT_BOX
    face = np.ascontiguousarray(data.astronaut()[top : top + side, left : left + side])
    return [("skimage astronaut", face)], f"FALLBACK: {faces_dir} has none of the fixed portraits; using skimage.data.astronaut()'s face"


def make_crops(squares: Sequence[tuple[str, np.ndarray]], sizes: Sequence[int]) -> list[Crop]:
    """One crop per size, faces taken in turn, each shrunk with INTER_AREA (as a far camera would)."""
    crops = []
    for index, size in enumerate(sizes):
        name, square = squares[index % len(squares)]
        small = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
        crops.append(Crop(name, np.ascontiguousarray(small)))
    return crops


# ---------------------------------------------------------------------------------------------
# Ways of running the generator


class DirectRunner:
    """The bare RRDBNet, one crop per forward call, with Real-ESRGAN's pre- and post-processing.

    With fp32 and channels_last=False this is the anchor: RealESRGANer.enhance on CPU (tile 0,
    pre_pad 0, ×4 so no mod-padding) is float32 /255 → NCHW → model → clamp(0, 1) → ×255 → round.
    The other precisions and layouts isolate one lever each, with nothing else changed.
    """

    def __init__(self, weights: GeneratorWeights, device: torch.device, precision: str, channels_last: bool) -> None:
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        model = weights.build().to(device=device, dtype=self.dtype)
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model

    def __call__(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._one(crop) for crop in crops]

    def _one(self, crop: np.ndarray) -> np.ndarray:
        img = crop.astype(np.float32) / 255.0
        with torch.inference_mode():
            x = torch.from_numpy(np.transpose(img, (2, 0, 1))).unsqueeze(0).to(self.device, self.dtype)
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            if self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    y = self.model(x)
            else:
                y = self.model(x)
            out = y.squeeze(0).float().cpu().clamp_(0, 1).numpy()
        return (np.transpose(out, (1, 2, 0)) * 255.0).round().astype(np.uint8)


def batched(resolver: SuperResolver) -> Runner:
    """All crops in one upscale() call: the resolver groups same-size crops into batches."""
    return resolver.upscale


def one_per_call(resolver: SuperResolver) -> Runner:
    """The same resolver, one crop per upscale() call: isolates what batching buys."""
    return lambda crops: [resolver.upscale([crop])[0] for crop in crops]


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Measurement:
    """One configuration on one crop set: filled in by `Bench.run`."""

    label: str
    run: Runner
    crops: list[Crop]
    outputs: list[np.ndarray] = field(default_factory=list)
    passes: list[float] = field(default_factory=list)

    @property
    def pixels(self) -> int:
        return sum(crop.pixels for crop in self.crops)

    @property
    def seconds_per_pass(self) -> float:
        # The fastest timed pass: on a shared machine noise only ever adds time.
        return min(self.passes)

    @property
    def rate(self) -> float:
        return self.pixels / self.seconds_per_pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """Every configuration of one device, warmed up first, then timed pass by pass in turn.

    Round-robin timing (a, b, c, a, b, c, …) rather than one configuration after another, so that a
    burst of load from someone else on a shared machine lands on several configurations rather than
    wholly on one of them and skews its ratio.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.measurements: dict[object, Measurement] = {}

    def add(self, key: object, label: str, run: Callable[[], Runner], crops: list[Crop]) -> Measurement:
        """Register a configuration once (a second request for the same key shares the first)."""
        if key not in self.measurements:
            self.measurements[key] = Measurement(label, run(), crops)
        return self.measurements[key]

    def run(self, repeats: int) -> None:
        for m in self.measurements.values():
            log(f"  warm-up  {m.label} ({len(m.crops)} crops) …")
            start = time.perf_counter()
            m.outputs = m.run([crop.image for crop in m.crops])
            _sync(self.device)
            log(f"  warm-up  {m.label}: {time.perf_counter() - start:.1f} s")
        for index in range(repeats):
            for m in self.measurements.values():
                images = [crop.image for crop in m.crops]
                _sync(self.device)
                start = time.perf_counter()
                m.run(images)
                _sync(self.device)
                m.passes.append(time.perf_counter() - start)
                log(f"  pass {index + 1}/{repeats} {m.label}: {m.passes[-1]:.2f} s")


def joint_psnr(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> tuple[float, float]:
    """PSNR over all crops' pixels together (as if concatenated), and the worst single crop."""
    flat = np.concatenate([o.reshape(-1, 1, 3) for o in outputs])
    flat_ref = np.concatenate([r.reshape(-1, 1, 3) for r in references])
    return psnr(flat, flat_ref), min(psnr(o, r) for o, r in zip(outputs, references))


def fmt_db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.1f}"


@dataclass
class LeverRow:
    lever: str
    fast: Measurement
    base: Measurement
    note: str

    @property
    def ratio(self) -> float:
        return self.fast.rate / self.base.rate


@dataclass
class DeviceReport:
    device: torch.device
    plan: str
    precision: str
    anchor: Measurement
    ours: Measurement
    levers: list[LeverRow]
    psnr_joint: float
    psnr_worst: float
    notes: list[str]

    @property
    def ratio(self) -> float:
        return self.ours.rate / self.anchor.rate


def bench_device(
    weights: GeneratorWeights,
    device: torch.device,
    crops: list[Crop],
    repeats: int,
    subset_max: int,
    sr_device_arg: str,
) -> DeviceReport:
    """Anchor, SuperResolver defaults, and each lever on its own, all on one device in one go."""
    resolver = SuperResolver(weights, device=sr_device_arg)
    plan = resolver.plan
    assert plan.device.type == device.type, (plan.device, device)
    log(f"[{device.type}] plan chosen by auto: {plan.describe()}")
    bench = Bench(device)
    notes: list[str] = []

    def direct(precision: str, channels_last: bool, subset: list[Crop], tag: str) -> Measurement:
        layout = "channels_last" if channels_last else "NCHW"
        label = f"direct {precision} {layout}, one at a time" + ("" if tag == "all" else f" [{tag}]")
        return bench.add(
            ("direct", precision, channels_last, tag),
            label,
            lambda: DirectRunner(weights, device, precision, channels_last),
            subset,
        )

    anchor = direct("fp32", False, crops, "all")
    ours = bench.add("batched", f"SuperResolver defaults ({plan.describe()}), batched", lambda: batched(resolver), crops)
    single = bench.add(
        "single", f"SuperResolver defaults ({plan.describe()}), one per call", lambda: one_per_call(resolver), crops
    )

    levers: list[LeverRow] = []
    # Precision: the plan's precision against fp32, both one at a time in NCHW.
    if plan.precision != "fp32":
        levers.append(LeverRow("precision", direct(plan.precision, False, crops, "all"), anchor, f"{plan.precision} vs fp32"))
    else:
        other = "bf16" if device.type == "cpu" else "fp16"
        small = [c for c in crops if max(c.image.shape[:2]) <= subset_max] or crops[:1]
        tag = f"crops ≤ {subset_max} px" if len(small) < len(crops) else "all"
        levers.append(
            LeverRow(
                "precision",
                direct(other, False, small, tag),
                direct("fp32", False, small, tag),
                f"{other} vs fp32 ({tag}; auto kept fp32)",
            )
        )
        if tag != "all":
            notes.append(
                f"auto chose fp32, so the precision lever times {other} against fp32 on the {len(small)} crops"
                f" ≤ {subset_max} px only, to bound the time; a ratio < 1 is why auto keeps fp32 here."
            )
    # Memory layout: channels_last against NCHW at the plan's precision, one at a time.
    levers.append(
        LeverRow(
            "memory layout",
            direct(plan.precision, True, crops, "all"),
            direct(plan.precision, False, crops, "all"),
            f"channels_last vs NCHW at {plan.precision}",
        )
    )
    # Batching: the same SuperResolver, one upscale() call for all crops against one per crop.
    levers.append(LeverRow("batching", ours, single, "SuperResolver batched vs one crop per upscale()"))
    if plan.precision == "fp32":
        notes.append("the plan is fp32: the layout lever's NCHW side is the anchor run itself (same configuration)")

    bench.run(repeats)
    joint, worst = joint_psnr(ours.outputs, anchor.outputs)
    return DeviceReport(device, plan.describe(), plan.precision, anchor, ours, levers, joint, worst, notes)


# ---------------------------------------------------------------------------------------------
# Output


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain aligned text table: readable in a log, diffable, no terminal needed."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def print_report(report: DeviceReport, crops: list[Crop], subset_max: int) -> None:
    dev = report.device.type
    print(f"\n=== {dev.upper()} ===")
    print(f"SuperResolver(weights) auto plan here: {report.plan}")
    rows = []
    for tag, m in (("(a) anchor", report.anchor), ("(b) ours", report.ours)):
        rows.append([tag, m.label, str(len(m.crops)), f"{m.seconds_per_pass:.2f}", f"{m.rate:,.0f}"])
    print(table(["", "configuration", "crops", "s/pass", "LR px/s"], rows, [False, False, True, True, True]))
    print()

    anchor_outputs = report.anchor.outputs
    small_index = [i for i, c in enumerate(crops) if max(c.image.shape[:2]) <= subset_max]

    def psnr_against_anchor(m: Measurement) -> str:
        if len(m.crops) == len(crops):
            refs = anchor_outputs
        elif len(m.crops) == len(small_index):
            refs = [anchor_outputs[i] for i in small_index]
        else:
            return "-"
        return fmt_db(joint_psnr(m.outputs, refs)[0])

    lever_rows = []
    for lever in report.levers:
        lever_rows.append(
            [
                lever.lever,
                lever.note,
                str(len(lever.fast.crops)),
                f"{lever.fast.rate:,.0f}",
                f"{lever.base.rate:,.0f}",
                f"{lever.ratio:.2f}×",
                psnr_against_anchor(lever.fast),
            ]
        )
    print(
        table(
            ["lever", "measured", "crops", "LR px/s", "baseline px/s", "ratio", "PSNR vs (a)"],
            lever_rows,
            [False, False, True, True, True, True, True],
        )
    )
    product = np.prod([lever.ratio for lever in report.levers if len(lever.fast.crops) == len(crops)])
    print(f"(product of the full-set lever ratios: {product:.2f}×; levers measured one at a time need not multiply exactly)")
    for note in report.notes:
        print(f"note: {note}")
    verdict = "meets" if report.psnr_joint >= PSNR_BAR_DB else "FAILS"
    print(
        f"PSNR (b) vs (a): {fmt_db(report.psnr_joint)} dB over all crops, worst crop {fmt_db(report.psnr_worst)} dB"
        f" ({verdict} the {PSNR_BAR_DB:.0f} dB bar)"
    )


def summary_line(report: DeviceReport) -> str:
    return f"ratio b/a = {report.ratio:.2f}×  (PSNR b vs a = {fmt_db(report.psnr_joint)} dB)"


# ---------------------------------------------------------------------------------------------
# CLI


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: expected integers like 24,32,48, got {text!r}") from None
    if not sizes or any(s < 4 or s > 1024 for s in sizes):
        raise argparse.ArgumentTypeError("--sizes: each size must be between 4 and 1024 px")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "LR pixels/s of (a) the Real-ESRGAN anchor (fp32, one crop at a time, NCHW, no padding) and "
            "(b) cctvsr's SuperResolver with its defaults, on one fixed set of real face crops, plus each "
            "speed-up lever measured on its own and the PSNR of (b) against (a)."
        )
    )
    parser.add_argument("--faces-dir", type=Path, default=DEFAULT_FACES_DIR, help="folder of the portraits (default: %(default)s)")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help=f"comma-separated crop sizes in px (default: {','.join(map(str, DEFAULT_SIZES))})",
    )
    parser.add_argument("--quick", action="store_true", help=f"fewer, smaller crops ({','.join(map(str, QUICK_SIZES))}) unless --sizes is given")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the crop set per configuration; the fastest counts (default: %(default)s)")
    parser.add_argument(
        "--subset-max",
        type=int,
        default=48,
        help="when auto keeps fp32, time the reduced precision only on crops up to this size (default: %(default)s)",
    )
    parser.add_argument(
        "--devices",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the CPU, then the GPU too when CUDA is usable (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--model", default="realesrgan-x4plus", help="generator weights (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.devices == "cuda" and not cuda:
        print("error: --devices cuda: no CUDA device is usable by this PyTorch build", file=sys.stderr)
        return 2
    devices = {"auto": ["cpu", *(["cuda"] if cuda else [])], "cpu": ["cpu"], "cuda": ["cuda"]}[args.devices]
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)

    wall = time.perf_counter()
    squares, source_note = load_face_squares(args.faces_dir)
    crops = make_crops(squares, sizes)
    weights = load_generator_weights(args.model)

    print("SR throughput benchmark (cctvsr SuperResolver vs the Real-ESRGAN anchor)")
    print(f"model: {weights.name} ({weights.source})")
    print(f"faces: {source_note}")
    print(f"crops: {len(crops)} square, sizes {','.join(map(str, sizes))} px, {sum(c.pixels for c in crops):,} LR px per pass")
    print(
        f"timing: per configuration 1 untimed warm-up pass, then {args.repeats} timed pass(es) (time.perf_counter),"
        " taken round-robin across configurations; s/pass is the fastest timed pass"
    )
    print(f"cpu: {describe_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"cpu native bf16 (AMX / AVX512-BF16): {'yes' if cpu_has_native_bf16() else 'no'}"
        f" -> SuperResolver auto precision on CPU: {'bf16' if cpu_has_native_bf16() else 'fp32'}"
    )
    if cuda:
        print(f"cuda: {torch.cuda.get_device_name(0)} (anchor on GPU runs PyTorch's default fp32, TF32 convs allowed as in Real-ESRGAN)")
    else:
        print("cuda: not available (CPU only)")

    reports: list[DeviceReport] = []
    for dev in devices:
        # (b) is SuperResolver(weights) with its defaults; on a machine with CUDA its auto device is the
        # GPU, so the CPU section pins device="cpu" and keeps precision/layout on auto.
        sr_device = "auto" if (dev == "cuda" or not cuda) else "cpu"
        report = bench_device(weights, torch.device(dev), crops, args.repeats, args.subset_max, sr_device)
        reports.append(report)
        print_report(report, crops, args.subset_max)

    print()
    for report in reports:
        target = ""
        if report.device.type == "cpu":
            target = (
                f"; project target ≥ {TARGET_RATIO:.0f}× applies to CPUs with AMX/AVX512-BF16"
                f" ({'this one has it' if cpu_has_native_bf16() else 'this one has neither, so auto runs fp32'})"
            )
        print(f"[{report.device.type}] {report.plan}: (b)/(a) = {report.ratio:.2f}×{target}")
    print(f"wall time: {time.perf_counter() - wall:.0f} s")
    # The final line is for (b) as defined: SuperResolver(weights) on its auto device.
    headline = next((r for r in reports if r.device.type == ("cuda" if cuda else "cpu")), reports[-1])
    print(summary_line(headline) + (f"  [{headline.device.type}]" if len(reports) > 1 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
