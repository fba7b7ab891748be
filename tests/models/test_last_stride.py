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


@pytest.mark.parametrize("name,shortcut", [("r3d10", "A"), ("r3d18", "B"), ("r3d50", "B")])
def test_temporal_stages_make_late_stages_spatial_and_keep_time(name, shortcut):
    options = {"width": 0.125, "frames": 16, "size": 64, "shortcut": shortcut}
    torch.manual_seed(0)
    default = create_model(name, 5, **options)
    torch.manual_seed(0)
    four = create_model(name, 5, temporal_stages=4, **options)
    x = torch.randn(2, 3, 16, 64, 64)
    default.eval(), four.eval()
    assert torch.equal(default(x), four(x))  # 4 = every stage temporal = the reference
    mixed = create_model(name, 5, temporal_stages=1, **options).eval()
    assert list(mixed.state_dict()) == list(default.state_dict())  # same keys
    kernels = {n: m.kernel_size[0] for n, m in mixed.named_modules()
               if isinstance(m, torch.nn.Conv3d) and m.kernel_size[1] == 3}
    assert {k for n, k in kernels.items() if n.startswith("layer1")} == {3}
    assert {k for n, k in kernels.items() if not n.startswith("layer1")} == {1}
    assert mixed.forward_features(x).shape[2] == 8  # the max-pool's halving only
    assert default.forward_features(x).shape[2] == 1


def test_temporal_stages_bound_what_a_time_slice_sees():
    # stem of 3 taps, max-pool 3 with stride 2, then space only: slice 0 of the last map
    # sees frames 0-2, so changing frames 8-15 must leave it exactly as it was
    torch.manual_seed(0)
    options = {"width": 0.125, "frames": 16, "size": 32, "conv1_t_size": 3}
    local = create_model("r3d10", 5, temporal_stages=0, **options).eval()
    full = create_model("r3d10", 5, late_t_stride=1, **options).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    y = x.clone()
    y[:, :, 8:] = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(local.forward_features(x)[:, :, 0], local.forward_features(y)[:, :, 0])
        assert not torch.equal(local.forward_features(x)[:, :, -1],
                               local.forward_features(y)[:, :, -1])
        assert not torch.equal(full.forward_features(x)[:, :, 0], full.forward_features(y)[:, :, 0])


def test_temporal_stages_is_checked_and_reaches_the_model():
    from momentlens.engine.config import TrainConfig
    from momentlens.engine.factory import model_options

    with pytest.raises(MomentlensError, match="temporal_stages"):
        create_model("r3d10", 5, width=0.125, temporal_stages=5)
    with pytest.raises(MomentlensError, match="allowed: 0, 1, 2, 3, 4"):
        TrainConfig(model="r3d10", temporal_stages=-1).validate()
    assert model_options(TrainConfig(model="r3d10", temporal_stages=1))["temporal_stages"] == 1
    with pytest.raises(MomentlensError, match="no option temporal_stages"):
        model_options(TrainConfig(model="r2d18", temporal_stages=1))


@pytest.mark.parametrize("name,shortcut", [("r3d10", "A"), ("r3d18", "B"), ("r3d50", "B"),
                                           ("rx3d50", "B")])
def test_dilate_computes_the_reference_on_a_denser_grid(name, shortcut):
    # "a trous": with the strides of layer3 and layer4 removed and the later 3x3s
    # dilated, every 4th position of the fine map is the reference model's map
    torch.manual_seed(0)
    options = {"width": 0.125, "frames": 8, "size": 64, "shortcut": shortcut}
    ref = create_model(name, 5, **options).eval()
    fine = create_model(name, 5, last_stride=1, layer3_stride=1, dilate=True, **options).eval()
    fine.load_state_dict(ref.state_dict())  # same keys and shapes
    undilated = create_model(name, 5, last_stride=1, layer3_stride=1, **options).eval()
    undilated.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        fr, ff, fu = ref.forward_features(x), fine.forward_features(x), undilated.forward_features(x)
    assert fr.shape[-2:] == (2, 2) and ff.shape[-2:] == fu.shape[-2:] == (8, 8)
    torch.testing.assert_close(ff[..., ::4, ::4], fr, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(fu[..., ::4, ::4], fr, atol=1e-3)  # without dilation: not so


def test_dilate_with_one_stage_and_the_config():
    from momentlens.engine.config import TrainConfig
    from momentlens.engine.factory import model_options

    torch.manual_seed(0)
    options = {"width": 0.125, "frames": 8, "size": 64}
    ref = create_model("r3d18", 5, **options).eval()
    fine = create_model("r3d18", 5, last_stride=1, dilate=True, **options).eval()
    fine.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fine.forward_features(x)[..., ::2, ::2],
                                   ref.forward_features(x), atol=1e-5, rtol=1e-4)
    assert model_options(TrainConfig(model="r3d10", dilate=True))["dilate"] is True
    assert "dilate" not in model_options(TrainConfig(model="r3d10"))
