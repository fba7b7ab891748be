"""Kept for callers of ``momentlens.data.layout``: the readers live in
:mod:`momentlens.data.layouts`, one module per release format."""

from momentlens.data.layouts import (
    CATEGORIES_FILE,
    LAYOUTS,
    MIT_CSV,
    LayoutError,
    Problem,
    Split,
    VideoRecord,
    available_splits,
    detect_layout,
    is_multi_label,
    load_classes,
    load_split,
    load_training_split,
    resolve_video,
    scan_split,
)

__all__ = ["CATEGORIES_FILE", "LAYOUTS", "MIT_CSV", "LayoutError", "Problem", "Split",
           "VideoRecord", "available_splits", "detect_layout", "is_multi_label",
           "load_classes", "load_split", "load_training_split", "resolve_video",
           "scan_split"]
