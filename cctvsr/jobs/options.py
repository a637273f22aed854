"""Every command's options as a dataclass: one default and one help text per field, written once.

The CLI's flags are generated from these fields (`cli_parameters`), so a default or a help text
cannot drift between the command line, the README and code that runs a job directly. Options
shared by several commands (the super-resolution ones) are a dataclass of their own, nested in
each command's options and flattened into flags.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Optional

REQUIRED: Any = dataclasses.MISSING


def option(default: Any, help: str, *flags: str, **limits: Any) -> Any:
    """A field that is a `--flag`: `flags` name it where the field's name is not enough (`"--out", "-o"`),
    `limits` are Typer's (`min=1`). Pass REQUIRED as the default for an option without one."""
    metadata = {"help": help, "flags": flags, "limits": limits, "kind": "option"}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def same_as(cls: type, name: str) -> Any:
    """Another options class's field `name` (its default, help and limits), for a command that takes
    that one option of a group without the rest (`export-onnx` takes --model, not --device)."""
    f = cls.__dataclass_fields__[name]
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    return option(default, f.metadata["help"], *f.metadata["flags"], **f.metadata["limits"])


def argument(help: str, default: Any = None) -> Any:
    """A positional field (what the command works on)."""
    return dataclasses.field(default=default, metadata={"help": help, "flags": (), "limits": {}, "kind": "argument"})


@dataclass(frozen=True, kw_only=True)
class SrOptions:
    """How crops are super-resolved: the flags every command that runs the generator shares."""

    model: str = option(
        "realesrgan-x4plus",
        "Registry name (see `cctvsr models`), model directory, ESRGAN/Real-ESRGAN .pth/.safetensors file, "
        "or a .onnx written by `cctvsr export-onnx` (--backend onnx/tensorrt).",
    )
    device: str = option("auto", "auto (CUDA when usable, else CPU), cpu, cuda or cuda:N.")
    precision: str = option(
        "auto",
        "auto = fp16 + channels_last on CUDA, bf16 autocast on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "
        "or fp32, bf16, fp16 (CUDA only).",
    )
    batch_size: int = option(8, "Most same-size crops run through the generator at once.", min=1)
    tile: int = option(256, "Crops larger than tile + 2×overlap px are processed in tiles of this size (0 = never tile).", min=0)
    tile_overlap: int = option(16, "Context px each tile borrows from its neighbours, blended away.", min=1)
    fidelity: float | None = option(
        None,
        "For a model directory holding a pixel/GAN pair (`finetune --stage both`): 1 = the faithful pixel model, "
        "0 = the GAN model, in between their interpolation. Default: the GAN model.",
    )
    backend: str | None = option(
        None,
        "torch; onnx (ONNX Runtime on the best provider that works here: a .onnx --model as it is, otherwise the "
        "weights exported once into the user cache); or tensorrt (a native engine built once and cached). "
        "Default: torch, or onnx for a .onnx --model.",
    )

    def resolver(self, warn: Callable[[str], None] | None = None):  # -> SuperResolver (torch is imported late)
        from cctvsr.sr.backends import create_resolver

        return create_resolver(
            self.model, backend=self.backend, device=self.device, precision=self.precision, batch_size=self.batch_size,
            tile=self.tile, tile_overlap=self.tile_overlap, fidelity=self.fidelity, warn=warn,
        )


