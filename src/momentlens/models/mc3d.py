"""MC3: mixed-convolution ResNet (Tran et al., CVPR 2018), torchvision's ``mc3_18``.

3D convolutions in the stem (3x7x7) and in ``layer1`` (3x3x3); 2D convolutions
(1x3x3, spatial only) in ``layer2``-``layer4``, whose strides and shortcut strides are
therefore (1, 2, 2): time is never subsampled. State-dict keys are torchvision's own
(``stem.0``, ``layerN.M.conv1.0``, ``downsample.0/1``, ``fc``; see
:mod:`momentlens.models.video_resnet`), so ``mc3_18-a90a0ba3.pth`` loads as it is.
The default input is torchvision's: 16 frames, 112 px, ``kinetics_tv`` normalisation.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from momentlens.models.registry import register_model
from momentlens.models.video_resnet import Conv3x3x3, Triple, VideoResNet


class Conv1x3x3(nn.Conv3d):
    """A spatial-only 1x3x3 convolution; its stride drops the temporal component."""

    def __init__(self, cin: int, cout: int, mid: int, stride: Triple = (1, 1, 1)) -> None:
        super().__init__(cin, cout, kernel_size=(1, 3, 3), stride=(1, *stride[1:]),
                         padding=(0, 1, 1), bias=False)

    @staticmethod
    def downsample_stride(stride: Triple) -> Triple:
        return (1, stride[1], stride[2])


_MC3 = (Conv3x3x3, Conv1x3x3, Conv1x3x3, Conv1x3x3)


@register_model
def mc3d18(num_classes: int, **options: Any) -> VideoResNet:
    """MC3-18 (basic blocks 2-2-2-2; 3D stem and layer1, 2D layer2-4): torchvision ``mc3_18``."""
    return VideoResNet(_MC3, (2, 2, 2, 2), num_classes, **options)
