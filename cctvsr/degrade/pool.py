"""The degradation pool: what `calibrate` learned about a camera, as one versioned file, and the
function that degrades HR training faces the same way (I_LR = (I_HR ∗ k)↓s + n + c).

File format (version 2): one uncompressed `.npz` (numpy's zip of `.npy` members, no pickles):

* `header`: UTF-8 JSON as a 1-D uint8 array: `{"format": "cctvsr-degradation-pool",
  "version": 2, "scale": 4, "jpeg_quality": 31.2 | null, "jpeg_prob": 0.9, "noise": {...} | null,
  "metadata": {...}}`; `noise` is the camera's sensor noise as measured before compression
  (`cctvsr.degrade.sensor_noise.NoiseEstimate.header()`: sigma, sigma_per_channel, upper_bound,
  method, frames_used, codec, textured_frames_rejected, …), null where unknown (every version-1
  pool, which still loads);
* `kernels`: (K, S, S) float32, S odd, each sums to 1, centre of mass on the centre pixel, HR pixels;
* `noise_patches`: (M, P, P, 3) float32, zero-mean per channel, LR pixels, 0–255 scale (M may be 0).

Sampling alignment (the training pairs' registration rests on it): LR pixel (i, j) is the blurred
HR image sampled at HR pixel (s·i + φ, s·j + φ) with φ = `sample_phase(s)` = (s − 1) // 2. LR pixel
i stands for HR pixels s·i … s·i + s − 1, whose centre is s·i + (s − 1)/2; a point sample hits that
exactly for odd s, and for even s (s = 4: φ = 1, centre 4i + 1.5) sits half an HR pixel (⅛ LR
pixel) up and left of it. Phase 0 would put it 1.5 HR pixels off; shifting the kernel by half a
pixel instead would add blur the camera never had.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from cctvsr.degrade.jpeg import jpeg_roundtrip
from cctvsr.errors import InputError
from cctvsr.fsutil import atomic_path
from cctvsr.images import write_png

POOL_FORMAT = "cctvsr-degradation-pool"
POOL_VERSION = 2
KERNEL_SUM_TOLERANCE = 1e-3
NOISE_MEAN_TOLERANCE = 0.01  # grey levels; patches are zero-mean per channel up to float rounding
BORDER = cv2.BORDER_REFLECT_101  # mirror without repeating the edge pixel (numpy's "reflect")

_ARRAYS = ("kernels", "noise_patches")
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error, KeyError)


class PoolFormatError(InputError):
    """A pool file that is missing, damaged, foreign, from a newer cctvsr, or inconsistent."""


def sample_phase(scale: int) -> int:
    """The HR offset of every kept pixel: the one nearest the LR pixel's centre (see module doc)."""
    return (scale - 1) // 2


def blur_downsample(hr: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
    """(hr ∗ kernel)↓scale as float32, shape (H // scale, W // scale[, C]).

    A true convolution (the kernel is the image of a point of light, as KernelGAN reports it),
    reflect border (`BORDER`), then a point sample every `scale` pixels at `sample_phase(scale)`:
    never a resize, so the kernel is the only blur.
    """
    h, w = hr.shape[:2]
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    blurred = cv2.filter2D(hr.astype(np.float32), cv2.CV_32F, flipped, borderType=BORDER)
    phase = sample_phase(scale)
    rows, cols = h // scale, w // scale
    return blurred[phase : phase + scale * rows : scale, phase : phase + scale * cols : scale]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kernel_problem(kernels: np.ndarray) -> str | None:
    if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2] or kernels.shape[1] % 2 == 0:
        return f"kernels have shape {kernels.shape}, expected (K, S, S) with S odd"
    if kernels.shape[0] == 0:
        return "the pool holds no blur kernels"
    if not np.isfinite(kernels).all():
        return "kernels contain NaN or infinite values"
    sums = kernels.sum(axis=(1, 2), dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > KERNEL_SUM_TOLERANCE)
    if bad.size:
        return f"kernel {bad[0]} sums to {sums[bad[0]]:.6g}, not 1 (±{KERNEL_SUM_TOLERANCE:g})"
    size = kernels.shape[1]
    grid = np.arange(size, dtype=np.float64) - size // 2
    com_y = np.einsum("kyx,y->k", kernels, grid) / sums
    com_x = np.einsum("kyx,x->k", kernels, grid) / sums
    off = np.flatnonzero(np.maximum(np.abs(com_y), np.abs(com_x)) > 0.5 + 1e-3)
    if off.size:
        i = off[0]
        return f"kernel {i}'s centre of mass is ({com_y[i]:+.2f}, {com_x[i]:+.2f}) px off the centre pixel"
    return None


