"""``momentlens train`` with a slow checkpoint writer (run as a script by test_resume.py).

    python slow_checkpoint_train.py SECONDS TRAIN_ARGS...

Every model file written into a checkpoint's temporary folder is followed by a pause of
SECONDS, in this process, before the folder is completed and renamed: a wide window in
which a real SIGKILL from the test lands in the middle of a checkpoint write. Production
code has no such hook; the pause is patched in here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from momentlens import cli
from momentlens.engine import checkpoint as ckpt


def main(argv: list[str]) -> int:
    delay = float(argv[0])
    write = ckpt.save_model_file

    def slow_write(path: Any, *args: Any, **kwargs: Any) -> None:
        write(path, *args, **kwargs)
        if Path(path).parent.name.startswith(".tmp-"):  # a checkpoint, not another file
            time.sleep(delay)

    ckpt.save_model_file = slow_write  # save_checkpoint looks the name up at call time
    return cli.main(["train", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
