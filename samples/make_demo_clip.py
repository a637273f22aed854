"""A short CCTV-like clip with known faces, made from a real group photo that a package ships.

    python samples/make_demo_clip.py demo.mp4 [--seconds 4] [--fps 12] [--seed 0]

insightface ships `data/images/t1.jpg` (1280×886, six people). The clip looks at it through a
slowly panning 480×270 window after scaling it by 0.4, so the faces are 33–41 px wide, adds
Gaussian sensor noise (σ = 5 grey levels, seeded) and encodes it as low-bitrate H.264 (200 kbit/s,
yuv420p), which gives real compression artefacts. Because the clip knows its own pan, it writes
exact ground truth beside itself (`demo.gt.json`): per frame, every face at least half inside the
frame, as a transform of the six face boxes measured by hand in the original photo.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from cctvsr import assets
from cctvsr.errors import CctvsrError, InputError
from cctvsr.fsutil import atomic_path

SOURCE = assets.INSIGHTFACE_T1

# Face boxes (x1, y1, x2, y2) in the ORIGINAL 1280×886 photo, measured by hand on 3× enlargements
# with a 10 px grid: hairline/forehead to chin, cheek to cheek (ear excluded), as a face detector
# draws them. Person ids run left to right as the people sit.
FACE_BOXES: dict[int, tuple[int, int, int, int]] = {
    0: (67, 272, 158, 388),  # woman, far left, head tilted
    1: (276, 148, 372, 260),  # woman, standing behind, looking down
    2: (467, 272, 570, 398),  # man, centre left, smiling
    3: (748, 338, 850, 475),  # man, centre right, laughing
    4: (918, 62, 1018, 205),  # man, standing at the back, three-quarter view
    5: (1138, 273, 1220, 390),  # woman, far right, eyes closed
}

SCALE = 0.4  # photo → scene scale: faces 82–103 px wide become 33–41 px
FRAME_SIZE = (480, 270)  # width, height of the clip
PAN_X = 32.0  # the window moves right by this many scene pixels over the clip…
PAN_Y = 24.0  # …and tilts down and back up by this many (half a cosine period)
NOISE_SIGMA = 5.0  # Gaussian sensor noise, grey levels
BIT_RATE = 200_000  # bit/s: low enough for visible H.264 artefacts
MIN_INSIDE = 0.5  # a face is in the ground truth when at least this fraction of its box is in view
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}


def gt_path(out: Path) -> Path:
    """Where the ground truth of the clip at `out` lives: demo.mp4 → demo.gt.json."""
    return out.with_suffix(".gt.json")


def load_source() -> np.ndarray:
    """The group photo as (886, 1280, 3) uint8 RGB; a one-line error when it cannot be had."""
    path = SOURCE.require()  # checks the sha256: the boxes below were measured on exactly this photo
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def scaled_size(source_size: tuple[int, int] = (1280, 886)) -> tuple[int, int]:
    """Width and height of the photo after scaling by SCALE."""
    return round(source_size[0] * SCALE), round(source_size[1] * SCALE)


def frame_count(seconds: float, fps: float) -> int:
    return max(1, round(seconds * fps))


def pan_offset(index: int, frames: int) -> tuple[float, float]:
    """Top-left corner of the window in the scaled photo for frame `index`."""
    u = index / (frames - 1) if frames > 1 else 0.0
    return PAN_X * u, PAN_Y * (1.0 - math.cos(2.0 * math.pi * u)) / 2.0


def _inside_fraction(box: tuple[float, float, float, float]) -> float:
    width, height = FRAME_SIZE
    x1, y1, x2, y2 = box
    inter = max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
    return inter / ((x2 - x1) * (y2 - y1))


def ground_truth(*, seconds: float = 4.0, fps: float = 12.0, seed: int = 0) -> dict[str, Any]:
    """The clip's header and per-frame face boxes, without rendering anything.

    A scene box is the hand-measured photo box times the exact resize factors; a clip box is the
    scene box minus the pan offset. Boxes are in pixel-edge coordinates (0 = left edge of the
    first pixel) and are NOT clipped to the frame: `inside` says how much of each lies in view.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"--seconds must be positive, got {seconds}")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps must be positive, got {fps}")
    source_size = (1280, 886)
    scene_w, scene_h = scaled_size(source_size)
    sx, sy = scene_w / source_size[0], scene_h / source_size[1]
    frames = frame_count(seconds, fps)
    people = []
    for person_id, (x1, y1, x2, y2) in FACE_BOXES.items():
        people.append(
            {
                "person_id": person_id,
                "source_box": [x1, y1, x2, y2],
                "scene_box": [round(x1 * sx, 4), round(y1 * sy, 4), round(x2 * sx, 4), round(y2 * sy, 4)],
            }
        )
    per_frame = []
    for index in range(frames):
        ox, oy = pan_offset(index, frames)
        faces = []
        for person in people:
            x1, y1, x2, y2 = person["scene_box"]
            box = (x1 - ox, y1 - oy, x2 - ox, y2 - oy)
            inside = _inside_fraction(box)
            if inside >= MIN_INSIDE:
                faces.append(
                    {"person_id": person["person_id"], "box": [round(v, 4) for v in box], "inside": round(inside, 4)}
                )
        per_frame.append({"index": index, "pan": [round(ox, 4), round(oy, 4)], "faces": faces})
    return {
        "version": 1,
        "source": {"package": SOURCE.package, "path": SOURCE.relpath, "sha256": SOURCE.sha256, "size": list(source_size)},
        "scale": [sx, sy],
        "scene_size": [scene_w, scene_h],
        "frame_size": list(FRAME_SIZE),
        "pan": {"x": PAN_X, "y": PAN_Y, "path": "x = PAN_X·u, y = PAN_Y·(1 − cos 2πu)/2, u = index / (frames − 1)"},
        "fps": float(fps),
        "frames": frames,
        "seed": int(seed),
        "noise_sigma": NOISE_SIGMA,
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "bit_rate": BIT_RATE,
        "min_inside": MIN_INSIDE,
        "box_format": "x1,y1,x2,y2 in clip pixels, pixel-edge coordinates, not clipped to the frame",
        "people": people,
        "per_frame": per_frame,
    }


