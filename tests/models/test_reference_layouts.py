"""State-dict layouts pinned against the reference implementations; parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from momentlens.models import create_model

FIXTURES = Path(__file__).parent / "fixtures"

# fixture -> (model name, num_classes, options)
LAYOUTS = {
    "torchvision_resnet50": ("r2d50", 1000, {}),
    "hara2018_resnet18_A": ("r3d18", 400, {}),
    "hara2018_resnet50_B": ("r3d50", 400, {}),
    "hara2018_resnet101_B": ("r3d101", 400, {}),
    "hara2018_resnext101_B": ("rx3d101", 400, {}),
    "hara2020_r3d18_B": ("r3d18", 700, {"style": "2020"}),
    "hara2020_r3d50_B": ("r3d50", 700, {"style": "2020"}),
}


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def meta_model(name: str, num_classes: int, **options):
    with torch.device("meta"):
        return create_model(name, num_classes, **options)


@pytest.mark.parametrize("fixture", list(LAYOUTS))
def test_state_dict_matches_reference(fixture):
    ref = load_fixture(fixture)
    name, classes, options = LAYOUTS[fixture]
    ours = [[k, list(v.shape)] for k, v in meta_model(name, classes, **options).state_dict().items()
            if ref["num_batches_tracked"] or not k.endswith("num_batches_tracked")]
    assert ours == ref["keys"]  # same keys, same order, same shapes


@pytest.mark.parametrize(("name", "classes", "options", "millions"), [
    ("r3d18", 400, {}, 33.2),      # 3D-ResNet-18, shortcut A (Hara et al. 2018, Table 2)
    ("rx3d101", 400, {}, 48.3),    # 3D-ResNeXt-101, cardinality 32
    ("r2d50", 1000, {}, 25.6),     # ResNet-50 (ImageNet)
    ("r3d34", 400, {}, 63.5),      # 3D-ResNet-34, shortcut A
])
def test_parameter_counts(name, classes, options, millions):
    model = meta_model(name, classes, **options)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == millions, n


def test_torchvision_resnet50_exact_count():
    n = sum(p.numel() for p in meta_model("r2d50", 1000).parameters())
    assert n == 25_557_032  # torchvision resnet50()


def test_width_scales_channels():
    full = meta_model("r3d18", 10).state_dict()
    half = meta_model("r3d18", 10, width=0.5).state_dict()
    assert list(full) == list(half)
    assert half["conv1.weight"].shape[0] == 32 and half["fc.weight"].shape == (10, 256)
