"""momentlens: action recognition in short videos.

2D frame-averaging ResNets and 3D-ResNets / 3D-ResNeXts, trained and evaluated on
Moments-in-Time-style datasets, with per-class error analysis and class activation
maps over space and time.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports keep `import momentlens` light
    # torch is imported only when a model-level name is asked for, so that the CLI's
    # --help and the data tools start fast.
    if name in {"create_model", "list_models"}:
        from momentlens.models import registry

        return getattr(registry, name)
    if name == "load_pretrained":
        from momentlens.models.weights import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'momentlens' has no attribute {name!r}")
