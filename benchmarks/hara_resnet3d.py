"""An independent eager fp32 3D-ResNet in the style of Hara et al. (kenshohara/3D-ResNets-PyTorch,
``models/resnet.py``, 2018/2020 code), written for benchmarks/bench_infer.py only.

It shares no code with momentlens: the facts it follows are the reference's (basic block
of two 3x3x3 convolutions with BatchNorm and ReLU; a 7x7x7 stem with stride (1, 2, 2)
and padding (3, 3, 3), then a 3x3x3 max-pool of stride 2; stages of 64-128-256-512
channels, stride 2 from the second on; shortcut ``A`` (a stride-``s`` subsample padded
with zero channels) or ``B`` (1x1x1 convolution + BatchNorm); a fixed ``AvgPool3d`` over
the last map, then ``fc``). The state-dict keys are the reference's, which are also
momentlens's, so the same weights load into both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Basic(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, pad_to: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride, self.pad_to = stride, pad_to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        elif self.pad_to:  # shortcut A, as the reference's _downsample_basic_block
            sub = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
            zeros = sub.new_zeros(sub.size(0), self.pad_to - sub.size(1), *sub.shape[2:])
            residual = torch.cat([sub, zeros], dim=1)
        else:
            residual = x
        out += residual
        return self.relu(out)


class HaraResNet3D(nn.Module):
    def __init__(self, layers: tuple[int, ...], num_classes: int, sample_size: int = 112,
                 sample_duration: int = 16, shortcut: str = "A") -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, (7, 7, 7), stride=(1, 2, 2), padding=(3, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", self._stage(planes, n, 1 if i == 0 else 2, shortcut))
        last_t = math.ceil(sample_duration / 16)
        last_s = math.ceil(sample_size / 32)
        self.avgpool = nn.AvgPool3d((last_t, last_s, last_s), stride=1)
        self.fc = nn.Linear(512, num_classes)

    def _stage(self, planes: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
        down, pad_to = None, 0
        if stride != 1 or self.inplanes != planes:
            if shortcut == "A":
                pad_to = planes
            else:
                down = nn.Sequential(nn.Conv3d(self.inplanes, planes, 1, stride=stride,
                                               bias=False), nn.BatchNorm3d(planes))
        out = [Basic(self.inplanes, planes, stride, down, pad_to)]
        self.inplanes = planes
        out += [Basic(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes: int, **kwargs: object) -> HaraResNet3D:
    return HaraResNet3D((2, 2, 2, 2), num_classes, **kwargs)