def _noise_problem(noise: np.ndarray) -> str | None:
    if noise.ndim != 4 or noise.shape[1] != noise.shape[2] or noise.shape[3] != 3:
        return f"noise_patches have shape {noise.shape}, expected (M, P, P, 3)"
    if noise.shape[0] and noise.shape[1] == 0:
        return "noise patches are 0 pixels wide"
    if not np.isfinite(noise).all():
        return "noise patches contain NaN or infinite values"
    if noise.shape[0]:
        means = np.abs(noise.mean(axis=(1, 2), dtype=np.float64))
        if means.max() > NOISE_MEAN_TOLERANCE:
            i = int(np.unravel_index(means.argmax(), means.shape)[0])
            return f"noise patch {i} is not zero-mean (channel mean {means.max():.3g})"
    return None


def _scalar_problem(jpeg_quality: Any, jpeg_prob: Any, scale: Any) -> str | None:
    if jpeg_quality is not None and not (_is_number(jpeg_quality) and 1 <= jpeg_quality <= 100):
        return f"JPEG quality {jpeg_quality!r} is not a number in 1..100 (or null)"
    if not (_is_number(jpeg_prob) and 0 <= jpeg_prob <= 1):
        return f"JPEG probability {jpeg_prob!r} is not a number in 0..1"
    if not (isinstance(scale, int) and not isinstance(scale, bool) and scale >= 1):
        return f"scale {scale!r} is not a positive integer"
    return None


@dataclass(frozen=True)
class Degraded:
    """One degraded image and the draws that made it."""

    lr: np.ndarray  # (H // s, W // s, 3) uint8
    kernel_index: int
    jpeg: bool


