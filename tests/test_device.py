"""The one device and precision resolver: names → torch devices and precisions, and one-line
DeviceErrors for what this machine cannot do. CUDA is simulated where a test needs it present or
absent, so every test means the same on a GPU machine and on a CPU one."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from typer.testing import CliRunner

from cctvsr import device as device_module
from cctvsr.cli import app
from cctvsr.device import PRECISIONS, probe_hardware, reduced_dtype, resolve_device, resolve_precision
from cctvsr.errors import DeviceError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # constructing a device needs no GPU


def _cuda(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> None:
    """Make PyTorch report these CUDA devices (none: a build or machine without CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(names))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: names[index])


def _refusal(call: Callable[..., object], *args: object) -> str:
    """The message of the DeviceError the call raises, checked to be one line."""
    with pytest.raises(DeviceError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- devices ----------------------------------------------------------------------------------


def test_cpu_resolves_to_the_cpu_with_or_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == CPU
    _cuda(monkeypatch, ("Fake GPU",))
    assert resolve_device("cpu") == CPU


@pytest.mark.parametrize(("names", "expected"), [((), CPU), (("Fake GPU",), CUDA)])
def test_auto_is_cuda_when_pytorch_can_use_it_else_the_cpu(
    monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], expected: torch.device
) -> None:
    _cuda(monkeypatch, names)
    assert resolve_device("auto") == expected


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_one_line_device_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _cuda(monkeypatch, ())
    assert _refusal(resolve_device, name) == f"--device {name}: no CUDA device is usable by this PyTorch build"


def test_a_cuda_index_must_name_a_device_that_is_here(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, ("Fake GPU 0", "Fake GPU 1"))
    assert resolve_device("cuda") == CUDA
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert _refusal(resolve_device, "cuda:2") == "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1"


@pytest.mark.parametrize("name", ["", "tpu", "gpu", "mps", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cpu:0", " cpu"])
def test_unknown_device_names_are_refused_with_the_choices(name: str) -> None:
    assert _refusal(resolve_device, name) == f"unknown device {name!r} (choose from auto, cpu, cuda, cuda:N)"


# --- precisions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_an_explicit_cpu_precision_is_kept(name: str) -> None:
    assert resolve_precision(name, CPU) == name


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_is_bf16_only_where_the_cpu_has_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == expected


def test_auto_on_cuda_is_fp16_or_fp32_where_fp16_is_not_a_choice() -> None:
    assert resolve_precision("auto", CUDA) == "fp16"
    assert resolve_precision("auto", torch.device("cuda", 1)) == "fp16"
    assert resolve_precision("auto", CUDA, ("auto", "fp32", "bf16")) == "fp32"
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_fp16_on_cpu_is_refused_with_the_precisions_that_work_there() -> None:
    assert _refusal(resolve_precision, "fp16", CPU) == "fp16 needs CUDA; on CPU use --precision bf16 or fp32"


@pytest.mark.parametrize(("name", "choices"), [("int8", PRECISIONS), ("FP32", PRECISIONS), ("fp16", ("auto", "fp32", "bf16"))])
def test_a_precision_outside_the_choices_is_refused_with_them(name: str, choices: tuple[str, ...]) -> None:
    assert _refusal(resolve_precision, name, CPU, choices) == f"unknown precision {name!r} (choose from {', '.join(choices)})"


def test_reduced_dtype_is_none_for_fp32_and_the_16_bit_type_otherwise() -> None:
    assert [reduced_dtype(name) for name in ("fp32", "bf16", "fp16")] == [None, torch.bfloat16, torch.float16]


# --- hardware for `cctvsr models` -------------------------------------------------------------


def test_probe_lists_cuda_devices_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, ("Fake A", "Fake B"))
    assert probe_hardware().cuda_devices == ("Fake A", "Fake B")
    _cuda(monkeypatch, ())
    assert probe_hardware().cuda_devices == ()
    assert probe_hardware().cpu_native_bf16 == device_module.cpu_has_native_bf16()


@pytest.mark.parametrize(
    ("names", "rows"),
    [((), [r"cuda\s.*no CUDA device usable by this PyTorch build"]), (("Fake A", "Fake B"), [r"cuda:0 Fake A", r"cuda:1 Fake B"])],
)
def test_models_shows_the_cuda_devices_the_probe_finds(
    monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], rows: list[str]
) -> None:
    _cuda(monkeypatch, names)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for row in rows:
        assert re.search(row, result.stdout), result.stdout
