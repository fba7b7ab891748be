"""2D ResNets applied to each frame, logits averaged over frames (the paper's 2D baseline).

The module tree, and therefore every state-dict key and shape, is that of
torchvision's ``resnet18/34/50/101`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ..., ``fc``), so torchvision's ImageNet ``.pth`` files
load unchanged. The bottleneck puts its stride on the 3x3 convolution (ResNet v1.5),
as torchvision does.

A clip ``(B, 3, K, H, W)`` is folded into a batch of ``B*K`` frames. Averaging the
K per-frame logits equals applying the linear classifier to the features averaged
over frames and positions, so :meth:`ResNet2D.forward_features` returns the per-frame
maps arranged ``(B, C, K, H/32, W/32)`` and the shared head does the rest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from momentlens.models.base import VideoClassifier
from momentlens.models.registry import register_model
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock2d(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck2d(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet2D(VideoClassifier):
    """Per-frame 2D ResNet with frame-averaged logits.

    Input ``(B, 3, K, H, W)``, ImageNet-normalised pixels in ``[0, 1]``; output
    ``(B, num_classes)``. ``width`` scales every channel count (1.0 = torchvision).
    The default input record is K = 4 frames (the paper) of 224 x 224 (ImageNet
    resolution, where the pretrained weights work best). ``last_stride`` 1 halves the
    stride of ``layer4`` (finer CAMs, same state-dict keys).
    """

    reference_num_classes = 1000
    conv_dims = 2

    def __init__(self, block: type[BasicBlock2d | Bottleneck2d], layers: tuple[int, ...],
                 num_classes: int, *, width: float = 1.0, frames: int = 4, size: int = 224,
                 norm: str = "imagenet", last_stride: int = 2) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise MomentlensError(f"last_stride={last_stride!r} is not allowed; choose 1 or 2")
        self.input_spec = InputSpec(sampler="segments", frames=frames, size=size, norm=norm)
        planes = [max(1, int(p * width)) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        # last_stride=1: finer class activation maps with the same weights (see resnet3d).
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=last_stride)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock2d | Bottleneck2d], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != cout:
            downsample = nn.Sequential(_conv1x1(self.inplanes, cout, stride), nn.BatchNorm2d(cout))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = cout
        layers += [block(cout, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, 3, H, W)`` -> maps ``(N, C, H/32, W/32)`` (the plain 2D trunk)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``(B, 3, K, H, W)`` -> per-frame maps ``(B, C, K, H/32, W/32)``."""
        b, c, k, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * k, c, h, w)
        maps = self.forward_frames(frames)
        return maps.reshape(b, k, *maps.shape[1:]).transpose(1, 2)


@register_model
def r2d18(num_classes: int, **options: Any) -> ResNet2D:
    """ResNet-18 per frame (torchvision ``resnet18`` keys)."""
    return ResNet2D(BasicBlock2d, (2, 2, 2, 2), num_classes, **options)


@register_model
def r2d34(num_classes: int, **options: Any) -> ResNet2D:
    """ResNet-34 per frame (torchvision ``resnet34`` keys)."""
    return ResNet2D(BasicBlock2d, (3, 4, 6, 3), num_classes, **options)


@register_model
def r2d50(num_classes: int, **options: Any) -> ResNet2D:
    """ResNet-50 per frame (torchvision ``resnet50`` keys): the paper's 2D baseline."""
    return ResNet2D(Bottleneck2d, (3, 4, 6, 3), num_classes, **options)


@register_model
def r2d101(num_classes: int, **options: Any) -> ResNet2D:
    """ResNet-101 per frame (torchvision ``resnet101`` keys)."""
    return ResNet2D(Bottleneck2d, (3, 4, 23, 3), num_classes, **options)
