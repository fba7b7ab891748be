"""The ``momentlens`` command line: argparse and dispatch, nothing else.

Each subcommand has an ``_add_<name>`` function that declares its arguments and names
the function of :mod:`momentlens.commands` that runs it. That module is imported only
when its command runs, so ``momentlens --help`` never imports torch or av.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from momentlens import __version__
from momentlens.utils import MomentlensError


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """``momentlens.commands.<module>.<name>``, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(import_module(f"momentlens.commands.{module}"), name)(args)

    return run


# --------------------------------------------------------------------------- synth


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic dataset in the Moments-in-Time release layout",
        description="Write a synthetic dataset laid out exactly like the Moments-in-Time "
        "(Mini) release: training/ and validation/ class folders of H.264 mp4 clips, "
        "trainingSet.csv / validationSet.csv without header, moments_categories.txt, and "
        "boxes.json with the moving object's box in every frame.",
    )
    p.add_argument("out_dir", help="output folder (refused if non-empty unless --overwrite)")
    p.add_argument("--train-per-class", type=int, default=60, help="training videos per class")
    p.add_argument("--val-per-class", type=int, default=20, help="validation videos per class")
    p.add_argument("--size", type=int, default=128, help="frame width and height in pixels")
    p.add_argument("--frames", type=int, default=90, help="frames per video (90 = 3 s at 30 fps)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--classes", default=None,
                   help="comma-separated subset of class names (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=_command("data", "run_synth"))


# --------------------------------------------------------------------------- compare


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two evaluation folders: per-class differences and a paired test",
        description="Compare two evaluations of the same classes (folders written by "
        "`momentlens evaluate`): per-class top-1/top-5 differences (B - A), the classes where "
        "each is better, the confusions both share, and a McNemar test of top-1 correctness "
        "over the videos both scored. Writes comparison.json and plots into --out.",
    )
    p.add_argument("eval_a", help="evaluation folder A (the baseline)")
    p.add_argument("eval_b", help="evaluation folder B")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), default=None,
                   help="display names (default: the model recorded in each metrics.json)")
    p.set_defaults(func=_command("results", "run_compare"))


# --------------------------------------------------------------------------- report


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report from evaluation folders",
        description="Write a single HTML page (images embedded, no network needed) with the "
        "headline table, per-class plots, most-confused tables, comparisons of every later "
        "evaluation with the first, and example top-5 predictions.",
    )
    p.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR", help="evaluation folders")
    p.add_argument("--out", required=True, help="output HTML file")
    p.add_argument("--title", default="momentlens evaluation report")
    p.add_argument("--examples", type=int, default=6, help="example videos to show")
    p.set_defaults(func=_command("results", "run_report"))


# --------------------------------------------------------------------------- models


def _add_models(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_command("results", "run_models"))


# --------------------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting; repeatable")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its last checkpoint, with its saved settings")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out folder that holds one; the old run is "
                   "removed once the new one has its first checkpoint")
    p.add_argument("--model")
    p.add_argument("--frames", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--pretrained", help="local weight file (torchvision, 3D-ResNets-PyTorch, ...)")
    p.add_argument("--finetune", help="fc, last_stage or all")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_const", const=True, default=None,
                   help="bit-for-bit reproducible (slower)")
    p.set_defaults(func=_command("train", "run"))


# --------------------------------------------------------------------------- check / prepare / stats


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="probe every video of a dataset and report problems",
        description="Decode every video of a dataset in parallel and report unreadable "
        "files, zero-frame and too-short videos, odd fps or sizes and label problems "
        "(with file and line). Exit status 1 when anything was found.")
    p.add_argument("data_dir", help="dataset folder (MiT release, class folders or path,label CSV)")
    p.add_argument("--split", action="append", default=None,
                   help="split to check (repeatable; default: every split found)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--json", default=None, help="write the full report to this JSON file")
    p.add_argument("--min-frames", type=int, default=16, help="fewer decodable frames is 'too short'")
    p.add_argument("--min-size", type=int, default=112, help="a smaller short side is 'small'")
    p.add_argument("--fps", type=float, default=None, help="expected fps (default: the median)")
    p.set_defaults(func=_command("data", "run_check"))


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare", help="make a faster copy of a dataset (smaller H.264 or JPEG frames)",
        description="Copy a dataset once, in the same layout, into videos that are fast to "
        "read: re-encoded H.264 with a short keyframe interval, or extracted JPEG frames. "
        "Resumable: rerun after an interruption and finished files are skipped.")
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    p.add_argument("--mode", choices=("video", "frames"), default="video")
    p.add_argument("--short-side", type=int, default=128, help="short side in pixels (never upscaled)")
    p.add_argument("--gop", type=int, default=8, help="keyframe interval in frames (video mode)")
    p.add_argument("--crf", type=int, default=23, help="H.264 quality (video mode; lower is better)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (frames mode)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.set_defaults(func=_command("data", "run_prepare"))


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="per-channel pixel mean and std of a dataset (for mean subtraction)",
        description="Per-channel RGB mean and std over evenly spaced frames of a sample of "
        "videos, on [0, 255] and [0, 1]; use mean_255 with the 'dataset' normalisation.")
    p.add_argument("data_dir")
    p.add_argument("--split", default="training")
    p.add_argument("--max-videos", type=int, default=500)
    p.add_argument("--frames", type=int, default=8, help="frames per video")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.set_defaults(func=_command("data", "run_stats"))


