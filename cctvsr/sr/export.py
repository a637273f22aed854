"""`cctvsr export-onnx`: the generator as an ONNX graph with dynamic batch, height and width,
proven against PyTorch before the file is kept.

Every export is checked at once: random face-sized inputs of several shapes (odd sizes among them)
and one real photo go through PyTorch in fp32 and through the exported graph in ONNX Runtime; a
graph that misses the limits is never written to `--out` (the file is built beside it and renamed
only after it passed). What was checked, and how well, is recorded in the file's metadata along
with the weights' identity, so a deployment can tell which model it runs without PyTorch.

Exporter: PyTorch's TorchScript exporter (`dynamo=False`). It exports RRDBNet with dynamic axes
exactly (max abs diff ~1e-6 on the real model); the dynamo exporter would add onnxscript as a
dependency for no gain on this all-convolution network. No graph simplifier runs: the exported
graph is already only Conv, LeakyRelu, Concat, Mul, Add and Resize nodes (constant-folded), ONNX
Runtime applies its own fusions when it loads the file, and onnxsim 0.8.1, measured on the
realesrgan-x4plus export, gave identical outputs at 0.92× the speed on ONNX Runtime CPU (four face
crops, 24–61 px, fastest of 3 passes): nothing to gain, so no extra dependency.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cctvsr import __version__
from cctvsr.errors import ExportError, WeightsError
from cctvsr.fsutil import atomic_path
from cctvsr.sr.engine import TorchRunner, resolve_plan
from cctvsr.sr.weights import GeneratorWeights, onnx_cache_path

OPSET = 17
EXPORTER_VERSION = "1"  # bump when the exported graph changes, so cached exports are remade
INPUT, OUTPUT = "input", "output"
FP32_MAX_ABS_DIFF = 1e-3  # on the [0, 1] output scale
FP32_MIN_PSNR_DB = 60.0
FP16_MIN_PSNR_DB = 40.0
# (batch, height, width): face-sized, odd sizes and a batch > 1 among them.
PARITY_SHAPES = ((1, 17, 23), (3, 24, 31), (2, 33, 28))
PARITY_PHOTO_SIDE = 32  # skimage's astronaut, her face shrunk to this many px
FP16_UNCHECKED = "fp16 parity unchecked (no CUDA)"
# Steps export_onnx reports to on_step: tracing, each parity input (the shapes and the photo), metadata.
EXPORT_STEPS = 1 + len(PARITY_SHAPES) + 1 + 1
PSNR_CAP_DB = 999.0  # identical outputs: a finite number that JSON can hold
META = "cctvsr_"  # prefix of every metadata key cctvsr writes


@dataclass(frozen=True)
class ParityCase:
    """One input's comparison: PyTorch fp32 on the CPU against the exported graph."""

    label: str
    shape: tuple[int, int, int]  # batch, height, width
    max_abs_diff: float  # on the [0, 1] output scale
    psnr_db: float


@dataclass(frozen=True)
class Parity:
    """What the export's automatic check found; `checked` is False when it could not run."""

    checked: bool
    provider: str
    min_psnr_db: float
    max_abs_diff: float
    limit: str
    cases: list[ParityCase] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class OnnxModel:
    """An exported generator file and the identity its metadata records (a `ModelIdentity`)."""

    path: Path
    name: str
    sha256: str  # of the weights it was exported from, as in a torch run's manifest
    scale: int
    precision: str  # fp32 | fp16
    opset: int
    exporter: str
    metadata: dict[str, str]

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"

    @property
    def parity(self) -> dict:
        return json.loads(self.metadata.get(f"{META}parity", "{}"))


def read_onnx_model(path: Path) -> OnnxModel:
    """An exported generator's identity from its metadata; a one-line error for anything else."""
    import onnx

    if not path.is_file():
        raise WeightsError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not an ONNX model ({reason})") from None
    props = {prop.key: prop.value for prop in model.metadata_props}
    if f"{META}weights_sha256" not in props or not model.graph.input:
        raise WeightsError(f"{path}: not a generator exported by `cctvsr export-onnx` (no cctvsr metadata)")
    try:
        scale, opset = int(props[f"{META}scale"]), int(props[f"{META}opset"])
        precision, exporter = props[f"{META}precision"], props[f"{META}exporter"]
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: damaged cctvsr metadata ({exc})") from None
    if scale != 4:
        raise WeightsError(f"{path}: a ×{scale} model; cctvsr runs ×4 generators")
    return OnnxModel(path, props[f"{META}model"], props[f"{META}weights_sha256"], scale, precision, opset, exporter, props)


def _trace(weights: GeneratorWeights, path: Path, fp16: bool, opset: int) -> None:
    model = weights.build()
    example = torch.rand(1, 3, 32, 32)
    if fp16:
        model, example = model.half(), example.half()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (see module doc)
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: axes, OUTPUT: dict(axes)},
        )


def parity_inputs() -> list[tuple[str, np.ndarray]]:
    """Seeded random face-sized batches (uint8, NHWC) and one real photo's face."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(0)
    cases = [(f"random {n}×{h}×{w}", rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)) for n, h, w in PARITY_SHAPES]
    face = skimage.data.astronaut()[60:124, 170:234]
    side = PARITY_PHOTO_SIDE
    photo = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return [*cases, (f"photo astronaut face {side}×{side}", photo[None])]


def output_difference(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max abs diff on the [0, 1] output scale, PSNR in dB) of two runners' float [0, 255]
    outputs, before rounding to 8 bits (rounding would hide differences below half a level)."""
    diff = (reference.astype(np.float64) - candidate.astype(np.float64)) / 255.0
    mse = float(np.mean(diff**2))
    psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else PSNR_CAP_DB
    return float(np.abs(diff).max()), round(min(psnr, PSNR_CAP_DB), 2)