@dataclass(frozen=True, eq=False)
class DegradationPool:
    """Kernels, noise and compression learned from one site's cameras; immutable, arrays read-only."""

    kernels: np.ndarray  # (K, S, S) float32, S odd, sum 1, centred, HR pixels
    noise_patches: np.ndarray  # (M, P, P, 3) float32, zero-mean per channel, LR pixels; M = 0: no noise
    jpeg_quality: float | None  # None: no compression estimate, so no JPEG
    jpeg_prob: float = 0.9
    scale: int = 4
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable provenance
    noise: dict[str, Any] | None = None  # the measured sensor noise (NoiseEstimate.header()); None: unknown

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            value = np.asarray(getattr(self, name))
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"DegradationPool.{name} must be floating point, got {value.dtype}")
            array = np.array(value, dtype=np.float32, order="C", copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        problem = (
            _kernel_problem(self.kernels)
            or _noise_problem(self.noise_patches)
            or _scalar_problem(self.jpeg_quality, self.jpeg_prob, self.scale)
            or _sensor_noise_problem(self.noise)
        )
        if problem:
            raise ValueError(f"invalid DegradationPool: {problem}")

    # --- the file -------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the pool at exactly `path` (no suffix added), atomically."""
        header = {
            "format": POOL_FORMAT,
            "version": POOL_VERSION,
            "scale": self.scale,
            "jpeg_quality": self.jpeg_quality,
            "jpeg_prob": self.jpeg_prob,
            "noise": self.noise,
            "metadata": self.metadata,
        }
        try:
            text = json.dumps(header, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pool metadata is not plain JSON: {exc}") from None
        encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
                np.savez(handle, header=encoded, kernels=self.kernels, noise_patches=self.noise_patches)

    @classmethod
    def load(cls, path: Path) -> DegradationPool:
        """Read and validate a pool file; anything wrong is one PoolFormatError line naming the file."""
        path = Path(path)
        arrays = _read_members(path)

        def fail(problem: str) -> PoolFormatError:
            return PoolFormatError(f"{path}: {problem}")

        header = _parse_header(arrays, fail)
        for name in _ARRAYS:
            if name not in arrays:
                raise fail(f"damaged pool file: missing array '{name}'")
            if arrays[name].dtype != np.float32:
                raise fail(f"array '{name}' is {arrays[name].dtype}, expected float32")
        jpeg_quality, jpeg_prob = header.get("jpeg_quality"), header.get("jpeg_prob")
        scale, metadata, noise = header.get("scale"), header.get("metadata", {}), header.get("noise")
        problem = (
            _kernel_problem(arrays["kernels"])
            or _noise_problem(arrays["noise_patches"])
            or _scalar_problem(jpeg_quality, jpeg_prob, scale)
            or _sensor_noise_problem(noise)
            or (None if isinstance(metadata, dict) else "header 'metadata' is not a JSON object")
        )
        if problem:
            raise fail(problem)
        return cls(
            kernels=arrays["kernels"],
            noise_patches=arrays["noise_patches"],
            jpeg_quality=jpeg_quality,
            jpeg_prob=jpeg_prob,
            scale=scale,
            metadata=metadata,
            noise=noise,
        )

    # --- degrading ------------------------------------------------------------------------------

    def apply(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One LR image from an HR RGB uint8 image: (H // s, W // s, 3) uint8."""
        return self.degrade(hr, rng).lr

    def degrade(self, hr: np.ndarray, rng: np.random.Generator) -> Degraded:
        """`apply`, also saying which kernel was drawn and whether JPEG ran (the training data's
        alignment is checked against the very kernel each pair was made with).

        Draws, in this order: a kernel; a noise mosaic (see `_noise`), or where the pool has no
        noise patches but a measured sensor σ, Gaussian noise of that σ per channel; whether to
        compress. Blur and sampling as in `blur_downsample`; noise added in float, then rounded and
        clipped to 0–255; then JPEG at round(jpeg_quality) with probability `jpeg_prob`: the noise
        goes in before the compression, as the camera's does.
        """
        s = self.scale
        if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
            raise InputError(f"expected an RGB uint8 image, got {hr.dtype} of shape {hr.shape}")
        if hr.shape[0] < s or hr.shape[1] < s:
            raise InputError(f"a {hr.shape[1]}×{hr.shape[0]} image is smaller than the pool's scale ×{s}")
        kernel_index = int(rng.integers(len(self.kernels)))
        lr = blur_downsample(hr, self.kernels[kernel_index], s)
        if len(self.noise_patches):
            lr += self._noise(lr.shape[:2], rng)
        elif self.gaussian_sigmas is not None:
            lr += rng.standard_normal(lr.shape) * np.asarray(self.gaussian_sigmas)
        out = np.clip(np.rint(lr), 0, 255).astype(np.uint8)
        jpeg = self._wants_jpeg(rng)
        if jpeg:
            out = jpeg_roundtrip(out, self.jpeg_quality_int)
        return Degraded(lr=out, kernel_index=kernel_index, jpeg=jpeg)

    @property
    def gaussian_sigmas(self) -> tuple[float, float, float] | None:
        """Per-channel σ of the Gaussian noise `degrade` adds when the pool has no noise patches:
        the measured σ, or where only a bound is known, the bound; None where nothing is known."""
        if not self.noise:
            return None
        per_channel = self.noise.get("sigma_per_channel")
        if per_channel is not None:
            return tuple(float(v) for v in per_channel)  # type: ignore[return-value]
        level = self.noise.get("sigma")
        level = self.noise.get("upper_bound") if level is None else level
        return None if level is None else (float(level),) * 3

    @property
    def noise_model(self) -> str:
        """How `degrade` adds noise, for the run records of finetune and evaluate."""
        if len(self.noise_patches):
            return f"{len(self.noise_patches)} noise patches (smooth-patch rule)"
        sigmas = self.gaussian_sigmas
        if sigmas is None:
            return "none: the pool's sensor noise is unknown" if self.noise is None else "none: the sensor noise could not be measured"
        what = "σ" if self.noise.get("sigma") is not None else "σ bound"  # type: ignore[union-attr]
        return f"Gaussian {what} {', '.join(f'{v:.2f}' for v in sigmas)} (R, G, B) before JPEG ({self.noise.get('method')})"  # type: ignore[union-attr]

    @property
    def jpeg_quality_int(self) -> int:
        """The quality handed to the encoder; only meaningful when `jpeg_quality` is not None."""
        return int(np.clip(round(self.jpeg_quality or 0), 1, 100))

    def _wants_jpeg(self, rng: np.random.Generator) -> bool:
        return self.jpeg_quality is not None and bool(rng.random() < self.jpeg_prob)

    def _noise(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Noise for an LR image of `shape`: a grid of independently drawn patches, cropped at a
        random offset. An image no larger than a patch gets a window of one patch (no seams);
        larger ones get seams between patches but no repeated pattern the network could learn."""
        h, w = shape
        p = self.noise_patches.shape[1]
        rows, cols = -(-h // p), -(-w // p)
        chosen = self.noise_patches[rng.integers(len(self.noise_patches), size=(rows, cols))]
        mosaic = chosen.transpose(0, 2, 1, 3, 4).reshape(rows * p, cols * p, 3)
        top = int(rng.integers(rows * p - h + 1))
        left = int(rng.integers(cols * p - w + 1))
        return mosaic[top : top + h, left : left + w]

    # --- inspecting -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Plain numbers for `calibrate --show`."""
        k = np.clip(self.kernels.astype(np.float64), 0, None)
        k /= k.sum(axis=(1, 2), keepdims=True)
        grid = np.arange(k.shape[1]) - k.shape[1] // 2
        var_y = np.einsum("kyx,y->k", k, grid**2) - np.einsum("kyx,y->k", k, grid) ** 2
        var_x = np.einsum("kyx,x->k", k, grid**2) - np.einsum("kyx,x->k", k, grid) ** 2
        width = np.sqrt(np.maximum((var_y + var_x) / 2, 0))
        sigma = self.noise_sigmas()
        return {
            "format": POOL_FORMAT,
            "version": POOL_VERSION,
            "scale": self.scale,
            "kernels": int(k.shape[0]),
            "kernel_size": int(k.shape[1]),
            "kernel_sigma_hr_px": _stats(width),
            "noise_patches": int(len(self.noise_patches)),
            "noise_patch_size": int(self.noise_patches.shape[1]),
            "noise_sigma": _stats(sigma) if sigma.size else None,
            "sensor_noise": _describe_sensor_noise(self.noise),
            "jpeg_quality": self.jpeg_quality,
            "jpeg_prob": self.jpeg_prob,
        }

    def noise_sigmas(self) -> np.ndarray:
        """Each patch's standard deviation over pixels and channels (patches are zero-mean)."""
        if not len(self.noise_patches):
            return np.zeros(0)
        return np.sqrt(np.mean(self.noise_patches.astype(np.float64) ** 2, axis=(1, 2, 3)))

    def preview(self, path: Path, max_items: int = 32) -> None:
        """A PNG montage (kernels scaled to their peak, noise amplified around grey), atomically."""
        write_png(Path(path), _montage(self, max_items), text={"cctvsr-pool": json.dumps(self.summary())})


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def _read_members(path: Path) -> dict[str, np.ndarray]:
    """Every member of the npz, read without unpickling; unreadable files become one line."""
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block np.load forever
        raise PoolFormatError(f"{path}: not a regular file (a FIFO, socket or device), not a pool file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PoolFormatError(f"{path}: no such pool file") from None
    except IsADirectoryError:
        raise PoolFormatError(f"{path}: is a directory, not a pool file") from None
    except PermissionError:
        raise PoolFormatError(f"{path}: permission denied") from None
    except _READ_ERRORS:
        raise PoolFormatError(f"{path}: not a cctvsr pool file (not an npz archive, or a truncated one)") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise PoolFormatError(f"{path}: a single .npy array, not a cctvsr pool file")
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for name in loaded.files:
            try:
                arrays[name] = loaded[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise PoolFormatError(
                        f"{path}: array '{name}' holds Python objects (pickle); refusing to load it"
                    ) from None
                raise PoolFormatError(f"{path}: damaged array '{name}' ({_first_line(exc)})") from None
            except _READ_ERRORS as exc:
                raise PoolFormatError(f"{path}: damaged array '{name}' ({_first_line(exc)})") from None
    return arrays


def _sensor_noise_problem(noise: Any) -> str | None:
    """What is wrong with a header's `noise` entry (None: nothing; a missing entry is 'unknown')."""
    if noise is None:
        return None
    if not isinstance(noise, dict):
        return "header 'noise' is not a JSON object"
    for key in ("sigma", "upper_bound"):
        value = noise.get(key)
        if value is not None and (not _is_number(value) or not 0 <= value < 256):
            return f"header noise {key} {value!r} is not a σ between 0 and 255"
    per_channel = noise.get("sigma_per_channel")
    if per_channel is not None and (
        not isinstance(per_channel, list) or len(per_channel) != 3 or not all(_is_number(v) and 0 <= v < 256 for v in per_channel)
    ):
        return f"header noise sigma_per_channel {per_channel!r} is not three σ between 0 and 255"
    return None


def _describe_sensor_noise(noise: dict[str, Any] | None) -> str:
    """The measured sensor noise as `--show` prints it."""
    if noise is None:
        return "unknown (a pool made before cctvsr measured it: run calibrate again)"
    how = f"{noise.get('method')}, {noise.get('frames_used')} frames, {noise.get('codec') or 'uncompressed'}"
    if noise.get("textured_frames_rejected"):
        how += f", {noise['textured_frames_rejected']} textured frames refused"
    if noise.get("sigma") is not None:
        if noise.get("channels") == "measured" and noise.get("sigma_per_channel") is not None:
            r, g, b = noise["sigma_per_channel"]
            return f"σ R {r:.2f}, G {g:.2f}, B {b:.2f} (luma-equivalent {noise['sigma']:.2f}; {how})"
        return f"σ {noise['sigma']:.2f} per channel ({how})"
    if noise.get("upper_bound") is not None:
        return f"σ ≤ {noise['upper_bound']:.2f}: below what the codec leaves measurable ({how})"
    return f"not measured: {noise.get('note') or 'no usable frames'} ({how})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _parse_header(
    arrays: dict[str, np.ndarray], fail: Callable[[str], PoolFormatError]
) -> dict[str, Any]:
    """The header JSON, once its format and version are ones this cctvsr reads."""
    raw = arrays.get("header")
    if raw is None:
        raise fail("not a cctvsr degradation pool (no 'header' array)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise fail(f"damaged header (a {raw.dtype} array of shape {raw.shape}, expected UTF-8 bytes)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise fail("damaged header (not UTF-8 JSON)") from None
    if not isinstance(header, dict) or header.get("format") != POOL_FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise fail(f"not a cctvsr degradation pool (format {found!r}, expected {POOL_FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"unknown pool version {version!r}")
    if version > POOL_VERSION:
        raise fail(
            f"pool version {version} was made by a newer cctvsr (this one reads up to "
            f"version {POOL_VERSION}); upgrade cctvsr"
        )
    return header


# --- the preview montage ------------------------------------------------------------------------

_CELL = 64
_GAP = 6
_COLUMNS = 8
_TEXT_ROW = 20
_BACKGROUND = 32
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _grid(tiles: list[np.ndarray]) -> np.ndarray:
    """Equal-sized RGB tiles in rows of `_COLUMNS`, separated by background."""
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // _COLUMNS)
    out = np.full((rows * (th + _GAP), _COLUMNS * (tw + _GAP), 3), _BACKGROUND, np.uint8)
    for n, tile in enumerate(tiles):
        y, x = (n // _COLUMNS) * (th + _GAP), (n % _COLUMNS) * (tw + _GAP)
        out[y : y + th, x : x + tw] = tile
    return out


def _zoom(image: np.ndarray) -> np.ndarray:
    factor = max(1, _CELL // image.shape[0])
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _text(lines: list[str], width: int) -> np.ndarray:
    out = np.full((_TEXT_ROW * len(lines) + 6, width, 3), _BACKGROUND, np.uint8)
    for n, line in enumerate(lines):
        cv2.putText(out, line, (4, _TEXT_ROW * (n + 1)), _FONT, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return out


def _montage(pool: DegradationPool, max_items: int) -> np.ndarray:
    s = pool.summary()
    kernels = [np.clip(k, 0, None) / max(float(k.max()), 1e-12) for k in pool.kernels[:max_items]]
    kernel_tiles = [_zoom(np.repeat((k * 255).round().astype(np.uint8)[..., None], 3, 2)) for k in kernels]
    sections = [("blur kernels (HR px, each scaled to its peak)", _grid(kernel_tiles))]
    if s["noise_sigma"]:
        patches = pool.noise_patches[:max_items]
        gain = 127.0 / max(3.0 * float(pool.noise_sigmas()[:max_items].max()), 1e-6)
        tiles = [_zoom(np.clip(np.rint(128 + p * gain), 0, 255).astype(np.uint8)) for p in patches]
        sections.append((f"noise patches (LR px, x{gain:.1f} around grey 128)", _grid(tiles)))
    quality = (
        f"JPEG quality {s['jpeg_quality']:.1f}, applied with p = {s['jpeg_prob']:.2f}"
        if s["jpeg_quality"] is not None
        else "JPEG: none (no compression estimate)"
    )
    noise = (
        f"noise: {s['noise_patches']} patches {s['noise_patch_size']}x{s['noise_patch_size']}, "
        f"sigma mean {s['noise_sigma']['mean']:.2f} (min {s['noise_sigma']['min']:.2f}, "
        f"max {s['noise_sigma']['max']:.2f})"
        if s["noise_sigma"]
        else "noise: none"
    )
    width = max(560, *(grid.shape[1] for _, grid in sections))
    parts = [
        _text(
            [
                f"cctvsr degradation pool v{POOL_VERSION}, scale x{s['scale']}",
                f"kernels: {s['kernels']} of {s['kernel_size']}x{s['kernel_size']} HR px, "
                f"sigma mean {s['kernel_sigma_hr_px']['mean']:.2f} px",
                noise,
                quality,
            ],
            width,
        )
    ]
    for title, grid in sections:
        parts.append(_text([title], width))
        padded = np.full((grid.shape[0], width, 3), _BACKGROUND, np.uint8)
        padded[:, 4 : 4 + min(grid.shape[1], width - 4)] = grid[:, : width - 4]
        parts.append(padded)
    return np.concatenate(parts, axis=0)