def render_frames(photo: np.ndarray, truth: dict[str, Any]) -> Iterator[np.ndarray]:
    """The clip's frames as (270, 480, 3) uint8 RGB: the scaled photo, panned, plus seeded noise."""
    scene = cv2.resize(photo, tuple(truth["scene_size"]), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(truth["seed"])
    for frame in truth["per_frame"]:
        ox, oy = frame["pan"]
        shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]], dtype=np.float64)
        view = cv2.warpAffine(scene, shift, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        noisy = view.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA, view.shape).astype(np.float32)
        yield np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _format_json(truth: dict[str, Any]) -> str:
    """Readable JSON: the header indented, then one line per frame."""
    header = {key: value for key, value in truth.items() if key != "per_frame"}
    text = json.dumps(header, indent=1, ensure_ascii=False)
    frames = ",\n  ".join(json.dumps(frame, ensure_ascii=False) for frame in truth["per_frame"])
    return text[:-2] + ',\n "per_frame": [\n  ' + frames + "\n ]\n}\n"


def make_demo_clip(out: Path, *, seconds: float = 4.0, fps: float = 12.0, seed: int = 0) -> Path:
    """Write the clip to `out` and its ground truth to `gt_path(out)`; return `out`."""
    out = Path(out)
    container_format = CONTAINERS.get(out.suffix.lower())
    if container_format is None:
        raise InputError(f"{out}: the clip must end in one of {', '.join(CONTAINERS)}")
    truth = ground_truth(seconds=seconds, fps=fps, seed=seed)
    photo = load_source()
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(out) as tmp:
        with av.open(str(tmp), mode="w", format=container_format) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = FRAME_SIZE
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = BIT_RATE
            stream.codec_context.thread_count = 1  # x264's output is then the same on every machine
            stream.options = {"preset": "medium", "x264-params": "threads=1:lookahead-threads=1"}
            for rgb in render_frames(photo, truth):
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    with atomic_path(gt_path(out)) as tmp:
        tmp.write_text(_format_json(truth), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the clip to write (.mp4, .mkv or .mov); OUT.gt.json goes beside it")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4)")
    parser.add_argument("--fps", type=float, default=12.0, help="frames per second (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sensor noise (default 0)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = make_demo_clip(args.out, seconds=args.seconds, fps=args.fps, seed=args.seed)
    except CctvsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    truth = json.loads(gt_path(out).read_text(encoding="utf-8"))
    print(
        f"{out}: {truth['frames']} frame(s) {truth['frame_size'][0]}×{truth['frame_size'][1]} at {truth['fps']:g} fps, "
        f"{out.stat().st_size / 1024:.0f} KiB, ground truth {gt_path(out)} ({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