def check_parity(
    weights: GeneratorWeights, path: Path, fp16: bool, warn: Callable[[str], None], on_step: Callable[[str], None] = lambda _: None
) -> Parity:
    """Compare the graph at `path` with PyTorch fp32; an ExportError when it misses the limits.
    `on_step` hears of each input as it starts: the real model takes tens of seconds per input on a CPU."""
    from cctvsr.sr.onnx_runtime import CPU_EP, CUDA_EP, OnnxRuntimeRunner, usable_providers

    if fp16 and CUDA_EP not in usable_providers():
        warn(FP16_UNCHECKED)
        return Parity(False, "", float("nan"), float("nan"), f"PSNR ≥ {FP16_MIN_PSNR_DB:g} dB on CUDA")
    provider = CUDA_EP if fp16 else CPU_EP
    reference = TorchRunner(weights, resolve_plan("cpu", "fp32", channels_last=False))
    candidate = OnnxRuntimeRunner(path, [provider], fp16=fp16)
    cases = []
    for label, batch in parity_inputs():
        on_step(f"checking against PyTorch: {label}")
        cases.append(ParityCase(label, tuple(batch.shape[:3]), *output_difference(reference(batch), candidate(batch))))
    worst_psnr = min(case.psnr_db for case in cases)
    worst_diff = max(case.max_abs_diff for case in cases)
    if fp16:
        limit, ok = f"PSNR ≥ {FP16_MIN_PSNR_DB:g} dB", worst_psnr >= FP16_MIN_PSNR_DB
    else:
        limit = f"max abs diff ≤ {FP32_MAX_ABS_DIFF:g} and PSNR ≥ {FP32_MIN_PSNR_DB:g} dB"
        ok = worst_diff <= FP32_MAX_ABS_DIFF and worst_psnr >= FP32_MIN_PSNR_DB
    if not ok:
        raise ExportError(
            f"{weights.name}: exported graph differs from PyTorch (max abs diff {worst_diff:.2e}, PSNR {worst_psnr:.1f} dB;"
            f" needs {limit}); nothing written"
        )
    return Parity(True, provider, worst_psnr, worst_diff, limit, cases)


def _write_metadata(path: Path, weights: GeneratorWeights, fp16: bool, opset: int, parity: Parity) -> None:
    import onnx

    model = onnx.load(str(path))
    config = weights.config
    fidelity = weights.metadata.get("fidelity")
    props = {
        "model": weights.name,
        "scale": str(config.scale),
        "architecture": json.dumps({"type": "RRDBNet", "num_block": config.num_block, "num_feat": config.num_feat, "num_grow_ch": config.num_grow_ch}),
        "weights_sha256": weights.sha256,
        "weights_source": weights.source,
        "fidelity": "" if fidelity is None else f"{float(fidelity):g}",
        "precision": "fp16" if fp16 else "fp32",
        "opset": str(opset),
        "exporter": EXPORTER_VERSION,
        "version": __version__,
        "parity_checked": "true" if parity.checked else "false",
        "parity": parity.to_json(),
    }
    onnx.helper.set_model_props(model, {f"{META}{key}": value for key, value in props.items()})
    model.producer_name, model.producer_version = "cctvsr", __version__
    onnx.save(model, str(path))


def export_onnx(
    weights: GeneratorWeights, out: Path, *, fp16: bool = False, opset: int = OPSET, warn: Callable[[str], None] = lambda _: None,
    on_step: Callable[[str], None] = lambda _: None,
) -> OnnxModel:
    """Export, check parity and record it, then move the file to `out` (nothing there on failure).
    `on_step` is told each of the EXPORT_STEPS as it starts (fewer when fp16 parity cannot be checked)."""
    if opset < OPSET:
        raise ExportError(f"--opset must be {OPSET} or newer, not {opset}")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; --out names the .onnx file to write")
    try:
        with atomic_path(out) as tmp:
            on_step("tracing the generator to ONNX")
            _trace(weights, tmp, fp16, opset)
            parity = check_parity(weights, tmp, fp16, warn, on_step)
            on_step("writing metadata")
            _write_metadata(tmp, weights, fp16, opset, parity)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return read_onnx_model(out)


def cached_export(weights: GeneratorWeights, *, fp16: bool, warn: Callable[[str], None] = lambda _: None) -> OnnxModel:
    """The export `--backend onnx` runs for these weights: made once into the user cache, then
    re-used while its metadata still names the same weights, precision, opset and exporter."""
    path = onnx_cache_path(weights, fp16=fp16, opset=OPSET, exporter=EXPORTER_VERSION)
    if path.is_file():
        try:
            cached = read_onnx_model(path)
        except WeightsError:
            cached = None  # damaged: made again below
        if cached and (cached.sha256, cached.fp16, cached.opset, cached.exporter) == (weights.sha256, fp16, OPSET, EXPORTER_VERSION):
            return cached
    return export_onnx(weights, path, fp16=fp16, warn=warn)
