"""The residual network of torchvision's video models, shared by MC3 and R(2+1)D.

Tran et al., *A Closer Look at Spatiotemporal Convolutions for Action Recognition*
(CVPR 2018), as released in torchvision's ``models/video/resnet.py``: a stem without
max-pool (``stem``, an ``nn.Sequential``), four stages ``layer1..4`` of basic blocks,
global average pooling and ``fc``. Each block's ``conv1`` is ``(conv, BN, ReLU)`` and its
``conv2`` is ``(conv, BN)``, so the state-dict keys are ``layerN.M.conv1.0.weight``,
``layerN.M.conv1.1.running_mean`` ...; a stage that changes shape starts with a
``downsample`` of 1x1x1 convolution + BN (``downsample.0`` / ``downsample.1``). The
module names equal torchvision's, so its checkpoints load with strict key matching and
no renaming.

What differs between the families is data: which convolution each stage uses
(a *conv maker*: a module class with the signature ``(cin, cout, mid, stride)`` and a
``downsample_stride(stride)`` static method) and which stem. The families live in
:mod:`momentlens.models.mc3d` and :mod:`momentlens.models.r2plus1d`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from momentlens.models.base import VideoClassifier
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

Triple = tuple[int, int, int]
#: torchvision's Kinetics-400 video normalisation (mean/std on [0, 1] pixels).
TORCHVISION_NORM = "kinetics_tv"


def middle_width(cin: int, cout: int) -> int:
    """Channels between the spatial and the temporal half of a (2+1)D convolution.

    torchvision's rule (Tran et al. 2018, section 3.5): the width at which the
    factorised ``(1x3x3 -> 3x1x1)`` pair has as many parameters as one 3x3x3
    convolution ``cin -> cout``, rounded down. A block computes it once from its input
    and output widths and uses it for both of its convolutions.
    """
    return (cin * cout * 27) // (cin * 9 + 3 * cout)


class Conv3x3x3(nn.Conv3d):
    """A full 3x3x3 convolution (R3D everywhere, MC3 in ``layer1``); ``mid`` is unused."""

    def __init__(self, cin: int, cout: int, mid: int, stride: Triple = (1, 1, 1)) -> None:
        super().__init__(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

    @staticmethod
    def downsample_stride(stride: Triple) -> Triple:
        return stride


ConvMaker = type[nn.Module]  # a class with the signature above and ``downsample_stride``


class VideoBlock(nn.Module):
    """Basic residual block in torchvision's layout: ``conv1 = (conv, BN, ReLU)``,
    ``conv2 = (conv, BN)``, then the shortcut sum and a ReLU.

    ``stride`` is ``(time, height, width)``; the conv maker decides which of them its
    convolution applies (MC3's 1x3x3 convolution never strides in time).
    """

    def __init__(self, cin: int, planes: int, conv: ConvMaker, stride: Triple = (1, 1, 1),
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid = middle_width(cin, planes)
        self.conv1 = nn.Sequential(conv(cin, planes, mid, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def basic_stem(cout: int) -> nn.Sequential:
    """torchvision's ``BasicStem``: 3x7x7 convolution, stride (1, 2, 2), BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(3, cout, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                  bias=False),
        nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class VideoResNet(VideoClassifier):
    """torchvision-layout video ResNet: clip ``(B, 3, T, H, W)`` -> logits ``(B, classes)``.

    ``conv_makers``: the convolution of each of the four stages; ``layers``: blocks per
    stage; ``stem``: a function ``stem(cout) -> nn.Sequential``.
    Options (keyword): ``width`` scales every channel count (1.0 = torchvision);
    ``last_stride`` 1 keeps ``layer4`` at the spatial resolution of ``layer3`` (finer
    CAMs, same keys); ``frames``, ``size``, ``norm`` for ``input_spec`` (default: 16
    frames of 112 px, torchvision's ``kinetics_tv`` normalisation).
    ``forward_features`` returns ``(B, C, T/8, H/16, W/16)`` (sizes rounded up) for
    R(2+1)D and ``(B, C, T, H/16, W/16)`` for MC3, whose later stages keep time.
    """

    def __init__(self, conv_makers: tuple[ConvMaker, ...], layers: tuple[int, ...],
                 num_classes: int, stem: Callable[[int], nn.Sequential] = basic_stem, *,
                 width: float = 1.0, last_stride: int = 2, frames: int = 16, size: int = 112,
                 norm: str = TORCHVISION_NORM) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise MomentlensError(f"last_stride={last_stride!r} is not allowed; choose 1 or 2")
        self.input_spec = InputSpec(sampler="clip", frames=frames, size=size, norm=norm)
        planes = [max(1, int(p * width)) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.stem = stem(planes[0])
        strides: list[Triple] = [(1, 1, 1), (2, 2, 2), (2, 2, 2),
                                 (2, 2, 2) if last_stride == 2 else (2, 1, 1)]
        self.layer1 = self._make_layer(conv_makers[0], planes[0], layers[0], strides[0])
        self.layer2 = self._make_layer(conv_makers[1], planes[1], layers[1], strides[1])
        self.layer3 = self._make_layer(conv_makers[2], planes[2], layers[2], strides[2])
        self.layer4 = self._make_layer(conv_makers[3], planes[3], layers[3], strides[3])
        self.fc = nn.Linear(planes[3], num_classes)
        self._init_weights()

    def _make_layer(self, conv: Any, planes: int, blocks: int, stride: Triple) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != (1, 1, 1) or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes, kernel_size=1,
                          stride=conv.downsample_stride(stride), bias=False),
                nn.BatchNorm3d(planes))
        layers = [VideoBlock(self.inplanes, planes, conv, stride, downsample)]
        self.inplanes = planes
        layers += [VideoBlock(planes, planes, conv) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``(B, 3, T, H, W)`` -> last stage map ``(B, C, T', H', W')``."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
