"""R(2+1)D: ResNets of factorised (2+1)D convolutions (Tran et al., CVPR 2018).

Every 3x3x3 convolution becomes a 1x3x3 spatial convolution, BN, ReLU and a 3x1x1
temporal convolution, with the middle width chosen so that the pair has the parameters
of the 3x3x3 convolution it replaces (:func:`~momentlens.models.video_resnet.middle_width`).
The stem is factorised the same way: 1x7x7 to 45 channels, BN, ReLU, 3x1x1 to 64, BN,
ReLU. Keys are torchvision's (``stem.0/1/3/4``, ``layerN.M.conv1.0.0/1/3``, ...):
torchvision's ``r2plus1d_18`` file loads as it is. ``r2plus1d34`` is the same code at
depth 3-4-6-3 with the same middle-width rule (torchvision ships no 34-layer file; ports
of the Caffe2 R(2+1)D-34 models that fix other middle widths do not fit it).
The default input is torchvision's: 16 frames, 112 px, ``kinetics_tv`` normalisation.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from momentlens.models.registry import register_model
from momentlens.models.video_resnet import Triple, VideoResNet


class Conv2Plus1d(nn.Sequential):
    """``cin -> mid`` 1x3x3 (spatial stride), BN, ReLU, ``mid -> cout`` 3x1x1 (temporal
    stride); indices 0, 1, 3 hold parameters, as in torchvision."""

    def __init__(self, cin: int, cout: int, mid: int, stride: Triple = (1, 1, 1)) -> None:
        super().__init__(
            nn.Conv3d(cin, mid, kernel_size=(1, 3, 3), stride=(1, *stride[1:]),
                      padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, kernel_size=(3, 1, 1), stride=(stride[0], 1, 1),
                      padding=(1, 0, 0), bias=False))

    @staticmethod
    def downsample_stride(stride: Triple) -> Triple:
        return stride


def r2plus1d_stem(cout: int) -> nn.Sequential:
    """Factorised stem: 1x7x7 (stride (1, 2, 2)) to 45 channels at full width, then 3x1x1."""
    mid = max(1, 45 * cout // 64)
    return nn.Sequential(
        nn.Conv3d(3, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                  bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


_R2PLUS1D = (Conv2Plus1d,) * 4


@register_model
def r2plus1d18(num_classes: int, **options: Any) -> VideoResNet:
    """R(2+1)D-18 (basic blocks 2-2-2-2): torchvision ``r2plus1d_18``."""
    return VideoResNet(_R2PLUS1D, (2, 2, 2, 2), num_classes, r2plus1d_stem, **options)


@register_model
def r2plus1d34(num_classes: int, **options: Any) -> VideoResNet:
    """R(2+1)D-34 (basic blocks 3-4-6-3), same layout as ``r2plus1d18``."""
    return VideoResNet(_R2PLUS1D, (3, 4, 6, 3), num_classes, r2plus1d_stem, **options)
