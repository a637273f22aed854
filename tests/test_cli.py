"""The command line as a user meets it: outputs on disk, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.sr.weights import save_model_dir
from tests.conftest import tiny_weights

runner = CliRunner()


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    weights = tiny_weights()
    return save_model_dir(tmp_path / "tiny-model", weights.config, weights.state_dict)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), image)


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_folder_with_one_corrupt_image_writes_the_others_and_exits_nonzero_naming_it(
    tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray
) -> None:
    inputs = tmp_path / "in"
    _write(inputs / "face.png", astronaut[60:124, 170:234])
    _write(inputs / "sub" / "wide.jpg", astronaut[200:237, 100:153])
    _write(inputs / "grey.png", cv2.cvtColor(astronaut[:40, :30], cv2.COLOR_RGB2GRAY))
    rgba = np.dstack([astronaut[:20, :24], np.full((20, 24), 128, np.uint8)])
    _write(inputs / "alpha.png", rgba)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")

    result = runner.invoke(app, ["upscale", str(inputs), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir)])

    assert result.exit_code == 1
    assert "broken.jpg" in _error_lines(result)[-1]
    out = tmp_path / "out"
    assert cv2.imread(str(out / "face.png"), cv2.IMREAD_UNCHANGED).shape == (256, 256, 3)
    assert cv2.imread(str(out / "sub" / "wide.png"), cv2.IMREAD_UNCHANGED).shape == (148, 212, 3)
    assert cv2.imread(str(out / "grey.png"), cv2.IMREAD_UNCHANGED).shape == (160, 120)
    alpha = cv2.imread(str(out / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == (80, 96, 4) and int(alpha[..., 3].min()) == int(alpha[..., 3].max()) == 128
    assert not (out / "broken.png").exists()
    assert not list(out.rglob("*.tmp"))


def test_same_stem_inputs_keep_their_extension_instead_of_overwriting(tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray) -> None:
    _write(tmp_path / "in" / "a.png", astronaut[:16, :16])
    _write(tmp_path / "in" / "a.jpg", astronaut[:24, :16])
    result = runner.invoke(app, ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.stderr
    assert cv2.imread(str(tmp_path / "out" / "a_png.png")).shape == (64, 64, 3)
    assert cv2.imread(str(tmp_path / "out" / "a_jpg.png")).shape == (96, 64, 3)


def test_upscaled_png_says_it_is_ai_enhanced_and_by_which_model(tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray) -> None:
    from PIL import Image

    _write(tmp_path / "in" / "face.png", astronaut[:16, :16])
    result = runner.invoke(app, ["upscale", str(tmp_path / "in" / "face.png"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.stderr
    text = Image.open(tmp_path / "out" / "face.png").text
    assert text["Comment"].startswith("AI-enhanced — not an original image. Super-resolved ×4 by cctvsr with model ")
    assert "sha256" in text["Comment"] and text["Software"].startswith("cctvsr ")


def test_output_that_would_overwrite_an_input_is_refused(tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray) -> None:
    _write(tmp_path / "a.png", astronaut[:16, :16])
    before = (tmp_path / "a.png").read_bytes()
    result = runner.invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path), "--model", str(tiny_model_dir)])
    assert result.exit_code == 2
    assert len(_error_lines(result)) == 1 and "contains the input" in result.stderr
    assert (tmp_path / "a.png").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["upscale", "does-not-exist.png", "-o", "OUT"], "no such file or folder"),
        (["upscale", "-o", "OUT"], "at least one image"),
        (["upscale", "EMPTY", "-o", "OUT"], "no images found"),
        (["upscale", "IMG", "-o", "OUT", "--model", "no-such-model"], "unknown model"),
        (["upscale", "IMG", "-o", "OUT", "--model", "TINY", "--precision", "fp16", "--device", "cpu"], "fp16 needs CUDA"),
        (["upscale", "IMG", "-o", "OUT", "--model", "TINY", "--tile", "50"], "--tile must be"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_2(
    tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray, args: list[str], needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "img.png", astronaut[:16, :16])
    names = {"OUT": tmp_path / "out", "EMPTY": tmp_path / "empty", "IMG": tmp_path / "img.png", "TINY": tiny_model_dir}
    result = runner.invoke(app, [str(names.get(arg, arg)) for arg in args])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert not (tmp_path / "out" / "img.png").exists()


def test_model_directory_with_wrong_sha_is_refused_in_one_line(tmp_path: Path, tiny_model_dir: Path, astronaut: np.ndarray) -> None:
    weights = tiny_model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    _write(tmp_path / "img.png", astronaut[:16, :16])
    result = runner.invoke(app, ["upscale", str(tmp_path / "img.png"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "sha256" in lines[0]


def test_models_lists_the_default_model_and_its_weights_status() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.stderr
    assert "realesrgan-x4plus" in result.stdout and "BSD-3-Clause" in result.stdout
    assert any(word in result.stdout for word in ("cached", "convertible"))


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "cctvsr", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("cctvsr ")


@pytest.mark.parametrize("command", ["enhance", "upscale", "calibrate", "finetune", "evaluate", "export-onnx", "models"])
def test_help_shows_flags_without_a_bool_placeholder(command: str) -> None:
    """typer 0.29 printed `--resume <bool>`, `--help <bool>`: as if a flag took a value."""
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout and "<bool>" not in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["enhance", "--bad-flag"], "No such option"), (["enhance"], "Missing argument"), (["evaluate", "-o"], "requires an argument"),
        (["calibrate", "--kernels", "0"], "not in the range"), (["export-onnx"], "Missing option"),
    ],
)
def test_argument_errors_come_before_any_heavy_import(args: list[str], needle: str) -> None:
    """A mistyped command line is answered at once: torch, OpenCV and ONNX (seconds to import) are
    loaded by the command bodies only, so the parser never waits for them."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "cctvsr", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and needle in result.stderr, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported  # the measurement itself works
    assert not imported & {"torch", "cv2", "onnx", "onnxruntime", "numpy", "skimage", "pydantic"}


