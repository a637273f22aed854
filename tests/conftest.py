"""Shared fixtures: real images, the real and a tiny generator, and an isolated weights cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights

REPO = Path(__file__).resolve().parents[1]
TINY = RRDBConfig(num_block=1, num_feat=8, num_grow_ch=4)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert the packaged weights afresh into a private cache, never the user's."""
    path = tmp_path_factory.mktemp("cctvsr-cache")
    os.environ["CCTVSR_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real footage and photos. Skipped when absent, unless CI requires it."""
    path = Path(os.environ.get("CCTVSR_SHARED_DIR", REPO.parent / "shared")) / "data"
    if not path.is_dir():
        if os.environ.get("CCTVSR_REQUIRE_SHARED") == "1":
            pytest.fail(f"CCTVSR_REQUIRE_SHARED=1 but {path} is missing")
        pytest.skip(f"shared test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def astronaut_face(astronaut: np.ndarray) -> np.ndarray:
    """A real 64×64 face crop."""
    return np.ascontiguousarray(astronaut[60:124, 170:234])


@pytest.fixture(scope="session")
def x4plus() -> GeneratorWeights:
    return load_generator_weights("realesrgan-x4plus")


def tiny_weights(seed: int = 0) -> GeneratorWeights:
    """A 1-block, 8-feature RRDBNet with seeded random weights: the real code path, in milliseconds."""
    torch.manual_seed(seed)
    state = RRDBNet(TINY).state_dict()
    return GeneratorWeights(name="tiny", config=TINY, state_dict=state, sha256="0" * 64, source="test")


@pytest.fixture
def tiny() -> GeneratorWeights:
    return tiny_weights()
