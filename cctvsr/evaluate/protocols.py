"""The evaluation sets: HR faces and their LR versions, made by a seeded, named protocol.

`paper`: the paper's FFHQ test (a blur kernel, then ×4 point sampling, Gaussian noise σ 8, JPEG 30),
with kernels from a site pool when one is given, else from a fixed set of realistic anisotropic
Gaussians. `pool`: the site's own degradation (`DegradationPool.degrade`: its kernels, its noise
patches, its JPEG quality and probability). Face i is degraded with RNG seeded by (seed, i), so a
face's LR version never depends on which other faces are in the set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cctvsr.degrade.kernels import anisotropic_gaussian_kernel
from cctvsr.degrade.jpeg import jpeg_roundtrip
from cctvsr.degrade.pool import DegradationPool, blur_downsample
from cctvsr.errors import InputError
from cctvsr.fsutil import atomic_path
from cctvsr.images import read_image, write_png
from cctvsr.train.data import centred_square, load_hr_faces

SCALE = 4
PROTOCOLS = ("paper", "pool")
PAPER_NOISE_SIGMA = 8.0  # grey levels, per RGB channel
PAPER_JPEG_QUALITY = 30
SET_FORMAT = "cctvsr-eval-set"
SET_VERSION = 1
# (sigma along, sigma across, angle in degrees) in HR pixels: motion-free defocus and lens blur of
# the strength KernelGAN finds on CCTV footage at ×4, elongated in several directions.
_BUILTIN_KERNELS = (
    (1.2, 0.7, 0), (1.6, 0.9, 45), (2.0, 1.1, 90), (2.4, 1.3, 135),
    (1.8, 1.3, 30), (2.6, 1.6, 120), (1.4, 1.0, 150), (3.0, 1.8, 60),
)
KERNEL_SIZE = 21


@dataclass(frozen=True)
class EvalPair:
    """One face: its ground truth and the LR input every method gets."""

    name: str  # unique, file-name safe
    hr: np.ndarray  # (4h, 4w, 3) uint8
    lr: np.ndarray  # (h, w, 3) uint8


@dataclass(frozen=True)
class Protocol:
    """How LR faces are made from HR faces."""

    name: str  # paper | pool
    kernels: np.ndarray  # (K, S, S), used by `paper`
    pool: DegradationPool | None
    seed: int
    kernel_source: str

    def describe(self) -> str:
        if self.name == "pool":
            assert self.pool is not None
            return f"pool: the site's degradation ({self.kernel_source}; noise: {self.pool.noise_model}), seed {self.seed}"
        return (
            f"paper: kernel ({self.kernel_source}) + Gaussian noise σ {PAPER_NOISE_SIGMA:g} + JPEG {PAPER_JPEG_QUALITY}, "
            f"seed {self.seed}"
        )

    def degrade(self, hr: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        if self.name == "pool":
            assert self.pool is not None
            return self.pool.degrade(hr, rng).lr
        kernel = self.kernels[int(rng.integers(len(self.kernels)))]
        lr = blur_downsample(hr, kernel, SCALE) + rng.normal(0.0, PAPER_NOISE_SIGMA, size=(hr.shape[0] // SCALE, hr.shape[1] // SCALE, 3))
        return jpeg_roundtrip(np.clip(np.rint(lr), 0, 255).astype(np.uint8), PAPER_JPEG_QUALITY)


def builtin_kernels() -> np.ndarray:
    return np.stack(
        [anisotropic_gaussian_kernel(KERNEL_SIZE, sx, sy, math.radians(deg)) for sx, sy, deg in _BUILTIN_KERNELS]
    ).astype(np.float32)


def make_protocol(name: str, pool_path: Path | None, seed: int) -> Protocol:
    """A protocol by name; `pool` needs a pool file, `paper` takes its kernels from one if given."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown --protocol {name!r} (choose from {', '.join(PROTOCOLS)})")
    pool = DegradationPool.load(pool_path) if pool_path is not None else None
    if name == "pool":
        if pool is None:
            raise InputError("--protocol pool needs --pool site.pool.npz")
        if pool.scale != SCALE:
            raise InputError(f"{pool_path}: a ×{pool.scale} pool; evaluate measures ×{SCALE} models")
        return Protocol(name, pool.kernels, pool, seed, f"{len(pool.kernels)} kernels from {pool_path.name}")
    if pool is not None:
        return Protocol(name, pool.kernels, None, seed, f"{len(pool.kernels)} kernels from {pool_path.name}")
    return Protocol(name, builtin_kernels(), None, seed, f"{len(_BUILTIN_KERNELS)} built-in anisotropic Gaussians")


