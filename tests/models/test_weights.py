"""Loading external checkpoints in their real formats; refusing unsafe ones; inflation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from momentlens.models import create_model, inflate_2d_to_3d, load_pretrained
from momentlens.utils import MomentlensError

FIXTURES = Path(__file__).parent / "fixtures"
WIDTH = 0.25  # reference layouts scaled by 4 keep the files small


def _assert_all_trunk_loaded(model, report, file_state, classifier_loaded: bool):
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked") or k in file_state}
    if not classifier_loaded:
        expected -= {"fc.weight", "fc.bias"}
    assert set(report.loaded) == expected
    for key in report.loaded:
        torch.testing.assert_close(own[key], file_state[key].to(own[key].dtype), rtol=0, atol=0)


def test_generator_reproduces_pinned_fixtures(reference_generator):
    for name, (_s, counters, *spec) in reference_generator.REFERENCES.items():
        keys = reference_generator.reference_keys(*spec)
        if not counters:
            keys = [k for k in keys if not k[0].endswith("num_batches_tracked")]
        assert json.loads((FIXTURES / f"{name}.json").read_text())["keys"] == keys


def test_torchvision_plain_state_dict(save, reference_state):
    state = reference_state("torchvision_resnet50")
    model = create_model("r2d50", 1000, width=WIDTH)
    report = load_pretrained(model, save(state))
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=True)
    assert report.initialised == [] and report.ignored == [] and report.counters_missing == 0


def test_torchvision_into_other_class_count(save, reference_state):
    state = reference_state("torchvision_resnet50")
    model = create_model("r2d50", 339, width=WIDTH)
    fresh_fc = model.fc.weight.detach().clone()
    report = load_pretrained(model, save(state))
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=False)
    assert report.initialised == ["fc.weight", "fc.bias"]
    assert report.ignored == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(model.fc.weight, fresh_fc)
    assert "newly initialised: fc.weight, fc.bias" in str(report)


@pytest.mark.parametrize(("reference", "model_name", "arch"), [
    ("hara2018_resnet18_A", "r3d18", "resnet-18"),
    ("hara2018_resnet50_B", "r3d50", "resnet-50"),
    ("hara2018_resnet101_B", "r3d101", "resnet-101"),
    ("hara2018_resnext101_B", "rx3d101", "resnext-101"),
])
def test_hara2018_wrapper_with_module_prefix(save, reference, model_name, arch, reference_state):
    state = reference_state(reference)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    checkpoint = {
        "epoch": 200, "arch": arch,
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9,
                                                    "params": [0, 1, 2]}]},
    }
    model = create_model(model_name, 400, width=WIDTH)
    report = load_pretrained(model, save(checkpoint, f"{arch}-kinetics.pth"))
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=True)
    assert report.arch == arch
    assert report.counters_missing == sum(k.endswith("num_batches_tracked")
                                          for k in model.state_dict())
    assert report.initialised == [] and report.ignored == []


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize(("reference", "model_name"), [
    ("hara2020_r3d18_B", "r3d18"), ("hara2020_r3d50_B", "r3d50")])
def test_hara2020_700_classes(save, reference, model_name, wrapped, reference_state):
    state = reference_state(reference)
    assert state["fc.weight"].shape[0] == 700
    model = create_model(model_name, 200, width=WIDTH, style="2020")
    path = save({"state_dict": state, "epoch": 200} if wrapped else state)
    report = load_pretrained(model, path)
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=False)
    assert report.ignored == ["fc.weight", "fc.bias"]
    assert model.fc.out_features == 200


def test_moments_models_last_linear(save, reference_state):
    state = reference_state("torchvision_resnet50", classes=339)
    renamed = {f"module.{k.replace('fc.', 'last_linear.')}": v for k, v in state.items()}
    model = create_model("r2d50", 339, width=WIDTH)
    report = load_pretrained(model, save(renamed, "moments_RGB_resnet50_imagenetpretrained.pth"))
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=True)


def test_moments_models_3d_wrapper(save, reference_state):
    # moments_RGB_imagenet_resnet3d50_segment16.pth.tar: Hara's ResNet-50 layout with
    # shortcut B, saved from nn.DataParallel after the classifier became last_linear.
    state = reference_state("hara2020_r3d50_B", classes=339)
    checkpoint = {"epoch": 30, "arch": "resnet3d50", "best_prec1": 0.28,
                  "state_dict": {f"module.{k.replace('fc.', 'last_linear.')}": v
                                 for k, v in state.items()}}
    model = create_model("r3d50", 339, width=WIDTH, norm="imagenet")
    report = load_pretrained(model, save(checkpoint, "moments_resnet3d50.pth.tar"))
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=True)


def test_safetensors(tmp_path, reference_state):
    state = reference_state("hara2020_r3d18_B")
    path = tmp_path / "r3d18.safetensors"
    save_file(state, str(path))
    model = create_model("r3d18", 700, width=WIDTH, style="2020")
    report = load_pretrained(model, path)
    _assert_all_trunk_loaded(model, report, state, classifier_loaded=True)


def test_create_model_pretrained_option(save, reference_state):
    state = reference_state("hara2018_resnet18_A")
    model = create_model("r3d18", 10, width=WIDTH, pretrained=str(save(state)))
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"])
    assert model.load_report.initialised == ["fc.weight", "fc.bias"]


def test_shortcut_mismatch_names_keys_and_hints(save, reference_state):
    path = save(reference_state("hara2018_resnet18_A"))
    model = create_model("r3d18", 400, width=WIDTH, shortcut="B")
    with pytest.raises(MomentlensError) as err:
        load_pretrained(model, path)
    message = str(err.value)
    assert "layer2.0.downsample.0.weight" in message and "missing from the file" in message
    assert "shortcut 'A'" in message
    # Non-strict loading takes what fits and says what it left out.
    report = load_pretrained(model, path, strict_trunk=False)
    assert "layer2.0.downsample.0.weight" in report.initialised
    assert "conv1.weight" in report.loaded


def test_width_mismatch_names_shapes(save, reference_state):
    path = save(reference_state("hara2018_resnet18_A"))
    model = create_model("r3d18", 400, width=0.5)
    with pytest.raises(MomentlensError, match=r"shape of conv1.weight: file \(16, 3, 7, 7, 7\), "
                                              r"model \(32, 3, 7, 7, 7\)"):
        load_pretrained(model, path)


class _Payload:
    """Unpickling this object creates a marker file: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_not_run(save, tmp_path, reference_state):
    marker = tmp_path / "pwned"
    state = reference_state("hara2018_resnet18_A")
    path = save({"arch": "resnet-18", "state_dict": state, "extra": _Payload(marker)})
    model = create_model("r3d18", 400, width=WIDTH)
    before = model.conv1.weight.detach().clone()
    with pytest.raises(MomentlensError, match="refused to load.*io.open.*could run arbitrary code"):
        load_pretrained(model, path)
    assert not marker.exists()
    torch.testing.assert_close(model.conv1.weight, before)
    # The payload is live: an unsafe load does run it (which is why we refuse).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    model = create_model("r3d18", 4, width=WIDTH)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(MomentlensError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_pretrained(model, junk)
    with pytest.raises(MomentlensError, match="nope.pth: checkpoint not found"):
        load_pretrained(model, tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(MomentlensError, match="not a readable safetensors file"):
        load_pretrained(model, bad)


# --------------------------------------------------------------------------- inflation


def _randomise_bn(model, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5


def _repeated_clip(frames: int = 6, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    frame = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    return frame, frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


@pytest.mark.parametrize(("name2d", "name3d", "mode", "t_pad"), [
    ("r2d18", "r3d18", "mean", "replicate"),
    ("r2d50", "r3d50", "mean", "replicate"),
    ("r2d18", "r3d18", "center", "zeros"),
])
def test_inflated_model_reproduces_2d_logits(name2d, name3d, mode, t_pad):
    torch.manual_seed(0)
    model2d = create_model(name2d, 7, width=WIDTH)
    _randomise_bn(model2d)
    model3d = create_model(name3d, 7, width=WIDTH, shortcut="B", t_pad=t_pad)
    report = inflate_2d_to_3d(model3d, model2d, mode=mode)
    assert set(report.loaded) == set(model3d.state_dict())
    model2d.eval()
    model3d.eval()
    frame, clip = _repeated_clip()
    with torch.no_grad():
        logits2d = model2d.fc(model2d.forward_frames(frame).mean(dim=(2, 3)))
        torch.testing.assert_close(model2d(clip), logits2d, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model3d(clip), logits2d, rtol=1e-4, atol=1e-4)


def test_mean_inflation_with_zero_time_padding_is_not_exact():
    # Why t_pad="replicate" exists: zero padding dims the clip's first and last frames.
    torch.manual_seed(0)
    model2d = create_model("r2d18", 7, width=WIDTH)
    model3d = create_model("r3d18", 7, width=WIDTH, shortcut="B")
    inflate_2d_to_3d(model3d, model2d)
    _, clip = _repeated_clip()
    with torch.no_grad():
        diff = (model3d.eval()(clip) - model2d.eval()(clip)).abs().max()
    assert diff > 1e-3


def test_inflate_from_torchvision_file(save, reference_state):
    state = reference_state("torchvision_resnet50")
    model3d = create_model("r3d50", 400, width=WIDTH)
    report = inflate_2d_to_3d(model3d, save(state))
    assert report.initialised == ["fc.weight", "fc.bias"]
    w2d, w3d = state["conv1.weight"], model3d.conv1.weight
    assert w3d.shape == (*w2d.shape[:2], 7, *w2d.shape[2:])
    torch.testing.assert_close(w3d.sum(dim=2), w2d, rtol=1e-5, atol=1e-6)


def test_inflate_into_shortcut_a_is_an_error():
    model2d = create_model("r2d18", 7, width=WIDTH)
    model3d = create_model("r3d18", 7, width=WIDTH)  # 2018 default: shortcut A
    with pytest.raises(MomentlensError, match="(?s)not in the model: layer2.0.downsample.*shortcut='B'"):
        inflate_2d_to_3d(model3d, model2d)
