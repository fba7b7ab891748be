"""3D-ResNets and 3D-ResNeXts of Hara et al. (CVPR 2018), with their checkpoint layout.

Architecture (kenshohara/3D-ResNets-PyTorch): a 7x7x7 stem convolution with stride
(1, 2, 2), a 3x3x3 max-pool with stride 2 (time included), four residual stages of
3x3x3 (basic) or 1x1x1-3x3x3-1x1x1 (bottleneck) convolutions, the stride on the
3x3x3 convolution, global average pooling and one linear layer ``fc``.

* Shortcut ``A``: parameter-free (strided identity, zero channels appended); Hara's
  resnet-10/18/34 Kinetics weights use it. Shortcut ``B``: 1x1x1 convolution + BN
  as ``downsample.0`` / ``downsample.1``; the deeper 2018 models, all 2020 models.
* ResNeXt: bottleneck expansion 2, stage widths 128/256/512/1024, grouped 3x3x3
  convolution with ``cardinality * planes // 32`` channels in 32 groups.

The module names equal the reference's, so state-dict keys and shapes are identical
for the 2018 code (branch CVPR2018) and the 2020 code (``generate_model`` on
master): both use ``conv1``, ``bn1``, ``layer1..4`` with ``conv1, bn1, conv2, bn2
[, conv3, bn3]`` and ``downsample.0/1``, and ``fc``. One class therefore serves both;
``style`` only changes defaults: the 2018 weights expect pixels in ``[0, 255]`` minus
a mean (``kinetics_255``) and shortcut A for depths 10-34, the 2020 weights expect
``[0, 1]`` mean/std (``kinetics_01``) and shortcut B everywhere. The 2020 pretrained
files are ResNets only, and the 2020 ResNeXt constructor passes ``n_classes`` into the
``widen_factor`` slot, so ``rx3d*`` follow the 2018 ResNeXt layout (64-channel stem,
which the 2020 code would have widened to 128).

Differences from the reference that do not change any key or forward result at the
reference input size: the final pooling is adaptive (any clip size works; the 2018
code used a fixed ``AvgPool3d`` sized for 16 x 112 x 112), and shortcut A passes
gradients through its identity path (the reference concatenated ``out.data``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from momentlens.models.base import VideoClassifier
from momentlens.models.registry import register_model
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

STYLES = ("2018", "2020")
SHORTCUTS = ("A", "B")
TEMPORAL_PADDINGS = ("zeros", "replicate")


class ReplicateTimeConv3d(nn.Conv3d):
    """A ``Conv3d`` that pads time by repeating the edge frames, space with zeros.

    Same parameters (and keys) as ``nn.Conv3d``. Used for models inflated from 2D
    weights: with repeated edge frames an I3D-inflated kernel sees the same frame at
    every temporal tap, even at the clip's ends, so a clip of identical frames gives
    exactly the 2D network's output.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.time_pad = self.padding[0]
        self.padding = (0, *self.padding[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)


def _conv3d(cin: int, cout: int, kernel: int | tuple[int, int, int], stride: Any = 1,
            groups: int = 1, t_pad: str = "zeros", dilation: int = 1) -> nn.Conv3d:
    """``dilation`` spreads the spatial taps only (time stays dense)."""
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    cls = ReplicateTimeConv3d if t_pad == "replicate" else nn.Conv3d
    d = (1, dilation, dilation)
    return cls(cin, cout, kernel_size=k, stride=stride,
               padding=tuple(i // 2 * j for i, j in zip(k, d)), dilation=d, groups=groups,
               bias=False)


class ZeroPadShortcut(nn.Module):
    """Shortcut A: ``x[:, :, ::s, ::s, ::s]`` with zero channels appended up to ``cout``.

    No parameters, so no state-dict keys (as in the reference, where it was a
    ``functools.partial``).
    """

    def __init__(self, cout: int, stride: int | tuple[int, int, int]) -> None:
        super().__init__()
        self.cout = cout
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st, sh, sw = self.stride
        out = x[:, :, ::st, ::sh, ::sw]
        pad = self.cout - out.shape[1]
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, pad)) if pad > 0 else out


