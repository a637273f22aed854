"""`--backend torch|onnx|tensorrt`: ONNX Runtime behind SuperResolver matches PyTorch fp32 through
the CLI, one-line errors for what cannot run here, and the GPU paths' pure logic (provider choice,
TensorRT profiles over the batcher's buckets, cache keys, warm-up shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.metrics import psnr
from cctvsr.errors import DeviceError
from cctvsr.sr.backends import choose_backend, create_resolver, graph_precision
from cctvsr.sr.engine import PAD_MULTIPLE, ExecutionPlan, SuperResolver
from cctvsr.sr.onnx_runtime import (
    CPU_EP, CUDA_EP, TENSORRT_EP, choose_providers, provider_options, provider_works, providers_for_device, usable_providers,
)
from cctvsr.sr.tensorrt import (
    engine_cache_key, ort_profile_options, profile_index, tensorrt_cache_dir, tensorrt_profiles, tensorrt_status,
)
from cctvsr.sr.weights import load_generator_weights, save_model_dir
from tests.conftest import tiny_weights
from tests.video_helpers import pan, write_clip

runner = CliRunner()


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    weights = tiny_weights(seed=5)
    state = dict(weights.state_dict)
    state["conv_last.bias"] = torch.full((3,), 0.5)  # a visible output, not an almost black one
    return save_model_dir(tmp_path / "tiny-model", weights.config, state)


def _psnr_and_max(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """PSNR and the largest difference in grey levels of two 8-bit outputs."""
    return psnr(a, b), int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- through the CLI, on ONNX Runtime's CPU provider ------------------------------------------


def test_upscale_backend_onnx_matches_torch_fp32_and_reuses_its_cached_export(
    tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray, isolated_cache: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, (y, x, h, w) in {"a": (60, 170, 37, 41), "b": (200, 90, 24, 24), "c": (200, 330, 300, 45)}.items():
        cv2.imwrite(str(src / f"{name}.png"), cv2.cvtColor(astronaut[y : y + h, x : x + w], cv2.COLOR_RGB2BGR))
    sha = load_generator_weights(str(tiny_model_dir)).sha256
    cached = isolated_cache / "onnx" / f"{sha}-fp32-op17-x1.onnx"
    outputs, made = {}, {}
    for tag, extra in {"torch": ["--backend", "torch", "--precision", "fp32"], "onnx": ["--backend", "onnx"], "again": ["--backend", "onnx"]}.items():
        result = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / tag), "--model", str(tiny_model_dir), "--tile", "64", *extra])
        assert result.exit_code == 0, result.output
        outputs[tag] = {p.name: cv2.imread(str(p)) for p in sorted((tmp_path / tag).glob("*.png"))}
        made[tag] = cached.stat().st_mtime_ns if cached.exists() else None
    assert "onnx cpu fp32 (CPUExecutionProvider)" in result.stdout
    for name, reference in outputs["torch"].items():
        psnr, worst = _psnr_and_max(outputs["onnx"][name], reference)
        assert psnr >= 60.0 and worst <= 1, (name, psnr, worst)  # ≤ 1e-3 before rounding to 8 bits
        assert np.array_equal(outputs["again"][name], outputs["onnx"][name])
    assert outputs["onnx"]["c.png"].shape == (1200, 180, 3)  # tiled (300 px > 64 + 2·16) and blended
    assert made["torch"] is None and made["onnx"] == made["again"]  # exported by the first onnx run, then re-used
    assert [p.name for p in (isolated_cache / "onnx").glob(f"{sha}*")] == [cached.name]


def test_enhance_backend_onnx_matches_torch_fp32_and_records_the_backend(tmp_path: Path, tiny_model_dir: Path) -> None:
    clip = write_clip(tmp_path / "pan.mp4", pan(6, width=240, height=140, step=2, y=30))
    runs = {}
    for backend, extra in {"torch": ["--precision", "fp32"], "onnx": []}.items():
        out = tmp_path / backend
        args = ["enhance", str(clip), "-o", str(out), "--model", str(tiny_model_dir), "--backend", backend, "--min-track-len", "1", "--sr-max-face", "0", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        (folder,) = out.iterdir()
        records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
        records = [r for r in records if r.get("record") != "fusion"]
        runs[backend] = {r["frame_index"]: (r, cv2.imread(str(folder / r["outputs"]["sr"]["path"]))) for r in records}
    assert runs["onnx"] and runs["onnx"].keys() == runs["torch"].keys()
    for frame, (record, sr) in runs["onnx"].items():
        assert record["backend"] == "onnx" and runs["torch"][frame][0]["backend"] == "torch"
        psnr, worst = _psnr_and_max(sr, runs["torch"][frame][1])
        assert psnr >= 60.0 and worst <= 1, (frame, psnr, worst)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["upscale", "IMG", "-o", "OUT", "--backend", "onnx", "--model", "no-such-model"], "unknown model"),
        (["upscale", "IMG", "-o", "OUT", "--model", "JUNK_ONNX"], "not an ONNX model"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "onnx", "--model", "TEXT"], "cannot load weights"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "onnx", "--model", "MISSING_ONNX"], "no such ONNX file"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "torch", "--model", "JUNK_ONNX"], "runs with --backend onnx or tensorrt"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "tensorrt", "--model", "TINY"], "needs the tensorrt package and a CUDA GPU"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "onnx", "--model", "TINY", "--precision", "bf16"], "bf16 is a --backend torch"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "onnx", "--model", "TINY", "--device", "cuda"], "no usable CUDA provider"),
        (["upscale", "IMG", "-o", "OUT", "--backend", "cuda", "--model", "TINY"], "unknown backend"),
        (["export-onnx", "--model", "no-such-model", "--out", "OUT"], "unknown model"),
    ],
)
def test_bad_backend_input_gives_one_line_error_and_exit_2(
    tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray, args: list[str], needle: str
) -> None:
    if "tensorrt" in args and tensorrt_status()[0]:
        pytest.skip("TensorRT is usable on this machine")
    cv2.imwrite(str(tmp_path / "img.png"), astronaut[:16, :16])
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not a protobuf model \xff\xff" * 8)
    (tmp_path / "notes.txt").write_text("not weights\n")
    names = {
        "OUT": tmp_path / "out", "IMG": tmp_path / "img.png", "TINY": tiny_model_dir, "JUNK_ONNX": tmp_path / "junk.onnx",
        "TEXT": tmp_path / "notes.txt", "MISSING_ONNX": tmp_path / "gone.onnx",
    }
    result = runner.invoke(app, [str(names.get(arg, arg)) for arg in args])
    assert result.exit_code == 2, result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("**/*.tmp"))


def test_models_lists_onnx_runtime_providers_and_tensorrt() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.stderr
    assert "CPUExecutionProvider: usable" in result.stdout
    assert "CUDAExecutionProvider" in result.stdout and "tensorrt" in result.stdout


# --- provider choice ---------------------------------------------------------------------------


def test_providers_are_ordered_fastest_first_and_only_the_working_ones_kept() -> None:
    installed = ["AzureExecutionProvider", CPU_EP, CUDA_EP, TENSORRT_EP]
    tried: list[str] = []

    def works(name: str) -> bool:
        tried.append(name)
        return name != TENSORRT_EP  # installed, but its libraries fail to load

    assert choose_providers(installed, works) == [CUDA_EP, CPU_EP]
    assert tried == [TENSORRT_EP, CUDA_EP, CPU_EP]  # Azure is no compute provider: never tried


def test_probe_runs_the_cpu_provider_and_rejects_a_cuda_provider_that_cannot_run_here() -> None:
    assert provider_works(CPU_EP)
    assert not provider_works("NoSuchExecutionProvider")
    assert usable_providers()[-1] == CPU_EP and "AzureExecutionProvider" not in usable_providers()
    if not torch.cuda.is_available():
        assert CUDA_EP not in usable_providers()


def test_device_choice_puts_gpu_providers_first_and_refuses_cuda_without_one() -> None:
    assert providers_for_device("auto", [TENSORRT_EP, CUDA_EP, CPU_EP]) == [TENSORRT_EP, CUDA_EP, CPU_EP]
    assert providers_for_device("cpu", [TENSORRT_EP, CUDA_EP, CPU_EP]) == [CPU_EP]
    assert providers_for_device("auto", [CPU_EP]) == [CPU_EP]
    with pytest.raises(DeviceError, match="pip install onnxruntime-gpu"):
        providers_for_device("cuda", [CPU_EP])


def test_graph_precision_follows_the_device_and_refuses_what_cannot_run() -> None:
    assert (graph_precision("auto", gpu=True), graph_precision("auto", gpu=False)) == ("fp16", "fp32")
    assert graph_precision("fp32", gpu=True) == "fp32"
    with pytest.raises(DeviceError, match="fp16 needs CUDA"):
        graph_precision("fp16", gpu=False)
    assert choose_backend("m/site.ONNX", None) == "onnx" and choose_backend("models/site", None) == "torch"


def test_tensorrt_provider_gets_caches_in_the_user_cache_and_the_batcher_profiles(isolated_cache: Path) -> None:
    profiles = tensorrt_profiles(batch_size=8, window=288)
    options = provider_options(TENSORRT_EP, profiles, fp16=True)
    assert Path(options["trt_engine_cache_path"]).is_relative_to(isolated_cache / "tensorrt")
    assert Path(options["trt_timing_cache_path"]).is_relative_to(isolated_cache / "tensorrt")
    assert options["trt_fp16_enable"] == "True" and options["trt_engine_cache_enable"] == "True"
    assert options["trt_profile_max_shapes"] == "input:8x3x64x64,input:5x3x128x128,input:1x3x288x288"
    assert options["trt_profile_min_shapes"] == ",".join(["input:1x3x8x8"] * 3)
    assert provider_options(CUDA_EP, profiles, fp16=True) == {}
    assert tensorrt_cache_dir() == isolated_cache / "tensorrt"


# --- TensorRT profiles, cache keys, warm-up ----------------------------------------------------


class _FakeCudaRunner:
    """Stands in for a GPU runner: a CUDA plan (so the batcher pads to multiples of 8), the TensorRT
    profiles' batch limits, and a record of every batch shape it is given."""

    def __init__(self, profiles=None) -> None:
        self.plan = ExecutionPlan(torch.device("cuda"), "fp16", False, "onnx", "fake")
        self.profiles = profiles
        self.shapes: list[tuple[int, ...]] = []

    def max_batch(self, height: int, width: int) -> int:
        return self.profiles[profile_index(self.profiles, height, width)].max_batch if self.profiles else 1 << 30

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return np.repeat(np.repeat(batch.astype(np.float32), 4, axis=1), 4, axis=2)


