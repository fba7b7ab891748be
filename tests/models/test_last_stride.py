"""last_stride=1: finer maps for CAM, same state-dict keys and shapes (weights still load)."""

import pytest
import torch

from momentlens.models.registry import create_model
from momentlens.utils import MomentlensError


@pytest.mark.parametrize("name,frames", [("r3d18", 8), ("r3d50", 8), ("rx3d50", 8), ("r2d18", 2)])
def test_last_stride_one_doubles_the_final_map(name, frames):
    torch.manual_seed(0)
    coarse = create_model(name, 5, width=0.125, frames=frames, size=64)
    fine = create_model(name, 5, width=0.125, frames=frames, size=64, last_stride=1)
    sd_c, sd_f = coarse.state_dict(), fine.state_dict()
    assert list(sd_c) == list(sd_f)
    assert all(sd_c[k].shape == sd_f[k].shape for k in sd_c)
    fine.load_state_dict(sd_c)  # pretrained weights of the reference layout load as they are
    x = torch.randn(1, 3, frames, 64, 64)
    fc, ff = coarse.forward_features(x), fine.forward_features(x)
    assert ff.shape[-2:] == (2 * fc.shape[-2], 2 * fc.shape[-1])
    assert ff.shape[2] == fc.shape[2]  # time is still downsampled as in the reference
    assert fine(x).shape == (1, 5)


def test_last_stride_rejects_other_values():
    with pytest.raises(MomentlensError, match="last_stride"):
        create_model("r3d18", 5, width=0.125, last_stride=3)
