"""A plain dict registry of model builders, keyed by the builder's function name.

``create_model("rx3d101", num_classes=200, width=0.5)`` calls ``resnet3d.rx3d101``.
Every builder takes ``num_classes`` and keyword options and returns a
:class:`~momentlens.models.base.VideoClassifier`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from momentlens.utils import MomentlensError, did_you_mean

F = TypeVar("F", bound=Callable[..., Any])

_MODELS: dict[str, Callable[..., Any]] = {}
_FAMILY_MODULES = ("momentlens.models.resnet2d", "momentlens.models.resnet3d",
                   "momentlens.models.mc3d", "momentlens.models.r2plus1d")


def register_model(fn: F) -> F:
    """Decorator: add ``fn`` to the registry under ``fn.__name__``."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def _load_families() -> None:
    # The builders register themselves when their module is imported.
    import importlib

    for module in _FAMILY_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of all registered models: family by family (``_FAMILY_MODULES`` order), each
    in registration order."""
    _load_families()
    rank = {m: i for i, m in enumerate(_FAMILY_MODULES)}
    names = list(_MODELS)  # registration order follows import order: sort by family
    return sorted(names, key=lambda n: (rank.get(getattr(_MODELS[n], "__module__", ""),
                                                 len(rank)), names.index(n)))


def get_builder(name: str) -> Callable[..., Any]:
    """The builder function for ``name``; a :class:`MomentlensError` names close matches."""
    _load_families()
    if name not in _MODELS:
        raise MomentlensError(f"unknown model {name!r}{did_you_mean(name, _MODELS)}; "
                              f"available: {', '.join(_MODELS)}")
    return _MODELS[name]


def model_options(name: str) -> list[str]:
    """The keyword options ``create_model(name, ...)`` accepts (besides ``pretrained``)."""
    # A builder is annotated with the class it returns; that class's keyword-only
    # constructor arguments are the options.
    cls = typing.get_type_hints(get_builder(name))["return"]
    params = inspect.signature(cls.__init__).parameters
    return [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]


def create_model(name: str, num_classes: int, pretrained: str | None = None,
                 **options: Any) -> Any:
    """Build a registered model.

    name:        a name from :func:`list_models`, e.g. ``"r2d50"``, ``"r3d18"``, ``"rx3d101"``.
    num_classes: size of the classifier output.
    pretrained:  optional path of a local checkpoint, loaded with
                 :func:`momentlens.models.weights.load_pretrained` (a class-count
                 mismatch re-initialises only the classifier). Nothing is downloaded.
                 Options the file implies are set first
                 (:func:`momentlens.models.weights.options_for_pretrained`).
    options:     family options such as ``width``, ``shortcut``, ``style``, ``frames``,
                 ``size``, ``norm``, ``no_max_pool``, ``conv1_t_size``; an unknown
                 option is an error that lists the allowed ones.
    """
    builder = get_builder(name)
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise MomentlensError(
            f"model {name!r} has no option {', '.join(unknown)}; allowed: "
            f"{', '.join(allowed + ['pretrained'])}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise MomentlensError(f"num_classes must be a positive integer, got {num_classes!r}")
    if pretrained:
        from momentlens.models.weights import options_for_pretrained

        # A file may imply architecture options (torchvision's r3d_18: 3x7x7 stem, no
        # max-pool, shortcut B); contradicting ones are an error naming both.
        options = options_for_pretrained(name, pretrained, options)
    model = builder(num_classes, **options)
    if pretrained:
        from momentlens.models.weights import load_pretrained

        report = load_pretrained(model, pretrained)
        model.load_report = report
    return model


def create_model_with_state(name: str, num_classes: int, state_dict: dict[str, Any],
                            **options: Any) -> Any:
    """:func:`create_model`, with its weights taken from ``state_dict`` (strict keys).

    The model is built on the ``meta`` device and ``state_dict``'s tensors are assigned
    to it (``load_state_dict(..., assign=True)``), so no random initialisation is
    computed only to be overwritten: 0.28 s of the 0.3 s it took to rebuild r3d18 from
    a file. The model ends where the tensors are (the CPU for a file just read).
    """
    import torch

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    model.load_state_dict(state_dict, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor that the state dict does not hold (no model has one today)
        raise RuntimeError(f"no weights for {', '.join(left[:5])}")
    return model
