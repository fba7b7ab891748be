"""Extracted JPEG frame folders in place of video files, in every layout.

A video may be a folder of ``image_00001.jpg ...`` (the paper's and 3D-ResNets-PyTorch's
format; what ``momentlens prepare --mode frames`` writes): a listed ``a/b.mp4`` (or
``.avi``, ``.webm``) resolves to the folder ``a/b`` when the file does not exist but the
folder does. Class folders of frame folders are read by the ``folders`` layout.
"""

from __future__ import annotations

from pathlib import Path

from momentlens.data.formats import is_frame_folder


def resolve_video(path: Path) -> Path:
    """``path`` if it exists, else the JPEG frame folder ``path`` without its suffix if
    that exists, else ``path`` unchanged (reported as missing by the caller)."""
    if path.exists():
        return path
    folder = path.with_suffix("")
    if folder != path and is_frame_folder(folder):
        return folder
    return path


def exists_as_video(path: Path) -> bool:
    """Whether ``path`` exists as a file or as its frame folder."""
    return resolve_video(path).exists()
