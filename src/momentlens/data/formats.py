"""File conventions of the data tools, defined once: which files are videos, and how a
folder of extracted JPEG frames is laid out.

A frame folder (the paper's and 3D-ResNets-PyTorch's format, what ``momentlens prepare
--mode frames`` writes) holds ``image_00001.jpg, image_00002.jpg, ...``: 1-based names,
so frame index ``i`` (0-based) is ``FRAME_PATTERN.format(i + 1)``. An optional text file
``fps`` in the folder gives its frame rate; without it :data:`DEFAULT_FPS` is assumed.
"""

from __future__ import annotations

import os
from pathlib import Path

# Lower-case file suffixes read as videos (compare with ``path.suffix.lower()``).
# Containers FFmpeg reads that people keep videos in: phones (.mov, .3gp), camcorders
# (.mts, .m2ts), broadcast and stream recordings (.ts), MPEG-1/2 (.mpg, .mpeg, .vob),
# Flash (.flv) and Windows Media (.wmv, .asf). A folder's other files are not videos.
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".3gp", ".mts", ".m2ts",
                  ".ts", ".mpg", ".mpeg", ".vob", ".flv", ".wmv", ".asf")
FRAME_PATTERN = "image_{:05d}.jpg"
FPS_FILE = "fps"
# Frames per second assumed where a source does not say (a frame folder without an
# ``fps`` file, a container without a frame rate).
DEFAULT_FPS = 30.0


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s suffix is one of :data:`VIDEO_SUFFIXES` (the file is not opened)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_frame_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a first frame ``image_00001.jpg``."""
    return (Path(path) / FRAME_PATTERN.format(1)).is_file()


def find_videos(root: str | os.PathLike[str]) -> list[Path]:
    """Video files (by suffix) and JPEG frame folders under ``root``, searched
    recursively, sorted; hidden files are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        frames = [d for d in dirnames if is_frame_folder(here / d)]
        found += [here / d for d in frames]
        dirnames[:] = sorted(d for d in dirnames if d not in frames and not d.startswith("."))
        found += [here / f for f in filenames if is_video_file(f) and not f.startswith(".")]
    return sorted(found)
