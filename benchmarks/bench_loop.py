"""The training loop's own overhead ("glue"), measured on the CPU with a model that costs nothing.

``train_one_epoch`` runs a free model (the first pixel of each channel as features, then
a linear head) over a ``prepare``d synthetic dataset with the real loader
(persistent workers), and the loader alone is iterated with the same workers. For each
worker count (1, 2 and N, default N = the cores) it reports:

* loader only: clips/s of iterating the training loader (no model, no copy);
* end-to-end: clips/s of ``train_one_epoch`` with the free model;
* their ratio (the target is >= 90% with the same workers);
* the main process's time per batch (wall, and its main thread's CPU time, which the
  load of a shared machine does not inflate) outside ``next(loader)`` and the model's
  forward (normalisation, the optional crop/flip, loss, backward and step of the head,
  meters, progress bar), and inside ``next(loader)``.

The main process runs torch on ``--threads`` intra-op threads (default 1): on the CPU
its normalisation stands in for work a GPU does, and more threads than the cores the
workers leave only contend with them.

Each figure is the median over ``--rounds`` rounds, loader-only and end-to-end passes
alternating (noise on a shared machine hits both alike); every timed epoch follows a
warm-up epoch on the same persistent workers. Usage::

    python benchmarks/bench_loop.py [--workers 1,2,N] [--repeat 6] [--rounds 3]
        [--batch-size 8] [--frames 16] [--size 112] [--threads 1] [--device-augment]
        [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from momentlens.data.layout import load_split
from momentlens.data.prepare import prepare_dataset
from momentlens.data.synth import generate
from momentlens.engine import factory as Fa
from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import load_config
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.feed import TrainFeed, device_augment_dataset, usable_cores
from momentlens.engine.inference import Normalizer
from momentlens.engine.loop import train_one_epoch
from momentlens.engine.prefetch import DeviceAugment
from momentlens.engine.signals import StopRequest
from momentlens.models import registry

SECTION = "## Training loop overhead (CPU)"


class FreeModel(nn.Module):
    """Identity features (one pixel per channel) and a linear head: costs nothing."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, classes)
        self.seconds = self.cpu = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0, c0 = time.perf_counter(), time.thread_time()
        out = self.head(x[:, :, 0, 0, 0])
        self.seconds += time.perf_counter() - t0
        self.cpu += time.thread_time() - c0
        return out


