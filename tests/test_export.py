"""`export-onnx`: dynamic shapes, parity with PyTorch fp32 (tiny and real model), the metadata it
records, and that a failed export leaves nothing behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.errors import ExportError, WeightsError
from cctvsr.sr import export
from cctvsr.sr.engine import TorchRunner, resolve_plan
from cctvsr.sr import onnx_runtime
from cctvsr.sr.export import (
    EXPORT_STEPS, FP16_UNCHECKED, OnnxModel, cached_export, export_onnx, output_difference, read_onnx_model,
)
from cctvsr.sr.onnx_runtime import CPU_EP, CUDA_EP, OnnxRuntimeRunner, usable_providers
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights, save_model_dir, tensors_sha256
from tests.conftest import tiny_weights

runner = CliRunner()
SIZES = ((17, 23), (32, 32), (45, 29))  # LR height × width: odd, square, taller than wide
REAL_SIZES = ((24, 24), (29, 35), (36, 27))


def _tiny(seed: int = 0) -> GeneratorWeights:
    """The tiny model under its own digest, so cached exports of different seeds never collide."""
    weights = tiny_weights(seed)
    return dataclasses.replace(weights, sha256=tensors_sha256(weights.state_dict))


def _parity(weights: GeneratorWeights, graph: OnnxModel, sizes, astronaut: np.ndarray) -> list[tuple[float, float]]:
    """(max abs diff on [0, 1], PSNR dB) of ONNX Runtime CPU against PyTorch fp32, per size and
    batch size 1 and 3 (three different real crops of the same size)."""
    torch_run = TorchRunner(weights, resolve_plan("cpu", "fp32", channels_last=False))
    ort_run = OnnxRuntimeRunner(graph.path, [CPU_EP])
    results = []
    for h, w in sizes:
        crops = np.stack([astronaut[y : y + h, x : x + w] for y, x in ((40, 160), (200, 90), (300, 330))])
        for batch in (crops[:1], crops):
            results.append(output_difference(torch_run(batch), ort_run(batch)))
    return results


@pytest.fixture(scope="module")
def x4plus_onnx(x4plus: GeneratorWeights, tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratorWeights, OnnxModel]:
    return x4plus, export_onnx(x4plus, tmp_path_factory.mktemp("x4") / "x4plus.onnx")


def test_tiny_export_runs_in_onnx_runtime_within_fp32_parity_at_three_sizes_and_batches_1_and_3(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    weights = _tiny()
    graph = export_onnx(weights, tmp_path / "tiny.onnx")
    results = _parity(weights, graph, SIZES, astronaut)
    assert len(results) == 6
    assert max(d for d, _ in results) <= 1e-3 and min(p for _, p in results) >= 60.0, results


def test_real_x4plus_export_runs_in_onnx_runtime_within_fp32_parity_at_three_sizes_and_batches_1_and_3(
    x4plus_onnx: tuple[GeneratorWeights, OnnxModel], astronaut: np.ndarray
) -> None:
    weights, graph = x4plus_onnx
    results = _parity(weights, graph, REAL_SIZES, astronaut)
    print("x4plus parity (max abs diff, PSNR dB):", results)
    assert max(d for d, _ in results) <= 1e-3 and min(p for _, p in results) >= 60.0, results
    recorded = graph.parity
    assert recorded["checked"] and recorded["max_abs_diff"] <= 1e-3 and recorded["min_psnr_db"] >= 60.0
    assert len(recorded["cases"]) == 4 and any("photo" in case["label"] for case in recorded["cases"])


def test_exported_graph_has_dynamic_batch_height_and_width_and_opset_17(x4plus_onnx: tuple[GeneratorWeights, OnnxModel]) -> None:
    model = onnx.load(str(x4plus_onnx[1].path), load_external_data=False)
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_param and dims[1].dim_value == 3
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_export_records_model_scale_weights_sha_fidelity_version_and_parity(tmp_path: Path) -> None:
    gan, pixel = tiny_weights(0), tiny_weights(1)
    pair = save_model_dir(tmp_path / "pair", gan.config, gan.state_dict, pixel_state_dict=pixel.state_dict)
    out = tmp_path / "pair.onnx"
    result = runner.invoke(app, ["export-onnx", "--model", str(pair), "--fidelity", "0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_onnx_model(out).metadata
    blended = load_generator_weights(str(pair)).at_fidelity(0.25)
    assert meta["cctvsr_weights_sha256"] == blended.sha256 == tensors_sha256(blended.state_dict)
    assert (meta["cctvsr_model"], meta["cctvsr_scale"], meta["cctvsr_fidelity"]) == ("pair@fidelity=0.25", "4", "0.25")
    assert meta["cctvsr_version"] and meta["cctvsr_parity_checked"] == "true" and meta["cctvsr_precision"] == "fp32"
    assert "max abs diff" in result.stdout and "photo" in result.stdout
    assert "exported" in result.stderr and f"{EXPORT_STEPS}/{EXPORT_STEPS}" in result.stderr  # the progress bar, finished


def test_export_whose_graph_misses_parity_fails_and_leaves_nothing_at_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that computes something else (here: other weights) is caught by the parity check."""
    other = tiny_weights(seed=7)
    real_trace = export._trace
    monkeypatch.setattr(export, "_trace", lambda weights, path, fp16, opset: real_trace(other, path, fp16, opset))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch .* nothing written"):
        export_onnx(_tiny(0), out)
    assert list(tmp_path.iterdir()) == []


