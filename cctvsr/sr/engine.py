"""SuperResolver: runs the generator on uint8 RGB crops of any size and returns each ×4.

A crop's result never depends on its batch-mates: its padded size is a function of its own size,
and only crops of the same padded size share a batch. On CUDA that size is the next multiple of 8
(reflect padding, output cropped back), so similar sizes batch together; on CPU it is the crop's
own size, since batching gains little there and padding would only add work and change the
result near the bottom and right edges. A crop larger than
one window (tile + 2 × overlap) is cut into windows at a stride of `tile`: each window carries
`overlap` pixels of context on every side, and neighbours are blended across their shared 2 ×
overlap band, which bounds memory without a seam.

The generator call itself is a `Runner`: PyTorch here (`TorchRunner`), ONNX Runtime and TensorRT in
their own modules; everything around the call is the same for all of them.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from cctvsr.device import resolve_device, resolve_precision
from cctvsr.errors import InputError
from cctvsr.sr.weights import GeneratorWeights, ModelIdentity

SCALE = 4
PAD_MULTIPLE = 8  # on CUDA; 1 on CPU
UNBOUNDED_BATCH = 1 << 30  # a runner with no limit of its own on the batch


@dataclass(frozen=True)
class ExecutionPlan:
    """How the generator runs: where, with which arithmetic and memory layout."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    backend: str = "torch"  # torch | onnx | tensorrt
    detail: str = ""  # for onnx: the ONNX Runtime providers that run it

    @property
    def weight_dtype(self) -> torch.dtype:
        # fp16 casts the whole network (CUDA); bf16 runs fp32 weights under autocast.
        return torch.float16 if self.precision == "fp16" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def pad_multiple(self) -> int:
        """Crops are padded to a multiple of this: 1 on CPU (padding is pure waste there), 8 on CUDA
        (so that similar sizes share a batch, and engines see few distinct shapes)."""
        return 1 if self.device.type == "cpu" else PAD_MULTIPLE

    def describe(self) -> str:
        text = f"{self.device.type} {self.precision}{' + channels_last' if self.channels_last else ''}"
        if self.backend == "torch":
            return text
        return f"{self.backend} {text}" + (f" ({self.detail})" if self.detail else "")


