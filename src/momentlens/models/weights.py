"""External checkpoints: safe reading, key renaming, loading with a report, I3D inflation.

Formats handled by :func:`load_pretrained` (all read without unpickling objects):

* torchvision ImageNet ResNets: a plain state dict.
* 3D-ResNets-PyTorch 2018 (``resnext-101-kinetics.pth`` ...): ``{'arch', 'epoch',
  'state_dict': {'module.conv1.weight', ...}, 'optimizer'}``, written before
  BatchNorm had ``num_batches_tracked``.
* 3D-ResNets-PyTorch 2020 (``r3d50_K_200ep.pth`` ...): plain or ``{'state_dict': ...}``,
  no prefix, 700 classes.
* zhoubolei/moments_models: ``module.`` prefix, classifier named ``last_linear``.
* torchvision's Kinetics video models (``r3d_18``, ``mc3_18``, ``r2plus1d_18``):
  recognised by their keys (:mod:`momentlens.models.torchvision_video`); the options
  they imply come from :func:`options_for_pretrained`.
* ``.safetensors`` files with any of the key spellings above.

Renaming lives in :func:`normalise_keys` and, for torchvision's video layout into
``r3d18``, :func:`momentlens.models.torchvision_video.to_model_keys`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from momentlens.models import torchvision_video
from momentlens.models.weight_files import load_weight_file
from momentlens.utils import MomentlensError

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "net")
_CLASSIFIER = ("fc.weight", "fc.bias")
_LIST_LIMIT = 8


@dataclass
class LoadReport:
    """What a load did, key by key (keys in the model's spelling).

    loaded:      model keys whose values came from the checkpoint.
    initialised: model keys left at their fresh initialisation (the replaced
                 classifier; BatchNorm ``num_batches_tracked`` counters that the file
                 lacks are counted in ``counters_missing`` instead).
    ignored:     checkpoint keys not used (a classifier with another class count).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    counters_missing: int = 0
    arch: str | None = None
    notes: list[str] = field(default_factory=list)  # what the loader decided, in words

    def __str__(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"
                 + (f" (arch {self.arch})" if self.arch else "")]
        lines += [f"  {note}" for note in self.notes]
        if self.initialised:
            lines.append(f"  newly initialised: {_short(self.initialised)}")
        if self.ignored:
            lines.append(f"  ignored from file: {_short(self.ignored)}")
        if self.counters_missing:
            lines.append(f"  {self.counters_missing} BatchNorm num_batches_tracked counters "
                         "absent from the file (kept at their current value)")
        return "\n".join(lines)


def _short(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _LIST_LIMIT else "")


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read a checkpoint file safely; return ``(state_dict, arch)``.

    Safetensors files (recognised by content) go through safetensors; anything else
    through ``torch.load(weights_only=True)``, which refuses pickled objects (a
    checkpoint is untrusted input: unpickling it could run code). Any failure is one
    :class:`MomentlensError` line saying what the file is and why it was refused
    (:mod:`momentlens.models.weight_files`). Wrapper dicts are unwrapped; the 2018
    ``arch`` string is returned when present.
    """
    p = Path(path)
    obj, is_safetensors = load_weight_file(p)
    if is_safetensors:
        return obj, None
    return _unwrap(obj, p)


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    arch = None
    if isinstance(obj, Mapping):
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor)
                                                  for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise MomentlensError(f"{path}: expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise MomentlensError(
            f"{path}: no tensors found (top-level keys: {_short([str(k) for k in obj])})")
    return tensors, arch


def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename external spellings to momentlens keys.

    Strips ``module.`` (``nn.DataParallel``) and renames ``last_linear.`` (the
    moments_models / pretrainedmodels classifier) to ``fc.``.
    """
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("last_linear."):
            key = "fc." + key[len("last_linear."):]
        out[key] = value
    return out


# --------------------------------------------------------------------------- loading


def load_pretrained(model: nn.Module, path: str | os.PathLike[str],
                    strict_trunk: bool = True) -> LoadReport:
    """Load a local checkpoint into ``model`` in place and report what happened.

    The classifier (``fc``) is loaded when its shape matches and otherwise kept
    freshly initialised (another class count). With ``strict_trunk`` every other
    model tensor must come from the file with the same shape and every other file
    tensor must be used; any mismatch raises a :class:`MomentlensError` naming the
    keys. Missing ``num_batches_tracked`` counters (pre-2018 files) are not an error.
    """
    state, arch = read_checkpoint(path)
    report = LoadReport(source=str(Path(path).name), arch=arch)
    state = normalise_keys(state)
    tv_arch = torchvision_video.detect({k: tuple(v.shape) for k, v in state.items()})
    if tv_arch:
        state = torchvision_video.to_model_keys(model.state_dict(), state)
        report.notes.append(torchvision_video.describe(tv_arch))
        norm = getattr(getattr(model, "input_spec", None), "norm", torchvision_video.NORM)
        report.notes.append(f"normalisation {norm}" + (
            "" if norm == torchvision_video.NORM
            else f" (the file was trained with {torchvision_video.NORM})"))
    _apply(model, state, report, strict_trunk, f"checkpoint {path}", tv_arch)
    return report


def options_for_pretrained(name: str, path: str | os.PathLike[str],
                           options: Mapping[str, Any]) -> dict[str, Any]:
    """The builder options that make the checkpoint at ``path`` fit model ``name``.

    ``options`` unchanged for every format but torchvision's video files; for those,
    completed with the options the file implies (``r3d_18``: ``conv1_t_size=3,
    conv1_t_stride=1, no_max_pool=True, shortcut='B'``; all: ``norm='kinetics_tv'``
    unless one was asked for). A file of another model, or an option that contradicts
    the file, is a :class:`MomentlensError` naming both.
    """
    p = Path(path)
    try:
        st = p.stat()
        tv_arch = _torchvision_arch(str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        tv_arch = None  # read_checkpoint says why, when the file is loaded
    if tv_arch is None:
        return dict(options)
    return torchvision_video.fit_options(name, tv_arch, options, str(path))


@lru_cache(maxsize=8)
def _torchvision_arch(path: str, _mtime_ns: int, _size: int) -> str | None:
    # Cached per file version: a run asks for its model's options more than once.
    state = normalise_keys(read_checkpoint(path)[0])
    return torchvision_video.detect({k: tuple(v.shape) for k, v in state.items()})


def _apply(model: nn.Module, state: dict[str, torch.Tensor], report: LoadReport,
           strict_trunk: bool, what: str, tv_arch: str | None = None) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]

    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    report.counters_missing = len(counters)
    # A classifier of another size (or none in the file) is replaced as a whole,
    # not an error.
    if any(k in wrong or k in missing for k in _CLASSIFIER):
        for key in _CLASSIFIER:
            wrong = [k for k in wrong if k != key]
            missing = [k for k in missing if k != key]
            report.initialised.append(key)
            if key in state:
                report.ignored.append(key)
    missing = [k for k in missing if k not in counters]
    bad_fc_input = ("fc.weight" in report.ignored and state["fc.weight"].ndim == 2
                    and state["fc.weight"].shape[-1] != own["fc.weight"].shape[-1])
    if strict_trunk and (missing or unexpected or wrong or bad_fc_input):
        message = _mismatch_message(what, model, own, state, missing, unexpected, wrong,
                                    bad_fc_input)
        if tv_arch:  # the generic hint would point the wrong way
            message = message.rsplit("\n", 1)[0] + "\n  " + torchvision_video.mismatch_hint(tv_arch)
        raise MomentlensError(message)
    report.ignored += unexpected + wrong
    report.initialised += missing + wrong
    use = {k: state[k] for k in own if k in state and k not in report.ignored}
    with torch.no_grad():
        for key, value in use.items():
            own[key].copy_(value.to(own[key].dtype))
    report.loaded = list(use)


def _mismatch_message(what: str, model: nn.Module, own: dict[str, torch.Tensor],
                      state: dict[str, torch.Tensor], missing: list[str],
                      unexpected: list[str], wrong: list[str], bad_fc_input: bool) -> str:
    parts = [f"{what} does not fit {type(model).__name__}:"]
    if missing:
        parts.append(f"  missing from the file: {_short(missing)}")
    if unexpected:
        parts.append(f"  not in the model: {_short(unexpected)}")
    for key in wrong[:_LIST_LIMIT]:
        parts.append(f"  shape of {key}: file {tuple(state[key].shape)}, "
                     f"model {tuple(own[key].shape)}")
    if bad_fc_input:
        parts.append(f"  classifier input: file {state['fc.weight'].shape[-1]} features, "
                     f"model {own['fc.weight'].shape[-1]}")
    has_ds = any(".downsample." in k for k in state)
    wants_ds = any(".downsample." in k for k in own)
    if has_ds != wants_ds:
        hint = "'B'" if has_ds else "'A'"
        parts.append(f"  hint: the file was trained with shortcut {hint}; build the model "
                     f"with shortcut={hint}")
    else:
        parts.append("  hint: check the model name, width and depth against the file")
    return "\n".join(parts)


# --------------------------------------------------------------------------- inflation


def inflate_2d_to_3d(model3d: nn.Module,
                     source: nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike[str],
                     mode: str = "mean") -> LoadReport:
    """Initialise a 3D ResNet from 2D ResNet weights (I3D, Carreira & Zisserman 2017).

    ``source`` is a 2D model, its state dict, or a checkpoint path (e.g. a
    torchvision ``resnet50`` file for ``r3d50``). A 2D kernel ``(O, I, h, w)`` becomes
    ``(O, I, t, h, w)``; BatchNorm and classifier tensors are copied; a classifier of
    another class count stays initialised.

    ``mode="mean"`` repeats the kernel ``t`` times and divides by ``t`` (I3D): on a clip
    of identical frames each 3D convolution then equals the 2D one, provided that every
    temporal tap sees the same frame. Zero temporal padding breaks that at the clip's
    ends, so build the 3D model with ``t_pad="replicate"`` for an exact match (then
    the temporal strides and max-pool keep the clip constant in time and the global
    average equals the 2D per-frame average). ``mode="center"`` puts the kernel in the
    central temporal tap and zeros elsewhere: exact with the reference zero padding too,
    and each frame is processed alone until training mixes time.
    Raises :class:`MomentlensError` if the trunks do not correspond (e.g. a 2D model
    with projection shortcuts into a 3D model with shortcut A).
    """
    if mode not in ("mean", "center"):
        raise MomentlensError(f"inflation mode {mode!r} is not allowed; choose mean or center")
    if isinstance(source, nn.Module):
        state, name = source.state_dict(), type(source).__name__
    elif isinstance(source, Mapping):
        state, name = dict(source), "2D state dict"
    else:
        state, name = read_checkpoint(source)[0], str(source)
    state = normalise_keys(state)
    own = model3d.state_dict()
    inflated = {}
    for key, value in state.items():
        target = own.get(key)
        if target is not None and value.ndim == 4 and target.ndim == 5:
            inflated[key] = _inflate_kernel(value, target.shape[2], mode)
        else:
            inflated[key] = value
    report = LoadReport(source=f"{name} (inflated, {mode})")
    _apply(model3d, inflated, report, True, f"2D weights from {name}")
    return report


def _inflate_kernel(w: torch.Tensor, t: int, mode: str) -> torch.Tensor:
    if mode == "mean":
        return w.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
    out = w.new_zeros(w.shape[0], w.shape[1], t, *w.shape[2:])
    out[:, :, t // 2] = w
    return out
