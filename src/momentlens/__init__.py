"""momentlens: action recognition in short videos.

2D frame-averaging ResNets and 3D-ResNets / 3D-ResNeXts, trained and evaluated on
Moments-in-Time-style datasets, with per-class error analysis and class activation
maps over space and time.

The Python API (the command line, ``momentlens --help``, does the same from a shell)::

    import momentlens
    clf = momentlens.load("runs/r3d18")       # a trained run, model file or .onnx
    clf.predict("video.mp4", topk=5)          # [(class, probability), ...]
    clf.cam("video.mp4")                      # class activation maps, as `momentlens cam`

Public names (imported when first used, so ``import momentlens`` stays light):

``load(path, device="auto", precision="auto", backend="auto")``
    A trained model as a :class:`Classifier`.
``Classifier``
    A loaded model: ``classes``, ``input_spec``, ``predict``, ``predict_many``, ``cam``,
    and ``clf(clips)`` for logits.
``create_model(name, num_classes, **options)`` / ``list_models()``
    Build a registered architecture (untrained) / the names ``momentlens models`` lists.
``load_pretrained(model, path)``
    Load a released weight file (torchvision, 3D-ResNets-PyTorch, ...) into a model.
``__version__``
    The package version.

Deeper layers (``momentlens.data``, ``momentlens.engine``, ``momentlens.analysis``,
``momentlens.cam``) are importable too; ``docs/architecture.md`` says what lives where.
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