class BasicBlock3d(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, *, t_pad: str = "zeros",
                 cardinality: int = 1, t_kernel: int = 3,
                 dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        k = (t_kernel, 3, 3)
        self.conv1 = _conv3d(cin, planes, k, stride, t_pad=t_pad, dilation=dilation[0])
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3d(planes, planes, k, t_pad=t_pad, dilation=dilation[1])
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck3d(nn.Module):
    expansion = 4
    grouped = False  # ResNeXt: the 3x3x3 convolution has ``cardinality`` groups

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, *, t_pad: str = "zeros",
                 cardinality: int = 1, t_kernel: int = 3,
                 dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        mid = self.mid_channels(planes, cardinality)
        cout = planes * self.expansion
        self.conv1 = _conv3d(cin, mid, 1)
        self.bn1 = nn.BatchNorm3d(mid)
        # Groups must divide the width; at width < 1 a ResNeXt keeps as many as fit.
        groups = math.gcd(cardinality, mid) if self.grouped else 1
        self.conv2 = _conv3d(mid, mid, (t_kernel, 3, 3), stride, groups=groups, t_pad=t_pad,
                             dilation=dilation[0])
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = _conv3d(mid, cout, 1)
        self.bn3 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @staticmethod
    def mid_channels(planes: int, cardinality: int) -> int:
        return planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXtBottleneck3d(Bottleneck3d):
    """Bottleneck with expansion 2 and a grouped 3x3x3 conv of ``cardinality*planes//32``."""

    expansion = 2
    grouped = True

    @staticmethod
    def mid_channels(planes: int, cardinality: int) -> int:
        return max(1, cardinality * planes // 32)


Block = type[BasicBlock3d] | type[Bottleneck3d]


class ResNet3D(VideoClassifier):
    """3D-ResNet / 3D-ResNeXt: clip ``(B, 3, T, H, W)`` -> logits ``(B, num_classes)``.

    Options (keyword): ``width`` scales every channel count (1.0 = reference);
    ``shortcut`` 'A' or 'B' (default from ``style``: 2018 uses A for depths 10-34);
    ``style`` '2018' or '2020' (input normalisation and shortcut defaults, see the
    module docstring); ``cardinality`` (ResNeXt groups, 32); ``conv1_t_size`` and
    ``conv1_t_stride`` (stem temporal kernel and stride, 7 and 1); ``no_max_pool``;
    ``t_pad`` 'zeros' (reference) or 'replicate' (for inflation, see
    :class:`ReplicateTimeConv3d`); ``frames``, ``size``, ``norm`` for ``input_spec``;
    ``last_stride`` 1 halves the spatial stride of ``layer4`` (finer CAMs, same keys);
    ``layer3_stride`` 1 does the same for ``layer3`` (with ``last_stride`` 1: maps at 1/8
    of the input with the default stem, four times finer than the reference's 1/32), and
    ``layer2_stride`` 1 for ``layer2`` (with both: 1/4).
    ``late_t_stride`` 1 stops ``layer3`` and ``layer4`` from halving time: the last map
    keeps ``layer2``'s time slices (T/4 with the default stem, 4 for 16 frames, instead
    of 1), so a class activation map follows an object that moves within the clip.
    ``temporal_stages`` (0-4, default 4) is how many of ``layer1..4`` keep 3-tap temporal
    kernels; the later ones convolve space only (1x3x3) and never stride time (Tran et
    al.'s mixed convolutions, as torchvision's ``mc3_18`` on this layout).
    ``dilate`` makes every stage set to spatial stride 1 above dilate the 3x3
    convolutions after its first by 2 (spatially, compounding): the model then computes
    the reference's map on a denser grid (every 2nd or 4th position of its map equals the
    reference's, same weights), instead of a map with a smaller receptive field.
    ``forward_features`` returns ``(B, C, T/16, H/32, W/32)`` with the default stem
    and max-pool (``(B, C, T/8, H/16, W/16)`` with ``no_max_pool``), sizes rounded up.
    """

    def __init__(self, block: Block, layers: tuple[int, ...], num_classes: int,
                 stage_planes: tuple[int, ...] = (64, 128, 256, 512),
                 shallow_shortcut: str = "B", *, width: float = 1.0,
                 shortcut: str | None = None, style: str = "2018", cardinality: int = 32,
                 conv1_t_size: int = 7, conv1_t_stride: int = 1, no_max_pool: bool = False,
                 t_pad: str = "zeros", frames: int = 16, size: int = 112,
                 norm: str | None = None, last_stride: int = 2,
                 layer3_stride: int = 2, layer2_stride: int = 2,
                 late_t_stride: int = 2, temporal_stages: int = 4,
                 dilate: bool = False) -> None:
        super().__init__()
        _check_choice("style", style, STYLES)
        for key, value in (("last_stride", last_stride), ("layer3_stride", layer3_stride),
                           ("layer2_stride", layer2_stride), ("late_t_stride", late_t_stride)):
            if value not in (1, 2):
                raise MomentlensError(f"{key}={value!r} is not allowed; choose 1 or 2")
        _check_choice("t_pad", t_pad, TEMPORAL_PADDINGS)
        if temporal_stages not in range(5):
            raise MomentlensError(f"temporal_stages={temporal_stages!r} is not allowed; "
                                  "choose 0 to 4")
        if shortcut is None:
            shortcut = shallow_shortcut if style == "2018" else "B"
        _check_choice("shortcut", shortcut, SHORTCUTS)
        if norm is None:
            norm = "kinetics_255" if style == "2018" else "kinetics_01"
        self.input_spec = InputSpec(sampler="clip", frames=frames, size=size, norm=norm)
        self.shortcut = shortcut
        self.no_max_pool = no_max_pool

        self.inplanes = max(1, int(64 * width))
        planes = [max(1, int(p * width)) for p in stage_planes]
        self.conv1 = _conv3d(3, self.inplanes, (conv1_t_size, 7, 7),
                             stride=(conv1_t_stride, 2, 2), t_pad=t_pad)
        self.bn1 = nn.BatchNorm3d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self._make_stages(block, layers, planes, {"t_pad": t_pad, "cardinality": cardinality},
                          ((1, 1), (layer2_stride, 2), (layer3_stride, late_t_stride),
                           (last_stride, late_t_stride)), temporal_stages, dilate)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stages(self, block: Block, layers: tuple[int, ...], planes: list[int],
                     opts: dict[str, Any], strides: tuple[tuple[int, int], ...],
                     temporal_stages: int, dilate: bool) -> None:
        """``layer1..4`` from each stage's ``(spatial, temporal)`` stride.

        A spatial stride of 1 keeps a stage at the resolution of the one before: twice
        finer class activation maps each; a temporal stride of 1 keeps its time slices.
        Same weights and keys either way. Stages past ``temporal_stages`` convolve space
        only (1x3x3) and keep every time slice. With ``dilate``, a stage kept at stride 1
        spreads the taps of every later 3x3 by 2 more (its own first one excepted), so
        each keeps the receptive field it had on the reference's coarser grid (the "a
        trous" rule of dilated ResNets).
        """
        dil = 1
        for i, (n, (s_sp, s_t)) in enumerate(zip(layers, strides)):
            temporal = i < temporal_stages
            first = dil
            if dilate and i > 0 and s_sp == 1:
                dil *= 2
            stage_opts = {**opts, "t_kernel": 3 if temporal else 1}
            setattr(self, f"layer{i + 1}", self._make_layer(
                block, planes[i], n, _stage_stride(s_sp, s_t if temporal else 1), stage_opts,
                (first, dil)))

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: Any,
                    opts: dict[str, Any], dilation: tuple[int, int] = (1, 1)
                    ) -> nn.Sequential:
        cout = planes * block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != cout:
            if self.shortcut == "A":
                downsample = ZeroPadShortcut(cout, stride)
            else:
                downsample = nn.Sequential(_conv3d(self.inplanes, cout, 1, stride),
                                           nn.BatchNorm3d(cout))
        layers = [block(self.inplanes, planes, stride, downsample, dilation=dilation, **opts)]
        self.inplanes = cout
        layers += [block(cout, planes, dilation=(dilation[1],) * 2, **opts)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``(B, 3, T, H, W)`` -> last stage map ``(B, C, T', H', W')``."""
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _stage_stride(spatial: int, temporal: int) -> int | tuple[int, int, int]:
    return spatial if spatial == temporal else (temporal, spatial, spatial)


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise MomentlensError(f"{key}={value!r} is not allowed; choose one of {', '.join(allowed)}")


_RESNEXT = (128, 256, 512, 1024)


@register_model
def r3d10(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-10 (basic blocks 1-1-1-1; shortcut A in the 2018 style)."""
    return ResNet3D(BasicBlock3d, (1, 1, 1, 1), num_classes, shallow_shortcut="A", **options)


@register_model
def r3d18(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-18 (basic blocks 2-2-2-2; shortcut A in the 2018 style)."""
    return ResNet3D(BasicBlock3d, (2, 2, 2, 2), num_classes, shallow_shortcut="A", **options)


@register_model
def r3d34(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-34 (basic blocks 3-4-6-3; shortcut A in the 2018 style)."""
    return ResNet3D(BasicBlock3d, (3, 4, 6, 3), num_classes, shallow_shortcut="A", **options)


@register_model
def r3d50(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-50 (bottlenecks 3-4-6-3, shortcut B)."""
    return ResNet3D(Bottleneck3d, (3, 4, 6, 3), num_classes, **options)


@register_model
def r3d101(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-101 (bottlenecks 3-4-23-3, shortcut B)."""
    return ResNet3D(Bottleneck3d, (3, 4, 23, 3), num_classes, **options)


@register_model
def r3d152(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-152 (bottlenecks 3-8-36-3, shortcut B)."""
    return ResNet3D(Bottleneck3d, (3, 8, 36, 3), num_classes, **options)


@register_model
def r3d200(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNet-200 (bottlenecks 3-24-36-3, shortcut B)."""
    return ResNet3D(Bottleneck3d, (3, 24, 36, 3), num_classes, **options)


@register_model
def rx3d50(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNeXt-50 (cardinality 32, expansion 2, widths 128-1024, shortcut B)."""
    return ResNet3D(ResNeXtBottleneck3d, (3, 4, 6, 3), num_classes, _RESNEXT, **options)


@register_model
def rx3d101(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNeXt-101 (cardinality 32, expansion 2, widths 128-1024, shortcut B)."""
    return ResNet3D(ResNeXtBottleneck3d, (3, 4, 23, 3), num_classes, _RESNEXT, **options)


@register_model
def rx3d152(num_classes: int, **options: Any) -> ResNet3D:
    """3D-ResNeXt-152 (cardinality 32, expansion 2, widths 128-1024, shortcut B)."""
    return ResNet3D(ResNeXtBottleneck3d, (3, 8, 36, 3), num_classes, _RESNEXT, **options)
