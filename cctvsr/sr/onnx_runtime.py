"""The ONNX Runtime backend: which execution providers really work here, and a runner for
`SuperResolver` over an exported generator.

A provider being listed by `onnxruntime.get_available_providers()` only says that the package was
built with it (onnxruntime-gpu lists CUDA and TensorRT even without a GPU or without the TensorRT
libraries, and ONNX Runtime then silently falls back to the CPU). So each candidate is tried on a
one-convolution graph, and only the ones that really ran it are used; the answer is kept for the
life of the process.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cctvsr.errors import DeviceError
from cctvsr.sr.engine import UNBOUNDED_BATCH, ExecutionPlan
from cctvsr.sr.tensorrt import Profile, ort_profile_options, profile_index, tensorrt_cache_dir

TENSORRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDER_ORDER = (TENSORRT_EP, CUDA_EP, CPU_EP)  # fastest first; Azure, DirectML, … are not candidates
GPU_INSTALL_HINT = "pip uninstall onnxruntime; pip install onnxruntime-gpu (see README, GPU install)"


def choose_providers(available: Sequence[str], works: Callable[[str], bool]) -> list[str]:
    """The candidates, fastest first, that are installed and pass `works`."""
    return [name for name in PROVIDER_ORDER if name in available and works(name)]


@lru_cache(maxsize=1)
def _probe_graph() -> bytes:
    """A one-convolution float graph: enough to make a provider load its libraries and run."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, 3, 3, 3), 1 / 27, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def provider_works(name: str) -> bool:
    """True when a session on `name` alone is created on it (no fallback) and computes correctly."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing provider logs errors; its failure is the answer here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not in available provider names": answered by the check below
            session = ort.InferenceSession(_probe_graph(), options, providers=[name])
        if session.get_providers()[0] != name:
            return False
        y = session.run(None, {"x": np.ones((1, 3, 8, 8), np.float32)})[0]
    except Exception:  # any failure to load or run means: not usable here
        return False
    return bool(abs(float(y[0, 0, 4, 4]) - 1.0) < 1e-2)


@lru_cache(maxsize=1)
def usable_providers() -> tuple[str, ...]:
    """The providers that really run on this machine, fastest first (probed once per process)."""
    import onnxruntime as ort

    return tuple(choose_providers(ort.get_available_providers(), provider_works))


def providers_for_device(device: str, usable: Sequence[str]) -> list[str]:
    """The provider list a session gets for --device: the GPU ones (fastest first) ahead of the CPU
    for cuda/auto, the CPU alone for cpu; a one-line error when cuda is asked for and none works."""
    if device == "cpu":
        return [CPU_EP]
    gpu = [name for name in usable if name != CPU_EP]
    if device == "cuda" and not gpu:
        raise DeviceError(f"--backend onnx --device cuda: no usable CUDA provider in ONNX Runtime here ({GPU_INSTALL_HINT})")
    if device not in ("auto", "cuda"):
        raise DeviceError(f"unknown device {device!r} (choose from auto, cpu, cuda)")
    return [*gpu, CPU_EP]


def provider_options(name: str, profiles: Sequence[Profile], fp16: bool) -> dict[str, str]:
    """TensorRT: engine and timing caches in the user cache dir, and explicit profiles over the
    batcher's buckets (so a new face size never triggers an engine rebuild); others: defaults."""
    if name != TENSORRT_EP:
        return {}
    cache = tensorrt_cache_dir() / "onnxruntime"
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache / "engines"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache / "timing"),
        "trt_fp16_enable": "True" if fp16 else "False",
        **ort_profile_options(profiles),
    }


class OnnxRuntimeRunner:
    """An exported generator in an ONNX Runtime session (`fp16`: the graph's own precision); the
    input dtype is the graph's, pre- and post-processing are the torch runner's (/255, clamp to
    [0, 1], ×255), so only the network's arithmetic differs between the two."""

    def __init__(
        self,
        path: Path,
        providers: Sequence[str],
        *,
        fp16: bool = False,
        profiles: Sequence[Profile] = (),
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
        # Idle worker threads sleep instead of spinning: enhance decodes and detects on the same
        # cores while SR runs, and on a shared 2-core machine (load 4) a 3×29×35 batch of the real
        # model took 1.3 s without spinning against 1.9 s with it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.profiles = list(profiles) if TENSORRT_EP in providers else []
        chosen: list[Any] = [(name, provider_options(name, profiles, fp16)) for name in providers]
        for _, opts in chosen:  # the TensorRT provider does not create its cache folders itself
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in opts:
                    Path(opts[key]).mkdir(parents=True, exist_ok=True)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # a graph ONNX Runtime cannot load: the user's file
            raise DeviceError(f"{path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from None
        used = self.session.get_providers()
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = np.float16 if first.type == "tensor(float16)" else np.float32
        device = "cpu" if used[0] == CPU_EP else "cuda"
        precision = "fp16" if self.input_dtype == np.float16 else "fp32"
        self.plan = ExecutionPlan(torch.device(device), precision, False, "onnx", ", ".join(used))

    def max_batch(self, height: int, width: int) -> int:
        if not self.profiles:
            return UNBOUNDED_BATCH
        return self.profiles[profile_index(self.profiles, height, width)].max_batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        x = (x / np.float32(255.0)).astype(self.input_dtype, copy=False)
        (y,) = self.session.run(None, {self.input_name: x})
        y = np.clip(y.astype(np.float32, copy=False), 0.0, 1.0) * np.float32(255.0)
        return y.transpose(0, 2, 3, 1)

