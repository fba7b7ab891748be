"""How many training clips a host's cores can load, with no DataLoader and no model.

The ceiling of any loader on the machine: N plain processes, each looping over
``VideoDataset.__getitem__`` (decode, sample, crop, to tensor) of a small prepared
synthetic dataset for a fixed time, one torch thread each. Compare with
``bench_train.py``'s end-to-end rate to see how much the training loop itself costs.

    python benchmarks/bench_loader_ceiling.py --processes 1,8,15 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _setup(root: Path, cores: int) -> None:
    from momentlens.data import synth
    from momentlens.data.prepare import prepare_dataset

    synth.generate(root / "d", train_per_class=8, val_per_class=1, size=128, num_frames=90,
                   workers=cores, classes=["ring", "square", "rising", "falling"],
                   preset="easy", overwrite=True)
    prepare_dataset(root / "d", root / "p", workers=cores)


def _rate(args: tuple[Path, float, int, int]) -> float:
    root, seconds, frames, stride = args
    import torch

    from momentlens.data.dataset import VideoDataset
    from momentlens.data.layout import load_split

    torch.set_num_threads(1)
    split = load_split(root / "p", "training")
    ds = VideoDataset(split.records, num_classes=4, sampler="clip", frames=frames,
                      stride=stride, train=True, size=112, resize=128, seed=os.getpid())
    ds[0]
    n, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(epoch)
        epoch += 1
        for i in range(len(ds)):
            ds[i]
            n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", default="1,8,15")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--stride", type=int, default=4)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _setup(root, cores)
        for k in (int(x) for x in args.processes.split(",")):
            with ProcessPoolExecutor(k) as ex:
                rates = list(ex.map(_rate, [(root, args.seconds, args.frames, args.stride)] * k))
            print(json.dumps({"processes": k, "clips_per_s": round(sum(rates), 1),
                              "per_process": round(sum(rates) / k, 1), "cores": cores}))


if __name__ == "__main__":
    main()
