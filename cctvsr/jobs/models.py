"""`cctvsr models`: every model the registry knows, whether its files are here, and what can run them.

The job gathers plain rows; the CLI only lays them out as tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GeneratorInfo:
    title: str
    rows: list[tuple[str, str]]  # (what, value)


@dataclass
class ModelsSummary:
    generators: list[GeneratorInfo] = field(default_factory=list)
    cards: list[tuple[str, str, str, str, str, bool]] = field(default_factory=list)  # name, kind, licence, source, here, usable
    hints: list[str] = field(default_factory=list)  # how to get what is missing, each once
    devices: list[tuple[str, str, str, str]] = field(default_factory=list)  # backend, device, precisions, note
    perceptual: str = ""


def run() -> ModelsSummary:
    from cctvsr import registry
    from cctvsr.device import probe_hardware
    from cctvsr.sr.onnx_runtime import CPU_EP, PROVIDER_ORDER, usable_providers
    from cctvsr.sr.tensorrt import tensorrt_status
    from cctvsr.sr.weights import DEFAULT_MODEL, REGISTRY, weights_status

    summary = ModelsSummary()
    for spec in REGISTRY.values():
        c = spec.config
        summary.generators.append(GeneratorInfo(
            f"model {spec.name}" + (" (default)" if spec.name == DEFAULT_MODEL else ""),
            [
                ("about", spec.description),
                ("architecture", f"RRDBNet ×{c.scale}: {c.num_block} blocks, {c.num_feat} features, growth {c.num_grow_ch}"),
                ("source", spec.source),
                ("licence", spec.licence),
                ("weights", weights_status(spec)),
            ],
        ))

    for card in registry.cards():  # files up to 64 MiB are sha256-checked, larger ones by size
        check = registry.card_status(card)
        source = ", ".join(dict.fromkeys(registry.short_source(f) for f in card.files.values()))
        summary.cards.append((card.name, card.kind, card.licence, source, check.status, check.usable))
        if check.hint and check.hint not in summary.hints:
            summary.hints.append(check.hint)

    hardware = probe_hardware()
    bf16 = "native (AMX/AVX512-BF16)" if hardware.cpu_native_bf16 else "emulated: several times slower than fp32"
    auto_cpu = "bf16" if hardware.cpu_native_bf16 else "fp32"
    summary.devices.append(("torch", "cpu", "fp32, bf16", f"auto = {auto_cpu} + channels_last; bf16 {bf16}"))
    for index, gpu in enumerate(hardware.cuda_devices):
        summary.devices.append(("torch", f"cuda:{index} {gpu}", "fp16, bf16, fp32", "auto = fp16 + channels_last"))
    if not hardware.cuda_devices:
        summary.devices.append(("torch", "cuda", "-", "no CUDA device usable by this PyTorch build"))
    providers = usable_providers()
    for name in PROVIDER_ORDER:
        note = "usable" if name in providers else "not usable here"
        if name == CPU_EP:
            summary.devices.append(("onnx", "cpu", "fp32", f"ONNX Runtime {name}: {note}"))
        else:
            summary.devices.append(("onnx", "cuda", "fp16, fp32" if name in providers else "-", f"ONNX Runtime {name}: {note}"))
    trt_usable, trt_note = tensorrt_status()
    summary.devices.append(("tensorrt", "cuda", "fp16, fp32" if trt_usable else "-", trt_note))

    stlpips = registry.packaged("stlpips-alex")
    status = "present" if stlpips.locate() else f"missing (pip install {stlpips.distribution})"
    summary.perceptual = f"perceptual metric: ST-LPIPS AlexNet ({stlpips.licence}) from pip:{stlpips.distribution}: {status}"
    return summary
