"""One process of the 2-process stop-agreement test in test_distributed.py (a script).

Started with the variables torchrun sets. Inside a real ``StopRequest``, it calls
``agreed`` after each of up to 10 steps; rank ``--signalled`` sends itself SIGTERM before
step ``--at``'s agreement, or with ``--during`` while that agreement is under way: the
other rank joins it 1 s late, and the signal comes 0.3 s after the signalled rank sent
its flag (from a timer thread; the handler runs in the main thread). Writes ``OUT/stop{rank}.json``: the step at which this rank
stopped, the signal it stopped for, and the backend of the group of its own the flags met in (``None``: the default group).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path

import torch.distributed as dist

from momentlens.engine import distributed as D
from momentlens.engine.signals import StopRequest


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--signalled", type=int, default=1)
    p.add_argument("--at", type=int, default=3)
    p.add_argument("--during", action="store_true")
    args = p.parse_args()
    info = D.setup("cpu")
    stopped_at = None
    with StopRequest() as stop:
        for step in range(10):
            if step == args.at and args.during:
                if info.rank == args.signalled:
                    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
                else:
                    time.sleep(1.0)
            elif info.rank == args.signalled and step == args.at:
                os.kill(os.getpid(), signal.SIGTERM)
            if stop.agreed(info):
                stopped_at = step
                break
        own = stop._group is not None and stop._group != dist.group.WORLD
        backend = dist.get_backend(stop._group) if own else None
    record = {"rank": info.rank, "step": stopped_at, "signal": stop.signal, "group": backend}
    Path(args.out, f"stop{info.rank}.json").write_text(json.dumps(record))
    D.cleanup()


if __name__ == "__main__":
    main()
