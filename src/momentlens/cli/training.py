"""Parsers of the training commands: train, models, demo."""

from __future__ import annotations

import argparse

from momentlens.cli.common import command

# --------------------------------------------------------------------------- train


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a 2D or 3D model on a dataset folder",
        description="Train a model. Settings come from defaults, then --config FILE.yaml, "
        "then the flags below, then --set key=value; the resolved settings are written to "
        "RUN_DIR/config.yaml. Under torchrun, runs DistributedDataParallel. A run folder "
        "is locked while a process trains in it. SIGINT/SIGTERM save a checkpoint at the "
        "end of the current step and exit with status 130/143; --resume continues.",
    )
    p.add_argument("--data", help="dataset folder (Moments-in-Time layout or class folders)")
    p.add_argument("--out", help="run folder (checkpoints, metrics.jsonl, tensorboard/)")
    p.add_argument("--config", help="flat YAML recipe: a file, or a shipped one such as "
                   "synth/r3d_tiny.yaml or mit_mini/rx3d101_16f.yaml")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any setting: --set lr=0.01 epochs=3 (one or more; "
                   "repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its last checkpoint, with its saved settings")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out folder that holds one; the old run is "
                   "removed once the new one has its first checkpoint")
    p.add_argument("--model", help="architecture (see momentlens models; default: the recipe's)")
    p.add_argument("--frames", type=int, help="frames per input (default: the model's)")
    p.add_argument("--size", type=int, help="crop size in pixels (default: the model's)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="clips per step (default: the recipe's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    p.add_argument("--workers", type=int, help="data loader processes (default: the recipe's)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--pretrained", help="local weight file (torchvision, 3D-ResNets-PyTorch, ...)")
    p.add_argument("--finetune", help="fc, last_stage or all")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    p.add_argument("--deterministic", action="store_const", const=True, default=None,
                   help="bit-for-bit reproducible (slower)")
    p.set_defaults(func=command("train", "run"))


# --------------------------------------------------------------------------- models


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models with parameter count and GFLOPs",
        description="List every registered model with its parameter count and multiply-adds "
        "(GFLOPs, conv and linear layers) for one clip at its default input, computed on "
        "the meta device. Class counts default to the reference pretraining (1000 for 2D, "
        "400 for 3D) so the numbers compare with the published ones.",
    )
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier size to count with (default: 1000 for 2D, 400 for 3D)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=command("results", "run_models"))


# --------------------------------------------------------------------------- demo


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="reproduce the paper's 2D-vs-3D study end to end on synthetic data",
        description="Generate the synthetic Moments-format dataset, train a 2D frame-averaging "
        "model and a 3D model from scratch, evaluate and compare them, score their class "
        "activation maps, and write DIR/report.html. Minutes on a laptop CPU.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--quick", action="store_true",
                   help="smaller settings: a look at the pipeline in a few minutes, too short "
                   "to show the finding")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset, the training "
                   "and the evaluation")
    p.set_defaults(func=command("demo", "run"))