@pytest.mark.parametrize(("batch_size", "tile", "overlap"), [(8, 256, 16), (32, 128, 8), (1, 64, 32)])
def test_every_batch_the_cuda_batcher_forms_fits_a_tensorrt_profile(batch_size: int, tile: int, overlap: int) -> None:
    profiles = tensorrt_profiles(batch_size, tile + 2 * overlap)
    fake = _FakeCudaRunner(profiles)
    resolver = SuperResolver(tiny_weights(), runner=fake, batch_size=batch_size, tile=tile, tile_overlap=overlap)
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 320, (25, 2))] + [(5, 300), (300, 5), (8, 8), (288, 288)] + [(20, 20)] * 40 + [(100, 90)] * 12
    crops = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    outputs = resolver.upscale(crops)
    assert [o.shape[:2] for o in outputs] == [(4 * h, 4 * w) for h, w in sizes]
    for n, h, w, _ in fake.shapes:
        profile = profiles[profile_index(profiles, h, w)]
        assert h % PAD_MULTIPLE == 0 and w % PAD_MULTIPLE == 0
        assert all(lo <= v <= hi for lo, v, hi in zip(profile.min, (n, 3, h, w), profile.max)), (n, h, w, profile)
    assert max(n for n, *_ in fake.shapes) == min(batch_size, profiles[0].max_batch)


