"""One process of the 2-process gloo test in test_feed_distributed.py (run as a script).

Started with the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, ...): joins
the process group, asks :func:`loader_workers` for its share of ``--workers``, and reads
two epochs through one persistent :class:`TrainFeed`; writes ``OUT/rank{r}.json``: its
workers, cores, and per epoch the items it got and the worker processes that made them.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from momentlens.engine import distributed as D
from momentlens.engine.feed import TrainFeed, loader_workers, usable_cores


class Draws:
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        draw = int(np.random.default_rng((0, self.epoch, i)).integers(1 << 30))
        return torch.tensor([draw, self.epoch, os.getpid()]), 0, i


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    info = D.setup("cpu")
    workers = loader_workers(args.workers, info)
    sampler = D.EpochSampler(16, 2, info, seed=5)
    epochs = []
    with TrainFeed(Draws(16), sampler, workers, torch.device("cpu")) as feed:
        for epoch in range(2):
            rows = [row for x, _, _ in feed.epoch(epoch) for row in x.tolist()]
            epochs.append({"items": [[d, e] for d, e, _ in rows],
                           "pids": sorted({pid for _, _, pid in rows})})
    with open(os.path.join(args.out, f"rank{info.rank}.json"), "w") as f:
        json.dump({"workers": workers, "cores": usable_cores(), "rank": info.rank,
                   "world": info.world_size, "epochs": epochs, "pid": os.getpid()}, f)
    D.cleanup()


if __name__ == "__main__":
    main()
