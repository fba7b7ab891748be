"""Extracted JPEG frame folders in place of video files, in every layout.

A video may be a folder of ``image_00001.jpg ...`` (the paper's and 3D-ResNets-PyTorch's
format; what ``momentlens prepare --mode frames`` writes): a listed ``a/b.mp4`` (or
``.avi``, ``.webm``) resolves to the folder ``a/b`` when the file does not exist but the
folder does. Class folders of frame folders are read by the ``folders`` layout.
"""

from __future__ import annotations

from pathlib import Path

from momentlens.data.formats import is_frame_folder


def find_video(path: Path) -> Path | None:
    """``path`` if it exists, else the JPEG frame folder ``path`` without its suffix if
    that exists, else ``None``. One ``stat`` for a listed file that is there: a split of
    100,000 videos on a network file system pays it per video."""
    if path.exists():
        return path
    folder = path.with_suffix("")
    if folder != path and is_frame_folder(folder):
        return folder
    return None


def resolve_video(path: Path) -> Path:
    """:func:`find_video`, or ``path`` unchanged when neither exists (reported as missing
    by the caller)."""
    return find_video(path) or path


def exists_as_video(path: Path) -> bool:
    """Whether ``path`` exists as a file or as its frame folder."""
    return find_video(path) is not None
