"""``momentlens train`` whose videos load slowly (run as a script by the tests).

    python slow_items_train.py SECONDS MARKER TRAIN_ARGS...

Every item a dataset loads (in a loader worker or in this process) first appends the
loading process's id to the file MARKER (one line), then pauses SECONDS: the test waits
for MARKER and knows that the run is reading videos, with a wide window left in which
its signal lands, and can count which process loaded how many items. Production code has
no such hook; the pause is patched in here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from momentlens import cli
from momentlens.data.dataset import VideoDataset


def main(argv: list[str]) -> int:
    delay, marker = float(argv[0]), Path(argv[1])
    load = VideoDataset.__getitem__

    def slow_load(self: VideoDataset, index: int) -> Any:
        fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        time.sleep(delay)
        return load(self, index)

    VideoDataset.__getitem__ = slow_load  # forked loader workers inherit the patch
    return cli.main(["train", *argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
