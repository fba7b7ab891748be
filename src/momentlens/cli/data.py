"""Parsers of the data commands: synth, check, prepare, stats."""

from __future__ import annotations

import argparse

from momentlens.cli.common import add_layout_args, command

# --------------------------------------------------------------------------- synth


def add_synth(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--fps", type=int, default=30, help="frames per second of the videos")
    p.add_argument("--seed", type=int, default=0, help="random seed of the whole dataset")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--classes", default=None,
                   help="comma-separated subset of class names (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--preset", default="hard", choices=("hard", "medium", "easy"),
                   help="look of the videos: hard (object colour drawn per video, busy "
                   "backgrounds, distractor shapes, noise), medium, or easy (each class its "
                   "own colour on grey: a shortcut, for a first look only)")
    p.add_argument("--colour", choices=("random", "fixed"),
                   help="override the preset: object colour per video, or per class")
    p.add_argument("--background", choices=("mixed", "grey", "texture", "blocks", "noise"),
                   help="override the preset's background")
    p.add_argument("--distractors", type=int, metavar="N",
                   help="override the preset: up to N shapes of no class per video")
    p.add_argument("--noise", type=float, metavar="SD",
                   help="override the preset: largest pixel-noise sd, on [0, 1] pixels")
    p.add_argument("--layout", default="mit",
                   choices=("mit", "mmit", "ssv2", "kinetics", "ucf101", "hmdb51"),
                   help="write the dataset in this release's format (default: mit); mmit "
                   "videos may show two objects and carry two labels")
    p.set_defaults(func=command("data", "run_synth"))


# --------------------------------------------------------------------------- check / prepare / stats




def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="probe every video of a dataset and report problems",
        description="Decode every video of a dataset in parallel and report unreadable "
        "files, zero-frame and too-short videos, odd fps or sizes and label problems "
        "(with file and line). Exit status 1 when anything was found.")
    p.add_argument("data_dir", help="dataset folder (any layout of the README), a plain "
                   "folder of videos, or one video file")
    p.add_argument("--split", action="append", default=None,
                   help="split to check (repeatable; default: every split found)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--json", default=None, help="write the full report to this JSON file")
    p.add_argument("--min-frames", type=int, default=16, help="fewer decodable frames is 'too short'")
    p.add_argument("--min-size", type=int, default=112, help="a smaller short side is 'small'")
    p.add_argument("--fps", type=float, default=None,
                   help="expected fps; by default a rate far from every standard one "
                   "(23.976, 24, 25, 29.97, 30, 50, 59.94, 60) or varying within a video is odd")
    add_layout_args(p)
    p.set_defaults(func=command("data", "run_check"))


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare", help="make a faster copy of a dataset (smaller H.264 or JPEG frames)",
        description="Copy a dataset once, in the same layout, into videos that are fast to "
        "read: re-encoded H.264 with a short keyframe interval, or extracted JPEG frames. "
        "Resumable: rerun after an interruption and finished files are skipped.")
    p.add_argument("data_dir", help="dataset folder to copy (any layout of the README)")
    p.add_argument("out_dir", help="folder to write the copy to (same layout)")
    p.add_argument("--mode", choices=("video", "frames"), default="video",
                   help="video: re-encoded H.264; frames: JPEG frame folders")
    p.add_argument("--short-side", type=int, default=128, help="short side in pixels (never upscaled)")
    p.add_argument("--gop", type=int, default=8, help="keyframe interval in frames (video mode)")
    p.add_argument("--crf", type=int, default=23, help="H.264 quality (video mode; lower is better)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (frames mode)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.set_defaults(func=command("data", "run_prepare"))


def add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="per-channel pixel mean and std of a dataset (for mean subtraction)",
        description="Per-channel RGB mean and std over evenly spaced frames of a sample of "
        "videos, on [0, 255] and [0, 1]; use mean_255 with the 'dataset' normalisation.")
    p.add_argument("data_dir", help="dataset folder, a plain folder of videos, or one video")
    p.add_argument("--split", default="training", help="split to sample (a dataset only)")
    p.add_argument("--max-videos", type=int, default=500,
                   help="videos sampled, spread evenly over the split")
    p.add_argument("--frames", type=int, default=8, help="frames per video")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    add_layout_args(p)
    p.set_defaults(func=command("data", "run_stats"))
