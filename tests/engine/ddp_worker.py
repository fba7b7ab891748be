"""One process of the 2-process gloo tests in test_distributed.py (run as a script).

Started with the variables torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR, ...), or
without them for the single-process reference. It takes one optimiser step (of ``--accum``
micro-batches) with the engine's ``train_one_epoch`` on the first global batch(es) of
the training split, then scores
the first ``--val-videos`` validation videos with ``score_dataset`` and validates them as
training does, and saves ``OUT/rank{r}.pt``: the initial and updated weights, the
gathered scores, the validation row, and this rank's batch.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

from momentlens.data.layout import load_split
from momentlens.engine import distributed as D
from momentlens.engine import factory as Fa
from momentlens.engine import train as T
from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import load_config
from momentlens.engine.inference import Normalizer, make_loader, score_dataset
from momentlens.models.base import set_finetune


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--global-batch", type=int, default=4)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--val-videos", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    info = D.setup("cpu")
    cfg = load_config(None, {"model": "r3d10", "width": 0.125, "frames": 4, "stride": 8,
                             "size": 32, "resize": 32, "lr": 0.1, "workers": 0,
                             "accum_steps": args.accum, "batch_size": args.global_batch,
                             "data": args.data, "device": "cpu"})
    device = torch.device("cpu")
    torch.manual_seed(0)  # the same initial weights in every process
    train_split = load_split(args.data, "training")
    model = Fa.build_model(cfg, len(train_split.classes))
    # Train every weight, but keep all BatchNorm layers in eval mode (running statistics,
    # as for frozen parts): per-rank batch statistics would differ from the global batch's.
    set_finetune(model, "all")
    model.frozen_modules = tuple(name for name, _ in model.named_children())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    ddp = torch.nn.parallel.DistributedDataParallel(model) if info.enabled else model
    per_rank = cfg.batch_size // info.world_size
    ds = Fa.make_dataset(cfg, Fa.input_spec(cfg, model), train_split, train=True, run_dir=None)
    sampler = D.EpochSampler(len(ds), per_rank, info, seed=cfg.seed, max_batches=args.accum)
    ds.set_epoch(0)
    loader = make_loader(ds, per_rank, 0, sampler, device)
    optimizer = Fa.make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    scheduler = Fa.make_scheduler(replace(cfg, schedule="none"), optimizer, 1)
    state = TrainState()
    normalizer = Normalizer(Fa.input_spec(cfg, model))
    T.train_one_epoch(ddp, loader, optimizer, scheduler, state, cfg, device, normalizer, None,
                      info, T.StopRequest(), lambda: None)
    assert state.step == 1 and state.batch_in_epoch == args.accum, state

    val_split = load_split(args.data, "validation")
    val_split = replace(val_split, records=val_split.records[:args.val_videos])
    val = Fa.make_dataset(cfg, Fa.input_spec(cfg, model), val_split, train=False, run_dir=None)
    local = list(D.EpochSampler(len(val), 2, info, shuffle=False))
    scores = score_dataset(model, val, device, normalizer, batch_size=2, info=info)
    # each process has a private quarantine file (run_dir=None): as on several machines
    # without a shared run folder
    validated = T.validate(model, val, cfg, device, normalizer, None, info, val_split.classes, 0)
    torch.save({"weights": {k: v.clone() for k, v in model.state_dict().items()},
                "validate": validated,
                "initial": initial,
                "indices": scores.indices, "labels": scores.labels,
                "clip_probs": scores.clip_probs, "local": local,
                "batch": list(sampler), "world": info.world_size},
               os.path.join(args.out, f"rank{info.rank}.pt"))
    D.cleanup()


if __name__ == "__main__":
    main()
