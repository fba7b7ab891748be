"""torchvision's Kinetics-400 video checkpoints, recognised by their keys and fitted at the edge.

The files (plain state dicts, 400 classes; see torchvision's model docs,
``R3D_18_Weights.KINETICS400_V1`` and its siblings): ``r3d_18-b3b3357e.pth``,
``mc3_18-a90a0ba3.pth``, ``r2plus1d_18-91a641e6.pth``. All three use torchvision's
``VideoResNet`` names: ``stem.0``/``stem.1`` (R(2+1)D also ``stem.3``/``stem.4``),
``layerN.M.conv1.0`` (the convolution) and ``.conv1.1`` (its BN), ``.conv2.0/.1``,
``downsample.0/1``, ``fc``.

* ``mc3_18`` -> ``mc3d18`` and ``r2plus1d_18`` -> ``r2plus1d18``: the momentlens
  modules have the same names, so the keys are used as they are.
* ``r3d_18`` -> ``r3d18`` (:class:`~momentlens.models.resnet3d.ResNet3D`, whose names are
  Hara et al.'s): built with the options the file implies (3x7x7 stem, temporal stride 1,
  no max-pool, shortcut B), keys renamed ``stem.0 -> conv1``, ``stem.1 -> bn1``,
  ``convK.0 -> convK``, ``convK.1 -> bnK``. The two networks then compute the same
  function.

All of them expect torchvision's normalisation (preset ``kinetics_tv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from momentlens.utils import MomentlensError

#: torchvision architecture -> the momentlens model its file loads into.
TORCHVISION_MODELS = {"r3d_18": "r3d18", "mc3_18": "mc3d18", "r2plus1d_18": "r2plus1d18"}
#: Builder options that reproduce each file's architecture in that model.
IMPLIED_OPTIONS: dict[str, dict[str, Any]] = {
    "r3d_18": {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True, "shortcut": "B"},
    "mc3_18": {},
    "r2plus1d_18": {},
}
NORM = "kinetics_tv"
_RENAMES = (("stem.0.", "conv1."), ("stem.1.", "bn1."), (".conv1.0.", ".conv1."),
            (".conv1.1.", ".bn1."), (".conv2.0.", ".conv2."), (".conv2.1.", ".bn2."))


def detect(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The torchvision video architecture whose state dict has these keys and shapes
    (``"r3d_18"``, ``"mc3_18"``, ``"r2plus1d_18"``), or ``None``."""
    if "stem.0.weight" not in shapes:
        return None
    blocks = tuple(len({k.split(".")[1] for k in shapes if k.split(".")[0] == f"layer{i}"})
                   for i in range(1, 5))
    if blocks != (2, 2, 2, 2):
        return None
    if "layer1.0.conv1.0.0.weight" in shapes:
        return "r2plus1d_18"
    kernel = shapes.get("layer2.0.conv1.0.weight")
    if kernel is None or len(kernel) != 5:
        return None
    return "mc3_18" if kernel[2] == 1 else "r3d_18"


def describe(arch: str) -> str:
    """``torchvision r3d_18 layout: conv1_t_size=3, conv1_t_stride=1, no_max_pool, shortcut=B``."""
    opts = [k if v is True else f"{k}={v}" for k, v in IMPLIED_OPTIONS[arch].items()]
    return f"torchvision {arch} layout: " + (", ".join(opts) or "keys as they are")


def fit_options(name: str, arch: str, options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``options`` completed with what a torchvision ``arch`` file implies for model
    ``name`` (and ``norm=kinetics_tv`` unless one was asked for).

    Raises :class:`MomentlensError` when the file belongs to another model, or when an
    option asked for contradicts the file (the message names both values).
    """
    target = TORCHVISION_MODELS[arch]
    if name != target:
        raise MomentlensError(f"{source} is torchvision's {arch} checkpoint, which loads into "
                              f"model {target!r}, not {name!r}")
    implied = IMPLIED_OPTIONS[arch]
    clash = [f"{k}={options[k]!r} asked for, the file needs {k}={v!r}"
             for k, v in implied.items() if k in options and options[k] != v]
    if clash:
        raise MomentlensError(f"{source} ({describe(arch)}) contradicts the options: "
                              + "; ".join(clash))
    return {**implied, "norm": NORM, **options}


def to_model_keys(own: Mapping[str, Any], state: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """``state`` in the spelling of a model whose state dict is ``own``: unchanged for a
    model in torchvision's layout (it has ``stem.0``), else renamed to ResNet3D's names."""
    if "stem.0.weight" in own:
        return state
    out = {}
    for key, value in state.items():
        for old, new in _RENAMES:
            if key.startswith(old) or (old[0] == "." and old in key):
                key = key.replace(old, new, 1)
                break
        out[key] = value
    return out


def mismatch_hint(arch: str) -> str:
    """What to build instead, for a torchvision file that did not fit the model."""
    opts = ", ".join(f"{k}={v!r}" for k, v in IMPLIED_OPTIONS[arch].items())
    return (f"hint: the file is torchvision's {arch}; build model "
            f"{TORCHVISION_MODELS[arch]!r}" + (f" with {opts}" if opts else "")
            + " (create_model(..., pretrained=PATH) and train --pretrained do this)")