def test_finetune_figures_never_read_negative_zero() -> None:
    from types import SimpleNamespace

    from cctvsr.terminal import delta, fixed

    assert (fixed(-0.00004, 4), fixed(-0.0, 4), fixed(-0.00004, 4, signed=True)) == ("0.0000", "0.0000", "0.0000")
    assert (fixed(-0.00006, 4, signed=True), fixed(0.0123, 4, signed=True), fixed(0.2, 4)) == ("-0.0001", "+0.0123", "0.2000")
    best = SimpleNamespace(psnr=30.001, perceptual=0.20000)
    assert delta(best, {"psnr": 30.002, "perceptual": 0.20001}) == "PSNR 0.00 dB, ST-LPIPS 0.0000"
    assert delta(best, {"psnr": 29.5, "perceptual": 0.25}) == "PSNR +0.50 dB, ST-LPIPS -0.0500"


def test_demo_restores_the_astronaut_closer_than_bicubic(tmp_path: Path, astronaut: np.ndarray) -> None:
    """The README's first command: the embedded demo with the real default model. Both distances
    are measured here from the files on disk, and the printed ones must agree with them."""
    from cctvsr.metrics import st_lpips

    result = runner.invoke(app, ["upscale", "--demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    restored = cv2.cvtColor(cv2.imread(str(tmp_path / "astronaut-128.png")), cv2.COLOR_BGR2RGB)
    small = cv2.cvtColor(cv2.imread(str(tmp_path / "demo-input" / "astronaut-128.png")), cv2.COLOR_BGR2RGB)
    assert restored.shape == (512, 512, 3) and small.shape == (128, 128, 3)
    ours = st_lpips(restored, astronaut)
    bicubic = st_lpips(cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC), astronaut)
    assert ours <= 0.22 and ours < bicubic - 0.05  # measured 0.186 and 0.269
    line = next(line for line in result.stdout.splitlines() if "ST-LPIPS" in line)
    printed_ours, printed_bicubic = float(line.split("photo ")[1].split()[0]), float(line.split("(bicubic ")[1].split(";")[0])
    assert (printed_ours, printed_bicubic) == (pytest.approx(ours, abs=5e-4), pytest.approx(bicubic, abs=5e-4))
