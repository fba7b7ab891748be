"""``momentlens cam``: load a run, map one video, write the folder, print what was written.

The folder: ``cam.gif`` and ``cam.mp4`` (the map overlaid, top-5 predictions written),
``contact_sheet.png`` (frames, then one row per map), ``evidence.png`` / ``evidence.csv``
(class evidence over time), ``cam.npz`` (heat maps ``K x H x W`` at the video's
resolution, frame indices, classes) and ``cam.json`` (its machine-readable summary).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from momentlens.cam import render
from momentlens.cam.video import VideoCAM, class_index, true_class_from_path, video_cams
from momentlens.data.encode import write_video
from momentlens.utils import (
    MomentlensError,
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

FILES = {"gif": "cam.gif", "mp4": "cam.mp4", "sheet": "contact_sheet.png",
         "evidence_png": "evidence.png", "evidence_csv": "evidence.csv", "npz": "cam.npz",
         "json": "cam.json"}


def write_cam_outputs(out_dir: str | os.PathLike[str], main: VideoCAM,
                      others: Sequence[tuple[str, VideoCAM]] = (),
                      true_class: str | None = None) -> dict[str, str]:
    """Write the ``momentlens cam`` folder (module doc); returns ``{kind: file name}``.

    ``main``: the map shown in the GIF / MP4 (top-1 or ``--class``); ``others``:
    ``(tag, map)`` pairs for further rows (``top2`` ..., ``true``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = render.overlay_frames(main)
    fps = render.playback_fps(main)
    write_bytes_atomic(out / FILES["gif"], render.gif_bytes(shown, fps))
    write_video(out / FILES["mp4"], np.stack(shown), fps=fps)
    sheet = render.contact_sheet(render.cam_rows(main, others))
    write_bytes_atomic(out / FILES["sheet"], render.png_bytes(sheet))
    write_bytes_atomic(out / FILES["evidence_png"], render.evidence_png(
        [main] + [c for _, c in others], title=Path(main.video).name))
    write_text_atomic(out / FILES["evidence_csv"], render.evidence_csv(main, others))
    arrays: dict[str, Any] = {
        "heatmaps": main.heatmaps.astype(np.float32), "frame_indices": main.frame_indices,
        "class_index": np.int64(main.class_index), "class_name": np.str_(main.class_name),
        "probs": main.probs, "evidence": main.evidence,
    }
    for tag, cam in others:
        arrays[f"heatmaps_{tag}"] = cam.heatmaps.astype(np.float32)
        arrays[f"class_index_{tag}"] = np.int64(cam.class_index)
        arrays[f"evidence_{tag}"] = cam.evidence
    with atomic_path(out / FILES["npz"]) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json_atomic(out / FILES["json"], {
        "video": main.video, "class_name": main.class_name, "class_index": main.class_index,
        "true_class": true_class, "sliding": main.sliding,
        "top5": [{"class": n, "prob": round(p, 6)} for n, p in main.topk(5)],
        "frame_indices": [int(i) for i in main.frame_indices], "fps": main.fps,
        "maps": {tag: cam.class_name for tag, cam in others}, "files": FILES,
    })
    return dict(FILES)


def map_video(model: nn.Module, meta: dict[str, Any], video: str | os.PathLike[str],
              out_dir: str | os.PathLike[str], class_name: str | None = None, topk: int = 1,
              frames: int | None = None, true_class: str | None = None,
              sliding: bool | None = None) -> dict[str, Any]:
    """Map one video with a loaded model and write the folder (module doc).

    The main map is ``class_name``'s (default: the top-1 class); further rows: the
    ``topk`` - 1 next classes (or the top-1 when ``class_name`` is given) and the true
    class (``true_class``, default: the video's folder name when it is a class).
    ``sliding``: :mod:`momentlens.cam.video` (``None``: when the model's map has fewer
    time steps than its input). Returns the files, classes, top-5 and frame indices.
    """
    if topk < 1:
        raise MomentlensError(f"--topk must be at least 1, got {topk}")
    if class_name is not None:
        class_index(meta, class_name)  # an unknown name fails before any decoding
    if true_class is not None:
        class_index(meta, true_class)
    else:
        true_class = true_class_from_path(video, list(meta["classes"]))
    wanted = [c for c in (class_name, true_class) if c is not None]
    cams = video_cams(model, meta, video, class_names=wanted,
                      topk=1 if class_name is not None else topk, frames=frames,
                      sliding=sliding)
    if class_name is not None:
        main, others = cams[1], [("top1", cams[0])]
    else:
        main, others = cams[0], [(f"top{i + 2}", c) for i, c in enumerate(cams[1:topk])]
    if true_class is not None:
        others.append(("true", cams[-1]))
    files = write_cam_outputs(out_dir, main, others, true_class)
    return {"files": files, "class_name": main.class_name, "true_class": true_class,
            "top5": main.topk(5), "frame_indices": main.frame_indices.tolist(),
            "sliding": main.sliding}


def _check_one_video(path: Path) -> None:
    """``path`` exists and is one video: a file or a frame folder, not a folder of videos
    (which used to fail as a frame folder without ``image_00001.jpg``)."""
    from momentlens.data.formats import find_videos, is_frame_folder

    if not path.exists():
        raise MomentlensError(f"{path}: no such file")
    if path.is_dir() and not is_frame_folder(path):
        found = find_videos(path)
        if found:
            raise MomentlensError(
                f"{path} is a folder of {len(found)} video(s); cam maps one video: pass one "
                f"(e.g. {found[0]}), or score a dataset's maps with evaluate --cam")
        raise MomentlensError(f"{path}: a folder with neither videos nor JPEG frames "
                              "(image_00001.jpg, ...)")


def run(args: argparse.Namespace) -> int:
    """``momentlens cam MODEL VIDEO --out DIR``: load the run, map, print what was written."""
    from momentlens.engine.checkpoint import load_model
    from momentlens.engine.coverage import reason
    from momentlens.engine.distributed import launch_rank
    from momentlens.engine.runtime import resolve_device

    if launch_rank() != 0:  # under torchrun: one video, mapped by rank 0 alone
        return 0
    if args.topk < 1:  # before the model loads
        raise MomentlensError(f"--topk must be at least 1, got {args.topk}")
    _check_one_video(Path(args.video))
    model, meta = load_model(args.model, resolve_device(args.device))
    print(f"momentlens cam: mapping {args.video} ...", file=sys.stderr)
    try:
        result = map_video(model, meta, args.video, args.out, class_name=args.class_name,
                           topk=args.topk, frames=args.frames, true_class=args.true_class,
                           sliding=False if args.no_sliding else None)
    except MomentlensError:
        raise  # already one line with the reason (a wrong class name, a decode error)
    except (OSError, ValueError, RuntimeError) as exc:  # FFmpeg's and numpy's own errors
        raise MomentlensError(reason(args.video, exc)) from None
    top = "  ".join(f"{n} {p:.3f}" for n, p in result["top5"])
    print(f"top-5: {top}")
    print(f"mapped class: {result['class_name']}; true class: {result['true_class'] or 'unknown'}"
          f"; {'sliding windows over the whole video' if result['sliding'] else 'one view'}")
    for name in result["files"].values():
        print(f"wrote {args.out}/{name}")
    return 0

