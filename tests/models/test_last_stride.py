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


@pytest.mark.parametrize("name", ["r3d10", "r3d50"])
def test_layer3_stride_one_doubles_the_map_again(name):
    torch.manual_seed(0)
    last = create_model(name, 5, width=0.125, frames=8, size=64, last_stride=1)
    both = create_model(name, 5, width=0.125, frames=8, size=64, last_stride=1, layer3_stride=1)
    sd = last.state_dict()
    assert list(sd) == list(both.state_dict())
    both.load_state_dict(sd)
    x = torch.randn(1, 3, 8, 64, 64)
    fl, fb = last.forward_features(x), both.forward_features(x)
    assert fb.shape[-2:] == (2 * fl.shape[-2], 2 * fl.shape[-1]) == (8, 8)  # 1/8 of 64 px
    assert fb.shape[2] == fl.shape[2]


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_layer2_stride_one_gives_maps_at_a_quarter_of_the_input(shortcut):
    torch.manual_seed(0)
    options = {"width": 0.125, "frames": 8, "size": 64, "last_stride": 1, "layer3_stride": 1,
               "shortcut": shortcut}
    eighth = create_model("r3d10", 5, **options)
    quarter = create_model("r3d10", 5, layer2_stride=1, **options)
    quarter.load_state_dict(eighth.state_dict())  # same keys and shapes
    x = torch.randn(1, 3, 8, 64, 64)
    fe, fq = eighth.forward_features(x), quarter.forward_features(x)
    assert fe.shape[2:] == (1, 8, 8) and fq.shape[2:] == (1, 16, 16)  # 1/8 and 1/4 of 64 px
    with pytest.raises(MomentlensError, match="layer2_stride"):
        create_model("r3d10", 5, layer2_stride=3)


def test_layer3_stride_is_checked_in_the_model_and_the_config():
    from momentlens.engine.config import TrainConfig
    from momentlens.engine.factory import model_options

    with pytest.raises(MomentlensError, match="layer3_stride"):
        create_model("r3d18", 5, width=0.125, layer3_stride=4)
    with pytest.raises(MomentlensError, match="layer3_stride"):
        TrainConfig(model="r3d10", layer3_stride=0).validate()
    with pytest.raises(MomentlensError, match="layer2_stride"):
        TrainConfig(model="r3d10", layer2_stride=3).validate()
    assert model_options(TrainConfig(model="r3d10", layer2_stride=1))["layer2_stride"] == 1
    with pytest.raises(MomentlensError, match="'last_stride'"):
        TrainConfig(model="r3d10", last_stride=None).validate()  # unset is for layer3 only
    TrainConfig(model="r3d10", layer3_stride=None).validate()
    assert model_options(TrainConfig(model="r3d10", layer3_stride=1))["layer3_stride"] == 1
    with pytest.raises(MomentlensError, match="no option layer3_stride"):
        model_options(TrainConfig(model="r2d18", layer3_stride=1))


@pytest.mark.parametrize("name,shortcut", [("r3d10", "A"), ("r3d18", "B"), ("r3d50", "B")])
def test_late_t_stride_one_keeps_the_time_slices_of_layer2(name, shortcut):
    torch.manual_seed(0)
    options = {"width": 0.125, "frames": 16, "size": 64, "last_stride": 1,
               "layer3_stride": 1, "shortcut": shortcut}
    halved = create_model(name, 5, **options)
    kept = create_model(name, 5, late_t_stride=1, **options)
    sd = halved.state_dict()
    assert list(sd) == list(kept.state_dict())
    kept.load_state_dict(sd)  # the same weights serve both
    x = torch.randn(2, 3, 16, 64, 64)
    fh, fk = halved.forward_features(x), kept.forward_features(x)
    assert fh.shape[2:] == (1, 8, 8) and fk.shape[2:] == (4, 8, 8)  # 16 frames / 4
    # a clip whose second half is still: its last time slice sees that
    y = x.clone()
    y[:, :, 8:] = y[:, :, 7:8]
    fy = kept.forward_features(y)
    assert not torch.allclose(fk[:, :, 3], fy[:, :, 3])
    assert kept(x).shape == (2, 5)


def test_late_t_stride_is_checked_and_reaches_the_model():
    from momentlens.engine.config import TrainConfig
    from momentlens.engine.factory import model_options

    with pytest.raises(MomentlensError, match="late_t_stride"):
        create_model("r3d10", 5, width=0.125, late_t_stride=3)
    with pytest.raises(MomentlensError, match="late_t_stride"):
        TrainConfig(model="r3d10", late_t_stride=0).validate()
    assert model_options(TrainConfig(model="r3d10", late_t_stride=1))["late_t_stride"] == 1
    assert "late_t_stride" not in model_options(TrainConfig(model="r3d10"))
    with pytest.raises(MomentlensError, match="no option late_t_stride"):
        model_options(TrainConfig(model="r2d18", late_t_stride=1))