def fit_hr(face: np.ndarray, hr_size: int) -> np.ndarray:
    """The face as ground truth: its centred square shrunk (INTER_AREA) to hr_size, or with hr_size
    0 the face itself trimmed to a multiple of 4 (so that LR × 4 is exactly the HR size)."""
    if hr_size:
        return centred_square(face, hr_size)
    h, w = (s - s % SCALE for s in face.shape[:2])
    return np.ascontiguousarray(face[:h, :w])


def make_pairs(faces: list[np.ndarray], sources: list[str], protocol: Protocol, hr_size: int) -> list[EvalPair]:
    """The evaluation set: each face fitted to hr_size and degraded by the protocol."""
    pairs = []
    counts: dict[str, int] = {}
    for index, (face, source) in enumerate(zip(faces, sources)):
        stem = Path(source).with_suffix("").as_posix().replace("/", "__")
        counts[stem] = counts.get(stem, 0) + 1
        name = f"{stem}-{counts[stem]}"
        hr = fit_hr(face, hr_size)
        pairs.append(EvalPair(name, hr, protocol.degrade(hr, index)))
    return pairs


def save_pairs(folder: Path, pairs: list[EvalPair], protocol: Protocol, hr_size: int) -> None:
    """hr/NAME.png, lr/NAME.png and set.json: a frozen set that `--lr-dir` re-uses exactly."""
    for pair in pairs:
        write_png(folder / "hr" / f"{pair.name}.png", pair.hr)
        write_png(folder / "lr" / f"{pair.name}.png", pair.lr)
    header = {
        "format": SET_FORMAT, "version": SET_VERSION, "protocol": protocol.describe(), "hr_size": hr_size,
        "faces": [pair.name for pair in pairs],
    }
    with atomic_path(folder / "set.json") as tmp:
        tmp.write_text(json.dumps(header, indent=2, ensure_ascii=False) + "\n")


def load_pairs(folder: Path) -> tuple[list[EvalPair], str]:
    """A set written by `save_pairs`, and the protocol that made it; one-line errors when damaged."""
    try:
        header = json.loads((folder / "set.json").read_text())
    except FileNotFoundError:
        raise InputError(f"{folder}: not an evaluation set (no set.json; write one with --save-lr)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}/set.json: unreadable ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != SET_FORMAT or header.get("version") != SET_VERSION:
        raise InputError(f"{folder}/set.json: not a version {SET_VERSION} {SET_FORMAT}")
    pairs = []
    for name in header.get("faces", []):
        hr, lr = (read_image(folder / part / f"{name}.png").rgb for part in ("hr", "lr"))
        if hr.shape != (lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3):
            raise InputError(f"{folder}: {name}: HR {hr.shape[1]}×{hr.shape[0]} is not 4× LR {lr.shape[1]}×{lr.shape[0]}")
        pairs.append(EvalPair(name, hr, lr))
    if not pairs:
        raise InputError(f"{folder}: the evaluation set lists no faces")
    return pairs, str(header.get("protocol", "?"))


def faces_for_evaluation(hr_dir: Path, detector, hr_size: int, max_faces: int = 0):  # -> HrFaces
    """The HR faces of `hr_dir`, cropped to the face exactly as `finetune` crops them, at least
    hr_size px (64 when keeping native sizes: smaller would leave a 16-px LR face); the first
    `max_faces` of them (0 = all) in file order."""
    found = load_hr_faces(hr_dir, detector, min_size=hr_size or 64)
    if max_faces:
        found.faces, found.sources = found.faces[:max_faces], found.sources[:max_faces]
    if not found.faces:
        raise InputError(f"no usable face to evaluate in {hr_dir}: {found.describe()}")
    return found