def test_fp16_export_where_no_cuda_provider_runs_warns_and_records_parity_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's CPU provider cannot run an fp16 graph: the export says so. Runs everywhere,
    a CUDA machine included, by hiding its CUDA provider."""
    monkeypatch.setattr(onnx_runtime, "usable_providers", lambda: (CPU_EP,))
    warnings: list[str] = []
    graph = export_onnx(_tiny(), tmp_path / "tiny16.onnx", fp16=True, warn=warnings.append)
    assert warnings == [FP16_UNCHECKED]
    assert graph.precision == "fp16" and graph.metadata["cctvsr_parity_checked"] == "false"
    model = onnx.load(str(graph.path), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


@pytest.mark.skipif(CUDA_EP not in usable_providers(), reason="needs ONNX Runtime's CUDA provider (a GPU)")
def test_fp16_export_on_cuda_is_checked_against_pytorch_fp32_at_40_db(tmp_path: Path) -> None:
    warnings: list[str] = []
    graph = export_onnx(_tiny(), tmp_path / "tiny16.onnx", fp16=True, warn=warnings.append)
    parity = graph.parity
    assert warnings == [] and graph.metadata["cctvsr_parity_checked"] == "true"
    assert parity["provider"] == CUDA_EP and parity["min_psnr_db"] >= 40.0 and len(parity["cases"]) == 4


def test_export_reports_each_step_as_it_starts(tmp_path: Path) -> None:
    """What `export-onnx` shows while the real model takes over a minute: tracing, each of the
    four parity inputs (three random shapes and a photo), then the metadata."""
    steps: list[str] = []
    export_onnx(_tiny(), tmp_path / "tiny.onnx", on_step=steps.append)
    assert len(steps) == EXPORT_STEPS == 6
    assert steps[0] == "tracing the generator to ONNX" and steps[-1] == "writing metadata"
    assert all(step.startswith("checking against PyTorch: ") for step in steps[1:5]) and "photo" in steps[4]


def test_cached_export_is_made_once_then_reused_and_remade_when_damaged(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _tiny(3)
    first = cached_export(weights, fp16=False)
    assert first.path.parent == isolated_cache / "onnx" and weights.sha256 in first.path.name
    calls: list[Path] = []
    real_export = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda w, out, **kw: calls.append(out) or real_export(w, out, **kw))
    assert cached_export(weights, fp16=False).path == first.path and calls == []
    first.path.write_bytes(b"half-written junk")
    again = cached_export(weights, fp16=False)
    assert calls == [first.path] and again.sha256 == weights.sha256


def test_a_file_that_is_not_onnx_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(WeightsError, match=r"junk\.onnx: not (an ONNX model|a generator exported)"):
        read_onnx_model(junk)
