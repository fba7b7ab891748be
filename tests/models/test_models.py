"""Every registered model: shapes, forward/backward, the head, the classifier, freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from momentlens.models import InputSpec, create_model, list_models, set_finetune
from momentlens.utils import MomentlensError

NUM_CLASSES = 5
WIDTH = 0.125
CLIP = (2, 3, 4, 32, 32)  # (B, 3, T, H, W): tiny, so that the deepest models stay fast


def _tiny(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, width=WIDTH, **options)


def _first(model: nn.Module, kind: type) -> nn.Module:
    """The first module of ``kind``: the stem's convolution or BatchNorm in every family."""
    return next(m for m in model.modules() if isinstance(m, kind))


def _clip(seed: int = 1) -> torch.Tensor:
    return torch.randn(CLIP, generator=torch.Generator().manual_seed(seed))


def test_registry_names():
    expected = {"r2d18", "r2d34", "r2d50", "r2d101", "r3d10", "r3d18", "r3d34", "r3d50",
                "r3d101", "r3d152", "r3d200", "rx3d50", "rx3d101", "rx3d152",
                "mc3d18", "r2plus1d18", "r2plus1d34"}
    assert set(list_models()) == expected


def test_unknown_name_and_option_are_actionable():
    with pytest.raises(MomentlensError, match="did you mean r3d18"):
        create_model("r3d81", 10)
    with pytest.raises(MomentlensError, match="no option widht.*allowed: .*width"):
        create_model("r3d18", 10, widht=0.5)
    with pytest.raises(MomentlensError, match="shortcut='C'"):
        create_model("r3d18", 10, shortcut="C")


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_head(name):
    model = _tiny(name)
    x = _clip()
    logits = model(x)
    assert logits.shape == (CLIP[0], NUM_CLASSES)
    logits.logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert _first(model, nn.modules.conv._ConvNd).weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 5 and feats.shape[:2] == (CLIP[0], model.num_features)
        if model.conv_dims == 2:
            assert feats.shape[2] == CLIP[2]  # one map per frame
        torch.testing.assert_close(model.forward_head(feats), model(x), rtol=0, atol=0)
        # The head is global average pooling + the one linear layer.
        manual = feats.mean(dim=(2, 3, 4)) @ model.classifier.weight.T + model.classifier.bias
        torch.testing.assert_close(model(x), manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_classifier_and_reset(name):
    model = _tiny(name)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier is model.fc
    assert model.state_dict()["fc.weight"].shape == (NUM_CLASSES, model.num_features)
    model.reset_classifier(11)
    assert model.classifier.out_features == 11 and model.num_classes == 11
    model.eval()
    with torch.no_grad():
        assert model(_clip()).shape == (CLIP[0], 11)


@pytest.mark.parametrize("name", list_models())
def test_input_spec(name):
    model = create_model(name, 3, width=WIDTH)
    spec = model.input_spec
    assert isinstance(spec, InputSpec)
    if spec.sampler == "segments":
        assert spec == InputSpec(sampler="segments", frames=4, size=224, norm="imagenet")
        assert spec.pixel_range == 1.0 and spec.short_side == 256
    elif hasattr(model, "stem"):  # torchvision's video layout (MC3, R(2+1)D)
        assert spec == InputSpec(sampler="clip", frames=16, size=112, norm="kinetics_tv")
        assert spec.pixel_range == 1.0 and spec.short_side == 128
    else:
        assert spec == InputSpec(sampler="clip", frames=16, size=112, norm="kinetics_255")
        assert spec.pixel_range == 255.0 and spec.short_side == 128
    with pytest.raises(Exception, match="frozen|cannot assign"):
        spec.frames = 8


def test_input_spec_options():
    spec = create_model("r3d50", 3, width=WIDTH, style="2020").input_spec
    assert (spec.pixel_range, spec.norm) == (1.0, "kinetics_01")
    spec = create_model("r3d18", 3, width=WIDTH, frames=8, size=64, norm="activitynet_255").input_spec
    assert spec == InputSpec(sampler="clip", frames=8, size=64, norm="activitynet_255")
    with pytest.raises(MomentlensError, match="unknown normalisation preset"):
        create_model("r2d18", 3, width=WIDTH, norm="imagenett")


def _bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


FREEZE_CASES = [(name, "last_stage") for name in list_models()] + [
    ("r2d18", "fc"), ("r3d18", "fc"), ("rx3d50", "fc")]


@pytest.mark.parametrize(("name", "mode"), FREEZE_CASES)
def test_freezing(name, mode):
    model = _tiny(name)
    trainable = set(set_finetune(model, mode))
    model.train()
    frozen_parts = [m for n, m in model.named_children()
                    if n not in ("fc", "layer4" if mode == "last_stage" else "fc")]
    before = [_bn_state(m) for m in frozen_parts]
    layer4_before = _bn_state(model.layer4)
    model(_clip()).sum().backward()
    for name_, p in model.named_parameters():
        top = name_.split(".")[0]
        should_train = top == "fc" or (mode == "last_stage" and top == "layer4")
        assert p.requires_grad == should_train, name_
        assert (name_ in trainable) == should_train
        assert (p.grad is not None) == should_train, name_
    for m, b in zip(frozen_parts, before):
        for k, v in _bn_state(m).items():
            torch.testing.assert_close(v, b[k], rtol=0, atol=0)
    changed = any(not torch.equal(v, layer4_before[k]) for k, v in _bn_state(model.layer4).items())
    assert changed == (mode == "last_stage")
    # model.train() must not wake the frozen BatchNorms up again.
    model.train()
    assert not _first(model, nn.modules.batchnorm._BatchNorm).training and model.fc.training


def test_finetune_all_and_bad_mode():
    model = _tiny("r3d18")
    set_finetune(model, "fc")
    set_finetune(model, "all")
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and model.bn1.training
    with pytest.raises(MomentlensError, match="allowed: fc, last_stage, all"):
        set_finetune(model, "head")


def test_2d_equals_mean_of_per_frame_logits():
    model = _tiny("r2d18").eval()
    x = _clip()
    with torch.no_grad():
        per_frame = torch.stack([model.fc(model.forward_frames(x[:, :, t]).mean(dim=(2, 3)))
                                 for t in range(x.shape[2])], dim=1)
        torch.testing.assert_close(model(x), per_frame.mean(dim=1), rtol=1e-5, atol=1e-5)


def test_any_clip_size_and_options():
    x = torch.randn(2, 3, 8, 48, 40)
    for options in ({"no_max_pool": True}, {"conv1_t_size": 3, "conv1_t_stride": 2},
                    {"shortcut": "B"}, {"t_pad": "replicate"}):
        model = create_model("r3d18", 4, width=WIDTH, **options).eval()
        with torch.no_grad():
            assert model(x).shape == (2, 4)
    feats = create_model("r3d18", 4, width=WIDTH, no_max_pool=True).eval().forward_features(x)
    assert feats.shape[2:] == (1, 3, 3)


def test_shortcut_a_has_no_parameters_and_pads_zero_channels():
    a = create_model("r3d18", 4, width=WIDTH)
    b = create_model("r3d18", 4, width=WIDTH, shortcut="B")
    assert not any("downsample" in k for k in a.state_dict())
    assert any("downsample" in k for k in b.state_dict())
    shortcut = a.layer2[0].downsample
    x = torch.randn(1, 8, 4, 6, 6)
    out = shortcut(x)
    assert out.shape == (1, 16, 2, 3, 3)
    torch.testing.assert_close(out[:, :8], x[:, :, ::2, ::2, ::2])
    assert out[:, 8:].abs().sum() == 0


def test_wrong_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        _tiny("r3d18")(torch.randn(2, 3, 32, 32))
