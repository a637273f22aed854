"""RRDBNet: the ESRGAN generator's shapes and size."""

from __future__ import annotations

import pytest
import torch

from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
from tests.conftest import TINY


def test_odd_sized_nchw_batch_comes_back_exactly_four_times_larger() -> None:
    torch.manual_seed(0)
    model = RRDBNet(TINY).eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 37, 53))
    assert tuple(out.shape) == (1, 3, 148, 212)


def test_batch_of_two_keeps_its_batch_dimension_and_channels() -> None:
    torch.manual_seed(0)
    model = RRDBNet(TINY).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 9, 16))
    assert tuple(out.shape) == (2, 3, 36, 64)


def test_default_config_has_the_16_697_987_parameters_of_realesrgan_x4plus() -> None:
    model = RRDBNet()
    assert sum(p.numel() for p in model.parameters()) == 16_697_987


def test_default_network_is_built_of_23_blocks_of_64_features_growing_by_32() -> None:
    """The layers as built, not the config's fields: a config the constructor ignored would pass those."""
    model = RRDBNet()
    first_dense = model.body[0].rdb1
    assert len(model.body) == 23
    assert (model.conv_first.out_channels, first_dense.conv1.out_channels, first_dense.conv5.in_channels) == (64, 32, 64 + 4 * 32)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 5, 7)).shape[-2:] == (20, 28)


def test_scale_other_than_four_is_refused() -> None:
    with pytest.raises(ValueError, match="only ×4"):
        RRDBNet(RRDBConfig(num_block=1, num_feat=8, num_grow_ch=4, scale=2))
