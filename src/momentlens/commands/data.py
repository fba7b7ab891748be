"""``momentlens synth``, ``check``, ``prepare`` and ``stats``: datasets on disk."""

from __future__ import annotations

import argparse

from momentlens.utils import write_json_atomic


def run_synth(args: argparse.Namespace) -> int:
    """Write a synthetic dataset and print its summary."""
    from momentlens.data import synth

    classes = args.classes.split(",") if args.classes else None
    summary = synth.generate(
        args.out_dir, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
        size=args.size, num_frames=args.frames, fps=args.fps, seed=args.seed,
        workers=args.workers, classes=classes, overwrite=args.overwrite,
        preset=args.preset, colour=args.colour, background=args.background,
        distractors=args.distractors, noise=args.noise,
    )
    print(synth.describe(summary))
    layout = getattr(args, "layout", "mit")
    if layout != "mit":
        from momentlens.data import synth_layouts

        converted = synth_layouts.convert(args.out_dir, layout, workers=args.workers)
        print(synth_layouts.describe(converted))
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Probe every video; exit status 1 when problems were found."""
    from momentlens.data import check

    report = check.check_dataset(args.data_dir, args.split, workers=args.workers,
                                 min_frames=args.min_frames, min_size=args.min_size, fps=args.fps,
                                 layout=args.layout, split_id=args.split_id)
    if args.json:
        write_json_atomic(args.json, report)
    print(check.describe_check(report))
    return 0 if report["ok"] else 1


def run_prepare(args: argparse.Namespace) -> int:
    """Copy a dataset into a faster format; exit status 1 when a file failed."""
    from momentlens.data import prepare

    summary = prepare.prepare_dataset(
        args.data_dir, args.out_dir, mode=args.mode, short_side=args.short_side,
        workers=args.workers, gop=args.gop, crf=args.crf, quality=args.quality)
    print(prepare.describe_prepare(summary))
    return 1 if summary["failed"] else 0


def run_stats(args: argparse.Namespace) -> int:
    """Per-channel pixel mean and std of a dataset."""
    from momentlens.data import check

    stats = check.dataset_stats(args.data_dir, args.split, max_videos=args.max_videos,
                                frames_per_video=args.frames, workers=args.workers,
                                layout=args.layout, split_id=args.split_id)
    if args.json:
        write_json_atomic(args.json, stats)
    print(check.describe_stats(stats))
    return 0
