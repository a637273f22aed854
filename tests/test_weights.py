"""Weights: the ncnn conversion proven against the ncnn runtime, the conversion cache, every
supported way of handing cctvsr a generator, and the model directory format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cctvsr import assets
from cctvsr.errors import ModelFormatError, WeightsError
from cctvsr.sr import weights as weights_module
from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights, save_model_dir
from tests.conftest import TINY, tiny_weights

X4PLUS = "realesrgan-x4plus"
X4PLUS_CACHE = "weights/realesrgan-x4plus.safetensors"


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_weights(seed).state_dict.items()}


def _assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


class NotATensor:
    """A custom class: unpickling it needs code execution, which weights_only refuses."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


# --- the conversion, proven against the ncnn runtime -----------------------------------------


def _ncnn_forward(x_chw: np.ndarray) -> np.ndarray:
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_fp16_packed = False
    net.opt.use_bf16_storage = False
    assert net.load_param(str(assets.REALESRGAN_X4PLUS_PARAM.require())) == 0
    assert net.load_model(str(assets.REALESRGAN_X4PLUS_BIN.require())) == 0
    ex = net.create_extractor()
    xin = np.ascontiguousarray(x_chw, dtype=np.float32)  # ncnn.Mat borrows this buffer
    mat = ncnn.Mat(xin).clone()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    assert ret == 0
    return np.array(out).copy()


