"""What every momentlens model shares: the input record, the head, partial fine-tuning.

Every registered model is a :class:`VideoClassifier`. It maps a clip
``(B, 3, T, H, W)`` (float, already normalised as ``input_spec`` says) to logits
``(B, num_classes)`` in two steps that CAM code can call separately:

``forward_features(x)``  -> last convolutional map ``(B, C, T', H', W')``
``forward_head(f)``      -> global average pool over ``T', H', W'`` then ``classifier``

Because the head is one linear layer after an average, the class activation map of
class ``k`` is simply ``einsum('c,bcthw->bthw', classifier.weight[k], f)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from momentlens.utils import MomentlensError

#: Normalisation presets; their mean/std values belong to the data pipeline.
NORM_PRESETS = ("imagenet", "kinetics_255", "activitynet_255", "kinetics_01", "none")

FINETUNE_MODES = ("fc", "last_stage", "all")


@dataclass(frozen=True)
class InputSpec:
    """The clip a model expects.

    frames:       T, frames per clip (for 2D models: frames averaged per clip).
    size:         H = W of the square crop, in pixels.
    pixel_range:  1.0 if pixels are scaled to ``[0, 1]`` before normalisation,
                  255.0 if they stay in ``[0, 255]`` (3D-ResNets-PyTorch 2018 weights).
    norm:         name of a normalisation preset, one of :data:`NORM_PRESETS`.
    """

    frames: int
    size: int
    pixel_range: float
    norm: str

    def __post_init__(self) -> None:
        if self.norm not in NORM_PRESETS:
            raise MomentlensError(
                f"unknown normalisation preset {self.norm!r}; allowed: {', '.join(NORM_PRESETS)}")
        if self.pixel_range not in (1.0, 255.0):
            raise MomentlensError(f"pixel_range must be 1.0 or 255.0, got {self.pixel_range!r}")
        if self.frames < 1 or self.size < 1:
            raise MomentlensError(f"frames and size must be positive, got {self.frames}, {self.size}")

    def shape(self, batch: int = 1) -> tuple[int, int, int, int, int]:
        """The input shape ``(B, 3, T, H, W)`` for ``batch`` clips."""
        return (batch, 3, self.frames, self.size, self.size)


class VideoClassifier(nn.Module):
    """Base class: subclasses build ``self.fc`` and implement ``forward_features``.

    The final linear layer is stored as ``fc`` (the name the reference state dicts
    use) and exposed as :attr:`classifier`. The last residual stage is ``layer4``.
    """

    last_stage_name = "layer4"
    #: class count of the reference pretraining (ImageNet 1000, Kinetics 400).
    reference_num_classes = 400

    fc: nn.Linear
    input_spec: InputSpec

    def __init__(self) -> None:
        super().__init__()
        # Names of child modules whose BatchNorm layers stay in eval mode (frozen).
        self.frozen_modules: tuple[str, ...] = ()

    # ------------------------------------------------------------------ interface

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """``(B, 3, T, H, W)`` -> last convolutional map ``(B, C, T', H', W')``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C, T', H', W')`` -> logits ``(B, num_classes)``: mean over T', H', W', then fc."""
        return self.fc(features.mean(dim=(2, 3, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float clip ``(B, 3, T, H, W)`` -> logits ``(B, num_classes)``."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} expects a clip (B, 3, T, H, W), got shape {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (``fc.weight`` is ``(num_classes, C)``)."""
        return self.fc

    @property
    def num_features(self) -> int:
        """C, the channel count of ``forward_features``."""
        return self.fc.in_features

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised ``Linear(C, num_classes)``."""
        old = self.fc
        self.fc = nn.Linear(old.in_features, num_classes, device=old.weight.device,
                            dtype=old.weight.dtype)

    # ------------------------------------------------------------------ fine-tuning

    def train(self, mode: bool = True) -> VideoClassifier:
        """As ``nn.Module.train``, but BatchNorm in frozen parts stays in eval mode."""
        super().train(mode)
        for name in self.frozen_modules:
            for m in self.get_submodule(name).modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def set_finetune(model: VideoClassifier, mode: str) -> list[str]:
    """Choose which parts of ``model`` train (paper section 5.1).

    ``fc``: only the classifier; ``last_stage``: ``layer4`` and the classifier;
    ``all``: everything. Frozen parameters get ``requires_grad=False`` and the
    BatchNorm layers in frozen parts keep their running statistics, because
    ``model.train()`` leaves them in eval mode. Returns the names of the trainable
    parameters (hand only these to the optimiser).
    """
    if mode not in FINETUNE_MODES:
        raise MomentlensError(
            f"unknown finetune mode {mode!r}; allowed: {', '.join(FINETUNE_MODES)}")
    keep = {"fc"}
    if mode == "last_stage":
        keep.add(model.last_stage_name)
    top_level = [name for name, _ in model.named_children()]
    frozen = () if mode == "all" else tuple(n for n in top_level if n not in keep)
    model.frozen_modules = frozen
    trainable = []
    for name, p in model.named_parameters():
        is_frozen = name.split(".", 1)[0] in frozen
        p.requires_grad_(not is_frozen)
        if not is_frozen:
            trainable.append(name)
    model.train(model.training)  # re-apply the BatchNorm rule now
    return trainable
