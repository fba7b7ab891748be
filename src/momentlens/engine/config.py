"""Training settings: one dataclass, filled from a flat YAML file, then flags, then ``--set``
(or, for ``--resume``, from the run folder's own ``config.yaml``: :func:`resume_config`).

No inheritance between recipes and no code in them: a recipe is a flat mapping of the
field names below. Every value is checked, and an unknown key or a bad value is an
error that names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from momentlens.data.decode import BACKENDS
from momentlens.data.layouts import LAYOUT_CHOICES
from momentlens.data.normalize import NORM_PRESETS
from momentlens.engine.runtime import AMP_MODES, DEVICES
from momentlens.models.base import FINETUNE_MODES
from momentlens.models.resnet3d import SHORTCUTS, STYLES
from momentlens.models.spec import SAMPLERS
from momentlens.utils import MomentlensError, write_text_atomic

#: Optimisers and schedules of :mod:`momentlens.engine.factory` (only named here).
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("none", "step", "cosine", "plateau")
#: Training losses: ``auto`` is ``bce`` on multi-label data (M-MiT), ``ce`` otherwise.
LOSSES = ("auto", "ce", "bce")

#: Allowed values of the string settings; each list comes from the module that acts on it.
CHOICES: dict[str, tuple[str, ...]] = {
    "sampler": ("auto", *SAMPLERS),
    "finetune": FINETUNE_MODES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "loss": LOSSES,
    "device": DEVICES,
    "amp": AMP_MODES,
    # 'dataset' needs a per-channel mean, which no training setting carries.
    "norm": ("auto", *(name for name in NORM_PRESETS if name != "dataset")),
    "backend": BACKENDS,
    "style": STYLES,
    "layout": LAYOUT_CHOICES,
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Written back as ``RUN_DIR/config.yaml``."""

    # data
    data: str = ""
    train_split: str = "training"
    val_split: str = "validation"
    layout: str = "auto"  # dataset layout (momentlens.data.layouts); auto: from its files
    split_id: int = 1  # numbered split of ucf101 / hmdb51 (1, 2 or 3)
    backend: str = "auto"
    # model and input
    model: str = "r3d18"
    width: float = 1.0
    style: str = "2018"  # 3D models: layout defaults of 3D-ResNets-PyTorch's 2018 or 2020 code
    last_stride: int = 2  # spatial stride of the last stage; 1 = twice finer CAMs
    # 3D-ResNet architecture options; None (null) = not set: the model's default, or what
    # a --pretrained file implies (torchvision's r3d_18: 3, 1, true, B)
    conv1_t_size: int | None = None  # stem temporal kernel
    conv1_t_stride: int | None = None  # stem temporal stride
    no_max_pool: bool | None = None  # skip the max-pool after the stem
    shortcut: str | None = None  # A (zero-padded identity) or B (1x1x1 conv + BN)
    layer3_stride: int | None = None  # spatial stride of layer3 (2); 1 = twice finer CAMs
    layer2_stride: int | None = None  # spatial stride of layer2 (2); 1 = twice finer again
    late_t_stride: int | None = None  # temporal stride of layer3 and layer4 (2); 1 = CAMs
    #                                   with T/4 time slices
    temporal_stages: int | None = None  # stages with 3-tap temporal kernels (4); the rest
    #                                     convolve space only and keep every time slice
    dilate: bool | None = None  # stages kept at stride 1 dilate later 3x3s (same field)
    frames: int = 16
    size: int = 112
    resize: int = 0  # short side before cropping; 0: size * 8 / 7 (128 for 112)
    stride: int = 1  # temporal stride of a clip, in source frames
    sampler: str = "auto"  # segments for 2D models, clip for 3D models
    norm: str = "auto"  # the model's own preset
    pretrained: str = ""  # local weight file; never downloaded
    finetune: str = "all"
    # optimisation (paper section 5.1: SGD, momentum 0.9, weight decay 0.001)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 10  # epochs between decays, for schedule=step
    gamma: float = 0.1
    plateau_patience: int = 2
    label_smoothing: float = 0.0
    loss: str = "auto"  # ce (softmax cross-entropy), bce (per-class sigmoid); auto: see LOSSES
    colour_jitter: float = 0.0  # training clips: brightness/contrast/saturation jitter, hue /2
    grayscale_p: float = 0.0  # training clips: probability of grey-scale
    flip_p: float = 0.5  # training clips: probability of a horizontal flip (0 for SSv2)
    accum_steps: int = 1
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    # speed
    workers: int = 2  # loader workers per process (capped at its share of the cores)
    persistent_workers: bool = True  # keep the training loader's workers across epochs
    device_augment: bool = False  # crop and flip training batches on the device
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = False
    compile: bool = False
    cache_features: bool = False  # finetune=fc only: train the head on cached features
    sync_bn: bool = False
    # validation and checkpoints
    val_every: int = 1  # epochs; 0 = only at the end
    val_clips: int = 1
    save_every: int = 0  # also keep the checkpoint of every N-th epoch; 0 = last and best
    checkpoint_steps: int = 0  # also save 'last' every N optimiser steps; 0 = per epoch
    max_steps_per_epoch: int = 0  # 0 = the whole training split
    # reproducibility
    seed: int = 0
    deterministic: bool = False
    # bookkeeping
    out: str = ""
    notes: str = field(default="", metadata={"help": "free text kept with the run"})

    def validate(self) -> TrainConfig:
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise MomentlensError(f"bad value {value!r} for '{key}'; allowed: "
                                      f"{', '.join(allowed)}{_did_you_mean(value, allowed)}")
        positive = ["frames", "size", "stride", "epochs", "batch_size", "accum_steps", "val_clips"]
        for key in positive:
            if getattr(self, key) < 1:
                raise MomentlensError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        non_negative = ["lr", "weight_decay", "label_smoothing", "clip_grad", "warmup_epochs",
                        "workers", "save_every", "checkpoint_steps", "max_steps_per_epoch",
                        "resize", "val_every"]
        for key in non_negative:
            if getattr(self, key) < 0:
                raise MomentlensError(f"'{key}' must not be negative, got {getattr(self, key)}")
        for key in ("conv1_t_size", "conv1_t_stride"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise MomentlensError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        if self.shortcut is not None and self.shortcut not in SHORTCUTS:
            raise MomentlensError(f"bad value {self.shortcut!r} for 'shortcut'; allowed: "
                                  f"{', '.join(SHORTCUTS)}")
        for key, allowed in (("last_stride", (1, 2)), ("layer3_stride", (None, 1, 2)),
                             ("layer2_stride", (None, 1, 2)), ("late_t_stride", (None, 1, 2)),
                             ("temporal_stages", (None, 0, 1, 2, 3, 4))):
            if getattr(self, key) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise MomentlensError(f"bad value {getattr(self, key)!r} for '{key}'; "
                                      f"allowed: {shown}")
        if self.lr > 3.0e38:  # beyond float32, which the optimiser works in
            raise MomentlensError(f"'lr' must be below 3e38 (float32), got {self.lr}")
        if not 0 < self.width <= 4:
            raise MomentlensError(f"'width' must be in (0, 4], got {self.width}")
        if not 0 <= self.flip_p <= 1:
            raise MomentlensError(f"'flip_p' must be in [0, 1], got {self.flip_p}")
        if not 0 <= self.label_smoothing < 1:
            raise MomentlensError(f"'label_smoothing' must be in [0, 1), got {self.label_smoothing}")
        if self.cache_features and self.finetune != "fc":
            raise MomentlensError("'cache_features' needs finetune=fc (a frozen trunk)")
        return self

    def resolved_loss(self, multi_label: bool) -> str:
        """``"ce"`` or ``"bce"``: the loss trained with on data that is (or is not)
        multi-label (``loss: auto`` -> ``bce`` for multi-label data, ``ce`` otherwise)."""
        if self.loss == "auto":
            return "bce" if multi_label else "ce"
        return self.loss

    @property
    def resolved_resize(self) -> int:
        return self.resize or round(self.size * 8 / 7)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _did_you_mean(word: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _field_type(name: str) -> type:
    hint = typing.get_type_hints(TrainConfig)[name]
    if isinstance(hint, types.UnionType):  # optional: None means "not set"
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _optional(name: str) -> bool:
    return type(None) in typing.get_args(typing.get_type_hints(TrainConfig)[name])


def _coerce(key: str, value: Any, source: str) -> Any:
    if key not in _FIELDS:
        raise MomentlensError(f"unknown setting '{key}' in {source}{_did_you_mean(key, _FIELDS)}"
                              f"; known settings: {', '.join(_FIELDS)}")
    kind = _field_type(key)
    if isinstance(value, str) and kind is not str:
        parsed = yaml.safe_load(value) if value.strip() else ""
        value = parsed
    if _optional(key) and (value is None or (isinstance(value, str)
                                             and yaml.safe_load(value or "~") is None)):
        return None  # null, ~ or empty: not set
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise TypeError  # nan/inf would only surface later, as a NaN loss
            return float(value)
        if kind is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        pass
    else:  # pragma: no cover
        return value
    expected = "a finite number" if kind is float else kind.__name__
    raise MomentlensError(f"bad value {value!r} for '{key}' in {source}: expected {expected}")


RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs"


def list_recipes() -> list[str]:
    """The recipes shipped with the package, as ``family/name.yaml``."""
    return sorted(p.relative_to(RECIPES_DIR).as_posix() for p in RECIPES_DIR.glob("*/*.yaml"))


def resolve_recipe(path: str | os.PathLike[str]) -> Path:
    """``path`` when it is a file; else a shipped recipe of that name, with or without
    the ``configs/`` prefix and the ``.yaml`` suffix (``synth/r3d_tiny.yaml``, ``configs/mit_mini/r2d50_4f.yaml``)
    so that a recipe named as in the README works from any folder."""
    p = Path(path)
    for q in (p, p.with_name(p.name + ".yaml")) if p.suffix not in (".yaml", ".yml") else (p,):
        if q.is_file():
            return q
        parts = q.parts[1:] if q.parts[:1] == ("configs",) else q.parts
        if parts and not q.is_absolute() and ".." not in parts:
            shipped = RECIPES_DIR.joinpath(*parts)
            if shipped.is_file():
                return shipped
    raise MomentlensError(f"config file {p} not found (shipped recipes: "
                          f"{', '.join(list_recipes())})")


def load_config(
    path: str | os.PathLike[str] | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> TrainConfig:
    """Build a config: defaults, then the YAML file, then flags (``None`` = not given),
    then ``key=value`` overrides. Returns a validated :class:`TrainConfig`."""
    values: dict[str, Any] = {}
    if path:
        p = resolve_recipe(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise MomentlensError(f"config file {p} not found") from None
        except yaml.YAMLError as exc:
            raise MomentlensError(f"config file {p} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise MomentlensError(f"config file {p} must be a flat mapping of settings")
        for key, value in loaded.items():
            if isinstance(value, dict | list):
                raise MomentlensError(f"setting '{key}' in {p} must be a single value "
                                      "(recipes are flat)")
            values[key] = _coerce(str(key), value, str(p))
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MomentlensError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = _coerce(key.strip(), value, f"--set {item}")
    return TrainConfig(**values).validate()


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved settings as flat YAML (atomically)."""
    text = "# resolved settings of this run (momentlens train)\n"
    text += yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    write_text_atomic(path, text)


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Rebuild a config saved by :func:`save_config` (unknown keys are errors)."""
    return TrainConfig(**{k: _coerce(k, v, source) for k, v in values.items()}).validate()


def config_of_run(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The resolved settings a run folder was started with (``RUN_DIR/config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise MomentlensError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise MomentlensError(f"{path} not found: not a momentlens run folder")
    return config_from_dict(yaml.safe_load(path.read_text()), str(path))


def resume_config(
    run_dir: str | os.PathLike[str],
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> TrainConfig:
    """The settings to continue ``run_dir`` with (``--resume``): the run's own settings,
    then flags (``None`` = not given), then ``key=value`` overrides; ``out`` is the run
    folder whatever they say."""
    values = config_of_run(run_dir).to_dict()
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    values["out"] = str(Path(run_dir))
    return load_config(None, values, sets)