class TimedLoader:
    """A loader whose ``next()`` time is summed in ``seconds``."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader, self.seconds, self.cpu = loader, 0.0, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t0
                self.cpu += time.thread_time() - c0
            yield batch


def build(data: Path, args: argparse.Namespace):
    cfg = load_config(None, {"data": str(data), "model": "r3d18", "frames": args.frames,
                             "stride": 2, "size": args.size, "batch_size": args.batch_size,
                             "lr": 0.01, "schedule": "none", "device": "cpu",
                             "device_augment": args.device_augment, "epochs": 2})
    split = load_split(data, "training")
    split = replace(split, records=split.records * args.repeat)
    spec = Fa.input_spec(cfg, registry.create_model("r3d18", num_classes=4, width=0.25))
    ds = Fa.make_dataset(cfg, spec, split, True, None)
    augment = None
    if args.device_augment:
        augment = DeviceAugment(cfg.seed, spec.size, *device_augment_dataset(ds))
    return cfg, spec, ds, augment


def epochs(feed: TrainFeed, sampler: EpochSampler, warmup: int, run) -> tuple[float, int, dict]:
    """Warm-up epoch of ``warmup`` batches, then one whole timed epoch: ``run(loader, epoch)``."""
    full = sampler.max_batches
    sampler.max_batches = warmup
    run(feed.epoch(0), 0)
    sampler.max_batches = full
    loader = feed.epoch(1)
    t0 = time.perf_counter()
    extra = run(loader, 1)
    return time.perf_counter() - t0, len(loader), extra or {}


def loader_only(cfg, ds, workers: int, args) -> dict:
    sampler = EpochSampler(len(ds), cfg.batch_size, DistInfo(), seed=0)
    with TrainFeed(ds, sampler, workers, torch.device("cpu")) as feed:
        seconds, batches, _ = epochs(feed, sampler, args.warmup,
                                     lambda loader, _e: sum(1 for _ in loader))
    return {"clips_per_s": batches * cfg.batch_size / seconds}


def end_to_end(cfg, spec, ds, augment, workers: int, args) -> dict:
    sampler = EpochSampler(len(ds), cfg.batch_size, DistInfo(), seed=0)
    model = FreeModel(4)
    optimizer = Fa.make_optimizer(cfg, list(model.parameters()))
    scheduler = Fa.make_scheduler(cfg, optimizer, 1)
    normalizer = Normalizer(spec)

    def run(loader, epoch):
        timed = TimedLoader(loader)
        model.seconds = model.cpu = 0.0
        c0 = time.thread_time()
        stats = train_one_epoch(model, timed, optimizer, scheduler, TrainState(epoch=epoch),
                                cfg, torch.device("cpu"), normalizer, None, DistInfo(),
                                StopRequest(), lambda: None, augment=augment)
        glue_cpu = time.thread_time() - c0 - timed.cpu - model.cpu
        return {"next_s": timed.seconds, "model_s": model.seconds, "glue_cpu": glue_cpu,
                **stats}

    with TrainFeed(ds, sampler, workers, torch.device("cpu")) as feed:
        seconds, batches, extra = epochs(feed, sampler, args.warmup, run)
    glue = seconds - extra["next_s"] - extra["model_s"]
    return {"clips_per_s": batches * cfg.batch_size / seconds,
            "glue_ms": 1000 * glue / batches, "glue_cpu_ms": 1000 * extra["glue_cpu"] / batches,
            "next_ms": 1000 * extra["next_s"] / batches,
            "model_ms": 1000 * extra["model_s"] / batches, "data_wait": extra["data_wait"],
            "batches": batches}


def measure(cfg, spec, ds, augment, workers: int, args) -> dict:
    rounds = []
    for _ in range(args.rounds):
        lo = loader_only(cfg, ds, workers, args)
        e2e = end_to_end(cfg, spec, ds, augment, workers, args)
        rounds.append({"loader": lo["clips_per_s"], "e2e": e2e["clips_per_s"],
                       "ratio": e2e["clips_per_s"] / lo["clips_per_s"], **e2e})
        print(json.dumps({"workers": workers, **rounds[-1]}), flush=True)
    med = {k: statistics.median(r[k] for r in rounds)
           for k in ("loader", "e2e", "ratio", "glue_ms", "glue_cpu_ms", "next_ms", "model_ms",
                     "data_wait")}
    return {"workers": workers, "rounds": len(rounds), "batches": rounds[0]["batches"], **med}


def markdown(rows: list[dict], args: argparse.Namespace, videos: int, load: str) -> str:
    aug = "on" if args.device_augment else "off"
    lines = [
        SECTION, "",
        f"`python benchmarks/bench_loop.py --workers {args.workers} --repeat {args.repeat} "
        f"--rounds {args.rounds} --batch-size {args.batch_size} --frames {args.frames} "
        f"--size {args.size} --threads {args.threads}"
        f"{' --device-augment' if args.device_augment else ''}` (issue 22). "
        f"`train_one_epoch` with a free model (one pixel per channel, linear head) vs the "
        f"same persistent loader alone; {videos} prepared synthetic videos (128 px, "
        f"keyframe every 8 frames) listed {args.repeat} times; r3d clip "
        f"{args.frames}x{args.size}x{args.size}, batch {args.batch_size}, device "
        f"augmentation {aug}. Median of {args.rounds} alternating rounds; each timed epoch "
        "follows a warm-up epoch on the same workers.", "",
        f"Machine: {usable_cores()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average before the run: {load}.", "",
        "| workers | loader only, clips/s | end-to-end, clips/s | ratio | glue ms/batch "
        "(wall) | glue CPU ms/batch | next(loader) ms/batch | model ms/batch | data wait |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['loader']:.1f} | {r['e2e']:.1f} | "
                     f"{100 * r['ratio']:.0f}% | {r['glue_ms']:.1f} | {r['glue_cpu_ms']:.1f} | "
                     f"{r['next_ms']:.1f} | "
                     f"{r['model_ms']:.3f} | {100 * r['data_wait']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default=f"1,2,{usable_cores()}")
    p.add_argument("--videos-per-class", type=int, default=4)
    p.add_argument("--repeat", type=int, default=6, help="list each video this many times")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="batches of the warm-up epoch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--device-augment", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="the main process's torch threads (its work stands in for a GPU's)")
    p.add_argument("--markdown", type=Path, help="write/replace the section here")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    workers = sorted({int(w) for w in args.workers.split(",")})
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "src", train_per_class=args.videos_per_class, val_per_class=1,
                 size=128, num_frames=90, seed=0, classes=["ring", "square", "rising",
                                                          "falling"])
        prepare_dataset(Path(tmp) / "src", Path(tmp) / "data")
        cfg, spec, ds, augment = build(Path(tmp) / "data", args)
        rows = [measure(cfg, spec, ds, augment, w, args) for w in workers]
    text = markdown(rows, args, 4 * args.videos_per_class, load)
    print(text)
    if args.markdown:
        from bench_train import write_section

        write_section(args.markdown, text, SECTION)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
