"""torchvision's video checkpoints (r3d_18, mc3_18, r2plus1d_18) in r3d18, mc3d18, r2plus1d18.

The reference structure is ``fixtures/torchvision_video_ref.py``, an independent
re-implementation of torchvision's ``models/video/resnet.py`` (torchvision is not a
dependency); its full-size key lists are pinned in ``fixtures/torchvision_*.json``.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from momentlens.cam.maps import class_activation_maps
from momentlens.engine import factory
from momentlens.engine.config import load_config
from momentlens.models import create_model, set_finetune
from momentlens.models.flops import model_cost
from momentlens.models.torchvision_video import to_model_keys
from momentlens.models.weights import load_pretrained
from momentlens.utils import MomentlensError

from .conftest import FIXTURES

_spec = importlib.util.spec_from_file_location("tv_video_ref", FIXTURES / "torchvision_video_ref.py")
REF = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(REF)

MODELS = {"r3d_18": "r3d18", "mc3_18": "mc3d18", "r2plus1d_18": "r2plus1d18"}
R3D_TV = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True, "shortcut": "B"}
SMALL = 8  # test files with every channel count divided by 8 (width 0.125)


def _pinned(arch: str) -> list:
    return json.loads((FIXTURES / f"torchvision_{arch}.json").read_text())["keys"]


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """arch -> (reference module, path of its state dict), at 1/8 of the channels."""
    root = tmp_path_factory.mktemp("tv_small")
    out = {}
    for arch in MODELS:
        ref, state = REF.randomised_state(arch, 400, SMALL)
        torch.save(state, root / f"{arch}.pth")
        out[arch] = (ref, root / f"{arch}.pth")
    return out


@pytest.mark.parametrize("arch", list(MODELS))
def test_pinned_keys_are_the_reference_modules(arch):
    with torch.device("meta"):
        ref = REF.reference(arch)
    assert [[k, list(v.shape)] for k, v in ref.state_dict().items()] == _pinned(arch)


@pytest.mark.parametrize("arch", list(MODELS))
def test_our_state_dict_is_torchvisions(arch):
    options = R3D_TV if arch == "r3d_18" else {}
    with torch.device("meta"):
        own = create_model(MODELS[arch], 400, **options).state_dict()
    pinned = {k: tuple(s) for k, s in _pinned(arch)}
    mapped = to_model_keys(own, {k: torch.empty(s, device="meta") for k, s in pinned.items()})
    assert [(k, tuple(v.shape)) for k, v in mapped.items()] == \
        [(k, tuple(v.shape)) for k, v in own.items()]  # same keys, order, shapes, counters


@pytest.mark.parametrize("arch", list(MODELS))
def test_full_size_file_loads_strictly_and_gives_the_same_logits(arch, tmp_path):
    torch.set_num_threads(2)
    ref, state = REF.randomised_state(arch, 400, 1, seed=3)
    torch.save(state, tmp_path / f"{arch}.pth")
    model = create_model(MODELS[arch], 400, pretrained=str(tmp_path / f"{arch}.pth")).eval()
    report = model.load_report
    assert report.initialised == [] and report.ignored == [] and report.counters_missing == 0
    assert len(report.loaded) == len(state) == len(model.state_dict())
    assert int(model.state_dict()[report.loaded[5]]) == 12345  # a num_batches_tracked
    assert model.input_spec.norm == "kinetics_tv"
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, ours = ref(x), model(x)
    err = (ours - expected).abs().max() / expected.std()
    assert err < 1e-4, float(err)


def test_the_loader_says_what_it_did(small_files):
    model = create_model("r3d18", 400, width=1 / SMALL, pretrained=str(small_files["r3d_18"][1]))
    text = str(model.load_report)
    assert "torchvision r3d_18 layout: conv1_t_size=3, conv1_t_stride=1, no_max_pool, " \
           "shortcut=B" in text
    assert "normalisation kinetics_tv" in text
    assert model.no_max_pool and model.shortcut == "B" and model.conv1.kernel_size == (3, 7, 7)
    model = create_model("mc3d18", 400, width=1 / SMALL, pretrained=str(small_files["mc3_18"][1]))
    assert "torchvision mc3_18 layout: keys as they are" in str(model.load_report)


@pytest.mark.parametrize(("name", "options", "exact", "millions"), [
    ("r3d18", R3D_TV, 33_371_472, 33.4),   # torchvision r3d_18 (R3D_18_Weights meta)
    ("mc3d18", {}, 11_695_440, 11.7),      # torchvision mc3_18
    ("r2plus1d18", {}, 31_505_325, 31.5),  # torchvision r2plus1d_18
])
def test_parameter_counts_match_torchvision(name, options, exact, millions):
    cost = model_cost(name, 400, **options)
    assert cost.params == exact and round(cost.params / 1e6, 1) == millions
    assert cost.norm == ("kinetics_tv" if name != "r3d18" else "kinetics_255")


def test_contradicting_options_name_both(small_files):
    path = str(small_files["r3d_18"][1])
    with pytest.raises(MomentlensError, match="conv1_t_size=7 asked for, the file needs "
                                              "conv1_t_size=3"):
        create_model("r3d18", 400, width=1 / SMALL, pretrained=path, conv1_t_size=7)
    with pytest.raises(MomentlensError, match="shortcut='A'.*shortcut='B'"):
        create_model("r3d18", 400, width=1 / SMALL, pretrained=path, shortcut="A")
    with pytest.raises(MomentlensError, match="mc3_18 checkpoint, which loads into model "
                                              "'mc3d18', not 'r3d18'"):
        create_model("r3d18", 400, width=1 / SMALL, pretrained=str(small_files["mc3_18"][1]))
    # Options that agree with the file are fine, and so is another normalisation.
    model = create_model("r3d18", 400, width=1 / SMALL, pretrained=path, no_max_pool=True,
                         norm="kinetics_01")
    assert model.input_spec.norm == "kinetics_01"
    assert "trained with kinetics_tv" in str(model.load_report)


def test_a_wrongly_built_model_gets_a_hint_that_points_the_right_way(small_files):
    model = create_model("r3d18", 400, width=1 / SMALL)  # Hara's 7x7x7 stem, max-pool, A
    with pytest.raises(MomentlensError, match="hint: the file is torchvision's r3d_18; build "
                                              "model 'r3d18' with conv1_t_size=3"):
        load_pretrained(model, small_files["r3d_18"][1])


@pytest.mark.parametrize("arch", list(MODELS))
def test_finetune_last_stage_from_each_file(arch, small_files):
    model = create_model(MODELS[arch], 5, width=1 / SMALL, pretrained=str(small_files[arch][1]))
    assert model.load_report.initialised == ["fc.weight", "fc.bias"]
    trainable = set(set_finetune(model, "last_stage"))
    assert trainable and all(k.split(".")[0] in ("layer4", "fc") for k in trainable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3])
    model.train()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        if key.split(".")[0] in ("stem", "conv1", "bn1", "layer1", "layer2", "layer3"):
            assert not changed, key  # frozen weights and BatchNorm statistics
    assert not torch.equal(before["layer4.1.conv2.1.running_mean" if arch != "r3d_18"
                                  else "layer4.1.bn2.running_mean"],
                           after["layer4.1.conv2.1.running_mean" if arch != "r3d_18"
                                 else "layer4.1.bn2.running_mean"])


@pytest.mark.parametrize("arch", list(MODELS))
def test_cam_on_each(arch, small_files):
    model = create_model(MODELS[arch], 400, width=1 / SMALL,
                         pretrained=str(small_files[arch][1])).eval()
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))
    maps = class_activation_maps(model, x)
    assert maps.shape == (1, 8, 64, 64) and torch.isfinite(maps).all()
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feats), model(x), rtol=0, atol=0)


def test_architecture_options_from_the_command_line():
    cfg = load_config(None, {"model": "r3d18"},
                      ["conv1_t_size=3", "no_max_pool=true", "shortcut=B", "conv1_t_stride=1"])
    opts = factory.model_options(cfg)
    assert {k: opts[k] for k in R3D_TV} == R3D_TV
    model = create_model("r3d18", 4, **{**opts, "width": 1 / SMALL})
    assert model.no_max_pool and model.conv1.kernel_size == (3, 7, 7)
    unset = factory.model_options(load_config(None, {"model": "r3d18"}))
    assert not set(R3D_TV) & set(unset)  # not set: the model's defaults
    assert load_config(None, None, ["shortcut=null", "conv1_t_size=null"]).shortcut is None
    with pytest.raises(MomentlensError, match="unknown setting 'conv1_t_sise'.*conv1_t_size"):
        load_config(None, None, ["conv1_t_sise=3"])
    with pytest.raises(MomentlensError, match="'shortcut'; allowed: A, B"):
        load_config(None, None, ["shortcut=C"])
    with pytest.raises(MomentlensError, match="at least 1"):
        load_config(None, None, ["conv1_t_size=0"])
    with pytest.raises(MomentlensError, match="'mc3d18' has no option no_max_pool"):
        factory.model_options(load_config(None, {"model": "mc3d18"}, ["no_max_pool=true"]))


@pytest.mark.parametrize("arch", list(MODELS))
def test_a_run_from_a_torchvision_file_records_its_options_and_norm(arch, small_files):
    cfg = load_config(None, {"model": MODELS[arch], "width": 1 / SMALL, "finetune": "last_stage",
                             "pretrained": str(small_files[arch][1])})
    model = factory.build_model(cfg, 3)
    spec = factory.input_spec(cfg, model)
    meta = factory.model_meta(cfg, spec, ["a", "b", "c"])
    assert spec.norm == "kinetics_tv" and meta["input"]["norm"] == "kinetics_tv"
    # What evaluate/predict do with the model file: rebuild from meta, load strictly.
    again = create_model(meta["model"], meta["num_classes"], **meta["options"])
    again.load_state_dict(model.state_dict())
    if arch == "r3d_18":
        assert {k: meta["options"][k] for k in R3D_TV} == R3D_TV


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from momentlens.data import synth

    out = tmp_path_factory.mktemp("tv_data") / "d"
    synth.generate(out, train_per_class=2, val_per_class=1, size=32, num_frames=8, workers=1,
                   classes=["ring", "falling", "rising"])
    return out


@pytest.mark.parametrize("arch", list(MODELS))
def test_train_from_each_file_on_the_command_line(arch, small_files, tiny_data, tmp_path):
    import json

    from momentlens.cli import main

    run = tmp_path / "run"
    rc = main(["train", "--model", MODELS[arch], "--pretrained", str(small_files[arch][1]),
               "--data", str(tiny_data), "--out", str(run), "--finetune", "last_stage",
               "--frames", "4", "--size", "32", "--epochs", "1", "--batch-size", "3",
               "--workers", "0", "--device", "cpu", "--set", f"width={1 / SMALL}"])
    assert rc == 0
    assert json.loads((run / "input.json").read_text())["norm"] == "kinetics_tv"
    if arch == "r3d_18":  # and, without a file, the same options from --set
        rc = main(["train", "--model", "r3d18", "--data", str(tiny_data),
                   "--out", str(tmp_path / "set"), "--frames", "4", "--size", "32",
                   "--epochs", "1", "--batch-size", "3", "--workers", "0", "--device", "cpu",
                   "--set", "width=0.125", "--set", "conv1_t_size=3", "--set", "no_max_pool=true"])
        assert rc == 0
