"""What every momentlens model shares: the interface, the head, partial fine-tuning.

Every registered model is a :class:`VideoClassifier`. It maps a clip
``(B, 3, T, H, W)`` (float, already normalised as ``input_spec`` says) to logits
``(B, num_classes)`` in two steps that CAM code can call separately:

``forward_features(x)``  -> last convolutional map ``(B, C, T', H', W')``
``forward_head(f)``      -> global average pool over ``T', H', W'`` then ``classifier``

Because the head is one linear layer after an average, the class activation map of
class ``k`` is simply ``einsum('c,bcthw->bthw', classifier.weight[k], f)``.
"""

from __future__ import annotations

import torch
from torch import nn

from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

FINETUNE_MODES = ("fc", "last_stage", "all")


class VideoClassifier(nn.Module):
    """Base class: subclasses build ``self.fc`` and implement ``forward_features``.

    The final linear layer is stored as ``fc`` (the name the reference state dicts
    use) and exposed as :attr:`classifier`. The last residual stage is ``layer4``.
    """

    last_stage_name = "layer4"
    #: 2 for models built of 2D convolutions (applied frame by frame), 3 for 3D ones.
    conv_dims = 3
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
    def memory_format(self) -> torch.memory_format:
        """The channels-last layout of this model's convolution weights: ``channels_last``
        for 2D convolutions, ``channels_last_3d`` for 3D ones."""
        return torch.channels_last if self.conv_dims == 2 else torch.channels_last_3d

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
