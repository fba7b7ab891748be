"""``momentlens serve``: a web page and a JSON API that classify an uploaded video with
one or more runs side by side (:mod:`momentlens.serve.app`). FastAPI, uvicorn and
python-multipart are an optional extra, imported only when serving."""

from __future__ import annotations

from momentlens.utils import MomentlensError

INSTALL_HINT = "pip install 'momentlens[serve]'"


def require() -> None:
    """Raise a one-line :class:`MomentlensError` with the install hint when an optional
    dependency of ``serve`` is missing."""
    import importlib

    for module in ("fastapi", "uvicorn", "python_multipart"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MomentlensError(f"momentlens serve needs {module.replace('_', '-')}: "
                                  f"{INSTALL_HINT}") from None
