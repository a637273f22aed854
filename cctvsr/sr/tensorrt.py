"""Native TensorRT engines for the exported generator: optimisation profiles that cover the size
buckets the batcher produces on CUDA, a cache keyed by what makes an engine valid, and a runner.

An engine is only valid for the graph, the GPU and the TensorRT version it was built with, and
only for the input shapes its profiles cover; building one takes minutes. So profiles are derived
from the batcher's buckets (multiples of 8 up to one tile window), the engine is cached under the
user cache dir by model hash + GPU name + TensorRT version + profiles, and written atomically.
`tensorrt` (and the CUDA it needs) is imported only when an engine is really built or run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cctvsr.errors import DeviceError, InputError
from cctvsr.fsutil import atomic_path
from cctvsr.sr.engine import PAD_MULTIPLE, SCALE, ExecutionPlan, padded_size
from cctvsr.sr.weights import cache_dir

INPUT, OUTPUT = "input", "output"
PROFILE_EDGES = (64, 128)  # max-side bounds of the smaller profiles; the last one ends at the window
MISSING = "--backend tensorrt needs the tensorrt package and a CUDA GPU"


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile for the (N, 3, H, W) input: crops whose padded longer side
    lies in (low, high] run in it; `opt` is the shape TensorRT tunes its kernels for."""

    low: int
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @property
    def high(self) -> int:
        return self.max[2]

    @property
    def max_batch(self) -> int:
        return self.max[0]