@dataclass(frozen=True, kw_only=True)
class FaceOptions:
    """How faces are found, tracked and chosen: the detection, tracking and selection flags."""

    detector: str = option(
        "auto", "auto (InsightFace SCRFD when its pack is on disk, else the embedded CenterFace), centerface, mtcnn, or insightface."
    )
    insightface_pack: str = option(
        "buffalo_l", "InsightFace model pack for --detector insightface/auto: buffalo_l or buffalo_sc (non-commercial weights)."
    )
    min_face: int = option(
        10,
        "Ignore faces whose box is smaller than this many px (CenterFace at ×1,2 finds most real faces of 12 px and more).",
        min=1,
    )
    det_scales: str = option(
        "1,2",
        "Frame sizes CenterFace looks at, comma-separated: 1 = as it is (large faces), 2 = enlarged ×2 (faces under "
        "~20 px; with 1, only around the weak peaks of the ×1 pass).",
    )
    det_threshold: Optional[float] = option(
        None, "Detection score threshold (default: the detector's own).", min=0.0, max=1.0
    )
    best: int = option(3, "Best faces kept per track (by detector score, size, sharpness, pose, exposure).", min=1)
    all_frames: bool = option(False, "Keep and enhance every face of every track, not only the best.", "--all-frames")
    margin: float = option(
        0.4,
        "Crop margin around the face box, as a fraction of its size per side (clipped to the frame, never padded).",
        min=0.0, max=2.0,
    )
    min_track_len: int = option(3, "Tracks seen in fewer frames than this are dropped as false alarms.", min=1)

    def scales(self) -> tuple[float, ...]:
        from cctvsr.faces.scales import parse_scales

        try:
            return parse_scales(self.det_scales)
        except ValueError as exc:
            from cctvsr.errors import InputError

            raise InputError(str(exc)) from None

    def create_detector(self, threads: int = 0, providers: list[str] | None = None):  # -> (FaceDetector, its line); numpy/cv2 late
        """threads: the detector's ONNX Runtime threads (0: one per core); providers: its execution providers (None: CPU)."""
        from cctvsr.faces.detect import create_detector

        return create_detector(
            self.detector, pack=self.insightface_pack, min_face=self.min_face, threshold=self.det_threshold, scales=self.scales(),
            threads=threads, providers=providers,
        )


@dataclass(frozen=True, kw_only=True)
class FusionOptions:
    """Multi-frame fusion of each kept track (classical reconstruction from registered frames, no learned prior)."""

    fuse: bool = option(
        True,
        "Also reconstruct each kept track's face from its registered frames (track_XXXX/fused_x4.png, no learned "
        "prior: real detail from many frames) and super-resolve that (fused_sr.png, within --sr-max-face); not written "
        "when the frames do not register or the check fails. About 0.15 s per track of 16 frames.",
        "--fuse/--no-fuse",
    )
    fuse_min: int = option(4, "Fuse only tracks with at least this many usable frames.", min=2)
    fuse_max: int = option(16, "Frames fused per track at most (the best, spread over the track).", min=2)

    def settings(self):  # -> FusionSettings | None (numpy is imported late)
        if not self.fuse:
            return None
        if self.fuse_max < self.fuse_min:
            from cctvsr.errors import InputError

            raise InputError(f"--fuse-max ({self.fuse_max}) must be at least --fuse-min ({self.fuse_min})")
        from cctvsr.fusion.gather import FusionSettings

        return FusionSettings(min_frames=self.fuse_min, max_frames=self.fuse_max)


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(flag-parameter name, field, type) of every option, nested options dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            leaves += _leaves(kind, prefix)
        else:
            leaves.append((prefix + f.name, f, kind))
    return leaves


def cli_parameters(cls: type) -> list[inspect.Parameter]:
    """Typer parameters (`Annotated[type, typer.Option(...)]`) for every field of `cls`, in order."""
    import typer

    parameters = []
    for name, f, kind in _leaves(cls):
        meta = f.metadata
        if meta.get("kind") == "argument":
            info = typer.Argument(help=meta["help"])
        else:
            info = typer.Option(*meta["flags"], help=meta["help"], **meta["limits"])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info]))
    return parameters


def build(cls: type, values: dict[str, Any]) -> Any:
    """An options instance from flat flag values (nested options dataclasses filled from theirs)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        kwargs[f.name] = build(kind, values) if dataclasses.is_dataclass(kind) else values[f.name]
    return cls(**kwargs)


def command_from(cls: type) -> Callable[[Callable[[Any], None]], Callable[..., None]]:
    """Decorator: `def upscale(options: UpscaleOptions)` becomes a Typer command whose flags are the
    fields of `cls`; its docstring stays the command's help."""

    def wrap(body: Callable[[Any], None]) -> Callable[..., None]:
        def command(**values: Any) -> None:
            body(build(cls, values))

        command.__name__, command.__doc__ = body.__name__, body.__doc__
        command.__signature__ = inspect.Signature(cli_parameters(cls))  # type: ignore[attr-defined]
        return command

    return wrap