def test_converted_x4plus_matches_the_ncnn_runtime_on_a_real_face_to_1e_4(
    x4plus: GeneratorWeights, astronaut_face: np.ndarray
) -> None:
    x = np.ascontiguousarray(astronaut_face.transpose(2, 0, 1).astype(np.float32) / 255.0)
    expected = _ncnn_forward(x)
    with torch.inference_mode():
        got = x4plus.build()(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == expected.shape == (3, 256, 256)
    assert float(np.abs(got - expected).max()) < 1e-4


def test_converted_x4plus_fills_every_parameter_with_no_missing_or_unexpected_key(
    x4plus: GeneratorWeights,
) -> None:
    assert x4plus.config == RRDBConfig(num_block=23, num_feat=64, num_grow_ch=32)
    result = RRDBNet(x4plus.config).load_state_dict(x4plus.state_dict, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    assert sum(t.numel() for t in x4plus.state_dict.values()) == 16_697_987


# --- the conversion cache ---------------------------------------------------------------------


def test_conversion_is_cached_in_the_cache_dir_and_reused_without_reconverting(
    isolated_cache: Path, x4plus: GeneratorWeights, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = isolated_cache / X4PLUS_CACHE
    assert cached.is_file()
    assert x4plus.sha256 == weights_module.tensors_sha256(x4plus.state_dict)  # content, not file bytes
    mtime = cached.stat().st_mtime_ns

    def no_conversion(*args: object) -> None:
        raise AssertionError("reconverted although a valid cache exists")

    monkeypatch.setattr(weights_module, "load_rrdb_from_ncnn", no_conversion)
    again = load_generator_weights(X4PLUS)
    assert cached.stat().st_mtime_ns == mtime
    assert again.sha256 == x4plus.sha256
    assert torch.equal(again.state_dict["conv_first.weight"], x4plus.state_dict["conv_first.weight"])


@pytest.fixture
def private_cache(isolated_cache: Path, x4plus: GeneratorWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the valid cache in a cache dir of this test's own, to corrupt at will."""
    path = tmp_path / X4PLUS_CACHE
    path.parent.mkdir(parents=True)
    shutil.copy2(isolated_cache / X4PLUS_CACHE, path)
    monkeypatch.setenv("CCTVSR_CACHE_DIR", str(tmp_path))
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupted_cache_file_is_rebuilt_rather_than_used(
    private_cache: Path, x4plus: GeneratorWeights, damage: str
) -> None:
    data = private_cache.read_bytes()
    private_cache.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07garbage" * 1000)
    rebuilt = load_generator_weights(X4PLUS)
    # Not a byte comparison: safetensors writes the metadata keys in a random order; the identity
    # of the weights is the digest of their tensors, the same whichever file holds them.
    assert private_cache.stat().st_size == len(data)
    assert rebuilt.sha256 == x4plus.sha256
    assert weights_module.weights_status(weights_module.REGISTRY[X4PLUS]) == "cached"
    _assert_same_tensors(dict(rebuilt.state_dict), dict(x4plus.state_dict))


def test_cache_file_with_damaged_tensor_bytes_is_rebuilt_rather_than_used(
    private_cache: Path, x4plus: GeneratorWeights
) -> None:
    data = bytearray(private_cache.read_bytes())
    data[-4:] = b"\xff\xff\xff\xff"  # the last float of the last tensor becomes a NaN
    private_cache.write_bytes(bytes(data))
    loaded = load_generator_weights(X4PLUS)
    assert all(torch.isfinite(t).all() for t in loaded.state_dict.values())
    assert loaded.sha256 == x4plus.sha256


# --- .pth / .safetensors files ----------------------------------------------------------------


def test_pth_with_params_ema_loads_the_ema_weights_not_params(tmp_path: Path) -> None:
    ema, other = _tiny_state(1), _tiny_state(2)
    path = tmp_path / "net_g.pth"
    torch.save({"params_ema": ema, "params": other}, path)
    loaded = load_generator_weights(str(path))
    assert loaded.config == TINY
    _assert_same_tensors(dict(loaded.state_dict), ema)
    loaded.build()  # strict fit


def test_bare_state_dict_pth_loads_with_its_config_inferred(tmp_path: Path) -> None:
    state = _tiny_state(3)
    path = tmp_path / "bare.pth"
    torch.save(state, path)
    loaded = load_generator_weights(str(path))
    assert loaded.config == TINY
    _assert_same_tensors(dict(loaded.state_dict), state)
    assert loaded.sha256 == assets.sha256_file(path)


def test_module_prefixed_state_dict_from_dataparallel_loads(tmp_path: Path) -> None:
    state = _tiny_state(4)
    path = tmp_path / "dp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in state.items()}}, path)
    _assert_same_tensors(dict(load_generator_weights(str(path)).state_dict), state)


def _old_esrgan_name(key: str) -> str:
    """BasicSR name → xinntao/ESRGAN 'new arch' name."""
    parts = key.split(".")
    if parts[0] == "body":
        return f"RRDB_trunk.{parts[1]}.RDB{parts[2][-1]}.{'.'.join(parts[3:])}"
    renames = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    return ".".join([renames.get(parts[0], parts[0]), *parts[1:]])


def test_old_esrgan_layer_names_map_onto_rrdbnet_and_load(tmp_path: Path) -> None:
    state = _tiny_state(5)
    old = {_old_esrgan_name(k): v for k, v in state.items()}
    assert {"RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight", "upconv1.weight", "upconv2.weight", "HRconv.weight"} <= set(old)
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(old, path)
    loaded = load_generator_weights(str(path))
    assert loaded.config == TINY
    _assert_same_tensors(dict(loaded.state_dict), state)
    loaded.build()


def test_safetensors_file_loads_like_a_pth(tmp_path: Path) -> None:
    state = _tiny_state(6)
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))
    loaded = load_generator_weights(str(path))
    assert loaded.config == TINY
    _assert_same_tensors(dict(loaded.state_dict), state)


def test_pth_holding_a_custom_object_is_refused_without_unpickling_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"params": NotATensor()}, path)
    with pytest.raises(WeightsError, match="cannot load weights") as info:
        load_generator_weights(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_weights_file_gives_a_single_line_weights_error(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    state = _tiny_state(7)
    if suffix == ".pth":
        torch.save(state, good)
    else:
        save_file(state, str(good))
    data = good.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cannot load") as info:
        load_generator_weights(str(bad))
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)


def test_random_bytes_named_pth_give_a_single_line_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match="cannot load weights") as info:
        load_generator_weights(str(path))
    assert "\n" not in str(info.value)