def tensorrt_profiles(batch_size: int, window: int) -> list[Profile]:
    """Profiles covering every bucket the CUDA batcher can produce for this batch size and tile
    window: sides are multiples of 8 from 8 to the padded window. Each profile's largest batch is
    the one the batcher's memory budget (about one window's pixels) allows at its largest square,
    so that the engine never reserves memory for batches that are never formed."""
    top = padded_size(window, PAD_MULTIPLE)
    edges = [edge for edge in PROFILE_EDGES if edge < top] + [top]
    profiles, low = [], 0
    for high in edges:
        max_batch = min(batch_size, max(1, window * window // (high * high)))
        mid = padded_size((low + high) // 2 + 1, PAD_MULTIPLE)
        opt_batch = min(max_batch, max(1, window * window // (mid * mid)))
        profiles.append(
            Profile(
                low=low,
                min=(1, 3, PAD_MULTIPLE, PAD_MULTIPLE),
                opt=(opt_batch, 3, mid, mid),
                max=(max_batch, 3, high, high),
            )
        )
        low = high
    return profiles


def profile_index(profiles: Sequence[Profile], height: int, width: int) -> int:
    """The smallest profile whose range holds a (padded) crop of this size."""
    side = max(height, width)
    for index, profile in enumerate(profiles):
        if side <= profile.high:
            return index
    raise InputError(f"a {height}×{width} piece is larger than the TensorRT profiles ({profiles[-1].high} px); use --tile")


def ort_profile_options(profiles: Sequence[Profile], input_name: str = INPUT) -> dict[str, str]:
    """The same profiles as ONNX Runtime's TensorRT provider options (one entry per profile)."""

    def shapes(attr: str) -> str:
        return ",".join(f"{input_name}:{'x'.join(map(str, getattr(p, attr)))}" for p in profiles)

    return {
        "trt_profile_min_shapes": shapes("min"),
        "trt_profile_opt_shapes": shapes("opt"),
        "trt_profile_max_shapes": shapes("max"),
    }


def engine_cache_key(model_sha256: str, gpu_name: str, tensorrt_version: str, profiles: Sequence[Profile], fp16: bool) -> str:
    """Everything an engine's validity depends on, hashed: the graph (the .onnx file's sha256), the
    GPU it was tuned for, the TensorRT version that serialised it, its profiles and precision."""
    document = {
        "model": model_sha256,
        "gpu": gpu_name,
        "tensorrt": tensorrt_version,
        "profiles": [[p.min, p.opt, p.max] for p in profiles],
        "fp16": fp16,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]


def tensorrt_cache_dir() -> Path:
    """Engines, and ONNX Runtime's TensorRT engine and timing caches, live here."""
    return cache_dir() / "tensorrt"


def engine_path(key: str) -> Path:
    return tensorrt_cache_dir() / "engines" / f"{key}.plan"


def _import_tensorrt() -> Any:
    """tensorrt and a CUDA GPU, or a one-line error naming what is missing."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        cuda = "a CUDA GPU found" if torch.cuda.is_available() else "no CUDA GPU found either"
        raise DeviceError(f"{MISSING} (tensorrt is not installed; {cuda})") from None
    if not torch.cuda.is_available():
        raise DeviceError(f"{MISSING} (tensorrt {tensorrt.__version__} is installed, but no CUDA GPU found)")
    return tensorrt


def tensorrt_status() -> tuple[bool, str]:
    """For `cctvsr models`: whether native engines can be built here, and which version and GPU
    would build them, or what is missing."""
    try:
        trt = _import_tensorrt()
    except DeviceError as exc:
        return False, str(exc).removeprefix(f"{MISSING} ").strip("()")
    return True, f"tensorrt {trt.__version__} on {torch.cuda.get_device_name(0)}"


def build_engine(onnx_path: Path, model_sha256: str, profiles: Sequence[Profile], fp16: bool) -> Path:
    """The cached engine for this graph, GPU, TensorRT version and profiles, built when absent."""
    trt = _import_tensorrt()
    key = engine_cache_key(model_sha256, torch.cuda.get_device_name(0), trt.__version__, profiles, fp16)
    path = engine_path(key)
    if path.is_file():
        return path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # Explicit batch is the only mode in TensorRT ≥ 10 (the flag is gone); 8.x must ask for it.
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeviceError(f"{onnx_path}: TensorRT cannot parse the graph ({errors[:300]})")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    timing_path = tensorrt_cache_dir() / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(INPUT, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeviceError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(timing_path) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return path


class TensorRTRunner:
    """Runs a cached native engine on CUDA: picks the profile per batch shape, I/O through torch."""

    def __init__(self, onnx_path: Path, model_sha256: str, *, fp16: bool, batch_size: int, window: int) -> None:
        trt = _import_tensorrt()
        self.profiles = tensorrt_profiles(batch_size, window)
        self.dtype = torch.float16 if fp16 else torch.float32
        path = build_engine(onnx_path, model_sha256, self.profiles, fp16)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DeviceError(f"{path}: cached TensorRT engine does not load; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.active_profile = -1
        self.plan = ExecutionPlan(torch.device("cuda"), "fp16" if fp16 else "fp32", False, "tensorrt", f"engine {path.name}")

    def max_batch(self, height: int, width: int) -> int:
        return self.profiles[profile_index(self.profiles, height, width)].max_batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n, h, w, _ = batch.shape
        index = profile_index(self.profiles, h, w)
        with torch.cuda.stream(self.stream):
            if index != self.active_profile:
                self.context.set_optimization_profile_async(index, self.stream.cuda_stream)
                self.active_profile = index
            x = torch.from_numpy(batch).cuda().permute(0, 3, 1, 2).to(self.dtype).div_(255.0).contiguous()
            y = torch.empty((n, 3, h * SCALE, w * SCALE), dtype=self.dtype, device="cuda")
            self.context.set_input_shape(INPUT, tuple(x.shape))
            self.context.set_tensor_address(INPUT, x.data_ptr())
            self.context.set_tensor_address(OUTPUT, y.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise DeviceError("TensorRT failed to run the engine")
            out = y.float().clamp_(0.0, 1.0).mul_(255.0).permute(0, 2, 3, 1).cpu().numpy()
        self.stream.synchronize()
        return out