class Runner(Protocol):
    """One generator call on one batch: what differs between torch, ONNX Runtime and TensorRT.
    Everything around it (checks, bucketing, padding, tiling, blending, uint8 output) is shared."""

    plan: ExecutionPlan

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, 4H, 4W, 3) float32 in [0, 255]."""
        ...

    def max_batch(self, height: int, width: int) -> int:
        """Most crops of this padded size one call may take (an engine's profile can bound it)."""
        ...


class TorchRunner:
    """The generator as a PyTorch module, on the plan's device, precision and memory layout."""

    def __init__(self, weights: GeneratorWeights, plan: ExecutionPlan) -> None:
        self.plan = plan
        model = weights.build().to(device=plan.device, dtype=plan.weight_dtype)
        self.model = model.to(memory_format=torch.channels_last) if plan.channels_last else model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        plan = self.plan
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(plan.device).permute(0, 3, 1, 2)  # channels_last strides
            x = x.to(plan.weight_dtype).div_(255.0)
            if not plan.channels_last:
                x = x.contiguous()
            with plan.autocast():
                y = self.model(x)
            y = y.float().clamp_(0.0, 1.0).mul_(255.0)
            return y.permute(0, 2, 3, 1).cpu().numpy()

    def max_batch(self, height: int, width: int) -> int:
        return UNBOUNDED_BATCH


def resolve_plan(device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> ExecutionPlan:
    """The fastest plan the hardware supports for `auto`; a one-line error for an impossible one."""
    resolved = resolve_device(device)
    # channels_last measured faster on CPU (oneDNN) in fp32 and bf16, and with fp16 tensor cores.
    layout = True if channels_last is None else channels_last
    return ExecutionPlan(resolved, resolve_precision(precision, resolved), layout)


def check_batching(batch_size: int, tile: int, tile_overlap: int) -> None:
    """A one-line error for batch and tile settings the batcher cannot honour."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if tile and (tile < 32 or tile % PAD_MULTIPLE):
        raise InputError(f"--tile must be 0 (off) or a multiple of {PAD_MULTIPLE} of at least 32, not {tile}")
    if tile and not 0 < tile_overlap <= tile // 2:
        raise InputError(f"--tile-overlap must be between 1 and half the tile ({tile // 2})")


@dataclass(frozen=True)
class _Piece:
    """A rectangle of one crop (the whole crop, or one tile of it) in LR pixels."""

    crop: int
    y: int
    x: int
    h: int
    w: int


def padded_size(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple: the bucket a side falls in."""
    return math.ceil(n / multiple) * multiple


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    return [*range(0, length - window, stride), length - window]


def _ramp(start: int, size: int, length: int, overlap_hr: int) -> np.ndarray:
    """Blend weights along one axis of a window. On a side shared with a neighbour the outer
    quarter of the shared band (where the window border corrupts the output most) is all but
    ignored and the middle half ramps linearly; weights stay positive so they never sum to zero."""
    weights = np.ones(size * SCALE, np.float32)
    margin, rise = overlap_hr // 4, overlap_hr // 2
    edge = np.full(margin + rise, 1e-3, np.float32)
    edge[margin:] = (np.arange(rise, dtype=np.float32) + 0.5) / rise
    if start > 0:
        weights[: edge.size] = np.minimum(weights[: edge.size], edge)
    if start + size < length:
        weights[-edge.size :] = np.minimum(weights[-edge.size :], edge[::-1])
    return weights


class SuperResolver:
    """×4 super-resolution of a list of crops, each at its own size, batched where it is free."""

    scale = SCALE

    def __init__(
        self,
        weights: ModelIdentity,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 8,
        tile: int = 256,
        tile_overlap: int = 16,
        channels_last: bool | None = None,
        runner: Runner | None = None,
    ) -> None:
        """`weights` are run in PyTorch per device/precision/channels_last, unless a `runner` (ONNX
        Runtime, TensorRT) is given: then it runs them, and `weights` only names them."""
        check_batching(batch_size, tile, tile_overlap)
        if runner is None:
            if not isinstance(weights, GeneratorWeights):
                raise InputError(f"{weights.name}: PyTorch needs the model's weights, not an exported graph")
            runner = TorchRunner(weights, resolve_plan(device, precision, channels_last))
        self.runner = runner
        self.plan = runner.plan
        self.weights = weights
        self.batch_size = batch_size
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.window = tile + 2 * tile_overlap if tile else 0
        self.pad_multiple = self.plan.pad_multiple

    def upscale(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each (H, W, 3) uint8 RGB crop as a (4H, 4W, 3) uint8 RGB image, in input order."""
        for index, crop in enumerate(crops):
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
                raise InputError(f"crop {index}: expected uint8 (H, W, 3) RGB, got {crop.dtype} {crop.shape}")
            if crop.shape[0] == 0 or crop.shape[1] == 0:
                raise InputError(f"crop {index}: empty (0-pixel) crop {crop.shape[:2]}")
        groups: dict[tuple[int, int], list[_Piece]] = defaultdict(list)
        tiled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for index, crop in enumerate(crops):
            h, w = crop.shape[:2]
            for piece in self._pieces(index, h, w):
                groups[self._batch_key(piece)].append(piece)
            if self._is_tiled(h, w):
                hr = (h * SCALE, w * SCALE)
                tiled[index] = (np.zeros((*hr, 3), np.float32), np.zeros((*hr, 1), np.float32))
        results: list[np.ndarray | None] = [None] * len(crops)
        for key, pieces in groups.items():
            for chunk in self._chunks(pieces, key):
                batch = np.stack([self._padded_piece(crops[p.crop], p, key) for p in chunk])
                for piece, out in zip(chunk, self._forward(batch)):
                    out = out[: piece.h * SCALE, : piece.w * SCALE]
                    if piece.crop in tiled:
                        self._blend(tiled[piece.crop], piece, out, crops[piece.crop].shape)
                    else:
                        results[piece.crop] = _to_uint8(out)
        for index, (total, weight) in tiled.items():
            results[index] = _to_uint8(total / weight)
        return results  # type: ignore[return-value]

    def _is_tiled(self, h: int, w: int) -> bool:
        return bool(self.window) and max(h, w) > self.window

    def _pieces(self, index: int, h: int, w: int) -> Iterator[_Piece]:
        if not self._is_tiled(h, w):
            yield _Piece(index, 0, 0, h, w)
            return
        wh, ww = min(h, self.window), min(w, self.window)
        for y in _window_starts(h, self.window, self.tile):
            for x in _window_starts(w, self.window, self.tile):
                yield _Piece(index, y, x, wh, ww)

    def _batch_key(self, piece: _Piece) -> tuple[int, int]:
        return padded_size(piece.h, self.pad_multiple), padded_size(piece.w, self.pad_multiple)

    def _chunks(self, pieces: list[_Piece], key: tuple[int, int]) -> Iterator[list[_Piece]]:
        # Bound memory: a batch holds at most batch_size pieces and about one window's pixels.
        budget = max(1, (self.window or 288) ** 2 // (key[0] * key[1]))
        size = min(self.batch_size, budget, self.runner.max_batch(*key))
        for start in range(0, len(pieces), size):
            yield pieces[start : start + size]

    @staticmethod
    def _padded_piece(crop: np.ndarray, piece: _Piece, size: tuple[int, int]) -> np.ndarray:
        region = crop[piece.y : piece.y + piece.h, piece.x : piece.x + piece.w]
        pad = ((0, size[0] - piece.h), (0, size[1] - piece.w), (0, 0))
        return np.pad(region, pad, mode="reflect") if any(p[1] for p in pad) else region

    def _blend(self, accumulator: tuple[np.ndarray, np.ndarray], piece: _Piece, out: np.ndarray, shape: tuple[int, ...]) -> None:
        total, weight = accumulator
        overlap_hr = 2 * self.tile_overlap * SCALE
        wy = _ramp(piece.y, piece.h, shape[0], overlap_hr)
        wx = _ramp(piece.x, piece.w, shape[1], overlap_hr)
        mask = (wy[:, None] * wx[None, :])[..., None]
        ys, xs = slice(piece.y * SCALE, (piece.y + piece.h) * SCALE), slice(piece.x * SCALE, (piece.x + piece.w) * SCALE)
        total[ys, xs] += out * mask
        weight[ys, xs] += mask

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, 4H, 4W, 3) float32 in [0, 255]."""
        return self.runner(batch)

    def batch_shapes(self, sides: Sequence[int]) -> list[tuple[int, int, int]]:
        """The (batch, height, width) shapes the batcher gives the runner for square crops of these
        sides: each side's padded bucket, alone and in the largest batch it can be part of."""
        shapes: dict[tuple[int, int, int], None] = {}
        for side in sides:
            for piece in self._pieces(0, side, side):
                key = self._batch_key(piece)
                largest = len(next(self._chunks([piece] * self.batch_size, key)))
                for n in sorted({1, largest}):
                    shapes[(n, *key)] = None
        return list(shapes)

    def warm_up(self, sides: Sequence[int]) -> int:
        """Run each batch shape of `batch_shapes(sides)` once on a blank batch, so that the first
        real faces of those sizes do not pay for per-shape set-up (cuDNN algorithm search,
        ONNX Runtime's memory planning). Returns how many shapes were run."""
        shapes = self.batch_shapes(sides)
        for n, h, w in shapes:
            self._forward(np.zeros((n, h, w, 3), np.uint8))
        return len(shapes)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
