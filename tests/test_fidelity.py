"""`--fidelity`: ESRGAN's network interpolation between a model directory's pixel and GAN weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.errors import ModelFormatError
from cctvsr.sr.engine import SuperResolver
from cctvsr.sr.weights import load_generator_weights, save_model_dir
from tests.conftest import tiny_weights

runner = CliRunner()


@pytest.fixture
def pair_dir(tmp_path: Path) -> Path:
    gan, pixel = tiny_weights(seed=0), tiny_weights(seed=1)
    return save_model_dir(tmp_path / "pair", gan.config, gan.state_dict, pixel_state_dict=pixel.state_dict)


def _upscale_cli(tmp_path: Path, face: np.ndarray, *args: str) -> np.ndarray:
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    result = runner.invoke(app, ["upscale", str(src), "--out", str(out), "--precision", "fp32", *args])
    assert result.exit_code == 0, result.output
    return cv2.cvtColor(cv2.imread(str(out / "face.png")), cv2.COLOR_BGR2RGB)


def _direct(weights, face: np.ndarray) -> np.ndarray:
    return SuperResolver(weights, device="cpu", precision="fp32").upscale([face])[0]


@pytest.mark.parametrize(("alpha", "seed"), [(1.0, 1), (0.0, 0)])
def test_fidelity_one_is_the_pixel_model_and_zero_the_gan_model(
    pair_dir: Path, tmp_path: Path, astronaut_face: np.ndarray, alpha: float, seed: int
) -> None:
    via_cli = _upscale_cli(tmp_path, astronaut_face, "--model", str(pair_dir), "--fidelity", str(alpha))
    assert np.array_equal(via_cli, _direct(tiny_weights(seed=seed), astronaut_face))


def test_fidelity_half_is_the_parameter_wise_mean(pair_dir: Path) -> None:
    blended = load_generator_weights(str(pair_dir)).at_fidelity(0.5)
    gan, pixel = tiny_weights(seed=0).state_dict, tiny_weights(seed=1).state_dict
    for key, tensor in blended.state_dict.items():
        torch.testing.assert_close(tensor, (gan[key] + pixel[key]) / 2, rtol=0, atol=1e-7)
    assert blended.sha256 != load_generator_weights(str(pair_dir)).sha256
    assert blended.metadata["fidelity"] == 0.5


def test_a_model_without_the_pair_refuses_fidelity_with_one_line(tmp_path: Path, astronaut_face: np.ndarray) -> None:
    single = tiny_weights()
    model = save_model_dir(tmp_path / "single", single.config, single.state_dict)
    cv2.imwrite(str(tmp_path / "f.png"), astronaut_face)
    result = runner.invoke(app, ["upscale", str(tmp_path / "f.png"), "--out", str(tmp_path / "o"), "--model", str(model), "--fidelity", "0.5"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pixel/GAN weight pair" in lines[0]


def test_fidelity_outside_zero_to_one_is_refused(pair_dir: Path) -> None:
    with pytest.raises(ModelFormatError, match=r"within \[0, 1\]"):
        load_generator_weights(str(pair_dir)).at_fidelity(1.5)