def test_profiles_cover_sides_8_to_the_padded_window_without_gaps() -> None:
    profiles = tensorrt_profiles(batch_size=8, window=300)
    assert [p.high for p in profiles] == [64, 128, 304]
    assert [p.low for p in profiles] == [0, 64, 128]
    assert all(p.min <= p.opt <= p.max for p in profiles)
    assert ort_profile_options(profiles[:1])["trt_profile_opt_shapes"] == "input:8x3x40x40"


def test_engine_cache_key_changes_with_model_gpu_tensorrt_version_profiles_and_precision() -> None:
    profiles = tensorrt_profiles(8, 288)
    base = ("a" * 64, "NVIDIA H200", "10.9.0", profiles, True)
    key = engine_cache_key(*base)
    assert engine_cache_key(*base) == key
    changed = [
        ("b" * 64, *base[1:]), (base[0], "NVIDIA A100", *base[2:]), (*base[:2], "10.10.0", *base[3:]),
        (*base[:3], tensorrt_profiles(16, 288), True), (*base[:4], False),
    ]
    assert len({engine_cache_key(*args) for args in changed} | {key}) == 6


def test_warm_up_runs_each_padded_bucket_alone_and_in_its_largest_batch_on_cuda() -> None:
    fake = _FakeCudaRunner()
    resolver = SuperResolver(tiny_weights(), runner=fake, batch_size=4, tile=256, tile_overlap=16)
    assert resolver.batch_shapes([17, 20, 24, 300]) == [(1, 24, 24), (4, 24, 24), (1, 288, 288)]
    assert resolver.warm_up([17, 20, 24, 300]) == 3
    assert fake.shapes == [(1, 24, 24, 3), (4, 24, 24, 3), (1, 288, 288, 3)]


def test_onnx_backend_on_cpu_is_not_warmed_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(SuperResolver, "warm_up", lambda self, sides: calls.append(sides) or 0)
    weights = tiny_weights(seed=9)
    model = save_model_dir(tmp_path / "m", weights.config, weights.state_dict)
    resolver = create_resolver(str(model), backend="onnx", device="cpu")
    assert resolver.plan.describe() == "onnx cpu fp32 (CPUExecutionProvider)" and calls == []
