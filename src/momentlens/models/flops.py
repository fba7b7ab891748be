"""Parameter counts and multiply-adds, computed by running the model on the meta device.

Multiply-adds (MACs) count convolutions and linear layers only (BatchNorm, ReLU,
pooling and residual additions are a few percent and are left out, as in the
published tables). "GFLOPs" in momentlens means 10^9 multiply-adds for one clip.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from momentlens.models.registry import create_model, list_models
from momentlens.utils import progress


@dataclass(frozen=True)
class ModelCost:
    """Size and cost of one model at its default input (one clip)."""

    name: str
    family: str
    params: int
    macs: int
    input_shape: tuple[int, ...]
    norm: str
    num_classes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record; ``gflops`` is ``macs / 1e9``."""
        return {**asdict(self), "gflops": round(self.macs / 1e9, 3)}


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of conv and linear layers for one forward pass of ``input_shape``.

    ``input_shape`` is ``(B, 3, T, H, W)``; the count covers the whole batch. The model
    may live on the meta device (nothing is computed, only shapes propagate).
    """
    total = 0

    def conv_hook(m: nn.modules.conv._ConvNd, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.empty(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def model_cost(name: str, num_classes: int | None = None, **options: Any) -> ModelCost:
    """Build ``name`` on the meta device and measure it at its default input.

    ``num_classes`` defaults to the class count of the family's reference
    pretraining (1000 ImageNet classes for 2D, 400 Kinetics classes for 3D), so the
    counts can be compared with the published ones.
    """
    with torch.device("meta"):
        probe = create_model(name, 1, **options)
        n = num_classes or probe.reference_num_classes
        model = create_model(name, n, **options)
    spec = model.input_spec
    shape = spec.shape(1)
    return ModelCost(
        name=name, family=f"{model.conv_dims}D",
        params=sum(p.numel() for p in model.parameters()), macs=count_macs(model, shape),
        input_shape=shape, norm=spec.norm, num_classes=n,
    )


def all_costs(num_classes: int | None = None) -> list[ModelCost]:
    """:func:`model_cost` of every registered model, in registry order."""
    names = progress(list_models(), desc="counting", unit="model")
    return [model_cost(name, num_classes) for name in names]


def format_table(costs: list[ModelCost]) -> str:
    """A fixed-width table: name, family, classes, params (M), GFLOPs, input, norm."""
    header = f"{'model':<11} {'kind':<4} {'classes':>7} {'params (M)':>10} {'GFLOPs':>8}  " \
             f"{'input (T x H x W)':<18} norm"
    rows = [header, "-" * len(header)]
    for c in costs:
        _, _, t, h, w = c.input_shape
        rows.append(f"{c.name:<11} {c.family:<4} {c.num_classes:>7} {c.params / 1e6:>10.2f} "
                    f"{c.macs / 1e9:>8.2f}  {f'{t} x {h} x {w}':<18} {c.norm}")
    rows.append("GFLOPs = 10^9 multiply-adds of conv and linear layers for one clip.")
    return "\n".join(rows)
