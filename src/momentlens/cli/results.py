"""Parsers of the commands that use trained models: evaluate, predict, cam, export, serve,
compare, report."""

from __future__ import annotations

import argparse

from momentlens.cli.common import add_layout_args, command

DEVICE_HELP = "auto (CUDA if present), cpu or cuda"

# --------------------------------------------------------------------------- evaluate / predict


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a trained model on a dataset split; write metrics and plots",
        description="Video-level results average softmax scores over N clips x M crops per "
        "video. Writes metrics.json, per_class.csv, confusions.csv, predictions.csv and plots "
        "to EVAL_DIR; unreadable videos are counted and listed.",
    )
    p.add_argument("model", help="run folder (its best checkpoint) or model.safetensors")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="validation", help="split to score")
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
    p.add_argument("--no-plots", action="store_true",
                   help="skip the PNG plots (metrics and tables are written as always)")
    _add_loader_flags(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_inference_flags(p)
    add_layout_args(p)
    p.set_defaults(func=command("evaluate", "run_evaluate"))


def _add_loader_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=8, help="videos per forward pass")
    p.add_argument("--workers", type=int, default=2,
                   help="data loader processes (under torchrun: per process, at most its "
                   "share of the cores)")


def _add_inference_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto (default): bf16 autocast on CUDA and on CPUs with native bf16, "
                   "else fp32; fp32: exact eager fp32 (recorded in metrics.json)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="onnxruntime: an exported .onnx file, or the run folder's model.onnx "
                   "(needs pip install 'momentlens[onnx]'); auto: onnxruntime for .onnx files")


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of new videos",
                       description="Print the top-k classes with probabilities for each video "
                       "(files, or folders searched recursively). Under torchrun the "
                       "processes share the videos and rank 0 prints every result.")
    p.add_argument("model", help="run folder, model.safetensors or exported .onnx")
    p.add_argument("videos", nargs="+", help="video files or folders")
    p.add_argument("--topk", type=int, default=5, help="classes shown per video")
    p.add_argument("--clips", type=int, default=None, metavar="N",
                   help="clips per video, their scores averaged (default: 1, or up to 10 "
                   "spread evenly over a video longer than 4 clips; the output says which)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_loader_flags(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--timeline", action="store_true", help="also write OUT/<video>.timeline"
                   ".csv and .png: class probabilities of sliding windows over the whole video")
    p.add_argument("--out", default=".", metavar="DIR", help="with --timeline (default: .)")
    _add_window_flags(p)
    _add_inference_flags(p)
    p.set_defaults(func=command("evaluate", "run_predict"))


def _add_window_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-s", type=float, default=3.0, help="timeline window (s), default 3")
    p.add_argument("--stride-s", type=float, default=1.0, help="timeline stride (s), default 1")


_SERVE_FLAGS = [  # flag, type, default, help
    ("--host", str, "127.0.0.1", "address to bind (default: loopback only)"),
    ("--port", int, 8000, "default 8000"),
    ("--max-upload-mb", float, 200.0, "largest upload, enforced while it streams (200)"),
    ("--max-seconds", float, 600.0, "longest video (s), checked after probing (600; 0: none)"),
    ("--workers", int, 1, "uploads scored at once, the runs loaded once (1)"),
    ("--queue", int, 8, "uploads that may wait; beyond them 503 Retry-After (8)"),
    ("--device", str, "auto", "auto, cpu or cuda"),
    ("--precision", str, "auto", "auto, fp32 or bf16"),
    ("--log-level", str, "info", "uvicorn's: warning, info, debug, ..."),
]


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page and JSON API: a video scored by runs side by side",
                       description="Serve a page and a JSON API (docs/serve.md) that score an "
                       "uploaded video with every RUN. Needs pip install 'momentlens[serve]'.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or model files")
    for flag, kind, default, text in _SERVE_FLAGS:
        p.add_argument(flag, type=kind, default=default, help=text)
    _add_window_flags(p)
    p.set_defaults(func=command("serve", "run"))


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained model to ONNX and check it against eager fp32",
        description="Write the model as ONNX (dynamic batch axis; input: normalised float "
        "clips B x 3 x T x H x W, output: logits) with its input record (frames, size, "
        "stride, sampler, resize, normalisation mean/std) and class names in the file's "
        "metadata, so the file is usable alone. Then decode real clips of the run's dataset "
        "(or --data) and print the largest logit difference and the top-1 agreement with "
        "eager fp32 (also in OUT.parity.json); exit status 1 when they disagree. Needs "
        "pip install 'momentlens[onnx]'.")
    p.add_argument("model", help="run folder (its best checkpoint) or model.safetensors")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="file format")
    p.add_argument("--out", help="file to write (default: RUN/model.onnx)")
    p.add_argument("--data", help="dataset for the parity check (default: the run's own)")
    p.add_argument("--split", default="validation", help="split the parity clips come from")
    p.add_argument("--clips", type=int, default=16, help="clips for the parity check")
    p.set_defaults(func=command("export", "run"))


# --------------------------------------------------------------------------- cam


def add_cam(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=command("cam", "run"))


# --------------------------------------------------------------------------- compare


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two evaluation folders: per-class differences and a paired test",
        description="Compare two evaluations of the same classes (folders written by "
        "`momentlens evaluate`): per-class top-1/top-5 differences (B - A), the classes where "
        "each is better, the confusions both share, and a McNemar test of top-1 correctness "
        "over the videos both scored (multi-label evaluations: per-class AP differences and a "
        "paired bootstrap of mAP instead). Writes comparison.json and plots into --out.",
    )
    p.add_argument("eval_a", help="evaluation folder A (the baseline)")
    p.add_argument("eval_b", help="evaluation folder B")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), default=None,
                   help="display names (default: the model recorded in each metrics.json)")
    p.set_defaults(func=command("results", "run_compare"))


# --------------------------------------------------------------------------- report


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report from evaluation folders",
        description="Write a single HTML page (images embedded, no network needed) with the "
        "headline table, per-class plots, most-confused tables, comparisons of every later "
        "evaluation with the first, and example top-5 predictions.",
    )
    p.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR", help="evaluation folders")
    p.add_argument("--out", required=True, help="output HTML file")
    p.add_argument("--title", default="momentlens evaluation report", help="page title")
    p.add_argument("--examples", type=int, default=6, help="example videos to show")
    p.add_argument("--no-gallery", action="store_true",
                   help="leave out the CAM gallery (shown for evaluations scored with --cam "
                   "whose run and data are still there)")
    p.set_defaults(func=command("results", "run_report"))
