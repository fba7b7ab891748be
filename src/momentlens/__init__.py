"""momentlens: action recognition in short videos.

2D frame-averaging ResNets and 3D-ResNets / 3D-ResNeXts, trained and evaluated on
Moments-in-Time-style datasets, with per-class error analysis and class activation
maps over space and time.
"""

from momentlens._version import __version__

#: The public names; ``help(momentlens)`` and ``dir(momentlens)`` show them although they
#: are imported only when first used.
__all__ = ["load", "Classifier", "create_model", "list_models", "load_pretrained",
           "__version__"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports keep `import momentlens` light
    # torch is imported only when a model-level name is asked for, so that the CLI's
    # --help and the data tools start fast.
    if name in {"load", "Classifier"}:
        from momentlens.engine import predictor

        return getattr(predictor, name)
    if name in {"create_model", "list_models"}:
        from momentlens.models import registry

        return getattr(registry, name)
    if name == "load_pretrained":
        from momentlens.models.weights import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'momentlens' has no attribute {name!r}")
