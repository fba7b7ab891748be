"""``momentlens models`` at once: the computed table, cached per version of the code.

The table (:func:`momentlens.models.flops.all_costs`) depends only on the code, yet
building every model on the meta device takes seconds. It is computed once, the first
time it is asked for, and kept in the user cache folder (``$MOMENTLENS_CACHE_DIR``, else
``$XDG_CACHE_HOME/momentlens``, else ``~/.cache/momentlens``), written atomically, under
a key made of the package version and a hash of the model sources: any change to the
models gives a new key, so a stale table is never shown. Nothing here imports torch (or
:mod:`momentlens.models`), so a cached table prints without it. An unwritable cache
folder only costs the time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from momentlens._version import __version__

MODELS_PACKAGE = "momentlens.models"


def cache_dir() -> Path:
    """Where the table is kept (module doc)."""
    if os.environ.get("MOMENTLENS_CACHE_DIR"):
        return Path(os.environ["MOMENTLENS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "momentlens"


def _key(num_classes: int | None) -> str:
    """The package version plus a hash of every source file of :mod:`momentlens.models`."""
    digest = hashlib.sha256()
    from importlib.util import find_spec

    spec = find_spec(MODELS_PACKAGE)  # found, not imported: importing it imports torch
    folder = Path(next(iter(spec.submodule_search_locations))) if spec else Path()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"models-{__version__}-{digest.hexdigest()[:16]}-{num_classes or 'ref'}.json"


def cached_costs(num_classes: int | None = None) -> list[dict[str, Any]]:
    """Every model's :meth:`~momentlens.models.flops.ModelCost.as_dict`, from the cache
    or computed (and cached) now."""
    path = cache_dir() / _key(num_classes)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    from momentlens.models import flops
    from momentlens.utils import write_json_atomic

    rows = [c.as_dict() for c in flops.all_costs(num_classes)]
    rows = json.loads(json.dumps(rows))  # tuples -> lists, as read back from the cache
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, rows)
    except OSError:
        pass  # a read-only home: computed each time, still correct
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table: name, family, classes, params (M), GFLOPs, input, norm."""
    header = f"{'model':<11} {'kind':<4} {'classes':>7} {'params (M)':>10} {'GFLOPs':>8}  " \
             f"{'input (T x H x W)':<18} norm"
    lines = [header, "-" * len(header)]
    for c in rows:
        _, _, t, h, w = c["input_shape"]
        lines.append(f"{c['name']:<11} {c['family']:<4} {c['num_classes']:>7} "
                     f"{c['params'] / 1e6:>10.2f} {c['macs'] / 1e9:>8.2f}  "
                     f"{f'{t} x {h} x {w}':<18} {c['norm']}")
    lines.append("GFLOPs = 10^9 multiply-adds of conv and linear layers for one clip.")
    return "\n".join(lines)
