"""`--backend torch|onnx|tensorrt`: one function turns the model and execution options every
SR command shares (upscale, enhance, evaluate) into a `SuperResolver`.

torch runs the weights in PyTorch. onnx runs an exported graph in ONNX Runtime on the best
provider that really works here: a `.onnx` --model as it is, otherwise the weights are exported
once into the user cache (parity-checked like `export-onnx`) and that file is re-used. tensorrt
builds (once, cached) a native engine from the same export. A `.onnx` --model implies onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cctvsr.assets import sha256_file
from cctvsr.errors import DeviceError, InputError
from cctvsr.sr.engine import SuperResolver, check_batching
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights

if TYPE_CHECKING:
    from cctvsr.sr.export import OnnxModel

Warn = Callable[[str], None]

BACKENDS = ("torch", "onnx", "tensorrt")
# Square crop sides whose CUDA buckets are run once before the first face: the faces a CCTV
# detector finds are 16–128 px, and ONNX Runtime / cuDNN pay a set-up cost on every new shape.
WARM_UP_SIDES = tuple(range(16, 129, 8))


def is_onnx_path(model: str) -> bool:
    return Path(model).suffix.lower() == ".onnx"


def choose_backend(model: str, backend: str | None) -> str:
    """The backend for --backend (None: onnx for a .onnx --model, torch otherwise)."""
    if backend is None:
        return "onnx" if is_onnx_path(model) else "torch"
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "torch" and is_onnx_path(model):
        raise InputError(f"{model}: an exported ONNX graph runs with --backend onnx or tensorrt, not torch")
    return backend


def load_weights(model: str, fidelity: float | None) -> GeneratorWeights:
    """--model's weights, interpolated to --fidelity when given."""
    weights = load_generator_weights(model)
    return weights if fidelity is None else weights.at_fidelity(fidelity)


def graph_precision(precision: str, gpu: bool) -> str:
    """The precision of the graph an ONNX Runtime or TensorRT run needs for --precision."""
    if precision == "bf16":
        raise DeviceError("--precision bf16 is a --backend torch setting; exported graphs run in fp32 or fp16")
    if precision not in ("auto", "fp32", "fp16"):
        raise DeviceError(f"unknown precision {precision!r} (choose from auto, fp32, bf16, fp16)")
    if precision == "fp16" and not gpu:
        raise DeviceError("fp16 needs CUDA; on CPU use --precision fp32")
    return ("fp16" if gpu else "fp32") if precision == "auto" else precision


def create_resolver(
    model: str,
    *,
    backend: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 8,
    tile: int = 256,
    tile_overlap: int = 16,
    fidelity: float | None = None,
    warn: Warn = lambda _: None,
) -> SuperResolver:
    """A SuperResolver for these options, or a one-line error naming what cannot be done here."""
    backend = choose_backend(model, backend)
    check_batching(batch_size, tile, tile_overlap)
    common = {"batch_size": batch_size, "tile": tile, "tile_overlap": tile_overlap}
    if backend == "torch":
        return SuperResolver(load_weights(model, fidelity), device=device, precision=precision, **common)
    if fidelity is not None and is_onnx_path(model):
        raise InputError(f"{model}: --fidelity is chosen at export (`export-onnx --fidelity`); this graph is fixed")
    window = tile + 2 * tile_overlap if tile else 0
    if backend == "tensorrt":
        return _tensorrt(model, device, precision, fidelity, window, batch_size, common, warn)
    return _onnx(model, device, precision, fidelity, window, batch_size, common, warn)


def _exported(model: str, precision: str, fidelity: float | None, warn: Warn) -> OnnxModel:
    """The graph to run: a .onnx --model as it is (its precision must fit), else the cached export."""
    from cctvsr.sr.export import cached_export, read_onnx_model

    if is_onnx_path(model):
        graph = read_onnx_model(Path(model).expanduser())
        if precision not in ("auto", graph.precision):
            raise DeviceError(f"{model} is an {graph.precision} graph; export it again for --precision {precision}")
        return graph
    return cached_export(load_weights(model, fidelity), fp16=precision == "fp16", warn=warn)


def _onnx(
    model: str, device: str, precision: str, fidelity: float | None, window: int, batch_size: int, common: dict[str, Any], warn: Warn
) -> SuperResolver:
    from cctvsr.sr.onnx_runtime import CPU_EP, OnnxRuntimeRunner, providers_for_device, usable_providers
    from cctvsr.sr.tensorrt import tensorrt_profiles

    providers = providers_for_device(device, usable_providers())
    gpu = providers[0] != CPU_EP
    # A .onnx file under --precision auto runs in its own precision; otherwise the device decides.
    wanted = "auto" if is_onnx_path(model) and precision == "auto" else graph_precision(precision, gpu)
    graph = _exported(model, wanted, fidelity, warn)
    profiles = tensorrt_profiles(batch_size, window) if window else []
    runner = OnnxRuntimeRunner(graph.path, providers, fp16=graph.fp16, profiles=profiles)
    return _warmed(SuperResolver(graph, runner=runner, **common))


def _tensorrt(
    model: str, device: str, precision: str, fidelity: float | None, window: int, batch_size: int, common: dict[str, Any], warn: Warn
) -> SuperResolver:
    from cctvsr.sr.tensorrt import TensorRTRunner, _import_tensorrt

    _import_tensorrt()  # fail in one line before exporting anything
    if device == "cpu":
        raise DeviceError("--backend tensorrt runs on a CUDA GPU, not --device cpu")
    if not window:
        raise InputError("--backend tensorrt needs --tile > 0: its engine's profiles end at one tile window")
    graph = _exported(model, graph_precision(precision, gpu=True), fidelity, warn)
    runner = TensorRTRunner(graph.path, sha256_file(graph.path), fp16=graph.fp16, batch_size=batch_size, window=window)
    return _warmed(SuperResolver(graph, runner=runner, **common))


def _warmed(resolver: SuperResolver) -> SuperResolver:
    """On a GPU, run the usual face buckets once now rather than on the first faces."""
    if resolver.plan.device.type == "cuda":
        resolver.warm_up(WARM_UP_SIDES)
    return resolver