# --------------------------------------------------------------------------- evaluate / predict


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a trained model on a dataset split; write metrics and plots",
        description="Video-level results average softmax scores over N clips x M crops per "
        "video. Writes metrics.json, per_class.csv, confusions.csv, predictions.csv and plots "
        "to EVAL_DIR; unreadable videos are counted and listed.",
    )
    p.add_argument("model", help="run folder (its best checkpoint) or model.safetensors")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="validation")
    p.add_argument("--out", required=True, help="evaluation folder to write")
    p.add_argument("--clips", type=int, default=1, help="clips per video (1 = the paper)")
    p.add_argument("--crops", type=int, default=1, help="crops per clip (1 = centre)")
    p.add_argument("--cam", action="store_true",
                   help="also score class activation maps against boxes.json (pointing game, IoU)")
    p.add_argument("--cam-videos", type=int, default=0, metavar="N",
                   help="with --cam: score the first N videos of each class (0 = all)")
    p.add_argument("--no-sliding", action="store_true",
                   help="with --cam: map frames of the single evaluation view instead of "
                   "frames spread over each video, each from the view centred on it")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_command("evaluate", "run_evaluate"))


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of new videos",
                       description="Print the top-k classes with probabilities for each video "
                       "(files, or folders searched recursively).")
    p.add_argument("model", help="run folder or model.safetensors")
    p.add_argument("videos", nargs="+", help="video files or folders")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=1)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_command("evaluate", "run_predict"))


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="reproduce the paper's 2D-vs-3D study end to end on synthetic data",
        description="Generate the synthetic Moments-format dataset, train a 2D frame-averaging "
        "model and a 3D model from scratch, evaluate and compare them, score their class "
        "activation maps, and write DIR/report.html. Minutes on a laptop CPU.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--quick", action="store_true", help="smaller settings for a first look")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_command("demo", "run"))


# --------------------------------------------------------------------------- cam


def _add_cam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cam", help="class activation maps of one video over space and time",
        description="Maps the class evidence of a trained model over the sampled frames of "
        "VIDEO. Writes to DIR: cam.gif and cam.mp4 (map overlaid, top-5 predictions), "
        "contact_sheet.png (frames, CAM of the top-1 class, CAM of the true class when "
        "known), evidence.png/.csv (class evidence over time), cam.npz (heatmaps K x H x W "
        "at the video's resolution, frame_indices, class_index, class_name) and cam.json.",
    )
    p.add_argument("model", help="run folder (its best checkpoint) or model.safetensors")
    p.add_argument("video", help="video file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--class", dest="class_name", metavar="NAME",
                       help="map this class instead of the top-1 prediction")
    which.add_argument("--topk", type=int, default=1, metavar="K",
                       help="contact-sheet rows for the K most probable classes (default 1)")
    p.add_argument("--true-class", metavar="NAME",
                   help="true class (default: the video's folder name, if it is a class)")
    p.add_argument("--frames", type=int, metavar="N",
                   help="N maps (default: as many as the model's input frames)")
    p.add_argument("--no-sliding", action="store_true",
                   help="map N frames of the model's single evaluation view; by default a "
                   "model whose feature map has fewer time steps than its input (3D) maps N "
                   "frames spread over the whole video, each from the view centred on it")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_command("cam", "run"))


# --------------------------------------------------------------------------- main

# Subcommands in the order --help lists them. Later modules add their pair here.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_synth,
    _add_check,
    _add_prepare,
    _add_stats,
    _add_compare,
    _add_report,
    _add_models,
    _add_train,
    _add_evaluate,
    _add_predict,
    _add_cam,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momentlens",
        description="Action recognition in short videos: train, evaluate, compare and "
        "explain 2D and 3D ResNets on Moments-in-Time-style datasets.",
    )
    parser.add_argument("--version", action="version", version=f"momentlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MomentlensError as exc:
        print(f"momentlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"momentlens {args.command}: interrupted", file=sys.stderr)
        return 130
