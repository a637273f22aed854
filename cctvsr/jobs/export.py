"""`cctvsr export-onnx`: the generator as an ONNX graph (dynamic batch, height and width) for ONNX
Runtime and TensorRT, checked against PyTorch fp32 before it is kept (the work is `sr/export.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cctvsr.jobs.options import REQUIRED, SrOptions, option, same_as


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    out: Path = option(
        REQUIRED, "The .onnx file to write (atomically; nothing is left there if the export fails).", "--out", "-o"
    )
    model: str = same_as(SrOptions, "model")
    fp16: bool = option(
        False,
        "Export an fp16 graph (for CUDA / TensorRT); its parity is checked where CUDA ONNX Runtime runs.",
        "--fp16",
    )
    fidelity: float | None = same_as(SrOptions, "fidelity")
    opset: int = option(17, "ONNX opset (17 or newer).", min=17)


@dataclass(frozen=True)
class ExportSummary:
    """The file written and what its metadata records."""

    path: Path
    size: int  # bytes
    name: str  # the model's (with @fidelity=… when interpolated)
    sha256: str  # of the weights exported
    opset: int
    precision: str  # fp32 | fp16
    fidelity: float | None
    parity: dict[str, Any]  # checked, provider, limit, max_abs_diff, min_psnr_db, cases


def _ignore(*_: Any) -> None:
    return None


def run(
    options: ExportOptions,
    *,
    warn: Callable[[str], None] = _ignore,
    on_loading: Callable[[], None] = _ignore,
    on_start: Callable[[int], None] = _ignore,
    on_step: Callable[[str], None] = _ignore,
) -> ExportSummary:
    """The `export-onnx` command: `on_loading()` as the weights start loading, `on_start(steps)` once
    they are loaded, then `on_step(name)` as each of at most `steps` export steps starts."""
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_file
    from cctvsr.sr.backends import load_weights
    from cctvsr.sr.export import EXPORT_STEPS, export_onnx

    out = options.out
    keep_apart([("--out", out)], [Path(options.model)] if Path(options.model).exists() else [])
    ensure_writable_file(out)
    on_loading()
    weights = load_weights(options.model, options.fidelity)
    on_start(EXPORT_STEPS)
    graph = export_onnx(weights, out, fp16=options.fp16, opset=options.opset, warn=warn, on_step=on_step)
    return ExportSummary(
        path=out, size=out.stat().st_size, name=graph.name, sha256=graph.sha256, opset=graph.opset,
        precision=graph.precision, fidelity=options.fidelity, parity=graph.parity,
    )