def test_twelve_input_channel_x2plus_style_state_dict_is_refused_clearly(tmp_path: Path) -> None:
    state = _tiny_state(8)
    state["conv_first.weight"] = torch.zeros(TINY.num_feat, 12, 3, 3)
    path = tmp_path / "x2plus.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(WeightsError, match=r"12 input channels; only ×4 RRDBNet models \(3 input channels\)") as info:
        load_generator_weights(str(path))
    assert "\n" not in str(info.value)


def test_state_dict_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="not an ESRGAN/RRDBNet state dict"):
        load_generator_weights(str(path))


def test_weights_of_the_wrong_shape_are_refused_by_build_in_one_line() -> None:
    state = _tiny_state(9)
    state["conv_hr.weight"] = torch.zeros(TINY.num_feat, TINY.num_feat, 1, 1)
    bad = GeneratorWeights(name="bad", config=TINY, state_dict=state, sha256="0" * 64, source="test")
    with pytest.raises(WeightsError, match="weights do not fit") as info:
        bad.build()
    assert "\n" not in str(info.value)


# --- model directory, format v1 ---------------------------------------------------------------


def test_model_dir_round_trips_tensors_and_config(tmp_path: Path) -> None:
    state = _tiny_state(10)
    directory = save_model_dir(tmp_path / "finetuned", TINY, state, metadata={"note": "test"})
    loaded = load_generator_weights(str(directory))
    assert loaded.config == TINY
    _assert_same_tensors(dict(loaded.state_dict), state)
    assert loaded.pixel_state_dict is None
    assert loaded.sha256 == assets.sha256_file(directory / "model.safetensors")
    assert (loaded.metadata["format_version"], loaded.metadata["note"]) == (1, "test")
    loaded.build()


def test_model_dir_with_pixel_weights_loads_them_too(tmp_path: Path) -> None:
    state, pixel = _tiny_state(11), _tiny_state(12)
    directory = save_model_dir(tmp_path / "gan", TINY, state, pixel_state_dict=pixel)
    loaded = load_generator_weights(str(directory))
    _assert_same_tensors(dict(loaded.state_dict), state)
    assert loaded.pixel_state_dict is not None
    _assert_same_tensors(dict(loaded.pixel_state_dict), pixel)


def test_model_dir_whose_weights_were_altered_after_writing_fails_its_sha256(tmp_path: Path) -> None:
    directory = save_model_dir(tmp_path / "altered", TINY, _tiny_state(13))
    save_file(_tiny_state(14), str(directory / "model.safetensors"))  # a valid file, but not the one recorded
    with pytest.raises(ModelFormatError, match="sha256") as info:
        load_generator_weights(str(directory))
    assert "\n" not in str(info.value)


def test_model_dir_with_altered_pixel_weights_fails_its_sha256(tmp_path: Path) -> None:
    directory = save_model_dir(tmp_path / "altered", TINY, _tiny_state(15), pixel_state_dict=_tiny_state(16))
    with open(directory / "pixel.safetensors", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        handle.write(b"\x00")
    with pytest.raises(ModelFormatError, match="pixel.safetensors does not match the sha256"):
        load_generator_weights(str(directory))


def test_model_dir_of_format_version_2_is_refused_as_newer_in_one_line(tmp_path: Path) -> None:
    directory = save_model_dir(tmp_path / "future", TINY, _tiny_state(17))
    config_path = directory / "config.json"
    document = json.loads(config_path.read_text())
    document["format_version"] = 2
    config_path.write_text(json.dumps(document))
    with pytest.raises(ModelFormatError, match=r"v2 is newer than this cctvsr reads \(v1\)") as info:
        load_generator_weights(str(directory))
    assert "\n" not in str(info.value)


def test_directory_without_config_json_is_not_a_model_dir(tmp_path: Path) -> None:
    directory = save_model_dir(tmp_path / "incomplete", TINY, _tiny_state(18))
    (directory / "config.json").unlink()
    with pytest.raises(WeightsError, match=r"not a model directory \(no config.json\)"):
        load_generator_weights(str(directory))


def test_unknown_model_name_lists_the_registry() -> None:
    with pytest.raises(WeightsError, match=r"unknown model 'realesrgan-x8'.*realesrgan-x4plus"):
        load_generator_weights("realesrgan-x8")
