"""``momentlens evaluate``: a trained model on a dataset split, written as an evaluation
folder (``momentlens predict``, new videos: :mod:`momentlens.engine.predict`).

Video-level scores average the softmax probabilities of N clips x M crops per video
(1 x 1, the centre clip and centre crop, reproduces the paper). Everything the paper
reports (top-1/top-5, per-class accuracy, most-confused pairs) is computed by
:mod:`momentlens.analysis.metrics` and written by :mod:`momentlens.analysis.evalio`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import Split, load_split
from momentlens.data.transforms import CropGeometry, resized_crop
from momentlens.engine.distributed import DistInfo, all_gather_objects, union_over_ranks
from momentlens.engine.feed import loader_workers
from momentlens.engine.inference import (
    Scores,
    join_ranks,
    load_for_inference,
    score_dataset,
)
from momentlens.engine.writes import writing
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError


class MultiViewDataset(VideoDataset):
    """A :class:`VideoDataset` whose items are N clips x M crops ``(N*M, C, T, H, W)``.

    Crops: 1 = centre; M > 1 = M squares spread evenly along the long side of the
    resized frame (the usual 3-crop test), each ``size`` pixels.
    """

    def __init__(self, *args: Any, crops: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crops = crops
        self.temporal_clips = self.num_clips
        # The base class sizes its output (and its zero substitute) by num_clips.
        self.num_clips = self.temporal_clips * crops

    def _indices(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        views, self.num_clips = self.num_clips, self.temporal_clips
        try:
            return super()._indices(num_frames, rng)
        finally:
            self.num_clips = views

    def _crop_boxes(self, src_hw: tuple[int, int]) -> list[tuple[float, float, float, float]]:
        geo = self.transform.geometry(src_hw)
        if self.crops == 1:
            return [geo.source_box()]
        rh, rw = round(src_hw[0] * geo.scale[0]), round(src_hw[1] * geo.scale[1])
        size = self.transform.size
        boxes = []
        for j in range(self.crops):
            frac = j / (self.crops - 1)
            y0 = round((rh - size) * (frac if rh > rw else 0.5))
            x0 = round((rw - size) * (frac if rw >= rh else 0.5))
            boxes.append(CropGeometry(geo.src_hw, geo.scale, (y0, x0, size, size)).source_box())
        return boxes

    def _load(self, rec: Any, rng: np.random.Generator) -> np.ndarray:
        if self.crops == 1:
            return super()._load(rec, rng)
        from momentlens.data.decode import open_video

        with open_video(rec.path, self.backend, threads=self.decode_threads) as reader:
            views = self._indices(reader.num_frames, rng)
            frames = reader.get_frames(np.concatenate(views))
        n, out = len(views[0]), []
        boxes = self._crop_boxes(frames.shape[1:3])
        for v in range(len(views)):
            clip = frames[v * n:(v + 1) * n]
            out.extend(resized_crop(clip, box, (self.size, self.size)) for box in boxes)
        return np.stack(out)


def _label_map(split: Split, model_classes: list[str]) -> np.ndarray:
    """Dataset label index -> model output index, by class name."""
    index = {c: i for i, c in enumerate(model_classes)}
    missing = [c for c in split.classes if c not in index]
    if missing:
        raise MomentlensError(
            f"the model was not trained on these classes of {split.root}: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    return np.array([index[c] for c in split.classes])


def views_dataset(spec: InputSpec, num_classes: int, records: Sequence[Any], clips: int,
                  crops: int, backend: str = "auto", quarantine: Path | None = None
                  ) -> MultiViewDataset:
    return MultiViewDataset(
        records, num_classes=num_classes, **spec.dataset_options(),
        train=False, backend=backend, num_clips=clips, crops=crops,
        quarantine_path=quarantine,
    )


def evaluate(
    model_path: str | Path,
    data: str | Path,
    out_dir: str | Path,
    split: str = "validation",
    clips: int = 1,
    crops: int = 1,
    batch_size: int = 8,
    workers: int = 2,
    device: str = "auto",
    cam: bool = False,
    cam_frames: int = 8,
    cam_videos_per_class: int = 0,
    cam_sliding: bool = True,
    precision: str = "auto",
    backend: str = "auto",
    plots: bool = True, layout: str = "auto", split_id: int | None = None,
) -> dict[str, Any]:
    """Score every video of ``data``/``split`` and write an evaluation folder (see evalio).

    ``precision`` / ``backend``: :func:`~momentlens.engine.inference.load_for_inference`
    (the folder's ``metrics.json`` records both); ``plots=False`` skips the PNGs.

    Under ``torchrun`` the processes share the videos (each scores its part, on its own
    GPU) and rank 0 gathers the scores, computes ``--cam`` and writes the folder; the
    other ranks return ``{}``.
    """
    if clips < 1 or crops < 1:
        raise MomentlensError("--clips and --crops must be at least 1")
    info = join_ranks(device, model_path, backend)  # left to the process's exit (its doc)
    return _evaluate(model_path, data, Path(out_dir), split, clips, crops, batch_size,
                     workers, device, cam, cam_frames, cam_videos_per_class, cam_sliding,
                     precision, backend, plots, layout, split_id, info)


def _evaluate(model_path: str | Path, data: str | Path, out: Path, split: str, clips: int,
              crops: int, batch_size: int, workers: int, device: str, cam: bool,
              cam_frames: int, cam_videos_per_class: int, cam_sliding: bool, precision: str,
              backend: str, plots: bool, layout: str, split_id: int | None, info: DistInfo
              ) -> dict[str, Any]:
    from momentlens.analysis.evalio import write_evaluation

    model, meta, fast = load_for_inference(model_path, device, precision, backend,
                                           local_rank=info.local_rank)
    the_split = load_split(data, split, layout, split_id=split_id)
    if cam:  # before the output folder exists: nothing left behind
        _cam_possible(model, the_split)
    quarantine = _fresh_quarantine(out, info)
    workers = loader_workers(workers, info)
    dataset = views_dataset(model.input_spec, len(meta["classes"]), the_split.records, clips,
                            crops, quarantine=quarantine)
    with torch.inference_mode():
        scores = score_dataset(model, dataset, fast.device, fast.normalizer(model, model.input_spec),
                               batch_size=batch_size, workers=workers, amp=fast.dtype,
                               info=info, desc=f"evaluate {split}",
                               sigmoid=bool(meta.get("multi_label")))
    failed = union_over_ranks(dataset.failed_indices(), info)
    if not info.is_main:
        return {}
    labels, records, paths, unreadable, clip_probs = _scored(scores, failed,
                                                             the_split, meta["classes"])
    views, targets = clip_probs.shape[1], _targets(the_split, records, meta["classes"])
    meta_out: dict[str, Any] = {
        "model": meta.get("model"), "model_path": str(model_path), "data": str(data),
        "split": split, "clips": clips, "crops": crops, "checkpoint_epoch": meta.get("epoch"),
        "precision": fast.precision, "backend": meta.get("backend", "torch"),
        "scores": "sigmoid" if meta.get("multi_label") else "softmax",
    }
    if cam:
        from momentlens.cam.localize import cam_scores

        meta_out["cam"] = cam_scores(model, meta, the_split, records, fast.device,
                                     frames=cam_frames, per_class=cam_videos_per_class,
                                     sliding=cam_sliding)
    with writing(out, "evaluation folder"):  # a full disk: one line, not a traceback
        return write_evaluation(
            out, video_probs=clip_probs.mean(axis=1), labels=labels, paths=paths,
            class_names=list(meta["classes"]),
            clip_probs=clip_probs.reshape(-1, clip_probs.shape[-1]),
            clip_labels=np.repeat(labels, views), meta=meta_out, unreadable=unreadable,
            listed=len(the_split.records), plots=plots, targets=targets)


def _targets(the_split: Split, records: list[Any], classes: list[str]) -> np.ndarray | None:
    """0/1 ``(N, K)``: every label of each scored record, as model output indices;
    ``None`` for a single-label split."""
    if not the_split.multi_label:
        return None
    targets = np.zeros((len(records), len(classes)), dtype=np.uint8)
    to_model = _label_map(the_split, classes)
    for i, rec in enumerate(records):
        targets[i, to_model[list(rec.labels)]] = 1
    return targets


def _scored(scores: Scores, failed: Any, the_split: Split, classes: list[str]
            ) -> tuple[np.ndarray, list[Any], list[str], list[str], np.ndarray]:
    """The scored videos' model labels, records, relative paths and ``(V, N, K)``
    probabilities, and the unreadable videos' relative paths."""
    keep = np.array([i not in failed for i in scores.indices], dtype=bool)
    labels = _label_map(the_split, classes)[scores.labels[keep]]
    records = [the_split.records[i] for i in scores.indices[keep]]
    root = Path(the_split.root)
    paths = [_rel(r.path, root) for r in records]
    unreadable = sorted(_rel(the_split.records[i].path, root) for i in failed)
    return labels, records, paths, unreadable, scores.clip_probs[keep]


def _cam_possible(model: torch.nn.Module, the_split: Split) -> None:
    """``--cam`` needs feature maps (the torch backend) and the dataset's ``boxes.json``
    to score them against: refuse at once without either."""
    from momentlens.cam.localize import BOXES_FILE

    if not hasattr(model, "forward_features"):
        raise MomentlensError("--cam needs the torch backend (an ONNX file has no feature maps)")
    if not (Path(the_split.root) / BOXES_FILE).is_file():
        raise MomentlensError(
            f"--cam scores the maps against {the_split.root}/{BOXES_FILE} (a box per object "
            "and frame, as `momentlens synth` writes), which this dataset does not have; "
            "evaluate without --cam, and map single videos with `momentlens cam`")


def _fresh_quarantine(out: Path, info: DistInfo) -> Path:
    """``out/quarantine.jsonl``, emptied: each evaluation retries every video. Under
    several processes rank 0 empties it before any rank scores (and its problem, a full
    disk say, is every rank's error)."""
    quarantine = out / "quarantine.jsonl"
    problem = None
    if info.is_main:
        try:
            with writing(out, "evaluation folder"):
                out.mkdir(parents=True, exist_ok=True)
            quarantine.unlink(missing_ok=True)
        except MomentlensError as exc:
            problem = str(exc)
    problem = all_gather_objects(problem, info)[0]
    if problem is not None:
        raise MomentlensError(problem)
    return quarantine


def _rel(path: Path | str, root: Path) -> str:
    p = Path(path)
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def describe(metrics: dict[str, Any]) -> str:
    line = ("mAP macro {:.1f}  micro {:.1f}  (multi-label: top-1 = the best class is a label)\n"
            .format(*(100 * (metrics[k] or 0) for k in ("map_macro", "map_micro")))
            if metrics.get("multi_label") else "")
    line += (f"top-1 {100 * metrics['top1']:.1f}%  top-5 {100 * metrics['top5']:.1f}%  "
            f"mean class top-1 {100 * metrics['mean_class_top1']:.1f}%  "
            f"({metrics['num_scored']} of {metrics['num_listed']} videos scored")
    line += f", {metrics['num_unreadable']} unreadable)" if metrics.get("num_unreadable") else ")"
    if "cam" in metrics:
        line += (f"\nCAM localisation: pointing game {100 * metrics['cam']['pointing']:.1f}%  "
                 f"IoU {metrics['cam']['iou']:.3f}")
    pairs = metrics.get("most_confused", [])[:5]
    if pairs:
        line += "\nmost confused: " + "; ".join(
            f"{p['actual']} -> {p['predicted']} ({p['freq']:.2f})" for p in pairs)
    return line


def print_summary(metrics: dict[str, Any], out_dir: str | Path, plots: bool = True) -> None:
    print(describe(metrics))
    plots_text = ", plots" if plots else ""
    print(f"wrote {out_dir}/metrics.json, per_class.csv, confusions.csv, predictions.csv"
          f"{plots_text}", file=sys.stderr)


__all__ = ["evaluate", "describe", "print_summary", "MultiViewDataset", "views_dataset"]
