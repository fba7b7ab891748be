"""What a model eats, said once: the typed input record that travels with its weights.

An :class:`InputSpec` names everything between a video file and the model's float input:
which frames (``sampler``, ``frames``, ``stride``), which pixels (``resize`` of the short
side, then a ``size`` x ``size`` crop) and how they are normalised (``norm`` preset with
its ``mean`` and ``std``). A builder sets its model's default record
(``model.input_spec``); a training run may override parts of it and stores the result in
every checkpoint (``meta["input"]``) and in the run folder (``input.json``).
``train``, ``evaluate``, ``predict``, ``cam`` and the FLOP counter read this record;
nothing decides by a model's name.

Records written before the mean/std were part of them (``{"sampler", "frames", "stride",
"size", "resize", "norm"}``) read back unchanged: the preset fills in its mean and std.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from momentlens.data.normalize import NORM_PRESETS
from momentlens.data.sampling import clip_indices, segment_indices
from momentlens.utils import MomentlensError

if TYPE_CHECKING:
    import torch

SAMPLERS = ("segments", "clip")
Triple = tuple[float, float, float]


def default_resize(size: int) -> int:
    """The short side a ``size`` crop is taken from by default (128 for 112, 256 for 224)."""
    return round(size * 8 / 7)


@dataclass(frozen=True)
class InputSpec:
    """The clip a model expects.

    sampler: ``"segments"`` (``frames`` equally spaced frames, scored one by one and
             averaged: the 2D models) or ``"clip"`` (``frames`` consecutive frames
             ``stride`` apart: the 3D models).
    frames:  T, frames per input. stride: source frames between two clip frames.
    size:    H = W of the square crop, in pixels. resize: short side before cropping,
             in pixels (0 = :func:`default_resize` of ``size``).
    norm:    a preset of :data:`momentlens.data.normalize.NORM_PRESETS`; ``mean`` and
             ``std`` default to the preset's, in its units (``[0, 255]`` for ``*_255``
             and ``dataset`` presets, ``[0, 1]`` otherwise).
    """

    sampler: str
    frames: int
    size: int
    norm: str
    stride: int = 1
    resize: int = 0
    mean: Triple | None = None
    std: Triple | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise MomentlensError(f"unknown sampler {self.sampler!r}; allowed: "
                                  f"{', '.join(SAMPLERS)}")
        if self.norm not in NORM_PRESETS:
            raise MomentlensError(f"unknown normalisation preset {self.norm!r}; allowed: "
                                  f"{', '.join(NORM_PRESETS)}")
        for key in ("frames", "size", "stride"):
            if int(getattr(self, key)) < 1:
                raise MomentlensError(f"input '{key}' must be at least 1, got "
                                      f"{getattr(self, key)}")
        if self.resize < 0:
            raise MomentlensError(f"input 'resize' must not be negative, got {self.resize}")
        if self.norm == "dataset" and self.mean is None:
            raise MomentlensError("normalisation preset 'dataset' needs a mean (from "
                                  "`momentlens stats`, on [0, 255])")
        preset = NORM_PRESETS[self.norm]
        # Frozen: fill the defaults through object.__setattr__, as dataclasses do.
        object.__setattr__(self, "mean", _triple(self.mean, preset.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, preset.std, "std"))
        if min(self.std) <= 0:
            raise MomentlensError(f"input 'std' must be positive, got {self.std}")

    # ------------------------------------------------------------------ derived

    @property
    def pixel_range(self) -> float:
        """255.0 when pixels stay on ``[0, 255]`` before normalising, else 1.0."""
        return float(NORM_PRESETS[self.norm].value_scale)

    @property
    def short_side(self) -> int:
        """The short side, in pixels, that the crop is taken from."""
        return self.resize or default_resize(self.size)

    def shape(self, batch: int = 1) -> tuple[int, int, int, int, int]:
        """The input shape ``(B, 3, T, H, W)`` for ``batch`` clips."""
        return (batch, 3, self.frames, self.size, self.size)

    def view_indices(self, num_frames: int) -> np.ndarray:
        """Source frame indices ``(T,)`` of the single evaluation view of a video."""
        if self.sampler == "segments":
            return segment_indices(num_frames, self.frames, train=False)
        return clip_indices(num_frames, self.frames, self.stride, train=False)

    def dataset_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~momentlens.data.dataset.VideoDataset` that
        this record fixes."""
        return {"sampler": self.sampler, "frames": self.frames, "stride": self.stride,
                "size": self.size, "resize": self.short_side}

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, T, H, W)`` on any device -> the model's float32 input."""
        from momentlens.data.normalize import normalize

        return normalize(clips, self.norm, mean=self.mean, std=self.std)

    # ------------------------------------------------------------------ changes, files

    def override(self, **changes: Any) -> InputSpec:
        """A copy with ``changes`` applied; ``None``, ``"auto"`` and ``0`` keep a field
        (the "not set" values of the training config). A new ``norm`` brings its own
        preset mean/std unless they are given too."""
        given = {k: v for k, v in changes.items() if v not in (None, "auto", 0)}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise MomentlensError(f"InputSpec has no field {', '.join(sorted(unknown))}")
        if "norm" in given and given["norm"] != self.norm:
            given.setdefault("mean", None)
            given.setdefault("std", None)
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` reads it back equal."""
        d = dataclasses.asdict(self)
        d["resize"] = self.short_side  # explicit in files, so readers need no rule
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "input record") -> InputSpec:
        """Read a record from a checkpoint or ``input.json`` (older records included)."""
        known = {f.name for f in dataclasses.fields(cls)}
        # pixel_range was stored by early versions; it follows from the preset.
        extra = sorted(set(values) - known - {"pixel_range"})
        if extra:
            raise MomentlensError(f"{source}: unknown input field(s) {', '.join(extra)}; "
                                  f"known: {', '.join(sorted(known))}")
        missing = sorted({"sampler", "frames", "size", "norm"} - set(values))
        if missing:
            raise MomentlensError(f"{source}: the input record lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in values.items() if k in known}
        for key in ("frames", "size", "stride", "resize"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        return cls(**kwargs)


def _triple(value: Any, default: Triple, what: str) -> Triple:
    if value is None:
        return tuple(float(v) for v in default)  # type: ignore[return-value]
    out = tuple(float(v) for v in value)
    if len(out) != 3:
        raise MomentlensError(f"input '{what}' needs 3 values (R, G, B), got {len(out)}")
    return out  # type: ignore[return-value]
